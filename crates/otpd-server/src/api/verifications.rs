//! `/v1/verifications`: start (or resend), check, read, cancel, and test-mode messages.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, Utc};
use otpd_core::apikey::Principal;
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::entity::validate_entity;
use otpd_core::guards::budget::Money;
use otpd_core::guards::proof_of_work::Solution;
use otpd_core::guards::rate::Subject;
use otpd_core::guards::{Action, Decision};
use otpd_core::ids::Kind;
use otpd_core::recipient::{PhoneNumber, Recipient};
use otpd_core::service::{Service, validate_locale, validate_ttl};
use otpd_core::store::{
    CheckOutcome, CheckTarget, Idempotency, StartOutcome, StartRequest, TestRecorder, TestSend,
};
use otpd_core::verification::{CheckDecision, MessageOptions, Status, Verification};
use otpd_delivery::render;
use otpd_telemetry::CheckResult;
use serde::Deserialize;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::guards::{self, Who};
use super::views::{CheckView, MessageList, MessageView, VerificationView, timestamp};
use crate::auth::{PresentedKey, usable_service};
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Start a verification (or resend the pending one for the same recipient).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Phone number (any common format) or, for `email`, an address.
    pub to: String,
    /// `sms`, `voice`, `whatsapp`, `email` or `ussd`; default: the service's first channel.
    pub channel: Option<String>,
    /// Service name or SID; default `default`.
    pub service: Option<String>,
    /// ISO 3166 region for numbers written without `+`.
    pub country: Option<String>,
    /// Message locale (`en`, `fr`, `pt-BR`, …).
    pub locale: Option<String>,
    /// Digits in the code (4–10); default: the service's.
    pub code_length: Option<u8>,
    /// Code lifetime in seconds; default: the service's.
    pub ttl_seconds: Option<u32>,
    /// Fallback workflow: channels tried in order when delivery on one fails.
    pub channels: Option<Vec<String>>,
    /// Opaque data kept with the verification.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Your id for the user (as for authenticator factors): wrong codes then also count
    /// toward that user's lockout, shared with its authenticator checks.
    pub entity: Option<String>,
    /// The end user's IP address (your backend calls otpd, so otpd cannot see it): rate
    /// limits per IP use it.
    pub client_ip: Option<String>,
    /// A solved challenge from `POST /v1/challenges`, when the service's
    /// `guards.proof_of_work` asks for one (each is accepted once).
    pub proof_of_work: Option<Solution>,
}

/// Check a code, by recipient (`to` + `service`) or by verification `id`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The code the user typed.
    pub code: String,
    /// The recipient the code was sent to.
    pub to: Option<String>,
    /// The verification id (instead of `to`).
    pub id: Option<String>,
    /// Service name or SID (with `to`); default `default`.
    pub service: Option<String>,
    /// ISO 3166 region for numbers written without `+`.
    pub country: Option<String>,
    /// The end user's IP address, for the check rate limits per IP.
    pub client_ip: Option<String>,
}

fn parse_channel(s: &str) -> Result<Channel, ApiError> {
    s.parse::<Channel>().map_err(ApiError::from)
}

/// A start request, whichever API it came through: parsed at that API's edge, checked
/// against the service and the rules here, in one place.
#[derive(Default)]
pub struct StartParams {
    /// Phone number (any common format) or email address.
    pub to: String,
    /// ISO 3166 region for numbers written without `+`.
    pub country: Option<String>,
    /// Channel of this send; default: the workflow's first, else the service's first.
    pub channel: Option<Channel>,
    /// Fallback workflow, in order.
    pub channels: Vec<Channel>,
    /// Message locale; default: the service's.
    pub locale: Option<String>,
    /// Digits in a generated code; default: the service's.
    pub code_length: Option<u8>,
    /// Lifetime in seconds; default: the service's.
    pub ttl_seconds: Option<u32>,
    /// Opaque caller data.
    pub metadata: Option<serde_json::Value>,
    /// The application's user this code is for: wrong codes also count toward this
    /// entity's lockout (shared with its authenticator factors).
    pub entity: Option<String>,
    /// A caller-chosen code (needs `custom_code_enabled` on the service).
    pub custom_code: Option<Zeroizing<String>>,
    /// Per-verification message overrides.
    pub message_options: MessageOptions,
    /// Idempotency of this request.
    pub idempotency: Option<Idempotency>,
    /// The end user's IP as the caller gave it (`client_ip`), for the rate limits.
    pub client_ip: Option<String>,
    /// The request's `X-Forwarded-For`, believed only when the service says so.
    pub forwarded_for: Option<String>,
    /// A solved proof-of-work challenge, when the service asks for one.
    pub proof_of_work: Option<Solution>,
    /// The presented API key, kept in memory to sign status callbacks when the service
    /// asks for them (see `twilio::callbacks`).
    pub signing_key: Option<Zeroizing<String>>,
}

/// What a start did.
pub struct Started {
    /// The verification after the start.
    pub verification: Verification,
    /// `created`, `resent` or `replayed`.
    pub outcome: &'static str,
    /// The time the decision was made at.
    pub now: chrono::DateTime<Utc>,
}

/// The channel of this send and its fallbacks.
fn channels_of(
    channel: Option<Channel>,
    workflow: &[Channel],
    service: &Service,
) -> Result<(Channel, Vec<Channel>), ApiError> {
    let first = match channel {
        Some(c) => c,
        None => workflow
            .first()
            .copied()
            .or_else(|| service.settings.channels.first().copied())
            .unwrap_or(Channel::Sms),
    };
    let mut fallback: Vec<Channel> = Vec::new();
    for &c in workflow {
        if c != first && !fallback.contains(&c) {
            fallback.push(c);
        }
    }
    if fallback
        .iter()
        .any(|c| c.addresses_phone() != first.addresses_phone())
    {
        return Err(ApiError::invalid(
            "channels must all address the same kind of recipient (phone or email)",
        ));
    }
    Ok((first, fallback))
}

/// A recipient, or a configured test number with its fixed code.
fn recipient_of(
    service: &Service,
    channel: Channel,
    to: &str,
    country: Option<&str>,
) -> Result<(Recipient, Option<OtpCode>), ApiError> {
    if channel.addresses_phone()
        && let Ok(possible) = PhoneNumber::parse_possible(to, country)
        && let Some(code) = service.settings.test_numbers.get(possible.e164())
    {
        let code = OtpCode::parse(code).map_err(ApiError::from)?;
        return Ok((Recipient::Phone(possible), Some(code)));
    }
    Ok((Recipient::parse_for(channel, to, country)?, None))
}

/// The `Idempotency-Key` header as the store's idempotency record.
pub fn idempotency_of(
    headers: &HeaderMap,
    p: &Principal,
    digest: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1-255 visible ASCII characters")
        })?;
    Ok(Some(Idempotency {
        key_id: p.key_id.clone(),
        key: key.to_string(),
        request_hash: digest.to_vec(),
    }))
}

/// Starts a verification (or resends the pending one): the rules shared by `/v1` and
/// `/v2` — normalization, test numbers, geo and line-type guards, custom codes, test keys,
/// send limits and idempotency (the last two inside the store's atomic step).
pub async fn start_verification(
    state: &AppState,
    principal: &Principal,
    service: &Service,
    params: StartParams,
) -> ApiResult<Started> {
    let (channel, fallback) = channels_of(params.channel, &params.channels, service)?;
    tracing::Span::current().record("channel", channel.as_str());
    let (recipient, fixed_code) =
        recipient_of(service, channel, &params.to, params.country.as_deref())?;
    let client_ip = guards::client_ip(
        params.client_ip.as_deref(),
        params.forwarded_for.as_deref(),
        service,
        &state.config.http,
    )?;
    let now = state.clock.now();
    let who = Who {
        service,
        principal,
        to: recipient.as_str(),
        client_ip: client_ip.as_deref(),
    };
    // Test numbers are the operator's own: geo and line-type guards do not apply.
    let mut decision = if fixed_code.is_none() {
        guards::static_send_decision(service, channel, &recipient)
    } else {
        Decision::default()
    };
    if let Some(r) = &decision.blocked {
        let err = guards::refusal_error(r);
        guards::record(state, &who, Action::Send, decision, None, now).await;
        return Err(err);
    }
    let code_length = match params.code_length {
        Some(n)
            if !(otpd_core::code::MIN_CODE_LENGTH..=otpd_core::code::MAX_CODE_LENGTH)
                .contains(&n) =>
        {
            return Err(ApiError::invalid("code_length must be 4-10"));
        }
        Some(n) => n,
        None => service.settings.code_length,
    };
    let custom_code = match &params.custom_code {
        Some(_) if !service.settings.custom_code_enabled => {
            return Err(ApiError::invalid(
                "custom codes are not enabled for this service (custom_code_enabled)",
            ));
        }
        Some(c) => Some(OtpCode::parse(c).map_err(ApiError::from)?),
        None => None,
    };
    let ttl = validate_ttl(params.ttl_seconds.unwrap_or(service.settings.ttl_seconds))?;
    let locale = match params.locale {
        Some(l) => {
            validate_locale(&l)?;
            l
        }
        None => service.settings.default_locale.clone(),
    };
    if params
        .metadata
        .as_ref()
        .is_some_and(|m| m.to_string().len() > 4096)
    {
        return Err(ApiError::invalid(
            "metadata must be at most 4096 bytes of JSON",
        ));
    }
    let providers = if principal.test {
        vec!["test".to_string()]
    } else {
        state.router.chain(channel, recipient.region())
    };
    let deliver = fixed_code.is_none();
    if deliver && providers.is_empty() {
        return Err(ApiError::new(
            ErrorCode::UnsupportedChannel,
            format!("no provider is configured for channel {channel}"),
        ));
    }
    if let Some(entity) = &params.entity {
        validate_entity(entity)?;
    }
    let locale_for_test = locale.clone();
    let options_for_test = params.message_options.clone();

    // Test keys and test numbers deliver nothing, so they cost nothing.
    let deliver_cost = (deliver && !principal.test)
        .then(|| providers.first().cloned())
        .flatten()
        .map(|p| (p, recipient.region().map(str::to_string)));
    let new_id = Kind::Verification.new_id();
    // A test number's fixed code wins: such numbers are never delivered to.
    let code = fixed_code
        .or(custom_code)
        .unwrap_or_else(|| OtpCode::generate(code_length));
    let hasher = state.secret.hasher();
    let request = StartRequest {
        service_id: service.id.clone(),
        to: recipient.as_str().to_string(),
        channel,
        fallback,
        providers,
        deliver,
        code_hash: hasher.hash(&new_id, &code),
        sealed_code: state.secret.sealer().seal_str(&new_id, code.expose()),
        new_id,
        ttl: Duration::seconds(i64::from(ttl)),
        max_check_attempts: service.settings.max_check_attempts,
        locale,
        metadata: params.metadata,
        entity: params.entity,
        region: recipient.region().map(str::to_string),
        test: principal.test,
        key_id: principal.key_id.clone(),
        sends_per_window: service.settings.rate_limits.sends_per_to,
        send_window: Duration::seconds(i64::from(service.settings.rate_limits.send_window_seconds)),
        idempotency: params.idempotency,
        message_options: params.message_options,
    };
    drop(code);
    guards::rate_limit(
        state,
        service,
        &mut decision,
        Action::Send,
        &Subject {
            service_id: &service.id,
            to: Some(recipient.as_str()),
            client_ip: client_ip.as_deref(),
            key_id: Some(&principal.key_id),
        },
        now,
    )
    .await?;
    if decision.blocked.is_none() && deliver_cost.is_some() {
        state
            .pumping
            .check_send(&*state.store, service, &mut decision, &recipient, now)
            .await;
    }
    if decision.blocked.is_none() && deliver {
        let spender = request.idempotency.as_ref().map(Idempotency::spender);
        guards::proof_of_work(
            state,
            service,
            &mut decision,
            params.proof_of_work.as_ref(),
            spender.as_deref(),
            now,
        )
        .await?;
    }
    // The price of the first provider's message: what this send will most likely cost.
    let cost = match (&deliver_cost, decision.blocked.is_none()) {
        (Some((provider, region)), true) => {
            state
                .config
                .prices
                .price(provider, channel.as_str(), region.as_deref())
        }
        _ => Money(0),
    };
    let charged = guards::charge(state, service, &mut decision, cost, now).await?;
    if let Some(r) = &decision.blocked {
        let err = guards::refusal_error(r);
        guards::refund(state, service, charged, now).await;
        guards::record(state, &who, Action::Send, decision, None, now).await;
        return Err(err);
    }
    let sealer = state.secret.sealer();
    let record = |send: &TestSend<'_>| {
        let code = sealer
            .open_str(send.verification_id, send.sealed_code)
            .ok()?;
        let rendered = render::message(
            service,
            &options_for_test,
            channel,
            &locale_for_test,
            &code,
            send.expires_at,
            state.clock.now(),
        );
        let message_id = Kind::Message.new_id();
        let sealed = sealer.seal_str(&message_id, &rendered.body);
        Some((message_id, sealed))
    };
    let recorder: Option<TestRecorder<'_>> = principal.test.then_some(&record as TestRecorder<'_>);
    // The key that signs status callbacks is held before the store step, so the sender
    // (tailing the event log) finds it for the very first event.
    let signing_key = params
        .signing_key
        .filter(|_| service.settings.status_callback_url.is_some());
    let new_id = request.new_id.clone();
    if let Some(k) = &signing_key {
        state
            .callback_keys
            .remember(&new_id, k.clone(), now + request.ttl);
    }
    let outcome = match state.store.start(request, recorder, now).await {
        Ok(o) => o,
        Err(e) => {
            state.callback_keys.forget(&new_id);
            guards::refund(state, service, charged, now).await;
            if let Some(r) = guards::store_refusal(&e) {
                decision.blocked = Some(r);
                guards::record(state, &who, Action::Send, decision, None, now).await;
            }
            return Err(e.into());
        }
    };
    let (v, kind) = match outcome {
        StartOutcome::Created(v) => (v, "created"),
        StartOutcome::Resent(v) => (v, "resent"),
        StartOutcome::Replayed(v) => (v, "replayed"),
    };
    tracing::Span::current().record("verification_id", v.id.as_str());
    if kind != "replayed" {
        state
            .telemetry
            .verification_started(channel, recipient.region(), kind == "resent");
    }
    if kind == "replayed" {
        guards::refund(state, service, charged, now).await;
    } else {
        guards::record(state, &who, Action::Send, decision, Some(&v.id), now).await;
    }
    if v.id != new_id {
        state.callback_keys.forget(&new_id);
    }
    if kind != "replayed" {
        if deliver {
            state.wake.notify_one();
        }
        if let Some(key) = signing_key {
            state.callback_keys.remember(&v.id, key, v.expires_at);
        }
    }
    tracing::info!(
        to = %otpd_core::mask::mask_recipient(&v.to),
        outcome = kind,
        "verification started"
    );
    Ok(Started {
        verification: v,
        outcome: kind,
        now,
    })
}

/// Start a verification, or resend the pending one for the same `to`.
#[utoipa::path(
    post, path = "/v1/verifications", tag = "verifications",
    request_body = StartBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first response instead of sending again")),
    responses(
        (status = 201, description = "Started or resent", body = VerificationView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id, channel))]
pub async fn start(
    State(state): State<AppState>,
    principal: Principal,
    key: PresentedKey,
    headers: HeaderMap,
    body: ApiJson<StartBody>,
) -> ApiResult<(StatusCode, Json<VerificationView>)> {
    let ApiJson {
        value: body,
        digest,
    } = body;
    let service = usable_service(&state, &principal, body.service.as_deref()).await?;
    let channels = body
        .channels
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| parse_channel(c))
        .collect::<Result<Vec<_>, _>>()?;
    let channel = body.channel.as_deref().map(parse_channel).transpose()?;
    let params = StartParams {
        to: body.to,
        country: body.country,
        channel,
        channels,
        locale: body.locale,
        code_length: body.code_length,
        ttl_seconds: body.ttl_seconds,
        metadata: body.metadata,
        entity: body.entity,
        idempotency: idempotency_of(&headers, &principal, &digest)?,
        signing_key: Some(key.0),
        client_ip: body.client_ip,
        forwarded_for: guards::forwarded_for(&headers),
        proof_of_work: body.proof_of_work,
        ..StartParams::default()
    };
    let started = start_verification(&state, &principal, &service, params).await?;
    Ok((
        StatusCode::CREATED,
        Json(VerificationView::of(&started.verification, started.now)),
    ))
}

/// Resolves a `to` for checking: a test number, a phone number, or an email address.
pub fn check_recipient(
    service: &Service,
    to: &str,
    country: Option<&str>,
) -> Result<String, ApiError> {
    if to.contains('@') {
        return Ok(Recipient::parse_for(Channel::Email, to, None)?
            .as_str()
            .to_string());
    }
    if let Ok(possible) = PhoneNumber::parse_possible(to, country)
        && service.settings.test_numbers.contains_key(possible.e164())
    {
        return Ok(possible.e164().to_string());
    }
    Ok(PhoneNumber::parse(to, country)?.e164().to_string())
}

fn ensure_visible(p: &Principal, v: &Verification) -> Result<(), ApiError> {
    if p.may_see(&v.service_id, v.test) {
        Ok(())
    } else {
        Err(ApiError::not_found("verification"))
    }
}

/// Which verification a check is for, before the service and recipient are resolved.
pub enum CheckBy {
    /// By id or SID.
    Id(String),
    /// The latest for a recipient in a service (name, id or SID; `default` when `None`).
    To {
        /// Service.
        service: Option<String>,
        /// Recipient as given.
        to: String,
        /// ISO 3166 region for numbers written without `+`.
        country: Option<String>,
    },
}

/// Where the end user's IP of a check comes from.
#[derive(Default)]
pub struct ClientIp {
    /// `client_ip` as the caller gave it.
    pub given: Option<String>,
    /// The request's `X-Forwarded-For`, believed only when the service says so.
    pub forwarded_for: Option<String>,
}

/// A decided check: what was decided and the verification after it.
pub struct Checked {
    /// `Approve` or `Reject` (the other decisions are errors).
    pub decision: CheckDecision,
    /// The verification after the check.
    pub verification: Verification,
    /// The time the decision was made at.
    pub now: chrono::DateTime<Utc>,
}

/// Checks a code: the rules shared by `/v1` and `/v2` (visibility before any attempt is
/// spent, the store's atomic compare-and-spend, lockout). A wrong code with attempts left
/// is `Ok` with `Reject`; every other non-approval is an error. Every outcome is counted.
pub async fn check_code(
    state: &AppState,
    principal: &Principal,
    code: &str,
    by: CheckBy,
    ip: ClientIp,
) -> ApiResult<Checked> {
    let checked = decide_check(state, principal, code, by, ip).await;
    let result = match &checked {
        Ok(c) if c.decision == CheckDecision::Approve => CheckResult::Approved,
        Ok(_) => CheckResult::WrongCode,
        Err(e) => match e.code() {
            ErrorCode::MaxAttemptsReached => CheckResult::MaxAttempts,
            ErrorCode::NotFound => CheckResult::NotFound,
            ErrorCode::Expired => CheckResult::Expired,
            ErrorCode::VerificationNotPending => CheckResult::NotPending,
            ErrorCode::RateLimited => CheckResult::RateLimited,
            ErrorCode::Internal => CheckResult::Error,
            _ => CheckResult::Invalid,
        },
    };
    // The region (a phone number parse) only for approvals, the one outcome counted by it.
    let approved = checked
        .as_ref()
        .ok()
        .filter(|c| c.decision == CheckDecision::Approve)
        .map(|c| {
            let v = &c.verification;
            (v.channel, otpd_telemetry::region_of(&v.to))
        });
    state.telemetry.check(
        result,
        approved
            .as_ref()
            .map(|(channel, region)| (*channel, region.as_deref())),
    );
    checked
}

/// What a check is on: a verification already read (by id), or what the store finds.
enum Target {
    Seen(Box<Verification>),
    Store(CheckTarget),
}

/// [`check_code`] without the counting.
async fn decide_check(
    state: &AppState,
    principal: &Principal,
    code: &str,
    by: CheckBy,
    ip: ClientIp,
) -> ApiResult<Checked> {
    let code = OtpCode::parse(code).map_err(ApiError::from)?;
    let by_id = matches!(by, CheckBy::Id(_));
    let (target, service, to) = match by {
        CheckBy::Id(id) => {
            // Visibility first: a key must not spend attempts on another service's codes.
            let v = find(state, principal, &id).await?;
            let service = state
                .store
                .find_service(&v.service_id)
                .await?
                .ok_or_else(|| ApiError::not_found("verification"))?;
            let to = v.to.clone();
            (Target::Seen(Box::new(v)), service, to)
        }
        CheckBy::To {
            service,
            to,
            country,
        } => {
            let service = usable_service(state, principal, service.as_deref()).await?;
            let to = check_recipient(&service, &to, country.as_deref())?;
            let target = Target::Store(CheckTarget::To {
                service_id: service.id.clone(),
                to: to.clone(),
                test: principal.test,
            });
            (target, service, to)
        }
    };
    let client_ip = guards::client_ip(
        ip.given.as_deref(),
        ip.forwarded_for.as_deref(),
        &service,
        &state.config.http,
    )?;
    let now = state.clock.now();
    let who = Who {
        service: &service,
        principal,
        to: &to,
        client_ip: client_ip.as_deref(),
    };
    let mut guarded = Decision::default();
    guards::rate_limit(
        state,
        &service,
        &mut guarded,
        Action::Check,
        &Subject {
            service_id: &service.id,
            to: Some(&to),
            client_ip: client_ip.as_deref(),
            key_id: Some(&principal.key_id),
        },
        now,
    )
    .await?;
    if let Some(r) = &guarded.blocked {
        let err = guards::refusal_error(r);
        guards::record(state, &who, Action::Check, guarded, None, now).await;
        return Err(err);
    }
    let hasher = state.secret.hasher();
    let matcher = move |v: &Verification| hasher.matches(&v.id, &code, &v.code_hash);
    let checked = match target {
        // The verification just read: the store may decide on it (one read fewer).
        Target::Seen(v) => state.store.check_seen(&v, &matcher, now).await,
        Target::Store(t) => state.store.check(t, &matcher, now).await,
    };
    let outcome = match checked {
        Ok(o) => o,
        Err(e) => {
            if let Some(r) = guards::store_refusal(&e) {
                guarded.blocked = Some(r);
                guards::record(state, &who, Action::Check, guarded, None, now).await;
            }
            return Err(e.into());
        }
    };
    let (decision, v) = match outcome {
        CheckOutcome::NotFound => return Err(ApiError::not_found("verification")),
        CheckOutcome::Decided {
            decision,
            verification,
        } => (decision, verification),
    };
    ensure_visible(principal, &v)?;
    tracing::Span::current().record("verification_id", v.id.as_str());
    match decision {
        CheckDecision::Approve => {
            state
                .pumping
                .approved(&*state.store, &service, &v.to, now)
                .await;
            tracing::info!("code approved");
        }
        CheckDecision::Reject { remaining } => {
            tracing::info!(remaining, "wrong code");
        }
        CheckDecision::Exhaust => {
            tracing::info!("wrong code; attempt limit reached");
            return Err(max_attempts());
        }
        CheckDecision::NotPending(status) => return Err(not_pending(status, by_id, &v, now)),
    }
    Ok(Checked {
        decision,
        verification: *v,
        now,
    })
}

/// Check a code.
#[utoipa::path(
    post, path = "/v1/verifications/check", tag = "verifications",
    request_body = CheckBody,
    responses(
        (status = 200, description = "Right (`valid: true`, approved) or wrong (`valid: false`, still pending)", body = CheckView),
        (status = 404, description = "Nothing pending for that `to`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "By id: not pending", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "By id: expired", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Attempt limit reached (`max_attempts_reached`), or the recipient or entity is locked after too many wrong codes (`rate_limited`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id))]
pub async fn check(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<CheckBody>,
) -> ApiResult<Json<CheckView>> {
    let body = body.value;
    let by = match (body.id, body.to) {
        (Some(_), None) if body.service.is_some() => {
            return Err(ApiError::invalid("`service` goes with `to`, not with `id`"));
        }
        (Some(id), None) => CheckBy::Id(id),
        (None, Some(to)) => CheckBy::To {
            service: body.service,
            to,
            country: body.country,
        },
        _ => return Err(ApiError::invalid("give exactly one of `to` or `id`")),
    };
    let ip = ClientIp {
        given: body.client_ip,
        forwarded_for: guards::forwarded_for(&headers),
    };
    let checked = check_code(&state, &principal, &body.code, by, ip).await?;
    let remaining = match checked.decision {
        CheckDecision::Reject { remaining } => Some(remaining),
        _ => None,
    };
    Ok(Json(CheckView {
        valid: checked.decision == CheckDecision::Approve,
        remaining_attempts: remaining,
        verification: VerificationView::of(&checked.verification, checked.now),
    }))
}

fn max_attempts() -> ApiError {
    ApiError::new(
        ErrorCode::MaxAttemptsReached,
        "too many wrong codes; start a new verification",
    )
}

/// The error for a check on a verification that is not pending.
fn not_pending(
    status: Status,
    by_id: bool,
    v: &Verification,
    now: chrono::DateTime<Utc>,
) -> ApiError {
    match status {
        // The lock holds for the verification's lifetime, whichever way it is addressed.
        Status::MaxAttemptsReached if by_id || now < v.expires_at => max_attempts(),
        _ if !by_id => ApiError::not_found("pending verification for this recipient"),
        Status::Expired => ApiError::new(ErrorCode::Expired, "the verification expired"),
        other => ApiError::new(
            ErrorCode::VerificationNotPending,
            format!("the verification is {}", other.as_str()),
        ),
    }
}

/// Read a verification.
#[utoipa::path(
    get, path = "/v1/verifications/{id}", tag = "verifications",
    params(("id" = String, Path, description = "Verification id (`ver_…`) or SID (`VE…`)")),
    responses(
        (status = 200, description = "The verification", body = VerificationView),
        (status = 404, description = "No such verification", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<VerificationView>> {
    let v = find(&state, &principal, &id).await?;
    Ok(Json(VerificationView::of(&v, state.clock.now())))
}

/// Accepts an id or a SID.
pub fn normalize_id(id: &str) -> String {
    Kind::Verification
        .id_of_sid(id)
        .unwrap_or_else(|| id.to_string())
}

/// A verification the caller may see, by id or SID.
pub async fn find_verification(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> ApiResult<Verification> {
    find(state, p, id).await
}

async fn find(state: &AppState, p: &Principal, id: &str) -> ApiResult<Verification> {
    let v = state
        .store
        .get_verification(&normalize_id(id))
        .await?
        .ok_or_else(|| ApiError::not_found("verification"))?;
    ensure_visible(p, &v)?;
    Ok(v)
}

/// Cancel a pending verification.
#[utoipa::path(
    post, path = "/v1/verifications/{id}/cancel", tag = "verifications",
    params(("id" = String, Path, description = "Verification id or SID")),
    responses(
        (status = 200, description = "Canceled", body = VerificationView),
        (status = 404, description = "No such verification", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id = %id))]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<VerificationView>> {
    let v = end_verification(&state, &principal, &id, Status::Canceled).await?;
    Ok(Json(VerificationView::of(&v, state.clock.now())))
}

/// Ends a pending verification on the caller's word: `Canceled`, or `Approved` out of
/// band (Twilio's `Status=approved`; the code is spent). Not pending → `expired` or
/// `verification_not_pending`.
pub async fn end_verification(
    state: &AppState,
    principal: &Principal,
    id: &str,
    to: Status,
) -> ApiResult<Verification> {
    find(state, principal, id).await?;
    let now = state.clock.now();
    let id = normalize_id(id);
    let v = match to {
        Status::Approved => state.store.approve(&id, now).await?,
        Status::Canceled => state.store.cancel(&id, now).await?,
        other => {
            return Err(ApiError::invalid(format!(
                "a verification cannot be set to {}",
                other.as_str()
            )));
        }
    }
    .ok_or_else(|| ApiError::not_found("verification"))?;
    match v.status_at(now) {
        s if s == to => {
            tracing::info!(status = s.as_str(), "verification ended by the application");
            Ok(v)
        }
        Status::Expired => Err(ApiError::new(
            ErrorCode::Expired,
            "the verification expired",
        )),
        other => Err(ApiError::new(
            ErrorCode::VerificationNotPending,
            format!("the verification is {}", other.as_str()),
        )),
    }
}

/// Messages recorded for a verification started with a test key (test keys only).
#[utoipa::path(
    get, path = "/v1/verifications/{id}/messages", tag = "verifications",
    params(("id" = String, Path, description = "Verification id or SID")),
    responses(
        (status = 200, description = "Recorded messages", body = MessageList),
        (status = 403, description = "Not a test key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such test verification", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn messages(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageList>> {
    if !principal.test {
        return Err(ApiError::forbidden(
            "recorded messages are readable with test keys only",
        ));
    }
    let v = find(&state, &principal, &id).await?;
    if !v.test {
        return Err(ApiError::not_found("test verification"));
    }
    let sealer = state.secret.sealer();
    let mut out = Vec::new();
    for m in state.store.recorded_messages(&v.id).await? {
        let body = sealer.open_str(&m.id, &m.sealed_body).map_err(|_| {
            ApiError::new(
                ErrorCode::Internal,
                "a recorded message could not be opened",
            )
        })?;
        out.push(MessageView {
            id: m.id,
            delivery_id: m.delivery_id,
            channel: m.channel,
            to: m.to,
            body: body.to_string(),
            created_at: timestamp(m.created_at),
        });
    }
    Ok(Json(MessageList { messages: out }))
}

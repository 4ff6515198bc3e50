//! Starting a verification (or resending the pending one): the rules shared by every face
//! — normalization, test numbers, geo and line-type guards, custom codes, test keys, rate
//! limits, pumping, proof of work and budget, then the store's atomic step (lockout, send
//! limit, idempotency, the delivery job).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH, OtpCode};
use otpd_core::entity::validate_entity;
use otpd_core::guards::budget::Money;
use otpd_core::guards::keyed;
use otpd_core::guards::proof_of_work::Solution;
use otpd_core::guards::rate::Bucket;
use otpd_core::guards::{Action, Decision};
use otpd_core::ids::Kind;
use otpd_core::messaging;
use otpd_core::recipient::Recipient;
use otpd_core::service::{Service, validate_locale, validate_ttl};
use otpd_core::store::{Idempotency, StartOutcome, StartRequest, TestRecorder, TestSend};
use otpd_core::verification::{MessageOptions, Verification};
use otpd_delivery::render;
use zeroize::Zeroizing;

use crate::Verifier;
use crate::client_ip::ClientIp;
use crate::error::{VerifyError, VerifyResult};
use crate::guards::{Who, static_send_decision, store_refusal};
use crate::recipient::{channels_of, recipient_of};

/// Longest metadata accepted, as JSON text.
const MAX_METADATA_BYTES: usize = 4096;

/// A start request, whichever face it came through, parsed at that face's edge.
#[derive(Default)]
pub struct StartCommand {
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
    /// Where the end user's IP comes from, for the rate limits.
    pub client_ip: ClientIp,
    /// A solved proof-of-work challenge, when the service asks for one.
    pub proof_of_work: Option<Solution>,
    /// The presented API key, kept in memory to sign status callbacks when the service
    /// asks for them.
    pub signing_key: Option<Zeroizing<String>>,
    /// Keys for the service's keyed rate limits (`unique name → key`; Twilio's
    /// `RateLimits`): the start takes a token from each of their buckets.
    pub rate_limit_keys: BTreeMap<String, String>,
}

/// How a start ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartKind {
    /// A new verification.
    Created,
    /// The pending verification for the recipient, sent again.
    Resent,
    /// An idempotent retry: the first request's verification, nothing sent.
    Replayed,
}

impl StartKind {
    /// `created`, `resent` or `replayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartKind::Created => "created",
            StartKind::Resent => "resent",
            StartKind::Replayed => "replayed",
        }
    }
}

/// What a start did.
pub struct Started {
    /// The verification after the start.
    pub verification: Verification,
    /// Created, resent or replayed.
    pub kind: StartKind,
    /// The time the decision was made at.
    pub now: DateTime<Utc>,
}

/// A start, validated against its service: what the guards and the store act on.
struct Admitted {
    channel: Channel,
    recipient: Recipient,
    client_ip: Option<String>,
    /// Whether a message goes out (not for a test number, whose code is fixed).
    deliver: bool,
    /// The first provider and the recipient's region, when the send costs money.
    priced: Option<(String, Option<String>)>,
    /// The buckets of the keyed rate limits the start named.
    keyed: Vec<Bucket>,
}

impl Verifier {
    /// Starts a verification for `service` (or resends the pending one), as `principal`.
    pub async fn start(
        &self,
        principal: &Principal,
        service: &Service,
        cmd: StartCommand,
        ctx: &WriteContext,
    ) -> VerifyResult<Started> {
        let now = self.clock.now();
        let signing_key = cmd.signing_key.clone();
        let proof = cmd.proof_of_work.clone();
        let (admitted, request) = self.admit(principal, service, cmd, ctx)?;
        let who = Who {
            service,
            principal,
            to: admitted.recipient.as_str(),
            client_ip: admitted.client_ip.as_deref(),
            ctx,
        };
        // Numbers on the safe list skip the fraud guards (geo, number type, pumping), not
        // the send limits, proof of work, budget or lockout.
        let safe = admitted.deliver && self.on_safe_list(&admitted.recipient).await?;
        // Test numbers are the operator's own: geo and line-type guards do not apply.
        let mut decision = if admitted.deliver && !safe {
            static_send_decision(service, admitted.channel, &admitted.recipient)
        } else {
            Decision::default()
        };
        if let Some(r) = decision.blocked.clone() {
            self.record(&who, Action::Send, decision, None, now).await;
            return Err(VerifyError::Refused(r));
        }
        self.rate_limit(service, &mut decision, Action::Send, &who.subject(), now)
            .await?;
        if decision.blocked.is_none() {
            self.keyed_rate_limit(&mut decision, &admitted.keyed, now)
                .await?;
        }
        if decision.blocked.is_none() && admitted.priced.is_some() && !safe {
            self.pumping
                .check_send(
                    &*self.store,
                    service,
                    &mut decision,
                    &admitted.recipient,
                    now,
                )
                .await;
        }
        if decision.blocked.is_none() && admitted.deliver {
            let spender = request.idempotency.as_ref().map(Idempotency::spender);
            self.proof_of_work(
                service,
                &mut decision,
                proof.as_ref(),
                spender.as_deref(),
                now,
            )
            .await?;
        }
        // The price of the first provider's message: what this send will most likely cost.
        let cost = match (&admitted.priced, decision.blocked.is_none()) {
            (Some((provider, region)), true) => {
                self.prices
                    .price(provider, admitted.channel.as_str(), region.as_deref())
            }
            _ => Money(0),
        };
        let charged = self.charge(service, &mut decision, cost, now, ctx).await?;
        // The one place a charge is given back: the send did not happen, or was a replay.
        let started = self
            .commit(&who, &admitted, request, decision, signing_key, now)
            .await;
        if !matches!(&started, Ok(s) if s.kind != StartKind::Replayed) {
            self.refund(service, charged, now).await;
        }
        started
    }

    /// Checks a start against its service: channel, recipient, code, lifetime, locale,
    /// metadata, providers; builds the store's request with a fresh code.
    fn admit(
        &self,
        principal: &Principal,
        service: &Service,
        cmd: StartCommand,
        ctx: &WriteContext,
    ) -> VerifyResult<(Admitted, StartRequest)> {
        let (channel, fallback) = channels_of(cmd.channel, &cmd.channels, service)?;
        tracing::Span::current().record("channel", channel.as_str());
        let (recipient, fixed_code) =
            recipient_of(service, channel, &cmd.to, cmd.country.as_deref())?;
        let client_ip = cmd.client_ip.resolve(service, ctx)?;
        let code_length = match cmd.code_length {
            Some(n) if !(MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&n) => {
                return Err(VerifyError::invalid("code_length must be 4-10"));
            }
            Some(n) => n,
            None => service.settings.code_length,
        };
        let custom_code = match &cmd.custom_code {
            Some(_) if !service.settings.custom_code_enabled => {
                return Err(VerifyError::invalid(
                    "custom codes are not enabled for this service (custom_code_enabled)",
                ));
            }
            Some(c) => Some(OtpCode::parse(c)?),
            None => None,
        };
        let ttl = validate_ttl(cmd.ttl_seconds.unwrap_or(service.settings.ttl_seconds))?;
        let locale = match cmd.locale {
            Some(l) => {
                validate_locale(&l)?;
                l
            }
            None => service.settings.default_locale.clone(),
        };
        if cmd
            .metadata
            .as_ref()
            .is_some_and(|m| m.to_string().len() > MAX_METADATA_BYTES)
        {
            return Err(VerifyError::invalid(
                "metadata must be at most 4096 bytes of JSON",
            ));
        }
        let providers = if principal.test {
            vec!["test".to_string()]
        } else {
            self.router.chain(channel, recipient.region())
        };
        let deliver = fixed_code.is_none();
        if deliver && providers.is_empty() {
            return Err(VerifyError::NoProvider(channel));
        }
        if let Some(entity) = &cmd.entity {
            validate_entity(entity)?;
        }
        let keyed = keyed::buckets_for(
            &service.settings.keyed_rate_limits,
            &service.id,
            &cmd.rate_limit_keys,
        )?;
        let mut message_options = cmd.message_options;
        if channel == Channel::Sms && message_options.messaging_service_sid.is_none() {
            message_options.messaging_service_sid = messaging::sender_for(
                &service.settings.messaging_configurations,
                recipient.region(),
            )
            .map(str::to_string);
        }
        // Test keys and test numbers deliver nothing, so they cost nothing.
        let priced = (deliver && !principal.test)
            .then(|| providers.first().cloned())
            .flatten()
            .map(|p| (p, recipient.region().map(str::to_string)));
        let new_id = Kind::Verification.new_id();
        // A test number's fixed code wins: such numbers are never delivered to.
        let code = fixed_code
            .or(custom_code)
            .unwrap_or_else(|| OtpCode::generate(code_length));
        let request = StartRequest {
            service_id: service.id.clone(),
            to: recipient.as_str().to_string(),
            channel,
            fallback,
            providers,
            deliver,
            code_hash: self.secret.hasher().hash(&new_id, &code),
            sealed_code: self.secret.sealer().seal_str(&new_id, code.expose()),
            new_id,
            ttl: Duration::seconds(i64::from(ttl)),
            max_check_attempts: service.settings.max_check_attempts,
            locale,
            metadata: cmd.metadata,
            entity: cmd.entity,
            region: recipient.region().map(str::to_string),
            test: principal.test,
            key_id: principal.key_id.clone(),
            send_limit: service.settings.rate_limits.send_limit(),
            idempotency: cmd.idempotency,
            message_options,
        };
        let admitted = Admitted {
            channel,
            recipient,
            client_ip,
            deliver,
            priced,
            keyed,
        };
        Ok((admitted, request))
    }

    /// The store's atomic step of an admitted send, once the guards let it through:
    /// records the decision, holds the status-callback key, wakes the worker.
    async fn commit(
        &self,
        who: &Who<'_>,
        admitted: &Admitted,
        request: StartRequest,
        mut decision: Decision,
        signing_key: Option<Zeroizing<String>>,
        now: DateTime<Utc>,
    ) -> VerifyResult<Started> {
        if let Some(r) = decision.blocked.clone() {
            self.record(who, Action::Send, decision, None, now).await;
            return Err(VerifyError::Refused(r));
        }
        let Admitted {
            channel,
            recipient,
            deliver,
            ..
        } = admitted;
        let (channel, deliver) = (*channel, *deliver);
        let service = who.service;
        let test = who.principal.test;
        let locale = request.locale.clone();
        let options = request.message_options.clone();
        let sealer = self.secret.sealer();
        let record = |send: &TestSend<'_>| {
            let code = sealer
                .open_str(send.verification_id, send.sealed_code)
                .ok()?;
            let rendered = render::message(
                service,
                &options,
                channel,
                &locale,
                &code,
                send.expires_at,
                self.clock.now(),
            );
            let message_id = Kind::Message.new_id();
            let sealed = sealer.seal_str(&message_id, &rendered.body);
            Some((message_id, sealed))
        };
        let recorder: Option<TestRecorder<'_>> = test.then_some(&record as TestRecorder<'_>);
        // The key that signs status callbacks is held before the store step, so the sender
        // (tailing the event log) finds it for the very first event.
        let signing_key = signing_key.filter(|_| service.settings.status_callback_url.is_some());
        let new_id = request.new_id.clone();
        if let Some(k) = &signing_key {
            self.callback_keys
                .remember(&new_id, k.clone(), now + request.ttl);
        }
        let outcome = match self.store.start(request, recorder, now, who.ctx).await {
            Ok(o) => o,
            Err(e) => {
                self.callback_keys.forget(&new_id);
                if let Some(r) = store_refusal(&e) {
                    decision.blocked = Some(r);
                    self.record(who, Action::Send, decision, None, now).await;
                }
                return Err(e.into());
            }
        };
        let (v, kind) = match outcome {
            StartOutcome::Created(v) => (v, StartKind::Created),
            StartOutcome::Resent(v) => (v, StartKind::Resent),
            StartOutcome::Replayed(v) => (v, StartKind::Replayed),
        };
        tracing::Span::current().record("verification_id", v.id.as_str());
        if v.id != new_id {
            self.callback_keys.forget(&new_id);
        }
        if kind != StartKind::Replayed {
            self.telemetry.verification_started(
                channel,
                recipient.region(),
                kind == StartKind::Resent,
            );
            self.record(who, Action::Send, decision, Some(&v.id), now)
                .await;
            if deliver {
                self.wake.notify_one();
            }
            if let Some(key) = signing_key {
                self.callback_keys.remember(&v.id, key, v.expires_at);
            }
        }
        tracing::info!(
            to = %otpd_core::mask::mask_recipient(&v.to),
            outcome = kind.as_str(),
            "verification started"
        );
        Ok(Started {
            verification: v,
            kind,
            now,
        })
    }
}

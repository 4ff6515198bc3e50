//! `/v1/services`: create, list, read, change and delete services (admin keys).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otpd_core::apikey::Principal;
use otpd_core::guards::Refusal;
use otpd_core::ids::Kind;
use otpd_core::service::{DEFAULT_SERVICE, Service, ServicePatch, ServiceSettings, validate_name};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::views::{ServiceList, ServiceView};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Bytes of a generated webhook secret.
const WEBHOOK_SECRET_BYTES: usize = 24;

/// A new service: a name plus any settings of [`ServicePatch`].
#[derive(Deserialize)]
pub struct CreateServiceBody {
    /// Unique name (`[A-Za-z0-9_.-]`, 1–64).
    pub name: String,
    /// Any settings (see the PATCH body).
    #[serde(flatten)]
    pub settings: ServicePatch,
}

/// One flat object: the PATCH body's properties plus the required `name`. (An `allOf` of
/// the two, as a derived schema would be, can never be satisfied: the patch refuses
/// unknown properties, `name` among them.)
impl utoipa::PartialSchema for CreateServiceBody {
    fn schema() -> RefOr<Schema> {
        let mut schema = <ServicePatch as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.description =
                Some("A new service: a name plus any settings of the PATCH body.".into());
            object.properties.insert(
                "name".into(),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Unique name (`[A-Za-z0-9_.-]`, 1–64)."))
                    .min_length(Some(1))
                    .max_length(Some(64))
                    .into(),
            );
            object.required.insert(0, "name".into());
        }
        schema
    }
}

impl ToSchema for CreateServiceBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <ServicePatch as ToSchema>::schemas(schemas);
    }
}

/// A fresh Standard Webhooks secret (`whsec_` + base64 of 24 random bytes).
fn new_webhook_secret() -> String {
    let mut bytes = [0u8; WEBHOOK_SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// Refuses a status callback or webhook target on a private or loopback address, unless
/// `webhooks.allow_private_targets` is set (SSRF).
fn check_callback_target(state: &AppState, settings: &ServiceSettings) -> Result<(), ApiError> {
    let targets = [
        ("status_callback_url", &settings.status_callback_url),
        ("webhook_url", &settings.webhook_url),
    ];
    for (field, url) in targets {
        if let Some(url) = url {
            crate::outbound::check_target(url, state.config.webhooks.allow_private_targets)
                .map_err(|e| ApiError::invalid(format!("{field}: {e}")))?;
        }
    }
    Ok(())
}

/// Splits `{"name", ...settings}` and parses the settings strictly (unknown keys refused).
fn parse_create(mut body: serde_json::Value) -> Result<(String, ServicePatch), ApiError> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ApiError::invalid("the body must be a JSON object"))?;
    let name = match obj.remove("name") {
        Some(serde_json::Value::String(n)) => n,
        _ => return Err(ApiError::invalid("name is required (a string)")),
    };
    let patch: ServicePatch = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid(format!("invalid service: {e}")))?;
    Ok((name, patch))
}

/// Create a service.
#[utoipa::path(
    post, path = "/v1/services", tag = "services",
    request_body = CreateServiceBody,
    responses(
        (status = 201, description = "Created; `webhook_secret` is shown now", body = ServiceView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    _principal: Principal,
    body: ApiJson<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<ServiceView>)> {
    let (name, patch) = parse_create(body.value)?;
    validate_name(&name)?;
    let settings = patch.apply(&ServiceSettings::default())?;
    check_callback_target(&state, &settings)?;
    let now = state.clock.now();
    let id = Kind::Service.new_id();
    let service = Service {
        sid: Kind::Service.sid_of(&id),
        id,
        name,
        settings,
        webhook_secret: None,
        created_at: now,
        updated_at: now,
    };
    let secret = service
        .settings
        .webhook_url
        .as_ref()
        .map(|_| new_webhook_secret());
    let sealed = secret
        .as_ref()
        .map(|s| state.secret.sealer().seal_str(&service.id, s));
    state.store.create_service(&service, sealed).await?;
    Ok((StatusCode::CREATED, Json(ServiceView::of(&service, secret))))
}

/// List services.
#[utoipa::path(
    get, path = "/v1/services", tag = "services",
    responses((status = 200, description = "Every service", body = ServiceList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<ServiceList>> {
    let services = state.store.list_services().await?;
    Ok(Json(ServiceList {
        services: services
            .iter()
            .filter(|s| principal.may_use_service(&s.id))
            .map(|s| ServiceView::of(s, None))
            .collect(),
    }))
}

async fn find(state: &AppState, name: &str) -> ApiResult<Service> {
    state
        .store
        .find_service(name)
        .await?
        .ok_or_else(|| ApiError::not_found("service"))
}

/// Read a service by name or SID.
#[utoipa::path(
    get, path = "/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name or SID")),
    responses(
        (status = 200, description = "The service", body = ServiceView),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceView>> {
    Ok(Json(ServiceView::of(&find(&state, &name).await?, None)))
}

/// Change a service's settings.
#[utoipa::path(
    patch, path = "/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name or SID")),
    request_body = ServicePatch,
    responses(
        (status = 200, description = "Changed; a webhook secret created now is shown", body = ServiceView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    _principal: Principal,
    Path(name): Path<String>,
    body: ApiJson<ServicePatch>,
) -> ApiResult<Json<ServiceView>> {
    let mut service = find(&state, &name).await?;
    service.settings = body.value.apply(&service.settings)?;
    check_callback_target(&state, &service.settings)?;
    service.updated_at = state.clock.now();
    // A webhook URL without a secret gets one now.
    let mut shown = None;
    let mut sealed = None;
    if service.settings.webhook_url.is_some()
        && state
            .store
            .sealed_webhook_secret(&service.id)
            .await?
            .is_none()
    {
        let secret = new_webhook_secret();
        sealed = Some(Some(state.secret.sealer().seal_str(&service.id, &secret)));
        shown = Some(secret);
    }
    state.store.update_service(&service, sealed).await?;
    Ok(Json(ServiceView::of(&service, shown)))
}

/// Delete a service and its verifications.
#[utoipa::path(
    delete, path = "/v1/services/{name}", tag = "services",
    params(("name" = String, Path, description = "Service name or SID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The default service cannot be deleted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    _principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let service = find(&state, &name).await?;
    if service.name == DEFAULT_SERVICE {
        return Err(ApiError::invalid("the default service cannot be deleted"));
    }
    state.store.delete_service(&service.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create or rotate the webhook signing secret (shown once, in this reply).
#[utoipa::path(
    post, path = "/v1/services/{name}/webhook-secret", tag = "services",
    params(("name" = String, Path, description = "Service name or SID")),
    responses(
        (status = 200, description = "The service with its new `webhook_secret`", body = ServiceView),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    _principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceView>> {
    let mut service = find(&state, &name).await?;
    service.updated_at = state.clock.now();
    let secret = new_webhook_secret();
    let sealed = state.secret.sealer().seal_str(&service.id, &secret);
    state
        .store
        .update_service(&service, Some(Some(sealed)))
        .await?;
    Ok(Json(ServiceView::of(&service, Some(secret))))
}

/// One guard decision record, as listed.
#[derive(Serialize, ToSchema)]
pub struct DecisionView {
    /// Position in the decision log (increasing).
    pub seq: i64,
    /// `send` or `check`.
    pub action: &'static str,
    /// The recipient.
    pub to: String,
    /// The end user's IP, when given.
    pub client_ip: Option<String>,
    /// The verification created or resent (allowed sends).
    pub verification_id: Option<String>,
    /// Whether the request went ahead.
    pub allowed: bool,
    /// The refusal (guard, reason, `retry_after_secs`), when blocked.
    pub blocked: Option<Refusal>,
    /// What guards in shadow mode would have refused.
    pub shadow: Vec<Refusal>,
    /// When (RFC 3339).
    pub created_at: String,
}

/// A page of decision records, newest first.
#[derive(Serialize, ToSchema)]
pub struct DecisionList {
    /// The records.
    pub decisions: Vec<DecisionView>,
}

/// `?limit=` of the decision list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionQuery {
    /// Most records (1-1000, default 100).
    pub limit: Option<u32>,
}

/// The service's latest guard decisions: one per send (allowed or blocked, by which
/// guard, why, and what shadow-mode guards would have refused), and blocked checks.
#[utoipa::path(
    get, path = "/v1/services/{name}/decisions", tag = "services",
    params(("name" = String, Path, description = "Service name or SID"), DecisionQuery),
    responses(
        (status = 200, description = "Newest first", body = DecisionList),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn decisions(
    State(state): State<AppState>,
    _principal: Principal,
    Path(name): Path<String>,
    query: Result<Query<DecisionQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DecisionList>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1-1000"));
    }
    let service = find(&state, &name).await?;
    let records = state.store.list_decisions(&service.id, limit).await?;
    Ok(Json(DecisionList {
        decisions: records
            .into_iter()
            .map(|d| DecisionView {
                seq: d.seq,
                action: d.record.action.as_str(),
                to: d.record.to,
                client_ip: d.record.client_ip,
                verification_id: d.record.verification_id,
                allowed: d.record.allowed,
                blocked: d.record.blocked,
                shadow: d.record.shadow,
                created_at: d
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .collect(),
    }))
}

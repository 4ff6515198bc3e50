//! The JSON shapes of `/v1/totp`: factors (never their secret, except in the reply to
//! create), check results and backup code sets.

use otpd_core::ids::Kind;
use otpd_core::totp::{Algorithm, Factor, FactorKind, FactorStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::views::timestamp;

/// An authenticator factor.
#[derive(Serialize, ToSchema)]
pub struct FactorView {
    /// `tf_…`
    pub id: String,
    /// Service name.
    pub service: String,
    /// Service SID (`VA…`).
    pub service_sid: String,
    /// Your id for the user.
    pub entity: String,
    /// `totp` or `hotp`.
    #[serde(rename = "type")]
    pub kind: FactorKind,
    /// `unverified` until a first valid code (`POST …/verify`), then `active`.
    pub status: FactorStatus,
    /// Account name shown in the app.
    pub label: String,
    /// Issuer shown in the app.
    pub issuer: String,
    /// `SHA1`, `SHA256` or `SHA512`.
    pub algorithm: Algorithm,
    /// 6 or 8.
    pub digits: u8,
    /// Seconds per code (TOTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    /// Time steps accepted either side of now (TOTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
    /// Counters looked ahead to resynchronize (HOTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub look_ahead: Option<u32>,
    /// Created.
    pub created_at: String,
    /// Activated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Last accepted code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

impl FactorView {
    /// The view of a factor (no secret).
    pub fn of(f: &Factor) -> Self {
        let totp = f.params.kind == FactorKind::Totp;
        FactorView {
            id: f.id.clone(),
            service: f.service_name.clone(),
            service_sid: Kind::Service.sid_of(&f.service_id),
            entity: f.entity.clone(),
            kind: f.params.kind,
            status: f.status,
            label: f.label.clone(),
            issuer: f.issuer.clone(),
            algorithm: f.params.algorithm,
            digits: f.params.digits,
            period: totp.then_some(f.params.period),
            window: totp.then_some(f.params.tolerance),
            look_ahead: (!totp).then_some(f.params.tolerance),
            created_at: timestamp(f.created_at),
            verified_at: f.verified_at.map(timestamp),
            last_used_at: f.last_used_at.map(timestamp),
        }
    }
}

/// A new factor, with what the user's app needs — shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedFactorView {
    /// The factor.
    #[serde(flatten)]
    pub factor: FactorView,
    /// The shared secret, base32 (for typing into an app). Never shown again.
    pub secret: String,
    /// The key URI an app scans (`otpauth://totp/Issuer:label?secret=…`).
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
    /// The same QR code as PNG, readable while the factor is unverified.
    pub qr_png_url: String,
}

/// An entity's factors.
#[derive(Serialize, ToSchema)]
pub struct FactorList {
    /// Oldest first.
    pub factors: Vec<FactorView>,
    /// Unused backup codes of the entity.
    pub backup_codes_remaining: u32,
}

/// The reply to activating a factor.
#[derive(Serialize, ToSchema)]
pub struct VerifyFactorView {
    /// Whether the code was right (the factor is then `active`).
    pub valid: bool,
    /// The factor after the attempt.
    pub factor: FactorView,
}

/// How a check was satisfied.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckMethod {
    /// A TOTP code.
    Totp,
    /// An HOTP code.
    Hotp,
    /// A backup code (now spent).
    BackupCode,
}

/// The reply to a factor check (200 whether the code was right or not).
#[derive(Serialize, ToSchema)]
pub struct FactorCheckView {
    /// Whether the code was right.
    pub valid: bool,
    /// The user.
    pub entity: String,
    /// The factor that matched, or the one named by the check.
    pub factor: Option<String>,
    /// How the check was satisfied (when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<CheckMethod>,
    /// Unused backup codes left (when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes_remaining: Option<u32>,
}

/// A new set of backup codes — shown this once.
#[derive(Serialize, ToSchema)]
pub struct BackupCodesView {
    /// The user.
    pub entity: String,
    /// Service name.
    pub service: String,
    /// Ten single-use codes (`xxxxx-xxxxx`); the previous set no longer works.
    pub codes: Vec<String>,
    /// Created.
    pub created_at: String,
}

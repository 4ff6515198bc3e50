//! Errors of the domain layer: input that breaks a rule, named by the rule it breaks.

/// A request that the domain rules refuse; the server maps each variant to a stable API code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// A field is missing, malformed or out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// The phone number cannot be parsed or is not a valid number.
    #[error("{0}")]
    InvalidPhoneNumber(String),
    /// The channel is unknown, or not enabled for the service.
    #[error("{0}")]
    UnsupportedChannel(String),
    /// The number's country is not allowed for the service.
    #[error("{0}")]
    GeoBlocked(String),
}

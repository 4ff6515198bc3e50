//! Errors a store reports.

/// Errors a store reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// Too many sends; try again after this many seconds.
    #[error("too many sends to this recipient")]
    RateLimited {
        /// Seconds until a send is allowed again.
        retry_after_secs: u64,
    },
    /// Too many wrong codes for this recipient or entity: checks (and sends to the
    /// recipient) are refused until the lock ends, and nothing was changed.
    #[error("too many wrong codes; locked")]
    Locked {
        /// Seconds until the lock ends.
        retry_after_secs: u64,
    },
    /// The idempotency key was used with another request body.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The store cannot be reached or failed; the request must fail closed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back (a bug, or a damaged database): the request
    /// fails closed, and the operator has something to look at.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The record kept changing under the call (concurrent writers on other requests or
    /// nodes): nothing was changed, and the caller may try again.
    #[error("raced: {0}")]
    Raced(String),
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;

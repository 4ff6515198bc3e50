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
    /// The store cannot be reached or failed; the request must fail closed. The cause
    /// keeps the driver's error as its `source`.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// A stored record could not be read back (a bug, or a damaged database): the request
    /// fails closed, and the operator has something to look at.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The record kept changing under the call (concurrent writers on other requests or
    /// nodes): nothing was changed, and the caller may try again.
    #[error("raced: {0}")]
    Raced(String),
}

/// Why a store is unavailable: what failed, and the driver's error (SQLite, PostgreSQL,
/// Redis) it came from when there is one, kept as the error's `source`.
#[derive(Debug)]
pub struct Cause {
    what: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause that is a driver's error (its message is the cause's text; drivers' messages
    /// name no bound value and no URL, so no secret is in it).
    pub fn of(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause {
            what: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// A driver's error with what otpd was doing (`"redis"`, `"commit"`).
    pub fn doing(what: &str, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause {
            what: format!("{what}: {error}"),
            source: Some(Box::new(error)),
        }
    }
}

impl From<String> for Cause {
    /// A cause otpd itself describes (no driver error beneath it).
    fn from(what: String) -> Self {
        Cause { what, source: None }
    }
}

impl From<&str> for Cause {
    fn from(what: &str) -> Self {
        Cause::from(what.to_string())
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn an_unavailable_store_keeps_the_drivers_error_as_its_source() {
        let driver = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StoreError::Unavailable(Cause::doing("redis", driver));
        assert_eq!(e.to_string(), "store unavailable: redis: refused");
        let cause = e.source().expect("the cause");
        let io = cause.source().expect("the driver's error");
        assert_eq!(
            io.downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        let described = StoreError::Unavailable("the store is closed".into());
        assert!(described.source().is_some_and(|c| c.source().is_none()));
    }
}

//! Health checks of the store and what it depends on.

use super::StoreResult;
use async_trait::async_trait;

/// Operational checks.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Whether the store answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Each dependency by name (`database`, `redis`, …) and whether it answers, for
    /// `/readyz` to say which one is down.
    async fn dependencies(&self) -> Vec<(&'static str, StoreResult<()>)> {
        vec![("database", self.ping().await)]
    }
}

//! Services: created, found by name, id or SID, updated, deleted.

use async_trait::async_trait;

use super::StoreResult;
use crate::service::Service;

/// Services.
#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Inserts a service; `Conflict` if the name is taken.
    async fn create_service(
        &self,
        service: &Service,
        sealed_webhook_secret: Option<Vec<u8>>,
    ) -> StoreResult<()>;
    /// Finds a service by name, id or SID.
    async fn find_service(&self, name_id_or_sid: &str) -> StoreResult<Option<Service>>;
    /// Every service, by name.
    async fn list_services(&self) -> StoreResult<Vec<Service>>;
    /// Replaces a service's settings (and optionally its sealed webhook secret).
    async fn update_service(
        &self,
        service: &Service,
        sealed_webhook_secret: Option<Option<Vec<u8>>>,
    ) -> StoreResult<()>;
    /// Deletes a service; false if there was none.
    async fn delete_service(&self, id: &str) -> StoreResult<bool>;
    /// The sealed webhook secret of a service.
    async fn sealed_webhook_secret(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
}

//! Receipts that reach otpd over a provider's own connection (an SMPP session's
//! `deliver_sm`), recorded through the same store call as `POST /v1/receipts/{provider}`:
//! [`otpd_core::store::OutboxStore::apply_receipt`].

use std::sync::Arc;

use async_trait::async_trait;
use otpd_core::audit::WriteContext;
use otpd_core::clock::Clock;
use otpd_core::store::{OutboxStore, Receipt};

use crate::provider::{ParsedReceipt, ReceiptSink, ReceiptStatus};

/// Longest provider error text kept with a delivery (as the HTTP receipts endpoint does).
const MAX_ERROR_CHARS: usize = 500;

/// A [`ReceiptSink`] over the store.
pub struct StoreReceipts {
    store: Arc<dyn OutboxStore>,
    clock: Arc<dyn Clock>,
}

impl StoreReceipts {
    /// Receipts recorded in `store`, at `clock`'s time.
    pub fn new(store: Arc<dyn OutboxStore>, clock: Arc<dyn Clock>) -> Self {
        StoreReceipts { store, clock }
    }
}

#[async_trait]
impl ReceiptSink for StoreReceipts {
    async fn apply(&self, provider: &str, receipt: &ParsedReceipt) -> Result<bool, String> {
        let delivered = match receipt.status {
            ReceiptStatus::Pending => return Ok(true),
            ReceiptStatus::Delivered => true,
            ReceiptStatus::Failed => false,
        };
        let receipt = Receipt {
            provider: provider.to_string(),
            message_id: receipt.message_id.clone(),
            delivered,
            error: receipt
                .error
                .as_ref()
                .map(|e| e.chars().take(MAX_ERROR_CHARS).collect()),
        };
        self.store
            .apply_receipt(&receipt, self.clock.now(), &WriteContext::system())
            .await
            .map_err(|e| e.to_string())
    }
}

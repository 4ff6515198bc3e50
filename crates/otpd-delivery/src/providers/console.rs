//! The `console` provider: prints each message to standard output. For development: the
//! printed message is a delivery (it contains the code), not a log line.

use std::io::Write;

use async_trait::async_trait;
use otpd_core::channel::Channel;

use crate::config::ProviderConfig;
use crate::provider::{Accepted, OutboundMessage, Provider, ProviderError};

/// Prints messages to stdout.
pub struct ConsoleProvider {
    name: String,
    channels: Vec<Channel>,
}

impl ConsoleProvider {
    /// From its config entry.
    pub fn new(config: &ProviderConfig) -> Self {
        ConsoleProvider {
            name: config.name.clone(),
            channels: config.channels.clone(),
        }
    }
}

#[async_trait]
impl Provider for ConsoleProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut out = std::io::stdout().lock();
        let subject = m
            .subject
            .as_deref()
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        writeln!(
            out,
            "[otpd console] {} to {}{subject} ({}): {}",
            m.channel,
            m.to,
            m.message_id,
            m.body.as_str()
        )
        .and_then(|_| out.flush())
        .map_err(|e| ProviderError::Transient(format!("stdout: {e}")))?;
        Ok(Accepted::Delivered {
            provider_message_id: None,
        })
    }
}

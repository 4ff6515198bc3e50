//! Provider adapters, one module each, built from `[[providers]]` entries.

pub mod africastalking;
pub mod arkesel;
pub mod console;
pub mod http;
pub mod smpp;
pub mod smtp;
pub mod twilio;
pub mod vonage;
pub mod whatsapp_cloud;

use std::sync::Arc;

use crate::config::ProviderConfig;
use crate::provider::Provider;

/// Builds the adapter a config entry names.
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, String> {
    match config.kind.as_str() {
        "console" => Ok(Arc::new(console::ConsoleProvider::new(config))),
        "http" => Ok(Arc::new(http::HttpProvider::new(config)?)),
        "smtp" => Ok(Arc::new(smtp::SmtpProvider::new(config)?)),
        "smpp" => Ok(Arc::new(smpp::SmppProvider::new(config)?)),
        "twilio" => Ok(Arc::new(twilio::TwilioProvider::new(config)?)),
        "africastalking" => Ok(Arc::new(africastalking::AfricasTalkingProvider::new(
            config,
        )?)),
        "arkesel" => Ok(Arc::new(arkesel::ArkeselProvider::new(config)?)),
        "vonage" => Ok(Arc::new(vonage::VonageProvider::new(config)?)),
        "whatsapp_cloud" => Ok(Arc::new(whatsapp_cloud::WhatsappCloudProvider::new(
            config,
        )?)),
        other => Err(format!(
            "provider '{}': unknown kind '{other}' (available: console, http, smtp, smpp, twilio, vonage, arkesel, africastalking, whatsapp_cloud)",
            config.name
        )),
    }
}

//! The `smpp` provider: SMS straight to a carrier's SMSC over SMPP 3.4 (rusmppc on rusmpp).
//!
//! One bind_transceiver [`session`] per provider per process, shared by every send, kept
//! alive with `enquire_link` and re-established with exponential backoff when it drops.
//! A message becomes one `submit_sm` per [`segment`] (GSM 03.38 or UCS-2, concatenated
//! with a UDH when long), each through the session's send window and throughput
//! [`throttle`], each asking for a delivery receipt (`registered_delivery` 1).
//! `submit_sm_resp` errors are [`status`]-classified as transient or permanent.
//!
//! The SMSC's message id of the first segment is recorded as the delivery's provider
//! message id; `deliver_sm` [`receipt`]s (`receipted_message_id` TLV or the receipt
//! text) are applied through the worker's receipt sink, the same store call as an HTTP
//! receipt: DELIVRD → delivered; UNDELIV, REJECTD, EXPIRED, DELETED → failed (the next
//! provider gets the same code). A receipt's id is matched to the submitted one in the
//! hex or decimal reading the SMSC uses (`message_id_format`, [`recent`]); a long message
//! counts as delivered only once every segment's receipt says so, and as failed as soon
//! as one fails; a receipt that outruns the recording of its id is tried again.
//! `smpps` binds over TLS ([`tls`]). Settings and credentials: [`settings`].

pub mod receipt;
pub mod recent;
pub mod segment;
pub mod session;
pub mod settings;
pub mod status;
pub mod throttle;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use async_trait::async_trait;
use otpd_core::channel::Channel;
use rusmpp::pdus::SubmitSm;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};
use tokio_util::sync::CancellationToken;

use self::session::Session;
use self::settings::{Address, Settings};
use crate::config::ProviderConfig;
use crate::provider::{Accepted, OutboundMessage, Provider, ProviderError, ReceiptSink};

/// `registered_delivery`: an MC delivery receipt on success or failure.
const RECEIPT_REQUESTED: u8 = 0x01;

/// Sends SMS over an SMPP session.
pub struct SmppProvider {
    name: String,
    channels: Vec<Channel>,
    settings: Arc<Settings>,
    session: Arc<Session>,
    started: AtomicBool,
    reference: AtomicU8,
}

impl SmppProvider {
    /// From its config entry (checked; nothing connects until [`Provider::start`]).
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let settings = Arc::new(Settings::from_config(config)?);
        Ok(SmppProvider {
            name: config.name.clone(),
            channels: config.channels.clone(),
            session: Arc::new(Session::new(&config.name, settings.clone())),
            settings,
            started: AtomicBool::new(false),
            reference: AtomicU8::new(rand::random()),
        })
    }

    /// Whether the session is bound now.
    pub fn is_bound(&self) -> bool {
        self.session.is_bound()
    }

    /// The `submit_sm` of one segment to `to`.
    fn submit_sm(&self, to: &Address, seg: segment::Segment) -> Result<SubmitSm, ProviderError> {
        let source = &self.settings.source;
        let address = |a: &str| {
            a.parse::<COctetString<1, 21>>()
                .map_err(|_| ProviderError::Permanent("an address does not fit SMPP".into()))
        };
        let short_message = OctetString::from_vec(seg.short_message)
            .map_err(|_| ProviderError::Permanent("a segment does not fit short_message".into()))?;
        Ok(SubmitSm::builder()
            .source_addr_ton(Ton::from(source.ton))
            .source_addr_npi(Npi::from(source.npi))
            .source_addr(address(&source.addr)?)
            .dest_addr_ton(Ton::from(to.ton))
            .dest_addr_npi(Npi::from(to.npi))
            .destination_addr(address(&to.addr)?)
            .esm_class(EsmClass::from(seg.esm_class))
            .registered_delivery(RegisteredDelivery::from(RECEIPT_REQUESTED))
            .data_coding(DataCoding::from(seg.data_coding))
            .short_message(short_message)
            .build())
    }
}

#[async_trait]
impl Provider for SmppProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        if m.channel != Channel::Sms {
            return Err(ProviderError::Permanent(format!(
                "smpp does not serve {}",
                m.channel
            )));
        }
        let to = self.settings.destination(&m.to);
        if to.addr.is_empty() || !to.addr.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProviderError::Permanent("not a phone number".into()));
        }
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let segments = segment::segments_coded(&m.body, reference, self.settings.text_coding)
            .map_err(|e| ProviderError::Permanent(e.to_string()))?;
        // A long message is delivered when all its segments are (see `recent::Parts`).
        let group = (segments.len() > 1).then(|| self.session.parts().open(segments.len()));
        let mut first_id = None;
        for seg in segments {
            let submitted = match self.submit_sm(&to, seg) {
                Ok(pdu) => self.session.submit(pdu, group).await,
                Err(e) => Err(e),
            };
            let id = match submitted {
                Ok(id) => id,
                Err(e) => {
                    if let Some(key) = group {
                        self.session.parts().close(key);
                    }
                    return Err(e);
                }
            };
            first_id.get_or_insert(id);
        }
        Ok(Accepted::Queued {
            provider_message_id: first_id,
        })
    }

    fn start(&self, receipts: Arc<dyn ReceiptSink>, stop: CancellationToken) {
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.session.clone().run(receipts, stop));
        }
    }
}

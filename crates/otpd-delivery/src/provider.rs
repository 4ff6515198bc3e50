//! The provider trait: what every delivery adapter implements.

use std::sync::Arc;

use async_trait::async_trait;
use otpd_core::channel::Channel;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// A rendered message ready to hand to a provider.
pub struct OutboundMessage {
    /// otpd's message id (`dlv_…`); receipts refer to it.
    pub message_id: String,
    /// The verification.
    pub verification_id: String,
    /// Recipient (E.164 or email).
    pub to: String,
    /// Channel.
    pub channel: Channel,
    /// Subject line (email).
    pub subject: Option<String>,
    /// The text, containing the code (an email's plain-text part; a voice script).
    pub body: Zeroizing<String>,
    /// The HTML part (email).
    pub html: Option<Zeroizing<String>>,
    /// The code alone, for providers that fill their own template with it (WhatsApp
    /// authentication templates). Never logged.
    pub code: Zeroizing<String>,
    /// Locale of the text.
    pub locale: String,
    /// How long the route waits for this message's delivery receipt before the next
    /// provider gets the code: a call must stop ringing well within it.
    pub receipt_wait: std::time::Duration,
    /// A call's text sealed for the provider's answer callback (voice only;
    /// [`crate::call_script`]): for providers that fetch what to say when the call is
    /// answered (Plivo's `answer_url`). URL-safe; opens to nothing without the server
    /// secret.
    pub call_script: Option<String>,
    /// The Twilio Messaging Service an SMS goes out through, from the service's messaging
    /// configuration for the destination (`twilio` providers send with it; the others
    /// keep their own senders).
    pub messaging_service_sid: Option<String>,
}

/// A provider's answer to a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Taken for delivery; a receipt may follow.
    Queued {
        /// The provider's own id for the message.
        provider_message_id: Option<String>,
    },
    /// Delivered already (a synchronous receipt).
    Delivered {
        /// The provider's own id for the message.
        provider_message_id: Option<String>,
    },
}

/// Why a send failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// Worth retrying (timeout, connection error, 5xx, 429).
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying the same provider will not help (4xx, bad number, unsupported).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A receipt callback as it reached `POST /v1/receipts/{provider}`.
pub struct ReceiptRequest<'a> {
    /// The request headers (signatures).
    pub headers: &'a reqwest::header::HeaderMap,
    /// The raw query string of the receipt URL (`""` when none): some providers put
    /// their parameters there, and an operator may put a receipt token there.
    pub query: &'a str,
    /// The raw body.
    pub body: &'a [u8],
    /// When it arrived: signatures that carry a time (Vonage's webhook JWTs) are judged
    /// against it.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// What a receipt says about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Delivered (or, for a call, answered and played).
    Delivered,
    /// Not delivered.
    Failed,
    /// An intermediate state (queued, sent, ringing): nothing to record.
    Pending,
}

/// A provider's receipt, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedReceipt {
    /// The provider's message id (or otpd's).
    pub message_id: String,
    /// The outcome.
    pub status: ReceiptStatus,
    /// The provider's error code or text.
    pub error: Option<String>,
}

/// Why a receipt callback was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    /// Missing or wrong signature: not from the provider.
    #[error("the receipt is not authenticated (its signature or token does not verify)")]
    Forged,
    /// Not in the provider's format.
    #[error("malformed receipt: {0}")]
    Malformed(String),
}

/// What otpd answers a provider's fetch of a call's script with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallAnswer {
    /// Its media type (`application/xml`).
    pub content_type: &'static str,
    /// The document (it holds the code: never logged).
    pub body: Zeroizing<String>,
}

/// Why a fetch of a call's script gets no script.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// Not signed by the provider.
    #[error("the request is not signed by the provider")]
    Unauthenticated,
    /// No script to say: a token that does not open, or whose code has expired.
    #[error("no call script")]
    NotFound,
}

/// A USSD session that a user opened by dialling the service code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UssdSession {
    /// The provider's session id.
    pub session_id: String,
    /// The number that dialled (as the provider gives it, E.164).
    pub phone_number: String,
}

/// Where receipts go that reach otpd over a provider's own connection rather than
/// `POST /v1/receipts/{provider}` (an SMPP session's `deliver_sm`): the worker hands one to
/// each provider at start, backed by the outbox store's `apply_receipt`.
#[async_trait]
pub trait ReceiptSink: Send + Sync {
    /// Records `receipt` for a message of `provider`. `Ok(false)`: no message of that
    /// provider has this id (nothing changed). `Err`: not recorded now; try again later.
    async fn apply(&self, provider: &str, receipt: &ParsedReceipt) -> Result<bool, String>;
}

/// A delivery adapter.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name.
    fn name(&self) -> &str;
    /// The channels it serves.
    fn channels(&self) -> &[Channel];
    /// Hands over one message. Must return within the adapter's timeout.
    async fn send(&self, message: &OutboundMessage) -> Result<Accepted, ProviderError>;
    /// Parses (and authenticates) a receipt callback in the provider's own format; `None`
    /// means the provider uses otpd's generic JSON receipt.
    fn parse_receipt(
        &self,
        _request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        None
    }
    /// Parses (and authenticates) a callback that carries any number of receipts at once
    /// (Meta batches statuses, and sends other events to the same URL): every final one,
    /// in order; an empty list when the callback is authentic but reports nothing otpd
    /// uses. `None` when the provider sends one receipt per callback
    /// ([`Provider::parse_receipt`]).
    fn parse_receipt_batch(
        &self,
        _request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        None
    }
    /// Like [`Provider::parse_receipt_batch`], for providers whose callbacks can only be
    /// authenticated with a network call (AWS SNS: the signing certificate is fetched from
    /// the URL the message names, and a subscription is confirmed by fetching its
    /// `SubscribeURL`). Tried before the other parsers; `None` when the provider needs no
    /// network to authenticate its callbacks.
    async fn parse_receipt_batch_online(
        &self,
        _request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        None
    }
    /// Handles a provider's call-control webhook, for providers that drive a call as it
    /// goes (Telnyx: on `call.answered` otpd opens the call's sealed script with `sealer`
    /// and tells the provider to speak it, then hangs up): authenticates it, sends the
    /// commands it calls for, and returns the receipts it is. Tried before the other
    /// parsers; `None` when the webhook is not a call event this provider handles.
    async fn call_webhook(
        &self,
        _request: &ReceiptRequest<'_>,
        _sealer: &otpd_core::secret::Sealer,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        None
    }
    /// Answers a provider's `GET` check of its callback URL (Meta's webhook
    /// verification): the challenge to echo, when the query carries the configured
    /// token; `None` when the provider makes no such check.
    fn verify_subscription(&self, _query: &str) -> Option<Result<String, ReceiptError>> {
        None
    }
    /// Answers a provider's fetch of what an answered call says (Plivo's `answer_url`):
    /// authenticates the request, opens its sealed script with `sealer`
    /// ([`crate::call_script`]) and renders the provider's document. `None` when the
    /// provider fetches no scripts.
    fn answer_call(
        &self,
        _request: &ReceiptRequest<'_>,
        _sealer: &otpd_core::secret::Sealer,
    ) -> Option<Result<CallAnswer, AnswerError>> {
        None
    }
    /// Parses (and authenticates) a USSD session callback; `None` when the provider
    /// serves no USSD.
    fn ussd_session(
        &self,
        _request: &ReceiptRequest<'_>,
    ) -> Option<Result<UssdSession, ReceiptError>> {
        None
    }
    /// Starts the adapter's background work, if it has any (an SMPP session that stays
    /// bound and receives receipts), until `stop` is cancelled. Called once by the worker;
    /// adapters without a connection of their own do nothing.
    fn start(&self, _receipts: Arc<dyn ReceiptSink>, _stop: CancellationToken) {}
}

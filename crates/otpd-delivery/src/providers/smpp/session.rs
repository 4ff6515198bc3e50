//! The one SMPP session of a provider, shared by every send of the process: connect (over
//! TLS for `smpps`, [`super::tls`]), bind as a transceiver (SMPP 3.4) — or, with
//! `bind_mode = "transmitter_receiver"`, as a transmitter for sends plus a receiver for
//! receipts, on two connections that are up and down together — keep it alive with `enquire_link` (rusmppc sends them and
//! answers the SMSC's), answer the SMSC's
//! `deliver_sm` (delivery receipts, recorded through the worker's [`ReceiptSink`]), and
//! when the bind drops, reconnect with exponential backoff. Sends go through the session's
//! window and pacer; while it is down they fail as transient errors, so the worker
//! retries and then fails over.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use rusmppc::error::Error as SmppError;
use rusmppc::{Client, ConnectionBuilder, Event};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::receipt::{self, MAX_COMMAND_LENGTH};
use super::recent::{PartOutcome, Parts, RecentIds};
use super::settings::{BindMode, Settings};
use super::status;
use super::throttle::Throttle;
use crate::backoff;
use crate::provider::{ParsedReceipt, ProviderError, ReceiptSink};

/// First pause before reconnecting; it doubles per failed attempt up to `reconnect_max`.
const RECONNECT_BASE: Duration = Duration::from_millis(250);
/// Time allowed for a polite `unbind` at shutdown.
const UNBIND_GRACE: Duration = Duration::from_secs(1);
/// Pauses before trying again a receipt that came before its message id was recorded
/// (the worker records it right after the send returns: milliseconds, usually).
const EARLY_RECEIPT_RETRIES: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1500),
    Duration::from_secs(4),
];
/// How often rusmppc's connection is polled again while otpd has requests in flight
/// (see [`drive`]).
const NUDGE: Duration = Duration::from_millis(1);
/// … and while it has none (queued `enquire_link` answers, late acknowledgements).
const IDLE_NUDGE: Duration = Duration::from_millis(20);

/// A provider's session: the bound client while there is one, and its limits.
pub struct Session {
    provider: String,
    settings: Arc<Settings>,
    bound: watch::Sender<Option<Client>>,
    throttle: Throttle,
    recent: RecentIds,
    parts: Parts,
    nudge: Arc<Nudge>,
}

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The SMSC's commands of every connection of a session.
type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

/// Which bind a connection makes.
#[derive(Clone, Copy, Debug)]
enum Bind {
    Transceiver,
    Transmitter,
    Receiver,
}

impl Session {
    /// A session for `provider`, not yet connected ([`Session::run`] does that).
    pub fn new(provider: &str, settings: Arc<Settings>) -> Self {
        Session {
            provider: provider.to_string(),
            throttle: Throttle::new(settings.window, settings.max_per_second),
            settings,
            bound: watch::Sender::new(None),
            recent: RecentIds::default(),
            parts: Parts::default(),
            nudge: Arc::default(),
        }
    }

    /// Whether the session is bound now.
    pub fn is_bound(&self) -> bool {
        self.bound.borrow().is_some()
    }

    /// The segments of concatenated messages in flight.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Submits one `submit_sm` within the window and throughput, and returns the SMSC's
    /// message id (remembered, so that its receipt finds it: [`RecentIds`]; with `group`,
    /// as a segment of that long message, remembered first: [`Parts`]). Waits up to the
    /// bind timeout for a session that is (re)connecting.
    pub async fn submit(&self, pdu: SubmitSm, group: Option<u64>) -> Result<String, ProviderError> {
        let client = self
            .client(self.settings.bind_timeout)
            .await
            .ok_or_else(|| {
                ProviderError::Transient("not bound to the SMSC (reconnecting)".into())
            })?;
        let _permit = self.throttle.acquire().await;
        match self.nudge.request(client.submit_sm(pdu)).await {
            Ok(resp) => {
                let id = resp.message_id().as_str().to_string();
                // A receipt that finds the id in `recent` also finds its segment group.
                if let Some(key) = group {
                    self.parts.add(key, &id);
                }
                self.recent.insert(&id);
                Ok(id)
            }
            Err(SmppError::UnexpectedResponse { response }) => {
                Err(status::classify(u32::from(response.status())))
            }
            Err(SmppError::ResponseTimeout { timeout, .. }) => Err(ProviderError::Transient(
                format!("no submit_sm_resp within {} ms", timeout.as_millis()),
            )),
            Err(e) => Err(ProviderError::Transient(format!("SMPP session: {e}"))),
        }
    }

    /// The bound client, waiting up to `wait` for one.
    async fn client(&self, wait: Duration) -> Option<Client> {
        let mut rx = self.bound.subscribe();
        let found = tokio::time::timeout(wait, rx.wait_for(|c| c.is_some())).await;
        match found {
            Ok(Ok(client)) => client.clone(),
            _ => None,
        }
    }

    /// Keeps the session bound until `stop` is cancelled, then unbinds.
    pub async fn run(self: Arc<Self>, receipts: Arc<dyn ReceiptSink>, stop: CancellationToken) {
        let provider = self.provider.as_str();
        let mut failures: u32 = 0;
        while !stop.is_cancelled() {
            match self.bind().await {
                Ok((clients, events)) => {
                    failures = 0;
                    let mode = match self.settings.bind_mode {
                        BindMode::Transceiver => "transceiver",
                        BindMode::TransmitterReceiver => "transmitter and receiver",
                    };
                    info!(provider, url = %self.settings.url, mode, "SMPP session bound");
                    // Sends go on the first connection; receipts are answered on the last.
                    let (sender, answerer) = (&clients[0], &clients[clients.len() - 1]);
                    self.bound.send_replace(Some(sender.clone()));
                    let reason = self.serve(answerer, events, &receipts, &stop).await;
                    self.bound.send_replace(None);
                    if stop.is_cancelled() {
                        for client in &clients {
                            let _ = tokio::time::timeout(UNBIND_GRACE, client.unbind()).await;
                            let _ = client.close().await;
                        }
                        info!(provider, "SMPP session unbound");
                        return;
                    }
                    warn!(provider, reason, "SMPP session lost; reconnecting");
                    for client in &clients {
                        let _ = client.close().await;
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    warn!(provider, url = %self.settings.url, %error, attempt = failures, "SMPP connect/bind failed");
                }
            }
            let pause =
                backoff::delay(failures.max(1), RECONNECT_BASE, self.settings.reconnect_max);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Connects and binds within the bind timeout: the session's clients (one
    /// transceiver, or a transmitter and a receiver) and the SMSC's commands on all of
    /// them.
    async fn bind(&self) -> Result<(Vec<Client>, Events), String> {
        let s = &self.settings;
        let attempt = async {
            match s.bind_mode {
                BindMode::Transceiver => {
                    let (client, events) = self.connect(Bind::Transceiver).await?;
                    Ok((vec![client], Box::pin(events) as Events))
                }
                BindMode::TransmitterReceiver => {
                    let (tx, tx_events) = self.connect(Bind::Transmitter).await?;
                    match self.connect(Bind::Receiver).await {
                        Ok((rx, rx_events)) => {
                            Ok((vec![tx, rx], Box::pin(tx_events.merge(rx_events)) as Events))
                        }
                        Err(e) => {
                            let _ = tx.close().await;
                            Err(e)
                        }
                    }
                }
            }
        };
        tokio::time::timeout(s.bind_timeout, attempt)
            .await
            .map_err(|_| format!("no bind within {} ms", s.bind_timeout.as_millis()))?
    }

    /// Opens one connection (TLS for `smpps`) and binds it as `kind`.
    async fn connect(
        &self,
        kind: Bind,
    ) -> Result<(Client, impl Stream<Item = Event> + Unpin + Send + 'static), String> {
        let s = &self.settings;
        // Small PDUs both ways: without TCP_NODELAY, Nagle's algorithm and delayed
        // ACKs hold them back ~40 ms (measured: p50 47 ms at window 10 with receipts).
        let tcp = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let stream: Box<dyn Io> = match &s.tls {
            None => Box::new(tcp),
            Some(extra_ca) => {
                let connector = super::tls::connector(extra_ca.as_deref())?;
                Box::new(super::tls::handshake(&connector, &s.host, tcp).await?)
            }
        };
        let (client, events, connection) = ConnectionBuilder::new()
            .max_command_length(MAX_COMMAND_LENGTH)
            .enquire_link_interval(s.enquire_link)
            .enquire_link_response_timeout(s.response_timeout)
            .response_timeout(s.response_timeout)
            // otpd speaks SMPP 3.4; rusmpp's PDUs encode the 3.4 subset unchanged.
            .disable_interface_version_check()
            .no_spawn()
            .connected(stream);
        tokio::spawn(drive(connection, self.nudge.clone()));
        // The three bind PDUs carry the same fields; only their types differ.
        macro_rules! bind {
            ($method:ident, $pdu:ident) => {
                client
                    .$method(
                        $pdu::builder()
                            .system_id(c_octets(&s.system_id)?)
                            .password(c_octets(s.password.expose_secret())?)
                            .system_type(c_octets(&s.system_type)?)
                            .interface_version(InterfaceVersion::Smpp3_4)
                            .addr_ton(Ton::Unknown)
                            .addr_npi(Npi::Unknown)
                            .address_range(COctetString::empty())
                            .build(),
                    )
                    .await
                    .map(|_| ())
            };
        }
        let result = match kind {
            Bind::Transceiver => bind!(bind_transceiver, BindTransceiver),
            Bind::Transmitter => bind!(bind_transmitter, BindTransmitter),
            Bind::Receiver => bind!(bind_receiver, BindReceiver),
        };
        if let Err(e) = result {
            let _ = client.close().await;
            return Err(format!("bind ({kind:?}) refused: {}", describe(&e)));
        }
        Ok((client, events))
    }

    /// Handles the SMSC's commands until the connection ends or `stop`; says why it ended.
    async fn serve(
        self: &Arc<Self>,
        client: &Client,
        mut events: impl Stream<Item = Event> + Unpin,
        receipts: &Arc<dyn ReceiptSink>,
        stop: &CancellationToken,
    ) -> &'static str {
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = stop.cancelled() => return "stopping",
            };
            match event {
                None => return "connection closed",
                Some(Event::Incoming(command)) => {
                    if self.incoming(client, command, receipts).await.is_break() {
                        return "the SMSC unbound";
                    }
                }
                Some(Event::Error(e)) => {
                    warn!(provider = %self.provider, error = %describe(&e), "SMPP session error");
                }
            }
        }
    }

    /// Answers one command from the SMSC; `Break` when it ends the session.
    async fn incoming(
        self: &Arc<Self>,
        client: &Client,
        command: Command,
        receipts: &Arc<dyn ReceiptSink>,
    ) -> std::ops::ControlFlow<()> {
        let provider = self.provider.as_str();
        let sequence = command.sequence_number();
        match command.pdu() {
            Some(Pdu::DeliverSm(deliver)) => {
                let mut answer = CommandStatus::EsmeRok;
                // A receipt can overtake the submit it answers (its `submit_sm_resp` not yet
                // handled): it is read once its id is known, not as a stray single message.
                let parsed = match receipt::from_deliver_sm(deliver) {
                    Some(r) if !self.knows(&r) => {
                        tokio::spawn(read_later(self.clone(), r, receipts.clone()));
                        None
                    }
                    other => other.and_then(|r| self.resolve(r)),
                };
                match parsed {
                    Some(r) => match receipts.apply(provider, &r).await {
                        Ok(true) => debug!(provider, status = ?r.status, "SMPP delivery receipt"),
                        Ok(false) if self.recent.contains(&r.message_id) => {
                            tokio::spawn(apply_later(provider.to_string(), r, receipts.clone()));
                        }
                        Ok(false) => debug!(provider, "SMPP receipt for no known message"),
                        Err(e) => {
                            // Not recorded: a temporary error makes the SMSC send it again.
                            warn!(provider, error = %e, "could not record an SMPP delivery receipt");
                            answer = CommandStatus::EsmeRxTAppn;
                        }
                    },
                    None => debug!(
                        provider,
                        "SMPP deliver_sm without a final outcome to record (not a receipt, or a segment of a longer message)"
                    ),
                }
                let status = client.status(answer);
                let reply = self
                    .nudge
                    .request(status.deliver_sm_resp(sequence, DeliverSmResp::default()))
                    .await;
                if let Err(e) = reply {
                    warn!(provider, error = %describe(&e), "could not answer deliver_sm");
                }
                std::ops::ControlFlow::Continue(())
            }
            Some(Pdu::Unbind) => {
                let _ = client.unbind_resp(sequence).await;
                std::ops::ControlFlow::Break(())
            }
            _ => {
                debug!(provider, id = ?command.id(), "unexpected SMPP command ignored");
                std::ops::ControlFlow::Continue(())
            }
        }
    }
}

impl Session {
    /// Whether a receipt names a message id this session submitted (in any reading).
    fn knows(&self, r: &ParsedReceipt) -> bool {
        self.recent
            .resolve(&r.message_id, self.settings.id_format)
            .is_some()
    }

    /// A receipt as otpd records it: its id read as the submitted id it names (see
    /// [`RecentIds::resolve`]), and a segment's receipt as its message's outcome once that
    /// is known (`None` before: [`Parts`]).
    fn resolve(&self, mut r: ParsedReceipt) -> Option<ParsedReceipt> {
        if let Some(id) = self.recent.resolve(&r.message_id, self.settings.id_format) {
            r.message_id = id;
        }
        match self.parts.on_receipt(&r.message_id.clone(), &r) {
            PartOutcome::Single => Some(r),
            PartOutcome::Wait => None,
            PartOutcome::Final(outcome) => Some(outcome),
        }
    }
}

/// Runs rusmppc's connection future. rusmppc 0.4 takes at most 5 queued commands per
/// poll and then waits without waking itself until bytes arrive or a timer fires: with
/// more than 5 sends queued at once the rest could wait for the next `enquire_link`
/// (measured: p99 of 29 s at window 50). The connection is therefore polled again after
/// every request otpd queues ([`Nudge::request`]), and every [`NUDGE`] while requests are
/// in flight ([`IDLE_NUDGE`] otherwise).
async fn drive(connection: impl Future<Output = ()>, nudge: Arc<Nudge>) {
    tokio::pin!(connection);
    loop {
        let pause = if nudge.in_flight.load(Ordering::Relaxed) > 0 {
            NUDGE
        } else {
            IDLE_NUDGE
        };
        tokio::select! {
            _ = &mut connection => return,
            _ = nudge.queued.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// What [`drive`] needs to know: requests in flight, and a signal per queued request.
#[derive(Default)]
struct Nudge {
    in_flight: AtomicUsize,
    queued: Notify,
}

impl Nudge {
    /// Runs a client request: its first poll queues the command on rusmppc's channel, then
    /// the driver is told to poll the connection.
    async fn request<T>(&self, request: impl Future<Output = T>) -> T {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _done = InFlight(&self.in_flight);
        tokio::pin!(request);
        if let Poll::Ready(out) =
            std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await
        {
            return out;
        }
        self.queued.notify_one();
        request.await
    }
}

/// Counts a request out of flight when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a receipt that overtook its submit once its id is known (see
/// [`EARLY_RECEIPT_RETRIES`]). One whose id never becomes known (a message sent before a
/// restart) is then applied as written, once.
async fn read_later(session: Arc<Session>, raw: ParsedReceipt, receipts: Arc<dyn ReceiptSink>) {
    for pause in EARLY_RECEIPT_RETRIES {
        tokio::time::sleep(pause).await;
        if session.knows(&raw) {
            if let Some(r) = session.resolve(raw) {
                apply_later(session.provider.clone(), r, receipts).await;
            }
            return;
        }
    }
    let provider = session.provider.as_str();
    match receipts.apply(provider, &raw).await {
        Ok(true) => debug!(provider, "SMPP delivery receipt of an earlier session"),
        Ok(false) => debug!(provider, "SMPP receipt for no known message"),
        Err(e) => warn!(provider, error = %e, "could not record an SMPP delivery receipt"),
    }
}

/// Tries again a receipt that arrived before its message id was recorded.
async fn apply_later(provider: String, receipt: ParsedReceipt, receipts: Arc<dyn ReceiptSink>) {
    for pause in EARLY_RECEIPT_RETRIES {
        tokio::time::sleep(pause).await;
        if let Ok(true) = receipts.apply(&provider, &receipt).await {
            debug!(provider, "early SMPP delivery receipt recorded");
            return;
        }
    }
    warn!(
        provider,
        "an SMPP delivery receipt names a message that was never recorded"
    );
}

/// A bind field as a C-octet string (its length was checked with the settings).
fn c_octets<const MIN: usize, const MAX: usize>(
    value: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    value
        .parse()
        .map_err(|_| "a bind field does not fit its SMPP length".to_string())
}

/// A short, secret-free description of a client error (an error response by its status
/// name, not the whole PDU).
fn describe(e: &SmppError) -> String {
    match e {
        SmppError::UnexpectedResponse { response } => {
            let code = u32::from(response.status());
            format!("{} (0x{code:08X})", status::name(code))
        }
        other => other.to_string(),
    }
}

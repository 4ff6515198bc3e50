//! The listener: accepts TCP connections (at most `[http] max_connections` at once), runs
//! the TLS handshake when otpd terminates TLS itself (rustls; HTTP/2 or HTTP/1.1 by ALPN;
//! certificate and key reloaded on SIGHUP), and serves each connection with hyper's
//! HTTP/1.1 + HTTP/2 server under the edge's timeouts:
//!
//! - the TLS handshake must finish within `tls_handshake_timeout_ms`;
//! - an HTTP/1.1 request's header must arrive within `header_read_timeout_ms` of otpd
//!   waiting for it (hyper's own timer);
//! - a connection with no request in progress and no byte either way for `idle_timeout_ms`
//!   is closed (this also bounds a client that connects and sends nothing, and an idle
//!   HTTP/2 connection).
//!
//! Replies over otpd's own TLS carry `Strict-Transport-Security`. Each request gets the
//! peer's address as axum's `ConnectInfo`; when `[http] trusted_proxies` is set, a request
//! whose peer is not one of them has its `X-Forwarded-For` removed before any handler sees
//! it. Shutdown stops accepting, lets in-flight requests finish and closes idle
//! connections (hyper's graceful shutdown).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tower::ServiceExt;

use crate::config::{HttpConfig, TlsConfig, TrustedProxies};

/// `Strict-Transport-Security` on replies over otpd's own TLS: a year, this host only
/// (subdomains may be other services of the operator's).
pub const HSTS: &str = "max-age=31536000";

/// The edge's limits, from `[http]`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// See [`HttpConfig::header_read_timeout_ms`].
    pub header_read_timeout: Duration,
    /// See [`HttpConfig::idle_timeout_ms`].
    pub idle_timeout: Duration,
    /// See [`HttpConfig::tls_handshake_timeout_ms`].
    pub tls_handshake_timeout: Duration,
    /// See [`HttpConfig::max_connections`].
    pub max_connections: usize,
}

impl From<&HttpConfig> for Limits {
    fn from(http: &HttpConfig) -> Self {
        Limits {
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms),
            tls_handshake_timeout: Duration::from_millis(http.tls_handshake_timeout_ms),
            max_connections: http.max_connections,
        }
    }
}

/// The certificate and key otpd serves, reloadable.
pub struct TlsFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsFiles {
    /// Loads both files (errors name the files, never their contents).
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsFiles> {
        let config = server_config(cert_file, key_file)?;
        Ok(TlsFiles {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(config),
        })
    }

    /// From `[tls]`, when it names the files.
    pub fn from_config(tls: &TlsConfig) -> anyhow::Result<Option<TlsFiles>> {
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Self::load(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err(anyhow!("tls: set both cert_file and key_file")),
        }
    }

    /// Reads both files again; on success new handshakes use them (connections already
    /// open keep theirs). On error the previous certificate stays in force.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// A rustls server configuration on the ring provider (the one the rest of the tree
/// uses; no process-wide default needs installing), offering HTTP/2 and HTTP/1.1.
fn server_config(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("tls.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "tls.cert_file {}: no PEM certificate found",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| anyhow!("tls.key_file {}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "tls: {} and {} do not make a usable certificate and key",
                cert_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound listener with everything it serves by.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<Arc<TlsFiles>>,
    limits: Limits,
    proxies: Arc<TrustedProxies>,
}

impl Listener {
    /// Wraps a bound TCP listener.
    pub fn new(
        tcp: TcpListener,
        tls: Option<TlsFiles>,
        limits: Limits,
        proxies: TrustedProxies,
    ) -> Self {
        Listener {
            tcp,
            tls: tls.map(Arc::new),
            limits,
            proxies: Arc::new(proxies),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether otpd terminates TLS on it.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `router` until `shutdown` completes, then stops accepting and waits for the
    /// open connections to finish their requests.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let Listener {
            tcp,
            tls,
            limits,
            proxies,
        } = self;
        let reloader = tls.clone().map(|tls| tokio::spawn(reload_on_sighup(tls)));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            // A free slot first: beyond the limit, connections wait in the listen queue.
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Responses go out at once: with Nagle's algorithm a response written in two
            // parts waits for the client's delayed acknowledgement (up to 40 ms).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            let conn = Conn {
                router: router.clone(),
                peer,
                tls: tls.as_ref().map(|t| t.acceptor()),
                limits: limits.clone(),
                proxies: proxies.clone(),
            };
            let watcher = graceful.watcher();
            let builder = builder.clone();
            tokio::spawn(async move {
                conn.run(stream, &builder, watcher).await;
                drop(permit);
            });
        }
        drop(tcp);
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        graceful.shutdown().await;
        Ok(())
    }
}

/// Accept errors: a connection that failed before we got it is the client's business; a
/// full file table (EMFILE) passes, so wait a little instead of spinning.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Reloads the certificate and key on every SIGHUP.
async fn reload_on_sighup(tls: Arc<TlsFiles>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP handler not installed: certificates reload on restart only");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!(
                    cert_file = %tls.cert_file.display(),
                    "SIGHUP: TLS certificate and key reloaded"
                ),
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "SIGHUP: TLS reload failed; the previous certificate stays in force"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

/// One accepted connection.
struct Conn {
    router: Router,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    proxies: Arc<TrustedProxies>,
}

impl Conn {
    async fn run(
        self,
        stream: TcpStream,
        builder: &auto::Builder<TokioExecutor>,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let activity = Arc::new(Activity::new());
        let hsts = self.tls.is_some();
        let io = match &self.tls {
            None => Either::Left(stream),
            Some(acceptor) => {
                match tokio::time::timeout(
                    self.limits.tls_handshake_timeout,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(tls)) => Either::Right(tls),
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let io = TokioIo::new(Tracked {
            inner: io,
            activity: activity.clone(),
        });
        // Only a trusted proxy's X-Forwarded-For is believed (with CIDRs configured).
        let strip_forwarded = !self.proxies.is_empty() && !self.proxies.contains(self.peer.ip());
        let peer = self.peer;
        let router = self.router;
        let in_request = activity.clone();
        let service = tower::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if strip_forwarded {
                req.headers_mut().remove("x-forwarded-for");
            }
            let busy = in_request.begin();
            let call = router.clone().oneshot(req);
            async move {
                let mut response = call.await?;
                drop(busy);
                if hsts {
                    response.headers_mut().insert(
                        header::STRICT_TRANSPORT_SECURITY,
                        HeaderValue::from_static(HSTS),
                    );
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
        let conn = watcher.watch(conn);
        tokio::select! {
            served = conn => {
                if let Err(e) = served {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
            }
            () = activity.idle_for(self.limits.idle_timeout) => {
                tracing::debug!(peer = %peer, "idle connection closed");
            }
        }
    }
}

/// What a connection is doing, for the idle timeout.
struct Activity {
    /// When the connection started (the clock the millisecond counts are on).
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written.
    last_io_ms: AtomicU64,
    /// Requests in progress.
    requests: AtomicUsize,
}

/// A request in progress; dropping it ends the request.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Completes once no request has been in progress and no byte has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_io_ms.load(Ordering::Acquire));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                if self.requests.load(Ordering::Acquire) == 0 {
                    return;
                }
                // A request is in progress (its own timeout bounds it): look again later.
                tokio::time::sleep(idle).await;
                continue;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that notes when bytes move.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! The application: opens the store, prepares secrets and keys, builds the HTTP router and
//! the delivery worker, and runs both until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::response::IntoResponse;
use chrono::Utc;
use otpd_core::apikey::{Role, digest, mint};
use otpd_core::clock::{Clock, SystemClock};
use otpd_core::ids::Kind;
use otpd_core::secret::ServerSecret;
use otpd_core::service::{DEFAULT_SERVICE, Service, ServiceSettings};
use otpd_core::store::{DurableStore, ServiceStore, Store, StoreError};
use otpd_delivery::{Router as DeliveryRouter, Worker};
use otpd_engine::{self as engine, Verifier};
use otpd_store::{AnyStore, RedisConfig, RedisHot, Spooler};
use otpd_telemetry::Telemetry;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::listener::{Limits, Listener, TlsFiles};
use crate::state::AppState;
use crate::twilio::callbacks::{CallbackKeys, CallbackSender};
use crate::twilio::errors::{TwilioError, code as twilio_code};
use crate::webhooks::WebhookSender;

/// How long shutdown waits for the delivery worker to finish its current jobs.
const WORKER_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A built application, bound to its port, not yet serving.
pub struct Application {
    listener: Listener,
    router: Router,
    worker: Worker,
    callbacks: CallbackSender,
    webhooks: WebhookSender,
    telemetry: Arc<Telemetry>,
    alert_interval: Duration,
    store: AnyStore,
    /// Applies the Redis journal to the database (with `OTPD_REDIS_URL`).
    spooler: Option<Spooler<dyn DurableStore>>,
    bootstrap_key: Option<Zeroizing<String>>,
    retention: crate::config::RetentionConfig,
    clock: Arc<dyn Clock>,
}

/// Opens the configured store (SQLite or PostgreSQL, by the URL's scheme) and applies
/// migrations. Errors never quote the URL (it may hold a password).
pub async fn open_store(config: &Config) -> anyhow::Result<AnyStore> {
    let store = otpd_store::open(&config.database_url)
        .await
        .with_context(|| "opening the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// The store the application serves from: the database alone, or (with `OTPD_REDIS_URL`)
/// Redis in front of it for the hot path, with the spooler that applies Redis's journal
/// to the database.
pub async fn with_redis(
    config: &Config,
    durable: Arc<dyn DurableStore>,
) -> anyhow::Result<(Arc<dyn Store>, Option<Spooler<dyn DurableStore>>)> {
    let Some(url) = &config.redis_url else {
        return Ok((durable, None));
    };
    let redis = RedisConfig {
        prefix: config.redis_prefix.clone(),
        ..RedisConfig::new(url.clone())
    };
    let hot = RedisHot::connect(durable, redis)
        .await
        .context("connecting to redis")?;
    let node = format!(
        "{}-{}",
        std::process::id(),
        &otpd_core::ids::new_hex()[20..]
    );
    let spooler = Spooler::new(hot.clone(), node);
    Ok((Arc::new(hot), Some(spooler)))
}

/// Reads the server secret from config or its file, generating the file at first start.
fn load_secret(config: &Config) -> anyhow::Result<ServerSecret> {
    if let Some(secret) = &config.secret {
        return ServerSecret::from_text(secret.expose_secret())
            .map_err(|e| anyhow!("OTPD_SECRET: {e}"));
    }
    let path = config.secret_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Zeroizing::new(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let generated = ServerSecret::generate_text();
            write_private(&path, &generated)
                .with_context(|| format!("writing the server secret to {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new server secret");
            generated
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the server secret from {}", path.display()));
        }
    };
    ServerSecret::from_text(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Creates a file readable by its owner only; fails if it exists.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        otpd_store::private_files::create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// The master key, from config or its file.
fn master_key(config: &Config) -> anyhow::Result<Option<Zeroizing<String>>> {
    if let Some(k) = &config.master_key {
        return Ok(Some(Zeroizing::new(k.expose_secret().to_string())));
    }
    match &config.master_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Some(Zeroizing::new(text.trim().to_string())))
        }
        None => Ok(None),
    }
}

/// Creates the `default` service if it does not exist (a race with another node is fine).
pub async fn ensure_default_service(store: &dyn ServiceStore) -> anyhow::Result<()> {
    if store.find_service(DEFAULT_SERVICE).await?.is_some() {
        return Ok(());
    }
    let now = Utc::now();
    let id = Kind::Service.new_id();
    let service = Service {
        sid: Kind::Service.sid_of(&id),
        id,
        name: DEFAULT_SERVICE.into(),
        settings: ServiceSettings::default(),
        webhook_secret: None,
        created_at: now,
        updated_at: now,
    };
    match store.create_service(&service, None).await {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Application {
    /// Builds everything and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the clock every request decides by (tests pass a
    /// [`otpd_core::clock::ManualClock`] and move it instead of sleeping).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        config.validate()?;
        // Where and how it may listen (TLS or a declared proxy beyond loopback; the
        // metrics token), and the certificate, before anything is opened.
        config.edge()?;
        let tls = TlsFiles::from_config(&config.tls)?;
        let config = Arc::new(config);
        let store = open_store(&config).await?;
        let secret = Arc::new(load_secret(&config)?);
        ensure_default_service(&*store).await?;

        let master = master_key(&config)?;
        if let Some(k) = &master {
            crate::config::check_master_key(k).map_err(|e| anyhow!(e))?;
        }
        let bootstrap_key = if master.is_none() && store.count_live_keys().await? == 0 {
            let key = mint("bootstrap admin", Role::Admin, false, None, clock.now());
            store.insert_key(&key.record, &key.digest).await?;
            Some(key.secret)
        } else {
            None
        };

        let delivery_router = Arc::new(
            DeliveryRouter::new(&config.effective_providers(), &config.routes)
                .map_err(|e| anyhow!(e))?
                .with_breaker_policy(config.delivery.breaker_policy()),
        );
        let wake = Arc::new(Notify::new());
        let (shared, spooler) = with_redis(&config, store.durable()).await?;
        let telemetry = Arc::new(Telemetry::new(config.alerts.policy()));
        let master_key_digest: Option<Arc<[u8]>> = master.as_ref().map(|k| Arc::from(digest(k)));
        let webhooks = WebhookSender::new(
            shared.clone(),
            secret.clone(),
            config.webhooks.clone(),
            telemetry.clone(),
        )
        .with_clock(clock.clone())
        .with_master_key(master_key_digest.clone());
        let callback_keys = Arc::new(CallbackKeys::new());
        let callbacks = CallbackSender::new(
            shared.clone(),
            callback_keys.clone(),
            config.webhooks.allow_private_targets,
        )
        .with_clock(clock.clone());
        let state = AppState {
            config: config.clone(),
            store: shared.clone(),
            secret: secret.clone(),
            router: delivery_router.clone(),
            wake: wake.clone(),
            master_key_digest,
            verifier: Arc::new(Verifier::new(engine::Parts {
                store: shared.clone(),
                secret: secret.clone(),
                router: delivery_router.clone(),
                prices: config.prices.clone(),
                wake: wake.clone(),
                callback_keys,
                telemetry: telemetry.clone(),
                clock: clock.clone(),
            })),
            telemetry: telemetry.clone(),
            clock: clock.clone(),
        };
        let worker = Worker::new(
            shared,
            delivery_router,
            secret,
            config.delivery.clone(),
            wake,
        )
        .with_telemetry(telemetry.clone())
        .with_clock(clock.clone())
        .with_prices(config.prices.clone());
        let router = http_router(state);
        let addr: SocketAddr = config.listen.parse().context("listen address")?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let listener = Listener::new(
            listener,
            tls,
            Limits::from(&config.http),
            config.http.trusted_proxies.clone(),
        );
        Ok(Application {
            listener,
            router,
            worker,
            callbacks,
            webhooks,
            telemetry,
            alert_interval: Duration::from_secs(config.alerts.evaluate_interval_seconds),
            store,
            spooler,
            bootstrap_key,
            retention: config.retention.clone(),
            clock,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Whether otpd serves HTTPS itself (`[tls]`).
    pub fn is_tls(&self) -> bool {
        self.listener.is_tls()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The admin key generated at first start (no key in the database and no master
    /// key), to print once.
    pub fn take_bootstrap_key(&mut self) -> Option<Zeroizing<String>> {
        self.bootstrap_key.take()
    }

    /// Serves until `shutdown` completes: then stops accepting, finishes in-flight
    /// requests, lets the worker finish its current jobs, and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop_worker = CancellationToken::new();
        let worker = tokio::spawn(self.worker.run(stop_worker.clone()));
        let callbacks = tokio::spawn(self.callbacks.run(stop_worker.clone()));
        let policy = self.retention.policy();
        let purge = crate::retention::enabled(&policy).then(|| {
            tokio::spawn(crate::retention::run(
                self.store.shared(),
                policy,
                Duration::from_secs(self.retention.interval_seconds),
                self.clock.clone(),
                stop_worker.clone(),
            ))
        });
        let webhooks = tokio::spawn(self.webhooks.run(stop_worker.clone()));
        let spooler = self.spooler.map(|spooler| {
            let stop = stop_worker.clone();
            tokio::spawn(spooler.run(async move { stop.cancelled().await }))
        });
        let alerts = tokio::spawn(crate::alerting::run(
            self.store.shared(),
            self.telemetry,
            self.alert_interval,
            self.clock.clone(),
            stop_worker.clone(),
        ));
        let served = self.listener.serve(self.router, shutdown).await;
        stop_worker.cancel();
        let _ = callbacks.await;
        let _ = alerts.await;
        if let Some(purge) = purge {
            let _ = purge.await;
        }
        if tokio::time::timeout(WORKER_SHUTDOWN_GRACE, webhooks)
            .await
            .is_err()
        {
            tracing::warn!(
                "webhook senders did not stop in time; their messages will be sent again after their lease"
            );
        }
        if let Some(spooler) = spooler
            && tokio::time::timeout(WORKER_SHUTDOWN_GRACE, spooler)
                .await
                .is_err()
        {
            tracing::warn!(
                "journal spooler did not stop in time; another node takes its entries over after the lease"
            );
        }
        if tokio::time::timeout(WORKER_SHUTDOWN_GRACE, worker)
            .await
            .is_err()
        {
            tracing::warn!(
                "delivery worker did not stop in time; its leased jobs will be retried after their lease"
            );
        }
        self.store.close().await;
        served.context("serving HTTP")
    }
}

/// Whether a request is for the Twilio-compatible API (answered in Twilio's error form).
fn is_twilio_path(uri: &axum::http::Uri) -> bool {
    uri.path() == "/v2" || uri.path().starts_with("/v2/")
}

/// The HTTP router with its layers.
pub fn http_router(state: AppState) -> Router {
    let (routes, doc) = crate::api::routes();
    let doc_json = serde_json::to_string_pretty(&crate::api::document(&doc))
        .expect("the OpenAPI document serializes");
    let _ = crate::api::OPENAPI_JSON.set(doc_json);
    let timeout = Duration::from_millis(state.config.http.request_timeout_ms);
    let body_limit = state.config.http.body_limit_bytes;
    let telemetry = state.telemetry.clone();
    routes
        .fallback(|uri: axum::http::Uri| async move {
            if is_twilio_path(&uri) {
                TwilioError::not_found(uri.path()).into_response()
            } else {
                ApiError::new(ErrorCode::NotFound, "no such route").into_response()
            }
        })
        .method_not_allowed_fallback(|uri: axum::http::Uri| async move {
            let status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
            if is_twilio_path(&uri) {
                TwilioError::new(status, twilio_code::METHOD_NOT_ALLOWED, "Method not allowed")
                    .into_response()
            } else {
                ApiError::new(ErrorCode::InvalidRequest, "method not allowed on this route")
                    .with_status(status)
                    .into_response()
            }
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::access::enforce,
        ))
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(ErrorCode::Internal, "internal error"))
        }))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get(crate::audit::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // The route template, never the raw path (paths can hold phone numbers).
            let route = req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or("-", |p| p.as_str());
            tracing::info_span!("http", method = %req.method(), route = %route, request_id = %id)
        }))
        .layer(axum::middleware::from_fn_with_state(
            telemetry,
            crate::api::metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::audit::layer,
        ))
}

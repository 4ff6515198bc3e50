//! Fills an otpd SQLite database with live (pending) verifications whose codes it knows,
//! through the real store code (`VerificationStore::start`, the same call a send makes)
//! and the server secret file otpd will run with, so otpd can check them afterwards.
//!
//! The sends are batched (`--batch`) into one transaction each with
//! `SqliteStore::start_many`, which runs the very work of `start` per send but commits
//! once per batch, so a million verifications seed in about a minute; a second batch is
//! hashed and sealed while the store writes the first (`--concurrency`).
//!
//! With `--database-url postgres://…` (and optionally `--redis-url`, as `OTPD_REDIS_URL`)
//! it seeds a many-node deployment instead, through the same store stack a node builds
//! (PostgreSQL, or Redis in front of it): there each send is its own `start` call, a
//! batch of them in flight at once.
//!
//! - `--pool FILE` writes one `id code` line per verification (the check workload's input).
//! - `--deliver` also queues a delivery job per verification for the provider named by
//!   `--provider` (the input of the delivery drain benchmark); by default none is queued,
//!   as for a verification whose message has already gone out.
//!
//! Usage: `seed (--db PATH | --database-url URL [--redis-url URL]) --secret-file PATH
//! --count N [--pool FILE] [--deliver]`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use clap::Parser;
use otpd_bench::numbers;
use otpd_bench::pool::{self, Entry};
use otpd_core::Channel;
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::ids::Kind;
use otpd_core::lockout::{LockoutPolicy, MAX_LOCKOUT_FAILURES};
use otpd_core::secret::ServerSecret;
use otpd_core::service::DEFAULT_SERVICE;
use otpd_core::store::{DurableStore, StartOutcome, StartRequest, Store, StoreResult};
use otpd_store::{RedisConfig, RedisHot, Spooler, SqliteStore};

/// Where the verifications go.
enum Target {
    /// One SQLite file: batches in one transaction each.
    Sqlite(SqliteStore),
    /// A shared deployment's store (PostgreSQL, or Redis in front of it, with the spooler
    /// that moves Redis's journal into PostgreSQL).
    Shared(Arc<dyn Store>, Option<Spooler<dyn DurableStore>>),
}

impl Target {
    /// Opens the store the arguments name, migrated.
    async fn open(args: &Args) -> anyhow::Result<Target> {
        if let Some(db) = &args.db {
            let store = SqliteStore::open(&format!("sqlite://{}", db.display())).await?;
            store.migrate().await?;
            return Ok(Target::Sqlite(store));
        }
        let url = args
            .database_url
            .as_deref()
            .context("--db or --database-url")?;
        let store = otpd_store::open(url).await?;
        store.migrate().await?;
        Ok(match &args.redis_url {
            Some(redis) => {
                let hot =
                    RedisHot::connect(store.durable(), RedisConfig::new(redis.clone())).await?;
                let spooler = Spooler::new(hot.clone(), "seed");
                Target::Shared(Arc::new(hot), Some(spooler))
            }
            None => Target::Shared(store.shared(), None),
        })
    }

    fn store(&self) -> &dyn Store {
        match self {
            Target::Sqlite(s) => s,
            Target::Shared(s, _) => s.as_ref(),
        }
    }

    /// Starts every request (all created, or the first error).
    async fn start_batch(&self, reqs: Vec<StartRequest>) -> StoreResult<Vec<StartOutcome>> {
        let now = Utc::now();
        match self {
            Target::Sqlite(s) => s.start_many(reqs, now).await,
            Target::Shared(s, _) => {
                let ctx = WriteContext::system();
                let starts = reqs.into_iter().map(|r| s.start(r, None, now, &ctx));
                futures_util::future::join_all(starts)
                    .await
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Closes the SQLite store; with Redis, first applies the whole journal to PostgreSQL
    /// (as the nodes' spoolers would), so a benchmark starts on a settled deployment.
    async fn close(&self) -> anyhow::Result<()> {
        match self {
            Target::Sqlite(s) => s.close().await,
            Target::Shared(_, Some(spooler)) => while spooler.spool_once().await? > 0 {},
            Target::Shared(_, None) => {}
        }
        Ok(())
    }
}

/// Command line.
#[derive(Parser)]
struct Args {
    /// The SQLite database file (created and migrated if needed).
    #[arg(
        long,
        required_unless_present = "database_url",
        conflicts_with = "database_url"
    )]
    db: Option<PathBuf>,
    /// A PostgreSQL database URL (migrated if needed), instead of `--db`.
    #[arg(long)]
    database_url: Option<String>,
    /// Redis in front of the database (`OTPD_REDIS_URL` of the nodes).
    #[arg(long, requires = "database_url")]
    redis_url: Option<String>,
    /// The server secret file otpd runs with (`OTPD_SECRET_FILE`); created if missing.
    #[arg(long)]
    secret_file: PathBuf,
    /// How many verifications to create.
    #[arg(long)]
    count: u64,
    /// Index of the first phone number (see `otpd_bench::numbers`).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Where to write the `id code` list.
    #[arg(long)]
    pool: Option<PathBuf>,
    /// Queue a delivery job per verification.
    #[arg(long)]
    deliver: bool,
    /// Provider name of the queued jobs.
    #[arg(long, default_value = "sink")]
    provider: String,
    /// Wrong checks each verification allows: high, so the check workload can repeat
    /// wrong codes on one verification without locking it (255 is the most the Redis
    /// store's packed state holds; the API itself allows at most 20).
    #[arg(long, default_value_t = 255)]
    max_check_attempts: u32,
    /// Lifetime of the verifications, in seconds (long enough to outlast the benchmark).
    #[arg(long, default_value_t = 86_400)]
    ttl_seconds: i64,
    /// Batches in preparation or in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Verifications per transaction (`SqliteStore::start_many`).
    #[arg(long, default_value_t = 2_000)]
    batch: u64,
    /// Store code length.
    #[arg(long, default_value_t = 6)]
    code_length: u8,
}

/// Reads the secret file, creating it (mode 0600) with a fresh secret when missing.
fn load_secret(path: &PathBuf) -> anyhow::Result<ServerSecret> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = ServerSecret::generate_text().to_string();
            std::fs::write(path, &text)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            text
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    ServerSecret::from_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.offset + args.count > numbers::SEND_OFFSET {
        bail!(
            "offset + count must stay below {} (the send workload's numbers)",
            numbers::SEND_OFFSET
        );
    }
    let target = Target::open(&args).await?;
    let store = target.store();
    otpd_server::app::ensure_default_service(store).await?;
    let mut service = store
        .find_service(DEFAULT_SERVICE)
        .await?
        .context("the default service")?;
    // The benchmark's service: wrong codes are still counted toward the lockout (the same
    // work per check), but over a 1-second window, so a small pool hammered with wrong
    // codes never locks and drains (it did at 1k live verifications).
    service.settings.lockout = LockoutPolicy {
        max_failures: MAX_LOCKOUT_FAILURES,
        window_seconds: 1,
        duration_seconds: 1,
    };
    store.update_service(&service, None).await?;
    let secret = Arc::new(load_secret(&args.secret_file)?);
    let store = Arc::new(target);
    let args = Arc::new(args);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (store, secret, args, next, service_id) = (
            store.clone(),
            secret.clone(),
            args.clone(),
            next.clone(),
            service.id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let first = next.fetch_add(args.batch, Ordering::Relaxed);
                if first >= args.count {
                    break;
                }
                let last = (first + args.batch).min(args.count);
                if first / 100_000 != last / 100_000 {
                    eprintln!(
                        "seed: {first} verifications in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                let mut codes = Vec::with_capacity((last - first) as usize);
                let mut reqs = Vec::with_capacity((last - first) as usize);
                for i in first..last {
                    let new_id = Kind::Verification.new_id();
                    let code = OtpCode::generate(args.code_length);
                    reqs.push(StartRequest {
                        service_id: service_id.clone(),
                        to: numbers::phone(args.offset + i),
                        channel: Channel::Sms,
                        fallback: Vec::new(),
                        providers: vec![args.provider.clone()],
                        deliver: args.deliver,
                        code_hash: secret.hasher().hash(&new_id, &code),
                        sealed_code: secret.sealer().seal_str(&new_id, code.expose()),
                        new_id,
                        ttl: Duration::seconds(args.ttl_seconds),
                        max_check_attempts: args.max_check_attempts,
                        locale: "en".into(),
                        metadata: None,
                        test: false,
                        key_id: "key_bench_seed".into(),
                        send_limit: otpd_core::start::SendLimit {
                            count: 1_000,
                            window: Duration::seconds(600),
                        },
                        entity: None,
                        region: None,
                        message_options: Default::default(),
                        idempotency: None,
                    });
                    codes.push(code);
                }
                let outcomes = store.start_batch(reqs).await?;
                for (outcome, code) in outcomes.into_iter().zip(codes) {
                    match outcome {
                        StartOutcome::Created(v) => made.push(Entry {
                            id: v.id,
                            code: code.expose().to_string(),
                        }),
                        other => bail!("a seeded number was already pending: {other:?}"),
                    }
                }
            }
            Ok::<_, anyhow::Error>(made)
        }));
    }
    let mut entries = Vec::with_capacity(args.count as usize);
    for t in tasks {
        entries.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    store.close().await?;
    if let Some(path) = &args.pool {
        pool::write(path, &entries)?;
    }
    println!(
        "seeded {} verifications in {secs:.1} s ({:.0}/s)",
        entries.len(),
        entries.len() as f64 / secs
    );
    Ok(())
}

//! `pumping --trace FILE [--check]`: replays a trace through otpd's guards and prints a
//! report, then the JSON summary as the last line. With `--check`, exits 1 when fewer than
//! 99.5% of attack sends or more than 0.3% of legitimate sends are blocked.
//!
//! `--nodes N` replays through N nodes sharing one store (round-robin, approvals on
//! another node), `--restart-at F` restarts every node once the share F of the trace is
//! sent; both keep the guards' state in a store: a fresh SQLite file by default, or
//! `--database-url URL` (PostgreSQL) with optionally `--redis-url URL` in front.
//!
//! `pumping --generate --seed N [--hours H] [--users U] [--range-walks] --out FILE` writes
//! a trace (`--range-walks`: with the range walks of issue 26 and a Pacific burst).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;

use otpd_bench::TraceEvent;
use otpd_bench::generate::{Params, trace};
use otpd_bench::replay::{Cluster, replay, replay_shared, settings};
use otpd_core::store::Store;

/// The targets of issue 26 (issue 4 asked for 99% and 0.5%).
const MIN_ATTACK_BLOCKED_PERCENT: f64 = 99.5;
const MAX_LEGIT_BLOCKED_PERCENT: f64 = 0.3;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--generate") {
        let params = Params {
            seed: arg(&args, "--seed")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
            hours: arg(&args, "--hours")
                .and_then(|s| s.parse().ok())
                .unwrap_or(24.0),
            users_per_day: arg(&args, "--users")
                .and_then(|s| s.parse().ok())
                .unwrap_or(20_000),
            attack_scale: arg(&args, "--attack-scale")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1.0),
            range_walks: args.iter().any(|a| a == "--range-walks"),
        };
        let Some(out) = arg(&args, "--out") else {
            eprintln!("--generate needs --out FILE");
            return ExitCode::from(2);
        };
        let events = trace(&params);
        let file = match std::fs::File::create(&out) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("cannot write {out}: {e}");
                return ExitCode::from(2);
            }
        };
        let mut w = BufWriter::new(file);
        for e in &events {
            let line = serde_json::to_string(e).unwrap_or_default();
            if writeln!(w, "{line}").is_err() {
                eprintln!("cannot write {out}");
                return ExitCode::from(2);
            }
        }
        if w.flush().is_err() {
            eprintln!("cannot write {out}");
            return ExitCode::from(2);
        }
        eprintln!("wrote {} sends to {out}", events.len());
        return ExitCode::SUCCESS;
    }
    let Some(path) = arg(&args, "--trace") else {
        eprintln!("usage: pumping --trace FILE [--check] | pumping --generate --seed N --out FILE");
        return ExitCode::from(2);
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut events = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else {
            eprintln!("{path}: unreadable line {}", n + 1);
            return ExitCode::from(2);
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<TraceEvent>(&line) {
            Ok(e) => events.push(e),
            Err(e) => {
                eprintln!("{path}:{}: {e}", n + 1);
                return ExitCode::from(2);
            }
        }
    }
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    let nodes: usize = arg(&args, "--nodes")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let restart_at: Option<f64> = arg(&args, "--restart-at").and_then(|s| s.parse().ok());
    let summary = if nodes > 1 || restart_at.is_some() || args.iter().any(|a| a == "--shared") {
        let cluster = Cluster {
            nodes,
            restart_at,
            service_id: format!("svc_sim{:016x}", rand::random::<u64>()),
        };
        let run = async {
            let (store, _dir) = open_store(&args).await?;
            let out = replay_shared(&events, &settings(), store.as_ref(), &cluster).await;
            drop(store);
            out
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        match runtime.block_on(run) {
            Ok(s) => {
                println!(
                    "nodes {nodes}, restart {}",
                    restart_at.map_or("none".into(), |r| format!(
                        "at {:.0}% of the trace",
                        r * 100.0
                    ))
                );
                s
            }
            Err(e) => {
                eprintln!("shared replay failed: {e:#}");
                return ExitCode::from(2);
            }
        }
    } else {
        replay(&events, &settings())
    };
    for (scenario, c) in &summary.by_scenario {
        println!(
            "scenario {scenario:<18} allowed {:>6} blocked {:>6} ({:.2}% blocked)",
            c.allowed,
            c.blocked,
            c.blocked_percent()
        );
    }
    for (guard, c) in &summary.by_guard {
        println!(
            "guard    {guard:<18} blocked attack {:>6} legit {:>6}",
            c.attack, c.legit
        );
    }
    let attack = summary.attack.blocked_percent();
    let legit = summary.legit.blocked_percent();
    println!("attack blocked {attack:.3}%  legit blocked {legit:.3}%");
    println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    // `--min-attack P` checks another attack bound than the target (to try a trace the
    // detector is not yet tuned for).
    let min_attack = arg(&args, "--min-attack")
        .and_then(|s| s.parse().ok())
        .unwrap_or(MIN_ATTACK_BLOCKED_PERCENT);
    let ok = attack >= min_attack && legit <= MAX_LEGIT_BLOCKED_PERCENT;
    if args.iter().any(|a| a == "--check") && !ok {
        eprintln!(
            "targets missed: need >= {min_attack}% attack and <= {MAX_LEGIT_BLOCKED_PERCENT}% legit blocked"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The store the shared replay keeps its state in: `--database-url` (with `--redis-url`
/// in front), else a fresh SQLite file in a temporary directory (returned, to remove it
/// when done).
async fn open_store(args: &[String]) -> anyhow::Result<(Arc<dyn Store>, Option<TempDir>)> {
    if let Some(url) = arg(args, "--database-url") {
        let store = otpd_store::open(&url).await?;
        store.migrate().await?;
        return Ok(match arg(args, "--redis-url") {
            Some(redis) => {
                let config = otpd_store::RedisConfig {
                    prefix: format!("otpd-pumping-{:08x}", rand::random::<u32>()),
                    clock: otpd_store::Clock::Caller,
                    ..otpd_store::RedisConfig::new(redis)
                };
                let hot = otpd_store::RedisHot::connect(store.durable(), config).await?;
                (Arc::new(hot), None)
            }
            None => (store.shared(), None),
        });
    }
    let dir = TempDir::new()?;
    let store =
        otpd_store::SqliteStore::open(&format!("sqlite://{}", dir.0.join("pumping.db").display()))
            .await?;
    store.migrate().await?;
    Ok((Arc::new(store), Some(dir)))
}

/// A temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("otpd-pumping-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

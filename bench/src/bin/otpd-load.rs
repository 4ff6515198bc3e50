//! otpd's load generator: closed-loop HTTP/1.1 load on loopback with a fixed number of
//! keep-alive connections for a fixed time, optionally paced to a total request rate.
//!
//! - `run`: one workload against otpd or the ceiling. Latency per request goes into an HDR
//!   histogram (p50/p99/p99.9); with `--rate`, latency counts from the moment a request
//!   was *due*, not from when it was sent (no coordinated omission). With `--pid`, the
//!   server's CPU (utime + stime from `/proc/PID/stat`) and peak RSS (`VmHWM`, reset at the
//!   start) are sampled.
//! - `drain`: waits until the local sink has received N messages and reports the rate.
//! - `report`: turns the JSON lines written by `run`/`drain` (and facts added by
//!   `bench/run.sh`) into the markdown tables of `bench/RESULTS.md`, with every figure also
//!   given as a ratio to the same-run ceiling, and the targets of issue #9 evaluated.
//!
//! Workloads:
//! - `send`: `POST /v1/verifications` to a fresh number each time (201 expected).
//! - `check`: `POST /v1/verifications/check` by id on seeded verifications (`--pool`); each
//!   connection owns a disjoint slice; every `--right-every`-th check carries the right code
//!   (spending that verification), the others a wrong code on a random unspent one.
//! - `check-wrong`: wrong codes on verifications drawn uniformly from the whole pool (the
//!   scale series: the store keeps its size while the per-request work stays the same).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use otpd_bench::http::{authority, connect};
use otpd_bench::pool::{self, Entry};
use otpd_bench::{numbers, procfs};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest latency the histogram holds, in µs.
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Parser)]
#[command(about = "otpd's closed-loop load generator")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one workload.
    Run(RunArgs),
    /// Wait for the sink to receive N messages and report the drain rate.
    Drain(DrainArgs),
    /// Print the markdown report of a results file.
    Report {
        /// The JSON-lines results file.
        #[arg(long = "in")]
        input: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Workload {
    Send,
    Check,
    CheckWrong,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Send => "send",
            Workload::Check => "check",
            Workload::CheckWrong => "check-wrong",
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            Workload::Send => 201,
            _ => 200,
        }
    }
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Base URL, e.g. http://127.0.0.1:8080; several (comma-separated) spread the
    /// connections over the nodes of one deployment, round-robin.
    #[arg(long, value_delimiter = ',', required = true)]
    url: Vec<String>,
    /// The workload.
    #[arg(long, value_enum)]
    workload: Workload,
    /// What is measured: `otpd` or `ceiling` (a label for the report).
    #[arg(long, default_value = "otpd")]
    target: String,
    /// Store behind otpd (a label: `sqlite`, later `postgres+redis`).
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total requests per second (paced); unbounded when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Bearer API key.
    #[arg(long, env = "OTPD_BENCH_KEY", default_value = "")]
    key: String,
    /// The `id code` pool file (check workloads).
    #[arg(long)]
    pool: Option<PathBuf>,
    /// Start over at the beginning of the pool when it is spent (for the ceiling, which
    /// spends nothing; otpd would answer 409 to codes already used).
    #[arg(long)]
    wrap: bool,
    /// Every N-th check of a connection carries the right code.
    #[arg(long, default_value_t = 5)]
    right_every: u64,
    /// Added to the send workload's number index (runs on one database must not overlap).
    #[arg(long, default_value_t = 0)]
    number_offset: u64,
    /// Server process ids (comma-separated, one per node), for CPU (summed) and peak
    /// RSS (summed over the nodes).
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Live verifications in the store (a label for the scale series).
    #[arg(long)]
    live: Option<u64>,
    /// A name for this run in the report.
    #[arg(long)]
    label: String,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DrainArgs {
    /// The sink's base URL.
    #[arg(long)]
    sink: String,
    /// Messages to wait for.
    #[arg(long)]
    expect: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Server process ids (comma-separated, one per node), for CPU and peak RSS (both
    /// summed over the nodes).
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Store label.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// A name for this run in the report.
    #[arg(long)]
    label: String,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// One result line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Record {
    /// `load`, `drain` or `fact`.
    kind: String,
    label: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    store: String,
    #[serde(default)]
    workload: String,
    #[serde(default)]
    connections: usize,
    #[serde(default)]
    duration_s: f64,
    #[serde(default)]
    rate_limit: Option<f64>,
    #[serde(default)]
    requests: u64,
    /// Replies with the expected status.
    #[serde(default)]
    ok: u64,
    /// Checks answered `valid: true`.
    #[serde(default)]
    approved: u64,
    /// Other replies by status, and transport errors as `io`.
    #[serde(default)]
    errors: BTreeMap<String, u64>,
    /// Expected replies per second.
    #[serde(default)]
    throughput: f64,
    #[serde(default)]
    p50_ms: f64,
    #[serde(default)]
    p99_ms: f64,
    #[serde(default)]
    p999_ms: f64,
    #[serde(default)]
    max_ms: f64,
    /// Server CPU in cores (CPU seconds per wall second).
    #[serde(default)]
    cpu_cores: Option<f64>,
    /// Server peak RSS during the run, MB.
    #[serde(default)]
    peak_rss_mb: Option<f64>,
    /// The load generator's own CPU in cores.
    #[serde(default)]
    loadgen_cpu_cores: Option<f64>,
    /// A connection ran out of unspent verifications before the end.
    #[serde(default)]
    pool_exhausted: bool,
    /// Live verifications in the store (scale series).
    #[serde(default)]
    live: Option<u64>,
    /// Facts: the value and its unit.
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    unit: String,
}

fn append(path: &Option<PathBuf>, record: &Record) -> anyhow::Result<()> {
    if let Some(path) = path {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(record)?)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

async fn get_json(url: &str) -> anyhow::Result<Value> {
    let (host, addr) = authority(url)?;
    let mut sender = connect(addr).await?;
    let uri: hyper::Uri = url.parse()?;
    let req = Request::get(uri.path())
        .header("host", host)
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

// ---------------------------------------------------------------------------------------
// Request generation
// ---------------------------------------------------------------------------------------

/// What one connection sends next.
enum Generator {
    Send {
        next: Arc<AtomicU64>,
        offset: u64,
    },
    Check {
        slice: Vec<Entry>,
        cursor: usize,
        n: u64,
        right_every: u64,
        wrap: bool,
    },
    CheckWrong {
        pool: Arc<Vec<Entry>>,
    },
}

impl Generator {
    /// The next request's path and body, and whether it carries the right code; `None`
    /// when the connection's verifications are all spent.
    fn next(&mut self, rng: &mut impl Rng) -> Option<(&'static str, String)> {
        match self {
            Generator::Send { next, offset } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let to = numbers::phone(numbers::SEND_OFFSET + *offset + i);
                Some(("/v1/verifications", format!(r#"{{"to":"{to}"}}"#)))
            }
            Generator::Check {
                slice,
                cursor,
                n,
                right_every,
                wrap,
            } => {
                if *cursor >= slice.len() {
                    if !*wrap || slice.is_empty() {
                        return None;
                    }
                    *cursor = 0;
                }
                *n += 1;
                let right = *right_every > 0 && *n % *right_every == 0;
                let (entry, code) = if right {
                    let e = &slice[*cursor];
                    *cursor += 1;
                    (e, e.code.clone())
                } else {
                    let e = &slice[rng.gen_range(*cursor..slice.len())];
                    (e, e.wrong_code())
                };
                Some((
                    "/v1/verifications/check",
                    format!(r#"{{"id":"{}","code":"{code}"}}"#, entry.id),
                ))
            }
            Generator::CheckWrong { pool } => {
                let e = &pool[rng.gen_range(0..pool.len())];
                Some((
                    "/v1/verifications/check",
                    format!(r#"{{"id":"{}","code":"{}"}}"#, e.id, e.wrong_code()),
                ))
            }
        }
    }
}

/// What one connection measured.
struct ConnResult {
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    io_errors: u64,
    approved: u64,
    exhausted: bool,
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    addr: SocketAddr,
    host: String,
    key: String,
    expected: u16,
    mut generator: Generator,
    start: Instant,
    deadline: Instant,
    interval: Option<Duration>,
) -> anyhow::Result<ConnResult> {
    let mut rng = StdRng::from_entropy();
    let mut out = ConnResult {
        hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
        statuses: BTreeMap::new(),
        io_errors: 0,
        approved: 0,
        exhausted: false,
    };
    let auth = format!("Bearer {key}");
    let mut sender = connect(addr).await?;
    // Paced connections start spread over one interval, so requests do not arrive in waves.
    let mut due = start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(rng.r#gen::<f64>()));
    loop {
        let scheduled = match interval {
            Some(iv) => {
                tokio::time::sleep_until(due.into()).await;
                let s = due;
                due += iv;
                s
            }
            None => Instant::now(),
        };
        if scheduled >= deadline {
            break;
        }
        let Some((path, body)) = generator.next(&mut rng) else {
            out.exhausted = true;
            break;
        };
        if sender.ready().await.is_err() {
            out.io_errors += 1;
            sender = connect(addr).await?;
        }
        let req = Request::post(path)
            .header("host", &host)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                let done = Instant::now();
                match body {
                    Ok(body) => {
                        let us = done.duration_since(scheduled).as_micros() as u64;
                        out.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                        *out.statuses.entry(status).or_default() += 1;
                        if status == expected && contains(&body, br#""valid":true"#) {
                            out.approved += 1;
                        }
                    }
                    Err(_) => out.io_errors += 1,
                }
            }
            Err(_) => {
                out.io_errors += 1;
                sender = connect(addr).await?;
            }
        }
    }
    Ok(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn run(args: RunArgs) -> anyhow::Result<Record> {
    let nodes = args
        .url
        .iter()
        .map(|u| authority(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let conns = args.connections.max(1);
    let pool: Arc<Vec<Entry>> = match (&args.pool, args.workload) {
        (Some(path), _) => Arc::new(
            pool::read(path).with_context(|| format!("reading the pool {}", path.display()))?,
        ),
        (None, Workload::Send) => Arc::new(Vec::new()),
        (None, _) => bail!("the check workloads need --pool"),
    };
    if args.workload != Workload::Send && pool.is_empty() {
        bail!("the pool is empty");
    }
    let next_number = Arc::new(AtomicU64::new(0));
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(conns as f64 / r.max(0.001)));

    let cpu0: Option<f64> = args.pid.iter().map(|p| procfs::cpu_seconds(*p)).sum();
    for pid in &args.pid {
        procfs::reset_peak_rss(*pid);
    }
    let self_pid = std::process::id();
    let self_cpu0 = procfs::cpu_seconds(self_pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);

    let mut tasks = Vec::with_capacity(conns);
    for c in 0..conns {
        let generator = match args.workload {
            Workload::Send => Generator::Send {
                next: next_number.clone(),
                offset: args.number_offset,
            },
            Workload::Check => Generator::Check {
                slice: pool.iter().skip(c).step_by(conns).cloned().collect(),
                cursor: 0,
                n: 0,
                right_every: args.right_every,
                wrap: args.wrap,
            },
            Workload::CheckWrong => Generator::CheckWrong { pool: pool.clone() },
        };
        let (host, addr) = nodes[c % nodes.len()].clone();
        tasks.push(tokio::spawn(connection(
            addr,
            host,
            args.key.clone(),
            args.workload.expected_status(),
            generator,
            start,
            deadline,
            interval,
        )));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut io_errors, mut approved, mut exhausted) = (0, 0, false);
    for t in tasks {
        let r = t.await??;
        hist.add(&r.hist)?;
        for (s, n) in r.statuses {
            *statuses.entry(s).or_default() += n;
        }
        io_errors += r.io_errors;
        approved += r.approved;
        exhausted |= r.exhausted;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cores = |c0: Option<f64>, pids: &[u32]| {
        let now: Option<f64> = pids.iter().map(|p| procfs::cpu_seconds(*p)).sum();
        c0.zip(now).map(|(a, b)| (b - a) / elapsed)
    };
    let expected = args.workload.expected_status();
    let ok = statuses.get(&expected).copied().unwrap_or(0);
    let mut errors: BTreeMap<String, u64> = statuses
        .iter()
        .filter(|(s, _)| **s != expected)
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    if io_errors > 0 {
        errors.insert("io".into(), io_errors);
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Record {
        kind: "load".into(),
        label: args.label,
        target: args.target,
        store: args.store,
        workload: args.workload.name().into(),
        connections: conns,
        duration_s: elapsed,
        rate_limit: args.rate,
        requests: hist.len(),
        ok,
        approved,
        errors,
        throughput: ok as f64 / elapsed,
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        p999_ms: ms(hist.value_at_quantile(0.999)),
        max_ms: ms(hist.max()),
        cpu_cores: (!args.pid.is_empty())
            .then(|| cores(cpu0, &args.pid))
            .flatten(),
        peak_rss_mb: (!args.pid.is_empty())
            .then(|| args.pid.iter().map(|p| procfs::peak_rss_mb(*p)).sum())
            .flatten(),
        loadgen_cpu_cores: cores(self_cpu0, &[self_pid]),
        pool_exhausted: exhausted,
        live: args.live,
        ..Record::default()
    })
}

async fn drain(args: DrainArgs) -> anyhow::Result<Record> {
    let started = Instant::now();
    let stats_url = format!("{}/stats", args.sink.trim_end_matches('/'));
    let stats = loop {
        let s = get_json(&stats_url).await?;
        let n = s["messages"].as_u64().unwrap_or(0);
        if n >= args.expect {
            break s;
        }
        if started.elapsed().as_secs_f64() > args.timeout {
            bail!(
                "the sink got {n} of {} messages in {} s",
                args.expect,
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let messages = stats["messages"].as_u64().unwrap_or(0);
    let first = stats["first_ms"].as_f64().unwrap_or(0.0);
    let last = stats["last_ms"].as_f64().unwrap_or(0.0);
    let span = ((last - first) / 1000.0).max(1e-3);
    let cpu: Option<f64> = (!args.pid.is_empty())
        .then(|| args.pid.iter().map(|p| procfs::cpu_seconds(*p)).sum())
        .flatten();
    let rss: Option<f64> = (!args.pid.is_empty())
        .then(|| args.pid.iter().map(|p| procfs::peak_rss_mb(*p)).sum())
        .flatten();
    Ok(Record {
        kind: "drain".into(),
        label: args.label,
        target: "otpd".into(),
        store: args.store,
        workload: "drain".into(),
        duration_s: span,
        requests: messages,
        ok: stats["verifications"].as_u64().unwrap_or(0),
        throughput: messages as f64 / span,
        // Whole-process CPU (start-up included) over the drain span.
        cpu_cores: cpu.map(|c| c / span),
        peak_rss_mb: rss,
        ..Record::default()
    })
}

fn print_summary(r: &Record) {
    eprintln!(
        "{:<28} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  ok {} errors {:?}{}{}{}",
        r.label,
        r.throughput,
        r.p50_ms,
        r.p99_ms,
        r.p999_ms,
        r.ok,
        r.errors,
        r.cpu_cores
            .map(|c| format!("  cpu {c:.2}"))
            .unwrap_or_default(),
        r.peak_rss_mb
            .map(|m| format!("  peak rss {m:.1} MB"))
            .unwrap_or_default(),
        if r.pool_exhausted {
            "  POOL EXHAUSTED"
        } else {
            ""
        },
    );
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

fn errors_text(r: &Record) -> String {
    if r.errors.is_empty() {
        "0".into()
    } else {
        r.errors
            .iter()
            .map(|(s, n)| format!("{n}×{s}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The ceiling run a workload is compared with: same HTTP route, unpaced.
fn ceiling_of<'a>(records: &'a [Record], workload: &str) -> Option<&'a Record> {
    let route = if workload == "send" { "send" } else { "check" };
    records
        .iter()
        .find(|r| r.kind == "load" && r.target == "ceiling" && r.workload == route)
}

fn fact(records: &[Record], label: &str) -> Option<f64> {
    records
        .iter()
        .find(|r| r.kind == "fact" && r.label == label)
        .and_then(|r| r.value)
}

fn report(input: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(input)?;
    let records: Vec<Record> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut md = String::new();
    let ratio = |r: &Record| {
        ceiling_of(&records, &r.workload)
            .filter(|c| c.throughput > 0.0)
            .map(|c| r.throughput / c.throughput)
    };

    md.push_str("| run | store | target | workload | conns | paced at | req/s | × ceiling | p50 ms | p99 ms | p99.9 ms | errors | server CPU (cores) | peak RSS MB |\n");
    md.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
    for r in records
        .iter()
        .filter(|r| r.kind == "load" && r.live.is_none())
    {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
            r.label,
            if r.target == "ceiling" {
                "–"
            } else {
                &r.store
            },
            r.target,
            r.workload,
            r.connections,
            opt(r.rate_limit, 0),
            r.throughput,
            opt(ratio(r), 2),
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            errors_text(r)
                + if r.pool_exhausted {
                    " (pool exhausted)"
                } else {
                    ""
                },
            opt(r.cpu_cores, 2),
            opt(r.peak_rss_mb, 1),
        ));
    }

    let drains: Vec<&Record> = records.iter().filter(|r| r.kind == "drain").collect();
    if !drains.is_empty() {
        md.push_str("\n| delivery drain | store | messages | span s | messages/s | server CPU (cores) | peak RSS MB |\n|---|---|---:|---:|---:|---:|---:|\n");
        for r in drains {
            md.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.0} | {} | {} |\n",
                r.label,
                r.store,
                r.requests,
                r.duration_s,
                r.throughput,
                opt(r.cpu_cores, 2),
                opt(r.peak_rss_mb, 1),
            ));
        }
    }

    let scale: Vec<&Record> = records
        .iter()
        .filter(|r| r.kind == "load" && r.live.is_some())
        .collect();
    // Each store's series is compared with its own smallest point.
    let base_of = |store: &str| {
        scale
            .iter()
            .filter(|r| r.store == store)
            .min_by_key(|r| r.live)
            .map(|r| r.throughput)
            .filter(|t| *t > 0.0)
    };
    let base = base_of("sqlite");
    if !scale.is_empty() {
        md.push_str("\n| scale: live verifications | store | workload | req/s | × smallest | × ceiling | p50 ms | p99 ms | p99.9 ms | errors | bytes / live verification |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n");
        for r in &scale {
            let live = r.live.unwrap_or(0);
            md.push_str(&format!(
                "| {} | {} | {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                live,
                r.store,
                r.workload,
                r.throughput,
                opt(base_of(&r.store).map(|b| r.throughput / b), 2),
                opt(ratio(r), 2),
                r.p50_ms,
                r.p99_ms,
                r.p999_ms,
                errors_text(r),
                opt(
                    fact(
                        &records,
                        &if r.store == "sqlite" {
                            format!("bytes_per_verification_{live}")
                        } else {
                            format!("redis_bytes_per_verification_{live}")
                        }
                    ),
                    0
                ),
            ));
        }
    }

    let facts: Vec<&Record> = records.iter().filter(|r| r.kind == "fact").collect();
    if !facts.is_empty() {
        md.push_str("\n| fact | value | unit |\n|---|---:|---|\n");
        for r in facts {
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                r.label,
                opt(r.value, 2),
                r.unit
            ));
        }
    }

    // The targets of issue #9, on SQLite.
    let load = |label: &str| {
        records
            .iter()
            .find(|r| r.kind == "load" && r.label == label)
    };
    let mut targets: Vec<(String, String, String)> = Vec::new();
    let mut target =
        |name: &str, value: Option<f64>, fmt: &dyn Fn(f64) -> String, ok: &dyn Fn(f64) -> bool| {
            let (v, verdict) = match value {
                Some(v) => (fmt(v), if ok(v) { "met" } else { "NOT met" }),
                None => ("–".into(), "not measured"),
            };
            targets.push((name.into(), v, verdict.into()));
        };
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    let ms = |v: f64| format!("{v:.2} ms");
    target(
        "1. check ≥ 50% of the ceiling (SQLite)",
        load("check").and_then(ratio),
        &pct,
        &|v| v >= 0.5,
    );
    target(
        "2. send ≥ 30% of the ceiling (SQLite)",
        load("send").and_then(ratio),
        &pct,
        &|v| v >= 0.3,
    );
    target(
        "3a. check p99 ≤ 5 ms at half of the maximum load",
        load("check-half").map(|r| r.p99_ms),
        &ms,
        &|v| v <= 5.0,
    );
    target(
        "3b. send p99 ≤ 5 ms at half of the maximum load",
        load("send-half").map(|r| r.p99_ms),
        &ms,
        &|v| v <= 5.0,
    );
    let largest = scale
        .iter()
        .filter(|r| r.store == "sqlite")
        .max_by_key(|r| r.live);
    target(
        &format!(
            "4. throughput at {} live ≥ 85% of that at {}",
            largest.and_then(|r| r.live).unwrap_or(0),
            scale
                .iter()
                .filter(|r| r.store == "sqlite")
                .filter_map(|r| r.live)
                .min()
                .unwrap_or(0)
        ),
        largest.zip(base).map(|(r, b)| r.throughput / b),
        &pct,
        &|v| v >= 0.85,
    );
    target(
        "5. idle RSS ≤ 40 MB",
        fact(&records, "idle_rss_mb"),
        &|v| format!("{v:.1} MB"),
        &|v| v <= 40.0,
    );
    target(
        "8. ≥ 1,000 submit_sm/s on one SMPP bind",
        fact(&records, "smpp_submit_per_s"),
        &|v| format!("{v:.0} submit_sm/s"),
        &|v| v >= 1000.0,
    );
    let redis_bytes = records
        .iter()
        .filter(|r| r.kind == "fact" && r.label.starts_with("redis_bytes_per_verification_"))
        .max_by_key(|r| {
            r.label
                .rsplit('_')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .and_then(|r| r.value);
    target(
        "6. ≤ 300 bytes of Redis memory per live verification",
        redis_bytes,
        &|v| format!("{v:.0} B"),
        &|v| v <= 300.0,
    );
    target(
        "7. ≤ 2 Redis round trips per check",
        fact(&records, "redis_round_trips_per_check"),
        &|v| format!("{v:.2}"),
        &|v| v <= 2.0,
    );
    md.push_str("\n| target | measured | verdict |\n|---|---:|---|\n");
    for (name, v, verdict) in targets {
        md.push_str(&format!("| {name} | {v} | {verdict} |\n"));
    }
    Ok(md)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run(args) => {
            let out = args.json_out.clone();
            let r = run(args).await?;
            print_summary(&r);
            append(&out, &r)?;
        }
        Cmd::Drain(args) => {
            let out = args.json_out.clone();
            let r = drain(args).await?;
            eprintln!(
                "{:<28} {} messages in {:.2} s: {:.0} messages/s",
                r.label, r.requests, r.duration_s, r.throughput
            );
            append(&out, &r)?;
        }
        Cmd::Report { input } => print!("{}", report(&input)?),
    }
    Ok(())
}

//! submit_sm throughput on one SMPP bind (issue 9, target 8: ≥ 1,000 submit_sm/s).
//!
//! Starts the local SMSC (the npm `smpp` server, `crates/otpd/tests/peers/smpp/smsc.js`,
//! recording nothing), binds otpd's own `smpp` provider to it (the adapter the server
//! runs: one bind_transceiver session, its send window, its pacer set out of the way),
//! and sends short GSM-7 messages through `Provider::send` from enough concurrent senders
//! to keep the window full, once per window size. Prints a JSON line and a table row per
//! window, the CPU seconds of otpd's side (this process) and of the node SMSC (to tell
//! which side is the bottleneck), and appends `fact` lines to `--json-out` for
//! `bench/run.sh`'s report: `smpp_submit_per_s_window_N` and the best, `smpp_submit_per_s`.
//!
//!   smpp-submit [--messages 20000] [--windows 1,10,50,100] [--receipts] [--json-out FILE]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Parser;
use hdrhistogram::Histogram;
use otpd_bench::procfs;
use otpd_core::channel::Channel;
use otpd_delivery::ProviderConfig;
use otpd_delivery::provider::{OutboundMessage, ParsedReceipt, Provider, ReceiptSink};
use otpd_delivery::providers::smpp::SmppProvider;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Messages sent per window size.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Window sizes to measure, comma-separated.
    #[arg(long, default_value = "1,10,50,100", value_delimiter = ',')]
    windows: Vec<u32>,
    /// Let the SMSC send a delivery receipt per message (counted, not stored).
    #[arg(long)]
    receipts: bool,
    /// The folder of smsc.js with `node_modules` installed.
    #[arg(long, default_value = "crates/otpd/tests/peers/smpp")]
    peer_dir: PathBuf,
    /// Seconds between enquire_link keep-alives of the session.
    #[arg(long, default_value_t = 30)]
    enquire_link: u64,
    /// Append `fact` JSON lines here.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// Counts receipts instead of storing them.
#[derive(Default)]
struct CountingSink(AtomicU64);

#[async_trait]
impl ReceiptSink for CountingSink {
    async fn apply(&self, _provider: &str, _receipt: &ParsedReceipt) -> Result<bool, String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

/// One window size's result.
struct Run {
    window: u32,
    messages: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    otpd_cpu: f64,
    smsc_cpu: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut peer = Command::new("node");
    peer.arg(args.peer_dir.join("smsc.js"))
        .args(["--port", &port.to_string(), "--system-id", "bench"])
        .args(["--password", "bench", "--no-log"]);
    if !args.receipts {
        peer.arg("--no-receipts");
    }
    let mut smsc = peer.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let smsc_pid = smsc.id().unwrap_or_default();
    let mut lines = BufReader::new(smsc.stdout.take().expect("piped")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await??;
    anyhow::ensure!(
        ready.is_some_and(|l| l.starts_with("READY")),
        "smsc.js did not start"
    );

    let mut runs = Vec::new();
    for &window in &args.windows {
        runs.push(measure(port, window, &args, smsc_pid).await?);
    }
    let _ = smsc.kill().await;

    println!(
        "| window | messages | seconds | submit_sm/s | p50 ms | p99 ms | otpd CPU s | SMSC (node) CPU s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut facts = Vec::new();
    for r in &runs {
        let rate = r.messages as f64 / r.seconds;
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.window, r.messages, r.seconds, rate, r.p50_ms, r.p99_ms, r.otpd_cpu, r.smsc_cpu
        );
        facts.push(serde_json::json!({"kind": "fact", "label": format!("smpp_submit_per_s_window_{}", r.window),
            "value": rate.round(), "unit": format!("submit_sm/s on one bind (p99 {:.2} ms; CPU s otpd {:.2}, node SMSC {:.2})", r.p99_ms, r.otpd_cpu, r.smsc_cpu)}));
    }
    let best = runs
        .iter()
        .map(|r| r.messages as f64 / r.seconds)
        .fold(0.0, f64::max);
    facts.push(
        serde_json::json!({"kind": "fact", "label": "smpp_submit_per_s", "value": best.round(),
        "unit": "submit_sm/s, best window, one bind to the local npm smpp server"}),
    );
    if let Some(path) = &args.json_out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for fact in &facts {
            writeln!(f, "{fact}")?;
        }
    }
    Ok(())
}

/// Binds a fresh provider with `window`, sends `args.messages`, and measures.
async fn measure(port: u16, window: u32, args: &Args, smsc_pid: u32) -> anyhow::Result<Run> {
    let (messages, receipts, enquire_link) = (args.messages, args.receipts, args.enquire_link);
    let config = ProviderConfig {
        name: "bench".into(),
        kind: "smpp".into(),
        channels: vec![Channel::Sms],
        timeout_ms: 10_000,
        host: Some("127.0.0.1".into()),
        port: Some(port),
        system_id: Some("bench".into()),
        password: Some(SecretString::from("bench".to_string())),
        from: Some("+15005550006".into()),
        window_size: Some(window),
        max_per_second: Some(1_000_000), // the window alone limits
        enquire_link_seconds: Some(enquire_link),
        ..Default::default()
    };
    let provider = Arc::new(SmppProvider::new(&config).map_err(anyhow::Error::msg)?);
    let sink = Arc::new(CountingSink::default());
    let stop = CancellationToken::new();
    provider.start(sink.clone(), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !provider.is_bound() {
        anyhow::ensure!(Instant::now() < deadline, "no bind");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Enough senders to keep the window full (each waits for its response).
    let senders = u64::from(window) * 2;
    let next = Arc::new(AtomicU64::new(0));
    let me = std::process::id();
    let (cpu0, smsc0) = (
        procfs::cpu_seconds(me).unwrap_or(0.0),
        procfs::cpu_seconds(smsc_pid).unwrap_or(0.0),
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let provider = provider.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    return Ok::<_, String>(hist);
                }
                let m = message(n);
                let t = Instant::now();
                provider.send(&m).await.map_err(|e| e.to_string())?;
                let _ = hist.record(t.elapsed().as_micros() as u64);
            }
        });
    }
    let mut hist = Histogram::<u64>::new(3)?;
    while let Some(done) = tasks.join_next().await {
        hist.add(done?.map_err(anyhow::Error::msg)?)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let otpd_cpu = procfs::cpu_seconds(me).unwrap_or(0.0) - cpu0;
    let smsc_cpu = procfs::cpu_seconds(smsc_pid).unwrap_or(0.0) - smsc0;
    if receipts {
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!(
            "window {window}: {} receipts received",
            sink.0.swap(0, Ordering::Relaxed)
        );
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let run = Run {
        window,
        messages,
        seconds,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        otpd_cpu,
        smsc_cpu,
    };
    println!(
        "{}",
        serde_json::json!({"window": window, "messages": messages, "seconds": seconds,
            "submit_sm_per_s": messages as f64 / seconds, "p50_ms": run.p50_ms, "p99_ms": run.p99_ms,
            "otpd_cpu_s": otpd_cpu, "smsc_cpu_s": smsc_cpu})
    );
    Ok(run)
}

/// A short GSM-7 message (one segment) to a distinct number.
fn message(n: u64) -> OutboundMessage {
    OutboundMessage {
        message_id: format!("dlv_bench{n}"),
        verification_id: format!("ver_bench{n}"),
        to: format!("+1415{:07}", n % 10_000_000),
        channel: Channel::Sms,
        subject: None,
        body: zeroize::Zeroizing::new(format!(
            "Your Bench code is {:06}. It expires in 10 minutes.",
            n % 1_000_000
        )),
        html: None,
        code: zeroize::Zeroizing::new(format!("{:06}", n % 1_000_000)),
        locale: "en".into(),
        receipt_wait: std::time::Duration::from_secs(30),
        call_script: None,
        messaging_service_sid: None,
    }
}

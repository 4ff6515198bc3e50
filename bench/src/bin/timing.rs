//! Timing test of the code comparison: does checking a wrong code take measurably longer
//! when it shares more leading digits with the right one? (It must not: the stored form
//! is an HMAC of the code, compared in constant time.)
//!
//! Two classes of wrong codes: sharing 0 leading digits with the right code (every digit
//! differs) and sharing 5 (only the last differs). Each round times one check of each
//! class in random order (interleaved, so drift and noise from other processes fall on
//! both alike); Welch's t-test compares the two samples. The test passes when p > 0.01.
//! With `--attempts 2`, a second independent run is made only if the first fails, and the
//! verdict is the last run's (under no difference both fail by chance once in 10,000).
//!
//! Two probes:
//! - in process (default): one `CodeHasher::matches` call, the comparison the store runs
//!   inside its check;
//! - over HTTP (`--url`, `--key`, `--pool`): the whole check path of a running otpd —
//!   `POST /v1/verifications/check` by id on one keep-alive connection, timed from the
//!   request's first byte to the reply's last, round-robin over the seeded verifications
//!   of the pool (none is ever approved, so each keeps its code).
//!
//! Usage: `timing [--samples 20000] [--attempts 2] [--json-out FILE]
//! [--url http://127.0.0.1:8080 --key otpd_live_… --pool FILE]`.

use std::hint::black_box;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use otpd_bench::http::{authority, connect};
use otpd_bench::pool::{self, Entry};
use otpd_bench::stats::{mean_var, welch};
use otpd_core::code::OtpCode;
use otpd_core::secret::ServerSecret;
use rand::Rng;
use serde_json::json;

/// Significance level: a smaller p means a measurable difference.
const ALPHA: f64 = 0.01;
/// Leading digits the second class shares with the right code.
const SHARED: usize = 5;

/// Command line.
#[derive(Parser)]
struct Args {
    /// Samples per class (at least 10,000 for the issue's test).
    #[arg(long, default_value_t = 20_000)]
    samples: usize,
    /// Independent runs allowed before failing.
    #[arg(long, default_value_t = 1)]
    attempts: u32,
    /// Append the result as JSON-lines facts to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Time checks through a running otpd at this base URL instead of in process.
    #[arg(long, requires_all = ["key", "pool"])]
    url: Option<String>,
    /// API key for `--url`.
    #[arg(long)]
    key: Option<String>,
    /// Seeded verifications (`id code` lines) for `--url`; none may be spent.
    #[arg(long)]
    pool: Option<PathBuf>,
}

/// What one sample times.
enum Probe {
    /// `CodeHasher::matches` in this process.
    InProcess {
        secret: ServerSecret,
        id: &'static str,
        stored: Vec<u8>,
        codes: [OtpCode; 2],
    },
    /// A check through otpd's HTTP API.
    Http {
        sender: SendRequest<Full<Bytes>>,
        addr: SocketAddr,
        host: String,
        auth: String,
        pool: Vec<Entry>,
        next: usize,
    },
}

impl Probe {
    fn in_process() -> anyhow::Result<Probe> {
        let secret = ServerSecret::from_text(&ServerSecret::generate_text())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let id = "ver_0123456789abcdef0123456789abcdef";
        let right = Entry {
            id: id.into(),
            code: "123456".into(),
        };
        let stored = secret.hasher().hash(id, &OtpCode::parse(&right.code)?);
        let codes = [
            OtpCode::parse(&right.wrong_code_sharing(0))?,
            OtpCode::parse(&right.wrong_code_sharing(SHARED))?,
        ];
        Ok(Probe::InProcess {
            secret,
            id,
            stored,
            codes,
        })
    }

    async fn http(url: &str, key: &str, pool: &Path) -> anyhow::Result<Probe> {
        let (host, addr) = authority(url)?;
        let pool = pool::read(pool).with_context(|| format!("reading {}", pool.display()))?;
        if pool.is_empty() {
            bail!("the pool is empty");
        }
        Ok(Probe::Http {
            sender: connect(addr).await?,
            addr,
            host,
            auth: format!("Bearer {key}"),
            pool,
            next: 0,
        })
    }

    /// Times one wrong check of `class` (0: no shared digit, 1: `SHARED` shared), in ns.
    async fn sample(&mut self, class: usize) -> anyhow::Result<f64> {
        match self {
            Probe::InProcess {
                secret,
                id,
                stored,
                codes,
            } => {
                let t = Instant::now();
                let r = secret.hasher().matches(
                    black_box(id),
                    black_box(&codes[class]),
                    black_box(stored),
                );
                let ns = t.elapsed().as_nanos() as f64;
                assert!(!black_box(r), "a wrong code matched");
                Ok(ns)
            }
            Probe::Http {
                sender,
                addr,
                host,
                auth,
                pool,
                next,
            } => {
                let entry = &pool[*next % pool.len()];
                *next += 1;
                let code = entry.wrong_code_sharing(if class == 0 { 0 } else { SHARED });
                let body = json!({"id": entry.id, "code": code}).to_string();
                if sender.ready().await.is_err() {
                    *sender = connect(*addr).await?;
                }
                let req = Request::post("/v1/verifications/check")
                    .header("host", host.as_str())
                    .header("authorization", auth.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))?;
                let t = Instant::now();
                let resp = sender.send_request(req).await?;
                let status = resp.status().as_u16();
                let reply = resp.into_body().collect().await?.to_bytes();
                let ns = t.elapsed().as_nanos() as f64;
                let wrong = br#""valid":false"#;
                if status != 200 || !reply.windows(wrong.len()).any(|w| w == wrong) {
                    bail!(
                        "a wrong check was not answered 200 valid:false but {status}: {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
                Ok(ns)
            }
        }
    }

    fn fact_prefix(&self) -> &'static str {
        match self {
            Probe::InProcess { .. } => "timing",
            Probe::Http { .. } => "timing_http",
        }
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut probe = match (&args.url, &args.key, &args.pool) {
        (Some(url), Some(key), Some(pool)) => Probe::http(url, key, pool).await?,
        _ => Probe::in_process()?,
    };
    let mut rng = rand::thread_rng();

    // Warm caches, the branch predictor and the connection before measuring.
    for _ in 0..2_000 {
        probe.sample(0).await?;
        probe.sample(1).await?;
    }

    let mut verdict = false;
    let mut last = None;
    for attempt in 1..=args.attempts.max(1) {
        let mut a = Vec::with_capacity(args.samples);
        let mut b = Vec::with_capacity(args.samples);
        for _ in 0..args.samples {
            if rng.r#gen::<bool>() {
                a.push(probe.sample(0).await?);
                b.push(probe.sample(1).await?);
            } else {
                b.push(probe.sample(1).await?);
                a.push(probe.sample(0).await?);
            }
        }
        let w = welch(&a, &b);
        let (ma, va) = mean_var(&a);
        let (mb, vb) = mean_var(&b);
        // The same test without the slowest 1% of the pooled samples (preemptions and
        // interrupts, which dominate the variance and so hide small differences): more
        // power, reported alongside; the verdict is the issue's test on all samples.
        let mut pooled: Vec<f64> = a.iter().chain(&b).copied().collect();
        pooled.sort_by(|x, y| x.total_cmp(y));
        let cut = pooled[pooled.len() * 99 / 100];
        let trim = |xs: &[f64]| {
            xs.iter()
                .copied()
                .filter(|x| *x <= cut)
                .collect::<Vec<f64>>()
        };
        let wt = welch(&trim(&a), &trim(&b));
        println!(
            "{} attempt {attempt}: {} samples each; 0 shared digits: mean {ma:.1} ns (sd {:.1}, median {:.0}); \
             5 shared digits: mean {mb:.1} ns (sd {:.1}, median {:.0}); Welch t = {:.3}, df = {:.0}, p = {:.4} → {} \
             (slowest 1% cut at {cut:.0} ns: t = {:.3}, p = {:.4})",
            probe.fact_prefix(),
            args.samples,
            va.sqrt(),
            median(&a),
            vb.sqrt(),
            median(&b),
            w.t,
            w.df,
            w.p,
            if w.p > ALPHA {
                "no measurable difference"
            } else {
                "DIFFERENCE"
            },
            wt.t,
            wt.p,
        );
        verdict = w.p > ALPHA;
        last = Some((w, wt, ma, mb, attempt));
        if verdict {
            break;
        }
    }
    if let (Some(path), Some((w, wt, ma, mb, attempts))) = (&args.json_out, last) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for (label, value, unit) in [
            ("_samples_per_class", args.samples as f64, "samples"),
            ("_mean_ns_0_shared_digits", ma, "ns"),
            ("_mean_ns_5_shared_digits", mb, "ns"),
            ("_welch_t", w.t, ""),
            ("_welch_p", w.p, "(pass: > 0.01)"),
            (
                "_welch_p_without_slowest_1pct",
                wt.p,
                "(reported, not the verdict)",
            ),
            ("_attempts", f64::from(attempts), "runs"),
        ] {
            let label = format!("{}{label}", probe.fact_prefix());
            writeln!(
                f,
                "{}",
                json!({"kind": "fact", "label": label, "value": value, "unit": unit})
            )?;
        }
    }
    if !verdict {
        anyhow::bail!("wrong codes sharing 0 vs 5 leading digits differ in timing (p ≤ {ALPHA})");
    }
    Ok(())
}

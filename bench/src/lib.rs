//! otpd's benchmark tools (see `bench/run.sh`, `bench/pumping` and `bench/RESULTS.md`).
//!
//! The load benchmarks share:
//! - [`numbers`]: the deterministic space of valid phone numbers the seeder and the load
//!   generator draw from, so that seeded and freshly sent recipients never collide.
//! - [`pool`]: the file of `(verification id, code)` pairs the seeder writes and the
//!   check workload reads.
//! - [`procfs`]: CPU time and memory of a process, read from `/proc`.
//! - [`stats`]: Welch's t-test, for the timing test.
//! - [`http`]: keep-alive HTTP/1.1 connections for the load generator and the timing test.
//!
//! The SMS-pumping simulator: a seeded trace generator ([`generate`]) and a replayer
//! ([`replay`]) that drives the very
//! guard code the server runs (`otpd_core::guards`) with the trace's clock.
//!
//! A trace is JSON lines: `{"t": seconds, "to": "+…", "client_ip": "…", "verify_after":
//! seconds or null, "label": "legit" | "attack"}` (sorted by `t`). The label is for
//! scoring only: the replayer never shows it to a guard.

pub mod generate;
pub mod replay;

use serde::{Deserialize, Serialize};

/// One send of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Seconds from the trace's start.
    pub t: f64,
    /// The number, as an application would pass it.
    pub to: String,
    /// The end user's IP.
    pub client_ip: String,
    /// Seconds after the send at which the user types the right code; `null`: never.
    pub verify_after: Option<f64>,
    /// `legit` or `attack` (scoring only).
    pub label: String,
    /// Which scenario produced it (scoring only; optional in traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

/// A small deterministic PRNG (SplitMix64): the same seed gives the same trace on every
/// machine, without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `n` random decimal digits.
    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub mod numbers {
    //! Valid US numbers `+1 415 NXX XXXX` (exchange 200–999), indexed from 0.

    /// How many distinct numbers [`phone`] can make.
    pub const SPACE: u64 = 8_000_000;
    /// First index of the numbers the `send` workload uses: above every seeded number
    /// (the seeder stays below it), so a send is never a resend of a seeded verification.
    pub const SEND_OFFSET: u64 = 4_000_000;

    /// The `i`-th number of the space (wrapping), in E.164.
    pub fn phone(i: u64) -> String {
        let i = i % SPACE;
        format!("+1415{:03}{:04}", 200 + i / 10_000, i % 10_000)
    }
}

pub mod pool {
    //! The check pool: one `id code` line per seeded verification.

    use std::io::{BufRead, BufReader, BufWriter, Write};
    use std::path::Path;

    /// A seeded verification whose code is known.
    #[derive(Clone, Debug)]
    pub struct Entry {
        /// `ver_…`
        pub id: String,
        /// The right code.
        pub code: String,
    }

    impl Entry {
        /// A wrong code of the same length (every digit shifted by one).
        pub fn wrong_code(&self) -> String {
            self.wrong_code_sharing(0)
        }

        /// A wrong code that shares its first `shared` digits with the right one (at most
        /// all but the last); the rest are shifted by one.
        pub fn wrong_code_sharing(&self, shared: usize) -> String {
            let keep = shared.min(self.code.len().saturating_sub(1));
            self.code
                .bytes()
                .enumerate()
                .map(|(i, b)| {
                    if i < keep {
                        char::from(b)
                    } else {
                        char::from(b'0' + (b - b'0' + 1) % 10)
                    }
                })
                .collect()
        }
    }

    /// Writes the pool file.
    pub fn write(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
        let mut out = BufWriter::new(std::fs::File::create(path)?);
        for e in entries {
            writeln!(out, "{} {}", e.id, e.code)?;
        }
        out.flush()
    }

    /// Reads the pool file.
    pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
        let file = BufReader::new(std::fs::File::open(path)?);
        let mut out = Vec::new();
        for line in file.lines() {
            let line = line?;
            if let Some((id, code)) = line.split_once(' ') {
                out.push(Entry {
                    id: id.to_string(),
                    code: code.trim().to_string(),
                });
            }
        }
        Ok(out)
    }
}

pub mod procfs {
    //! A process's CPU time and memory, from `/proc/PID/stat` and `/proc/PID/status`.

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(pid: u32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces; fields after its ')' are fixed.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some((utime + stime) / ticks.max(1.0))
    }

    /// A `Vm…` line of `/proc/PID/status`, in kB.
    fn status_kb(pid: u32, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Resident set size now, in MB.
    pub fn rss_mb(pid: u32) -> Option<f64> {
        status_kb(pid, "VmRSS:").map(|kb| kb as f64 / 1024.0)
    }

    /// Peak resident set size (`VmHWM`), in MB.
    pub fn peak_rss_mb(pid: u32) -> Option<f64> {
        status_kb(pid, "VmHWM:").map(|kb| kb as f64 / 1024.0)
    }

    /// Resets the peak RSS so that the next [`peak_rss_mb`] covers only what follows
    /// (`echo 5 > /proc/PID/clear_refs`; needs to own the process or be root).
    pub fn reset_peak_rss(pid: u32) -> bool {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
    }
}

pub mod stats {
    //! Welch's unequal-variances t-test.

    use statrs::distribution::{ContinuousCDF, StudentsT};

    /// Mean and unbiased variance.
    pub fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    /// The result of a Welch test.
    #[derive(Clone, Copy, Debug)]
    pub struct Welch {
        /// The t statistic.
        pub t: f64,
        /// Welch–Satterthwaite degrees of freedom.
        pub df: f64,
        /// Two-sided p-value.
        pub p: f64,
    }

    /// Welch's t-test of equal means for two samples (each of at least 2 values).
    pub fn welch(a: &[f64], b: &[f64]) -> Welch {
        let (ma, va) = mean_var(a);
        let (mb, vb) = mean_var(b);
        let (na, nb) = (a.len() as f64, b.len() as f64);
        let (sa, sb) = (va / na, vb / nb);
        let se = (sa + sb).sqrt();
        if se == 0.0 {
            // Identical constant samples: no evidence of a difference.
            return Welch {
                t: 0.0,
                df: na + nb - 2.0,
                p: 1.0,
            };
        }
        let t = (ma - mb) / se;
        let df = (sa + sb).powi(2) / (sa.powi(2) / (na - 1.0) + sb.powi(2) / (nb - 1.0));
        let dist = StudentsT::new(0.0, 1.0, df).expect("positive degrees of freedom");
        let p = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
        Welch { t, df, p }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_valid_distinct_and_in_e164() {
        let mut seen = std::collections::HashSet::new();
        for i in [
            0,
            1,
            9_999,
            10_000,
            123_456,
            999_999,
            1_000_000,
            numbers::SEND_OFFSET,
            numbers::SPACE - 1,
        ] {
            let n = numbers::phone(i);
            let parsed = otpd_core::recipient::PhoneNumber::parse(&n, None)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(parsed.e164(), n);
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn wrong_codes_differ_in_every_digit() {
        let e = pool::Entry {
            id: "ver_1".into(),
            code: "091239".into(),
        };
        assert_eq!(e.wrong_code(), "102340");
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Equal samples: p = 1. Clearly shifted samples: p ≈ 0.
        let a: Vec<f64> = (0..100).map(|i| f64::from(i % 10)).collect();
        assert!(stats::welch(&a, &a).p > 0.99);
        let b: Vec<f64> = a.iter().map(|x| x + 5.0).collect();
        assert!(stats::welch(&a, &b).p < 1e-6);
        // Known value: t = -2.0 with large df gives p ≈ 0.0455.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [3.0, 4.0, 5.0, 6.0, 7.0];
        let w = stats::welch(&x, &y);
        assert!((w.t + 2.0).abs() < 1e-9, "{w:?}");
        assert!((w.df - 8.0).abs() < 1e-9, "{w:?}");
        // Two-sided p of t = 2 with 8 df is 0.0805.
        assert!((w.p - 0.0805).abs() < 1e-3, "{w:?}");
    }
}

pub mod http {
    //! Keep-alive HTTP/1.1 connections (hyper's low-level client: one connection, one
    //! request in flight, no pool in between that would blur the timing).

    use std::net::SocketAddr;

    use anyhow::Context;
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::client::conn::http1::SendRequest;
    use hyper_util::rt::TokioIo;

    /// Host and port of an `http://` URL.
    pub fn authority(url: &str) -> anyhow::Result<(String, SocketAddr)> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("URL {url}"))?;
        let auth = uri.authority().context("URL without host")?.to_string();
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&auth)?
            .next()
            .context("unresolvable host")?;
        Ok((auth, addr))
    }

    /// Opens one connection (TCP_NODELAY) and drives it in the background.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

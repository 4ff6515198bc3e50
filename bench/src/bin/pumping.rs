//! `pumping --trace FILE [--check]`: replays a trace through otpd's guards and prints a
//! report, then the JSON summary as the last line. With `--check`, exits 1 when fewer than
//! 99% of attack sends or more than 0.5% of legitimate sends are blocked.
//!
//! `pumping --generate --seed N [--hours H] [--users U] --out FILE` writes a trace.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;

use otpd_bench::TraceEvent;
use otpd_bench::generate::{Params, trace};
use otpd_bench::replay::{replay, settings};

/// The targets of issue 4.
const MIN_ATTACK_BLOCKED_PERCENT: f64 = 99.0;
const MAX_LEGIT_BLOCKED_PERCENT: f64 = 0.5;

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
    let summary = replay(&events, &settings());
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
    let ok = attack >= MIN_ATTACK_BLOCKED_PERCENT && legit <= MAX_LEGIT_BLOCKED_PERCENT;
    if args.iter().any(|a| a == "--check") && !ok {
        eprintln!(
            "targets missed: need >= {MIN_ATTACK_BLOCKED_PERCENT}% attack and <= {MAX_LEGIT_BLOCKED_PERCENT}% legit blocked"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …, the names every Prometheus
//! client library uses), read from `/proc/self` at each scrape. Elsewhere than Linux none
//! is reported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second of `/proc/self/stat`'s CPU times: Linux reports them in
/// `USER_HZ`, which its ABI fixes at 100 on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says about this process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: f64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: f64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The soft limit on them.
    pub max_fds: i64,
    /// Start time, in Unix seconds.
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads `/proc/self` (and `/proc/stat` for the boot time); `None` where there is no
    /// `/proc`.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
        Self::parse(&stat, &status, &limits, &boot, open_fds)
    }

    /// The figures of the `/proc` files' texts.
    pub fn parse(
        stat: &str,
        status: &str,
        limits: &str,
        proc_stat: &str,
        open_fds: i64,
    ) -> Option<ProcessStats> {
        // The command name (field 2) is in parentheses and may hold spaces: count the
        // fields from after its closing one (field 3 is then the first).
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let cpu_seconds = (field(14)? + field(15)?) / TICKS_PER_SECOND;
        let boot_time = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        let started_ticks = field(22)?;
        let start_time_seconds = boot_time.map_or(0.0, |b| b + started_ticks / TICKS_PER_SECOND);
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |k| k * 1024.0)
        };
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        Some(ProcessStats {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds,
            max_fds,
            start_time_seconds,
        })
    }
}

/// Encodes [`ProcessStats::read`] at each scrape.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory",
                "Resident memory size",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                s.virtual_bytes,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Bytes),
                gauge.metric_type(),
            )?)?;
        }
        for (name, help, value) in [
            ("process_open_fds", "Open file descriptors", s.open_fds),
            (
                "process_max_fds",
                "The most file descriptors the process may open",
                s.max_fds,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let start = ConstGauge::new(s.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_with_a_command_name_holding_spaces() {
        let stat = "4242 (otpd (worker) 1) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    250 130 0 0 20 0 12 0 5000 123456789 2048 18446744073709551615";
        let status = "Name:\totpd\nVmSize:\t  200000 kB\nVmRSS:\t   12345 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let s =
            ProcessStats::parse(stat, status, limits, "cpu 1 2 3\nbtime 1700000000\n", 17).unwrap();
        assert_eq!(s.cpu_seconds, 3.8);
        assert_eq!(s.resident_bytes, 12345.0 * 1024.0);
        assert_eq!(s.virtual_bytes, 200000.0 * 1024.0);
        assert_eq!(s.open_fds, 17);
        assert_eq!(s.max_fds, 1024);
        assert_eq!(s.start_time_seconds, 1_700_000_050.0);
        assert!(ProcessStats::parse("garbage", "", "", "", 0).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        let s = ProcessStats::read().expect("/proc on Linux");
        assert!(
            s.resident_bytes > 0.0 && s.open_fds > 0 && s.max_fds > 0,
            "{s:?}"
        );
        assert!(s.start_time_seconds > 1_600_000_000.0, "{s:?}");
    }
}

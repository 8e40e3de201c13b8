//! What every binary's `/metrics` has besides its own metrics: build information and the usual
//! process metrics, under the names Prometheus's own clients use, so that standard dashboards
//! and alerts work. The process figures come from `/proc/self` at each scrape (Linux); where
//! that cannot be read they stay 0.

use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of OpenMetrics text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Clock ticks per second of `/proc/self/stat`'s CPU times (`USER_HZ`: 100 on every Linux
/// architecture this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    binary: String,
    version: String,
}

/// `xroad_build_info`, `process_start_time_seconds`, `process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`.
#[derive(Debug)]
pub struct ProcessMetrics {
    start_time: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
}

impl ProcessMetrics {
    /// Registers them in `registry` for `binary` at `version` (its `CARGO_PKG_VERSION`). The
    /// start time is when this is called, which a binary does as it starts.
    pub fn register(registry: &mut Registry, binary: &str, version: &str) -> ProcessMetrics {
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                binary: binary.to_owned(),
                version: version.to_owned(),
            })
            .set(1);
        registry.register(
            "xroad_build_info",
            "Always 1; the labels say which binary and version this is.",
            build,
        );
        let metrics = ProcessMetrics {
            start_time: Gauge::default(),
            cpu_seconds: Gauge::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        metrics.start_time.set(now);
        registry.register(
            "process_start_time_seconds",
            "When the process started, in Unix seconds.",
            metrics.start_time.clone(),
        );
        // A counter in meaning; a gauge here because it is read, not counted, at each scrape.
        registry.register(
            "process_cpu_seconds",
            "CPU time the process has used, user and system, in seconds.",
            metrics.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            metrics.resident_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the process (connections included).",
            metrics.open_fds.clone(),
        );
        metrics
    }

    /// Reads the process figures now; call it before rendering.
    pub fn refresh(&self) {
        if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_seconds(&stat))
        {
            self.cpu_seconds.set(cpu);
        }
        if let Some(kib) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| resident_kib(&status))
        {
            self.resident_bytes
                .set(i64::try_from(kib.saturating_mul(1024)).unwrap_or(i64::MAX));
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(fds.count()).unwrap_or(i64::MAX));
        }
    }
}

/// User plus system CPU time from `/proc/self/stat` (fields 14 and 15, counted after the
/// command name, which may hold spaces and parentheses).
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (the state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// `VmRSS` of `/proc/self/status`, in KiB.
fn resident_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proc_files_are_read_field_by_field() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 100 \
                    1000 300 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
        assert_eq!(
            resident_kib("Name:\tx\nVmRSS:\t   20480 kB\nThreads: 9\n"),
            Some(20480)
        );
        assert_eq!(resident_kib("Name:\tx\n"), None);
    }

    #[test]
    fn a_registry_shows_the_build_and_this_process() {
        let mut registry = Registry::default();
        let process = ProcessMetrics::register(&mut registry, "security-server", "1.2.3");
        process.refresh();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("xroad_build_info{binary=\"security-server\",version=\"1.2.3\"} 1"),
            "{text}"
        );
        for name in [
            "process_start_time_seconds",
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
                .parse()
                .unwrap();
            if name != "process_cpu_seconds" {
                assert!(value > 0.0, "{name} = {value}");
            }
        }
    }
}

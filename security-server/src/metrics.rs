//! Prometheus metrics (text exposition format 0.0.4): exchanges by proxy and outcome (`ok` or the
//! X-Road error type), their latency, and configuration gauges. Served on the admin listener at
//! `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(&'static str, String), u64>,
    latency: BTreeMap<&'static str, Histogram>,
}

/// Counters and histograms of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// The message log's checkpoint state.
    pub log: LogGauges,
}

/// The message log's last checkpoint round (DESIGN §8: log size, checkpoint age).
#[derive(Debug, Default)]
pub struct LogGauges {
    checkpoint_size: AtomicU64,
    checkpoint_at: AtomicI64,
    round_micros: AtomicU64,
    cosignatures: AtomicU64,
}

impl LogGauges {
    pub fn record_round(&self, size: u64, at_unix: i64, took: Duration, cosignatures: usize) {
        self.checkpoint_size.store(size, Ordering::Relaxed);
        self.checkpoint_at.store(at_unix, Ordering::Relaxed);
        self.round_micros.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.cosignatures.store(
            u64::try_from(cosignatures).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// (name, help, value) gauges at `now`.
    pub fn gauges(&self, now: i64) -> Vec<(&'static str, &'static str, f64)> {
        let at = self.checkpoint_at.load(Ordering::Relaxed);
        vec![
            (
                "xroad_checkpoint_size",
                "Tree size of the newest signed checkpoint of the message log.",
                self.checkpoint_size.load(Ordering::Relaxed) as f64,
            ),
            (
                "xroad_checkpoint_age_seconds",
                "Seconds since the newest checkpoint round (0: none yet).",
                if at == 0 { 0.0 } else { (now - at) as f64 },
            ),
            (
                "xroad_checkpoint_round_seconds",
                "Time the newest checkpoint round took, signing and witnesses included.",
                self.round_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "xroad_checkpoint_cosignatures",
                "Witnesses that cosigned the newest checkpoint.",
                self.cosignatures.load(Ordering::Relaxed) as f64,
            ),
        ]
    }
}

/// Which side of the exchange a measurement is from.
pub const CLIENT_PROXY: &str = "client_proxy";
pub const SERVER_PROXY: &str = "server_proxy";

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one exchange: `outcome` is `ok` or the X-Road error type.
    pub fn observe(&self, proxy: &'static str, outcome: &str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner
            .requests
            .entry((proxy, outcome.to_owned()))
            .or_default() += 1;
        let h = inner.latency.entry(proxy).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The exposition text; `gauges` are (name, help, value) added as they are.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP xroad_exchanges_total Exchanges handled, by proxy and outcome (ok or X-Road error type)."
        );
        let _ = writeln!(out, "# TYPE xroad_exchanges_total counter");
        for ((proxy, outcome), n) in &inner.requests {
            let _ = writeln!(
                out,
                "xroad_exchanges_total{{proxy=\"{proxy}\",outcome=\"{}\"}} {n}",
                escape(outcome)
            );
        }
        let _ = writeln!(
            out,
            "# HELP xroad_exchange_duration_seconds Time to handle one exchange."
        );
        let _ = writeln!(out, "# TYPE xroad_exchange_duration_seconds histogram");
        for (proxy, h) in &inner.latency {
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "xroad_exchange_duration_seconds_bucket{{proxy=\"{proxy}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "xroad_exchange_duration_seconds_bucket{{proxy=\"{proxy}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "xroad_exchange_duration_seconds_sum{{proxy=\"{proxy}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "xroad_exchange_duration_seconds_count{{proxy=\"{proxy}\"}} {}",
                h.count
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics` (unauthenticated, like most Prometheus endpoints: keep the admin listener on
/// loopback or a management network).
pub fn router(
    metrics: std::sync::Arc<Metrics>,
    conf: std::sync::Arc<crate::confclient::ConfClient>,
    clock: std::sync::Arc<dyn certs::Clock>,
    log: msglog::MessageLog,
) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = std::sync::Arc::clone(&metrics);
            let conf = std::sync::Arc::clone(&conf);
            let clock = std::sync::Arc::clone(&clock);
            let log_failed = log.failure().is_some();
            async move {
                let now = clock.unix_now();
                let held = conf.current();
                let mut gauges = vec![
                    (
                        "xroad_globalconf_serial",
                        "Serial of the global configuration held (0: none).",
                        held.as_ref().map_or(0.0, |c| c.serial() as f64),
                    ),
                    (
                        "xroad_globalconf_age_seconds",
                        "Seconds since the held global configuration was generated.",
                        held.as_ref()
                            .map_or(0.0, |c| (now - c.conf().generated_at()) as f64),
                    ),
                    (
                        "xroad_globalconf_expires_in_seconds",
                        "Seconds until the held global configuration expires (negative: expired).",
                        held.as_ref()
                            .map_or(0.0, |c| (c.conf().expires_at() - now) as f64),
                    ),
                ];
                gauges.push((
                    "xroad_messagelog_failed",
                    "1 when the message log has failed and every exchange is refused until a restart.",
                    if log_failed { 1.0 } else { 0.0 },
                ));
                gauges.extend(metrics.log.gauges(now));
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(&gauges),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_and_fills_cumulative_buckets() {
        let m = Metrics::new();
        m.observe(CLIENT_PROXY, "ok", Duration::from_millis(3));
        m.observe(
            CLIENT_PROXY,
            "Server.ServerProxy.AccessDenied",
            Duration::from_millis(30),
        );
        let text = m.render(&[("xroad_globalconf_serial", "Serial.", 7.0)]);
        assert!(text.contains("xroad_exchanges_total{proxy=\"client_proxy\",outcome=\"ok\"} 1"));
        assert!(text.contains("outcome=\"Server.ServerProxy.AccessDenied\"} 1"));
        assert!(text.contains(
            "xroad_exchange_duration_seconds_bucket{proxy=\"client_proxy\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "xroad_exchange_duration_seconds_bucket{proxy=\"client_proxy\",le=\"0.05\"} 2"
        ));
        assert!(text.contains("xroad_exchange_duration_seconds_count{proxy=\"client_proxy\"} 2"));
        assert!(text.contains("xroad_globalconf_serial 7"));
    }
}

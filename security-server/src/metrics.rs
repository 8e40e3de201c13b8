//! Prometheus metrics, in the OpenMetrics text format (prometheus-client): exchanges by proxy and
//! outcome (`ok` or the X-Road error type), their latency, and configuration gauges. Served on
//! the admin listener at `/metrics`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = runtime::metrics::CONTENT_TYPE;

/// Which side of the exchange a measurement is from.
pub const CLIENT_PROXY: &str = "client_proxy";
pub const SERVER_PROXY: &str = "server_proxy";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    proxy: &'static str,
    outcome: Escaped,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance: Escaped,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    proxy: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    proxy: &'static str,
    service: Escaped,
    client: Escaped,
    outcome: Escaped,
}

/// What is known of an exchange once its request named the service and the client: for
/// `xroad_service_exchanges_total` and the operational data ([`crate::opmon`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    pub service: String,
    pub client: String,
    pub message_id: String,
    /// Body sizes, once read.
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
}

/// At most this many (service, client) pairs get series of their own; later ones are counted as
/// `other`, so that a flood of made-up identifiers cannot grow the metrics without bound.
pub const MAX_SERVICE_SERIES: usize = 1000;

/// A label value from outside (an error type), escaped as the text format wants: prometheus-client
/// writes label values as they are.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        let escaped = self
            .0
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        encoder.write_str(&escaped)
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Counters, histograms and gauges of one server, in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    exchanges: Family<ExchangeLabels, Counter>,
    by_service: Family<ServiceLabels, Counter>,
    /// The (service, client) pairs with series of their own.
    service_pairs: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Where each exchange's operational data goes, once the server opened it.
    opmon: std::sync::OnceLock<Arc<crate::opmon::Opmon>>,
    latency: Family<ProxyLabels, Histogram, fn() -> Histogram>,
    globalconf: ConfGauges,
    /// Each federated instance's configuration, set at each scrape.
    federated_expires_in: Family<InstanceLabels, Gauge>,
    federated_usable: Family<InstanceLabels, Gauge>,
    /// The message log's checkpoint state.
    pub log: LogGauges,
    process: runtime::metrics::ProcessMetrics,
}

/// The held global configuration and the message log's health, set at each scrape.
#[derive(Debug, Default)]
struct ConfGauges {
    serial: Gauge,
    age_seconds: Gauge,
    expires_in_seconds: Gauge,
    messagelog_failed: Gauge,
    tls_expires_in_seconds: Gauge,
}

/// The message log's last checkpoint round (DESIGN §8: log size, checkpoint age).
#[derive(Debug, Default)]
pub struct LogGauges {
    checkpoint_size: Gauge,
    /// Unix seconds of the newest round (0: none yet); the age gauge is set from it at a scrape.
    checkpoint_at: Gauge,
    checkpoint_age: Gauge,
    round_seconds: FloatGauge,
    cosignatures: Gauge,
}

impl LogGauges {
    pub fn record_round(&self, size: u64, at_unix: i64, took: Duration, cosignatures: usize) {
        self.checkpoint_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.checkpoint_at.set(at_unix);
        self.round_seconds.set(took.as_secs_f64());
        self.cosignatures
            .set(i64::try_from(cosignatures).unwrap_or(i64::MAX));
    }

    fn set_age(&self, now: i64) {
        let at = self.checkpoint_at.get();
        self.checkpoint_age
            .set(if at == 0 { 0 } else { now.saturating_sub(at) });
    }
}

/// What `/metrics` reads from the rest of the server at each scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrape {
    /// Unix seconds.
    pub now: i64,
    /// `(serial, generated_at, expires_at)` of the global configuration held.
    pub globalconf: Option<(u64, i64, i64)>,
    pub messagelog_failed: bool,
    /// When the TLS certificate presented now expires (Unix seconds).
    pub tls_not_after: Option<i64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        let latency = Family::<ProxyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let globalconf = ConfGauges::default();
        let log = LogGauges::default();
        let mut registry = Registry::default();
        let process = runtime::metrics::ProcessMetrics::register(
            &mut registry,
            "security-server",
            env!("CARGO_PKG_VERSION"),
        );
        // A counter's samples get `_total` appended: this is `xroad_exchanges_total`.
        registry.register(
            "xroad_exchanges",
            "Exchanges handled, by proxy and outcome (ok or X-Road error type).",
            exchanges.clone(),
        );
        let by_service = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "xroad_service_exchanges",
            "Exchanges by proxy, service, client subsystem and outcome (at most \
             MAX_SERVICE_SERIES service-client pairs; the rest are `other`).",
            by_service.clone(),
        );
        registry.register(
            "xroad_exchange_duration_seconds",
            "Time to handle one exchange.",
            latency.clone(),
        );
        registry.register(
            "xroad_globalconf_serial",
            "Serial of the global configuration held (0: none).",
            globalconf.serial.clone(),
        );
        registry.register(
            "xroad_globalconf_age_seconds",
            "Seconds since the held global configuration was generated.",
            globalconf.age_seconds.clone(),
        );
        registry.register(
            "xroad_globalconf_expires_in_seconds",
            "Seconds until the held global configuration expires (negative: expired).",
            globalconf.expires_in_seconds.clone(),
        );
        registry.register(
            "xroad_tls_certificate_expires_in_seconds",
            "Seconds until the TLS certificate this server presents expires (negative: expired).",
            globalconf.tls_expires_in_seconds.clone(),
        );
        registry.register(
            "xroad_messagelog_failed",
            "1 when the message log has failed and every exchange is refused until a restart.",
            globalconf.messagelog_failed.clone(),
        );
        registry.register(
            "xroad_checkpoint_size",
            "Tree size of the newest signed checkpoint of the message log.",
            log.checkpoint_size.clone(),
        );
        registry.register(
            "xroad_checkpoint_age_seconds",
            "Seconds since the newest checkpoint round (0: none yet).",
            log.checkpoint_age.clone(),
        );
        registry.register(
            "xroad_checkpoint_round_seconds",
            "Time the newest checkpoint round took, signing and witnesses included.",
            log.round_seconds.clone(),
        );
        registry.register(
            "xroad_checkpoint_cosignatures",
            "Witnesses that cosigned the newest checkpoint.",
            log.cosignatures.clone(),
        );
        let federated_expires_in = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "xroad_federated_globalconf_expires_in_seconds",
            "Seconds until the held configuration of a federated instance expires (negative: \
             expired), by instance.",
            federated_expires_in.clone(),
        );
        let federated_usable = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "xroad_federated_usable",
            "1 when exchanges with a federated instance can be made now, by instance.",
            federated_usable.clone(),
        );
        Self {
            registry,
            exchanges,
            by_service,
            federated_expires_in,
            federated_usable,
            service_pairs: std::sync::Mutex::default(),
            opmon: std::sync::OnceLock::new(),
            latency,
            globalconf,
            log,
            process,
        }
    }

    /// Sets the federated instances' gauges to how they stand now (an instance no longer
    /// federated loses its series).
    pub fn set_federated(&self, now: i64, federated: &[crate::federation::FederatedStatus]) {
        self.federated_expires_in.clear();
        self.federated_usable.clear();
        for f in federated {
            let labels = InstanceLabels {
                instance: Escaped(f.instance.to_string()),
            };
            if let Some(expires_at) = f.expires_at {
                self.federated_expires_in
                    .get_or_create(&labels)
                    .set(expires_at.saturating_sub(now));
            }
            self.federated_usable
                .get_or_create(&labels)
                .set(i64::from(f.usable));
        }
    }

    /// Records one exchange: `outcome` is `ok` or the X-Road error type.
    pub fn observe(&self, proxy: &'static str, outcome: &str, elapsed: Duration) {
        self.exchanges
            .get_or_create(&ExchangeLabels {
                proxy,
                outcome: Escaped(outcome.to_owned()),
            })
            .inc();
        self.latency
            .get_or_create(&ProxyLabels { proxy })
            .observe(elapsed.as_secs_f64());
    }

    /// Sends every exchange [`Metrics::observe_exchange`] sees with its parties to `opmon`.
    pub fn attach_opmon(&self, opmon: Arc<crate::opmon::Opmon>) {
        let _ = self.opmon.set(opmon);
    }

    /// [`Metrics::observe`], and by service and client when they are known (the request was
    /// read that far), also as operational data.
    pub fn observe_exchange(
        &self,
        proxy: &'static str,
        outcome: &str,
        elapsed: Duration,
        parties: Option<&Parties>,
    ) {
        self.observe(proxy, outcome, elapsed);
        let Some(parties) = parties else {
            return;
        };
        if let Some(opmon) = self.opmon.get() {
            let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            let now_ms = crate::opmon::unix_ms_now();
            opmon.record(crate::opmon::OpRecord {
                at_ms: now_ms.saturating_sub(i64::try_from(elapsed_ms).unwrap_or(i64::MAX)),
                proxy: proxy.to_owned(),
                client: parties.client.clone(),
                service: parties.service.clone(),
                message_id: parties.message_id.clone(),
                outcome: outcome.to_owned(),
                request_bytes: parties.request_bytes,
                response_bytes: parties.response_bytes,
                duration_ms: elapsed_ms,
            });
        }
        let pair = (parties.service.clone(), parties.client.clone());
        let admitted = {
            let mut pairs = self
                .service_pairs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pairs.contains(&pair) || (pairs.len() < MAX_SERVICE_SERIES && pairs.insert(pair))
        };
        let (service, client) = if admitted {
            (parties.service.clone(), parties.client.clone())
        } else {
            ("other".to_owned(), "other".to_owned())
        };
        self.by_service
            .get_or_create(&ServiceLabels {
                proxy,
                service: Escaped(service),
                client: Escaped(client),
                outcome: Escaped(outcome.to_owned()),
            })
            .inc();
    }

    /// The exposition text (OpenMetrics, ending in `# EOF`), with the gauges set from `scrape`.
    pub fn render(&self, scrape: &Scrape) -> String {
        let g = &self.globalconf;
        let (serial, generated_at, expires_at) = scrape.globalconf.unwrap_or_default();
        g.serial.set(i64::try_from(serial).unwrap_or(i64::MAX));
        match scrape.globalconf {
            Some(_) => {
                g.age_seconds.set(scrape.now.saturating_sub(generated_at));
                g.expires_in_seconds
                    .set(expires_at.saturating_sub(scrape.now));
            }
            None => {
                g.age_seconds.set(0);
                g.expires_in_seconds.set(0);
            }
        }
        g.messagelog_failed.set(i64::from(scrape.messagelog_failed));
        g.tls_expires_in_seconds.set(
            scrape
                .tls_not_after
                .map_or(0, |t| t.saturating_sub(scrape.now)),
        );
        self.log.set_age(scrape.now);
        self.process.refresh();
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot render the metrics");
        }
        out
    }
}

/// `GET /metrics` (unauthenticated, like most Prometheus endpoints: keep the admin listener on
/// loopback or a management network).
pub fn router(
    metrics: Arc<Metrics>,
    federation: Arc<crate::federation::Federation>,
    clock: Arc<dyn certs::Clock>,
    log: msglog::MessageLog,
    tls: certs::LiveIdentity,
) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            let now = clock.unix_now();
            metrics.set_federated(now, &federation.status());
            let scrape = Scrape {
                now,
                globalconf: federation
                    .own()
                    .current()
                    .map(|c| (c.serial(), c.conf().generated_at(), c.conf().expires_at())),
                messagelog_failed: log.failure().is_some(),
                tls_not_after: tls
                    .current()
                    .cert_chain
                    .first()
                    .and_then(|leaf| certs::certificate_info(leaf).ok())
                    .map(|info| info.not_after),
            };
            async move {
                (
                    [(http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    metrics.render(&scrape),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` whose labels are exactly `labels`, in any order.
    fn sample(text: &str, name: &str, labels: &[&str]) -> Option<String> {
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
            let mut found: Vec<&str> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect();
            let mut wanted = labels.to_vec();
            found.sort_unstable();
            wanted.sort_unstable();
            (series_name == name && found == wanted).then(|| value.to_owned())
        })
    }

    #[test]
    fn counts_outcomes_and_fills_cumulative_buckets() {
        let m = Metrics::new();
        m.observe(CLIENT_PROXY, "ok", Duration::from_millis(3));
        m.observe(
            CLIENT_PROXY,
            "Server.ServerProxy.AccessDenied",
            Duration::from_millis(30),
        );
        let text = m.render(&Scrape {
            now: 100,
            globalconf: Some((7, 40, 160)),
            messagelog_failed: false,
            tls_not_after: Some(90),
        });
        assert!(
            text.contains("xroad_tls_certificate_expires_in_seconds -10\n"),
            "{text}"
        );
        assert!(text.contains("xroad_exchanges_total{proxy=\"client_proxy\",outcome=\"ok\"} 1"));
        assert!(text.contains("outcome=\"Server.ServerProxy.AccessDenied\"} 1"));
        let bucket = |le: &str| {
            sample(
                &text,
                "xroad_exchange_duration_seconds_bucket",
                &["proxy=\"client_proxy\"", &format!("le=\"{le}\"")],
            )
        };
        assert_eq!(bucket("0.0005").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("0.005").as_deref(), Some("1"), "{text}");
        assert_eq!(bucket("0.05").as_deref(), Some("2"), "{text}");
        assert_eq!(bucket("+Inf").as_deref(), Some("2"), "{text}");
        assert!(text.contains("xroad_exchange_duration_seconds_count{proxy=\"client_proxy\"} 2"));
        assert!(text.contains("xroad_globalconf_serial 7\n"), "{text}");
        assert!(text.contains("xroad_globalconf_age_seconds 60\n"), "{text}");
        assert!(
            text.contains("xroad_globalconf_expires_in_seconds 60\n"),
            "{text}"
        );
        assert!(text.contains("xroad_messagelog_failed 0\n"), "{text}");
        assert!(text.contains("# TYPE xroad_exchange_duration_seconds histogram"));
        assert!(
            text.contains("xroad_build_info{binary=\"security-server\""),
            "{text}"
        );
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn checkpoint_gauges_follow_the_last_round() {
        let m = Metrics::new();
        let text = m.render(&Scrape::default());
        assert!(text.contains("xroad_checkpoint_age_seconds 0\n"), "{text}");
        m.log.record_round(42, 1_000, Duration::from_millis(250), 2);
        let text = m.render(&Scrape {
            now: 1_030,
            ..Scrape::default()
        });
        assert!(text.contains("xroad_checkpoint_size 42\n"), "{text}");
        assert!(text.contains("xroad_checkpoint_age_seconds 30\n"), "{text}");
        assert!(
            text.contains("xroad_checkpoint_round_seconds 0.25\n"),
            "{text}"
        );
        assert!(text.contains("xroad_checkpoint_cosignatures 2\n"), "{text}");
    }

    #[test]
    fn exchanges_are_counted_by_service_and_client_up_to_a_bound() {
        let m = Metrics::new();
        let parties = |i: usize| Parties {
            service: format!("JP/MUN/131016/records/s{i}"),
            client: "JP/GOV/digital-agency/portal".into(),
            ..Parties::default()
        };
        for i in 0..MAX_SERVICE_SERIES + 5 {
            m.observe_exchange(
                CLIENT_PROXY,
                "ok",
                Duration::from_millis(1),
                Some(&parties(i)),
            );
        }
        m.observe_exchange(
            CLIENT_PROXY,
            "ok",
            Duration::from_millis(1),
            Some(&parties(0)),
        );
        m.observe_exchange(CLIENT_PROXY, "Client.BadRequest", Duration::ZERO, None);
        let text = m.render(&Scrape::default());
        assert_eq!(
            sample(
                &text,
                "xroad_service_exchanges_total",
                &[
                    "proxy=\"client_proxy\"",
                    "service=\"JP/MUN/131016/records/s0\"",
                    "client=\"JP/GOV/digital-agency/portal\"",
                    "outcome=\"ok\""
                ]
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "xroad_service_exchanges_total",
                &[
                    "proxy=\"client_proxy\"",
                    "service=\"other\"",
                    "client=\"other\"",
                    "outcome=\"ok\""
                ]
            )
            .as_deref(),
            Some("5")
        );
        let series = text
            .lines()
            .filter(|l| l.starts_with("xroad_service_exchanges_total{"))
            .count();
        assert_eq!(series, MAX_SERVICE_SERIES + 1);
        assert!(text.contains(
            "xroad_exchanges_total{proxy=\"client_proxy\",outcome=\"Client.BadRequest\"} 1"
        ));
    }

    #[test]
    fn odd_outcomes_are_escaped() {
        let m = Metrics::new();
        m.observe(SERVER_PROXY, "a\"b\\c", Duration::from_millis(1));
        let text = m.render(&Scrape::default());
        assert!(text.contains(r#"outcome="a\"b\\c""#), "{text}");
    }
}

//! A closed-loop HTTP load generator: `clients` tasks, each sending one request, waiting for the
//! whole answer, and sending the next, for a warm-up period and then a measured one.
//!
//! Every request POSTs the same `body_bytes` bytes and expects them back (an echo service), so a
//! wrong answer is caught, not just a wrong status. A request counts in the report when it both
//! started and finished inside the measured window; requests still in flight when the window
//! closes are abandoned. Latencies are those of successful requests, kept as microseconds and
//! sorted, so the percentiles are exact (nearest rank), not estimated.
//!
//! Targets are loopback only: [`Target::new`] refuses any other host, so a benchmark cannot be
//! pointed at somebody else's server by mistake.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// How much of an error answer's body is kept for the report.
const ERROR_BODY_LIMIT: usize = 1024;

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    Url(String),
    NotLoopback(String),
    Header(String),
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Url(e) => write!(f, "invalid URL: {e}"),
            TargetError::NotLoopback(u) => {
                write!(
                    f,
                    "{u} is not a plain-HTTP URL on 127.0.0.1; the bench talks to loopback only"
                )
            }
            TargetError::Header(e) => write!(f, "invalid header: {e}"),
        }
    }
}

impl std::error::Error for TargetError {}

/// Where the load goes: a plain-HTTP loopback URL and the headers every request carries.
#[derive(Debug, Clone)]
pub struct Target {
    name: String,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// A target named `name` (for reports) at `url`, which must be `http://127.0.0.1:PORT/...`.
    pub fn new(name: impl Into<String>, url: &str) -> Result<Self, TargetError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| TargetError::Url(format!("{url}: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.host() != Some("127.0.0.1") {
            return Err(TargetError::NotLoopback(url.to_owned()));
        }
        Ok(Self {
            name: name.into(),
            uri,
            headers: Vec::new(),
        })
    }

    /// Adds a header every request carries (e.g. `X-Road-Client`).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, TargetError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TargetError::Header(format!("{name}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| TargetError::Header(format!("{name}: {e}")))?;
        self.headers.push((name, value));
        Ok(self)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> String {
        self.uri.to_string()
    }
}

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent clients, each with at most one request in flight.
    pub clients: usize,
    /// The measured window.
    pub duration: Duration,
    /// Load before the measured window (connections, caches), not reported.
    pub warmup: Duration,
    /// Size of each request body (and of the expected answer).
    pub body_bytes: usize,
    /// A request taking longer counts as an error.
    pub request_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            clients: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            body_bytes: 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Clock ticks of all the machine's CPUs, from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// Idle, waiting for I/O included.
    pub idle: u64,
    /// Taken by the hypervisor for other guests.
    pub steal: u64,
    /// Everything: user, nice, system, idle, iowait, irq, softirq and steal.
    pub total: u64,
}

impl MachineTicks {
    /// The machine's ticks so far (Linux; `None` elsewhere).
    pub fn now() -> Option<MachineTicks> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the `cpu` line of `/proc/stat`.
    fn parse(stat: &str) -> Option<MachineTicks> {
        let line = stat.lines().next()?;
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
            return None;
        };
        Some(MachineTicks {
            idle: idle + iowait,
            steal,
            total: user + nice + system + idle + iowait + irq + softirq + steal,
        })
    }

    /// The ticks between `before` and `self`.
    pub fn since(self, before: MachineTicks) -> MachineTicks {
        MachineTicks {
            idle: self.idle.saturating_sub(before.idle),
            steal: self.steal.saturating_sub(before.steal),
            total: self.total.saturating_sub(before.total),
        }
    }

    /// The share of the CPU time that was idle.
    pub fn idle_fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| self.idle as f64 / self.total as f64)
    }

    /// The share of the CPU time the hypervisor gave to others.
    pub fn steal_fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| self.steal as f64 / self.total as f64)
    }
}

impl std::iter::Sum for MachineTicks {
    fn sum<I: Iterator<Item = MachineTicks>>(iter: I) -> MachineTicks {
        iter.fold(MachineTicks::default(), |a, b| MachineTicks {
            idle: a.idle + b.idle,
            steal: a.steal + b.steal,
            total: a.total + b.total,
        })
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub target: String,
    /// Requests that started and finished in the measured window (successes and errors).
    pub requests: u64,
    /// Of those: non-2xx answers, wrong echoes, transport errors and timeouts.
    pub errors: u64,
    /// The measured window.
    pub window: Duration,
    /// The first error seen (warm-up included): status, `X-Road-Error` and the start of the body.
    pub first_error: Option<String>,
    /// CPU time (user + system) this whole process spent in the measured window, where the
    /// system tells (Linux); with everything in one process, a cost that does not depend on
    /// how much of the machine other programs took.
    pub cpu: Option<Duration>,
    /// The whole machine's CPU time in the measured window, where the system tells (Linux):
    /// idle (waiting for I/O included), taken by the hypervisor for others (steal), and in all.
    pub machine: Option<MachineTicks>,
    /// Latencies of the successful requests in microseconds, sorted ascending.
    latencies_us: Vec<u32>,
}

impl LoadReport {
    /// Several measured windows of one target as one: requests, errors, windows and CPU added
    /// up, latencies pooled. `None` for no windows.
    pub fn merge(windows: &[LoadReport]) -> Option<LoadReport> {
        let first = windows.first()?;
        let mut latencies_us: Vec<u32> = windows
            .iter()
            .flat_map(|w| w.latencies_us.iter().copied())
            .collect();
        latencies_us.sort_unstable();
        Some(LoadReport {
            target: first.target.clone(),
            requests: windows.iter().map(|w| w.requests).sum(),
            errors: windows.iter().map(|w| w.errors).sum(),
            window: windows.iter().map(|w| w.window).sum(),
            first_error: windows.iter().find_map(|w| w.first_error.clone()),
            cpu: windows.iter().map(|w| w.cpu).sum(),
            machine: windows.iter().map(|w| w.machine).sum(),
            latencies_us,
        })
    }

    pub fn successes(&self) -> u64 {
        self.requests - self.errors
    }

    /// Successful requests per second of the measured window.
    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.successes() as f64 / secs
        } else {
            0.0
        }
    }

    /// Process CPU time per successful request, in microseconds.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let n = self.successes();
        self.cpu
            .filter(|_| n > 0)
            .map(|cpu| cpu.as_secs_f64() * 1e6 / n as f64)
    }

    /// The exact `p`-th percentile (nearest rank, `0 < p <= 100`) of successful latencies.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.latencies_us, p).map(|us| Duration::from_micros(u64::from(us)))
    }

    pub fn max(&self) -> Option<Duration> {
        self.latencies_us
            .last()
            .map(|us| Duration::from_micros(u64::from(*us)))
    }

    /// The report as a JSON object (latencies in microseconds, `null` without successes).
    pub fn to_json(&self) -> serde_json::Value {
        let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
        serde_json::json!({
            "target": self.target,
            "requests": self.requests,
            "errors": self.errors,
            "window_secs": self.window.as_secs_f64(),
            "throughput_rps": self.throughput(),
            "latency_us": {
                "p50": us(self.percentile(50.0)),
                "p90": us(self.percentile(90.0)),
                "p99": us(self.percentile(99.0)),
                "max": us(self.max()),
            },
            "first_error": self.first_error,
            "cpu_us_per_request": self.cpu_us_per_request(),
            "machine_idle_fraction": self.machine.and_then(|m| m.idle_fraction()),
            "machine_steal_fraction": self.machine.and_then(|m| m.steal_fraction()),
        })
    }
}

/// The nearest-rank `p`-th percentile (0..=100) of `sorted`; `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// One client's tally.
#[derive(Debug, Default)]
struct Tally {
    errors: u64,
    latencies_us: Vec<u32>,
}

/// Everything one client task needs; shared by all.
#[derive(Debug)]
struct Shared {
    client: Client<HttpConnector, Full<Bytes>>,
    target: Target,
    body: Bytes,
    measure_from: Instant,
    end: Instant,
    request_timeout: Duration,
    first_error: OnceLock<String>,
}

/// Runs the load against `target` and reports on the measured window. Returns after
/// `warmup + duration` (plus the time to collect the tasks); never panics on failed requests.
pub async fn run(target: Target, options: &LoadOptions) -> LoadReport {
    let clients = options.clients.max(1);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(options.request_timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let body = Bytes::from(
        (0..options.body_bytes)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client,
        target,
        body,
        measure_from: start + options.warmup,
        end: start + options.warmup + options.duration,
        request_timeout: options.request_timeout,
        first_error: OnceLock::new(),
    });

    let (measure_from, end) = (shared.measure_from, shared.end);
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        let before = (process_cpu_time(), MachineTicks::now());
        tokio::time::sleep_until(end).await;
        let after = (process_cpu_time(), MachineTicks::now());
        (
            after.0.zip(before.0).map(|(a, b)| a.saturating_sub(b)),
            after.1.zip(before.1).map(|(a, b)| a.since(b)),
        )
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(client_loop(Arc::clone(&shared)));
    }
    let mut requests = 0u64;
    let mut errors = 0u64;
    let mut latencies_us = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => {
                requests += tally.latencies_us.len() as u64 + tally.errors;
                errors += tally.errors;
                latencies_us.extend(tally.latencies_us);
            }
            Err(e) => {
                let _ = shared.first_error.set(format!("client task failed: {e}"));
            }
        }
    }
    latencies_us.sort_unstable();
    let (cpu, machine) = cpu.await.unwrap_or((None, None));
    LoadReport {
        target: shared.target.name.clone(),
        requests,
        errors,
        window: options.duration,
        first_error: shared.first_error.get().cloned(),
        cpu,
        machine,
        latencies_us,
    }
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (Linux; `None`
/// elsewhere). Fields 14 and 15 count clock ticks, 100 per second on Linux.
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

async fn client_loop(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    loop {
        let started = Instant::now();
        if started >= shared.end {
            break;
        }
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(shared.request_timeout, exchange(&shared)) => outcome,
            // In flight when the window closes: abandoned, not counted.
            _ = tokio::time::sleep_until(shared.end) => break,
        };
        let result = match outcome {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", shared.request_timeout)),
        };
        let measured = started >= shared.measure_from;
        match result {
            Ok(()) if measured => {
                let us = started.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(()) => {}
            Err(error) => {
                let _ = shared.first_error.set(error);
                if measured {
                    tally.errors += 1;
                }
            }
        }
    }
    tally
}

/// One request and its whole answer; `Err` describes what was wrong.
async fn exchange(shared: &Shared) -> Result<(), String> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(shared.target.uri.clone())
        .header(CONTENT_TYPE, "application/octet-stream");
    for (name, value) in &shared.target.headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(shared.body.clone()))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = shared
        .client
        .request(request)
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    let xroad_error = response
        .headers()
        .get("x-road-error")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("HTTP {status}, body broken: {}", error_chain(&e)))?
        .to_bytes();
    if !status.is_success() {
        let shown = &body[..body.len().min(ERROR_BODY_LIMIT)];
        return Err(format!(
            "HTTP {status}{}: {}",
            xroad_error
                .map(|t| format!(" (X-Road-Error: {t})"))
                .unwrap_or_default(),
            String::from_utf8_lossy(shown)
        ));
    }
    if body != shared.body {
        return Err(format!(
            "HTTP {status} but the echo differs: sent {} bytes, got {}",
            shared.body.len(),
            body.len()
        ));
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;

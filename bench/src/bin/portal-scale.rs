//! `cargo run --release -p bench --bin portal-scale -- --members 2000`: the resident portal at
//! national scale (DESIGN §7, issue 22). Starts a stand-in of the portal's security server's
//! client proxy on loopback that lists `--members` members with one subsystem each
//! (`listClients`, JSON as `exchange::metaservice::list_clients` writes it) and answers each
//! provider's `findUsage` with a page of records after a latency drawn per member: most in
//! 5–50 ms, `--slow-percent` in 1–3 s, `--hang-percent` never. Then starts the real portal
//! (`resident_portal::serve`, development login) against it, logs in, and asks for
//! `/api/timeline` `--pages` times after one unmeasured page, once per `--max-parallel` value,
//! each against a fresh portal and the same stand-in.
//!
//! Printed per value: the time per page (p50, p90, max), the CPU per page, and what the page
//! showed (sources ok / unavailable, entries). Everything runs in this one process; the CPU is
//! `/proc/self/stat` utime+stime over the pages, split into the stand-in's threads (its own
//! runtime, read from `/proc/self/task/TID/stat`) and the rest (the portal and the one request
//! per page of this client). The stand-in is not a security server: no TLS, signing or message
//! log, so this measures the portal's fan-out, not the exchange behind it.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use clap::Parser;
use resident_portal::{Config, LoginConfig, LoginKind};
use runtime::{ConnectionLimits, HttpClient, Shutdown};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const RESIDENT: &str = "131016000001";
/// Linux reports utime and stime in USER_HZ ticks, 100 a second on every architecture it runs
/// userspace on.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Parser)]
#[command(
    name = "portal-scale",
    about = "The resident portal's page over N stand-in members on loopback: time and CPU per page"
)]
struct Args {
    /// Members of the instance, each with one subsystem the portal asks.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    members: u32,
    /// Measured pages per `--max-parallel` value (after one unmeasured page).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pages: u32,
    /// The resident's records each member answers with (one findUsage page).
    #[arg(long, default_value_t = 3)]
    records: u32,
    /// Percent of members that answer in 1–3 s.
    #[arg(long, default_value_t = 2.0)]
    slow_percent: f64,
    /// Percent of members that never answer.
    #[arg(long, default_value_t = 1.0)]
    hang_percent: f64,
    /// The portal's `max_parallel`; a comma-separated list measures each in turn (32 was the
    /// default before 2,000-member instances were measured, 256 is now).
    #[arg(long, value_delimiter = ',', default_value = "32,256")]
    max_parallel: Vec<usize>,
    /// The portal's `member_timeout_ms`.
    #[arg(long, default_value_t = Config::default().member_timeout_ms)]
    member_timeout_ms: u64,
    /// The portal's `timeout_secs` (one call).
    #[arg(long, default_value_t = Config::default().timeout_secs)]
    timeout_secs: u64,
    /// Seed of the members' latencies.
    #[arg(long, default_value_t = 22)]
    seed: u64,
}

/// How a member answers `findUsage`.
#[derive(Debug, Clone, Copy)]
enum Latency {
    After(Duration),
    Never,
}

/// The stand-in client proxy: the listing, and each member's latency.
struct StandIn {
    list_clients: Bytes,
    latency: HashMap<String, Latency>,
    records: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.max_parallel.contains(&0) {
        bail!("--max-parallel values must be at least 1");
    }
    // The stand-in on a runtime of its own, so that its threads' CPU can be told apart.
    let stand_in_threads = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = Arc::clone(&stand_in_threads);
    let stand_in_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stand-in")
        .on_thread_start(move || {
            if let (Ok(link), Ok(mut threads)) =
                (std::fs::read_link("/proc/thread-self"), recorded.lock())
            {
                threads.push(format!("/proc/{}/stat", link.display()));
            }
        })
        .enable_all()
        .build()?;
    let portal_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let stand_in = Arc::new(stand_in(&args)?);
    let (slow, hang) = stand_in.latency.values().fold((0, 0), |(s, h), l| match l {
        Latency::After(d) if *d >= Duration::from_secs(1) => (s + 1, h),
        Latency::Never => (s, h + 1),
        Latency::After(_) => (s, h),
    });
    let (_stop_stand_in, ss_url) = stand_in_rt.block_on(serve_stand_in(Arc::clone(&stand_in)))?;
    println!(
        "portal-scale: {} members ({slow} answer in 1-3 s, {hang} never, the rest in 5-50 ms), \
         {} records each; member_timeout_ms {}, timeout_secs {}; {} measured pages per setting",
        args.members, args.records, args.member_timeout_ms, args.timeout_secs, args.pages
    );
    println!(
        "{:>12} {:>9} {:>9} {:>9} {:>12} {:>14} {:>6} {:>11} {:>8}",
        "max_parallel",
        "p50 ms",
        "p90 ms",
        "max ms",
        "cpu ms/page",
        "stand-in ms/pg",
        "ok",
        "unavailable",
        "entries"
    );
    for &max_parallel in &args.max_parallel {
        let run = portal_rt.block_on(measure(&args, &ss_url, max_parallel, &stand_in_threads))?;
        println!(
            "{max_parallel:>12} {:>9.0} {:>9.0} {:>9.0} {:>12.1} {:>14.1} {:>6} {:>11} {:>8}",
            run.percentile(0.5),
            run.percentile(0.9),
            run.percentile(1.0),
            run.cpu_ms / f64::from(args.pages),
            run.stand_in_cpu_ms / f64::from(args.pages),
            run.ok,
            run.unavailable,
            run.entries
        );
    }
    println!(
        "cpu: this whole process (portal, stand-in, this client), /proc/self/stat utime+stime \
         per measured page; stand-in: its runtime's threads' share of it"
    );
    Ok(())
}

/// What one `--max-parallel` setting measured.
struct Run {
    page_ms: Vec<f64>,
    cpu_ms: f64,
    stand_in_cpu_ms: f64,
    /// Of the last page.
    ok: usize,
    unavailable: usize,
    entries: usize,
}

impl Run {
    /// Nearest-rank percentile of the page times, `q` in 0..=1.
    fn percentile(&self, q: f64) -> f64 {
        let mut sorted = self.page_ms.clone();
        sorted.sort_by(f64::total_cmp);
        bench::load::percentile(&sorted, q * 100.0).unwrap_or(f64::NAN)
    }
}

async fn measure(
    args: &Args,
    ss_url: &str,
    max_parallel: usize,
    stand_in_threads: &Mutex<Vec<String>>,
) -> anyhow::Result<Run> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let portal = format!("http://{}", listener.local_addr()?);
    let config = Config {
        security_server: ss_url.to_owned(),
        client: Some(PORTAL.parse()?),
        max_parallel,
        member_timeout_ms: args.member_timeout_ms,
        timeout_secs: args.timeout_secs,
        login: LoginConfig {
            kind: Some(LoginKind::Development),
            danger_development_login: true,
            ..LoginConfig::default()
        },
        ..Config::default()
    };
    let (_stop, shutdown) = Shutdown::new();
    tokio::spawn(resident_portal::serve(listener, config, shutdown.wait()));

    let http = HttpClient::plain().with_timeout(Duration::from_secs(600));
    let login = http
        .request(
            http::Method::POST,
            &format!("{portal}/login/dev"),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("resident={RESIDENT}").into(),
        )
        .await
        .context("logging in to the portal")?;
    let cookie = login
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .context("the portal gave no session cookie")?
        .to_owned();
    let page = || async {
        let answer = http
            .request(
                http::Method::GET,
                &format!("{portal}/api/timeline"),
                &[("cookie", cookie.as_str())],
                Bytes::new(),
            )
            .await
            .context("asking the portal for the timeline")?;
        if !answer.is_success() {
            bail!("the portal answered {}: {}", answer.status, answer.text());
        }
        Ok::<_, anyhow::Error>(answer.json::<Value>()?)
    };
    page().await?; // warm-up: connections to the stand-in, the session

    let (cpu_before, stand_in_before) =
        (cpu_ticks("/proc/self/stat")?, threads_cpu(stand_in_threads));
    let mut page_ms = Vec::new();
    let mut last = Value::Null;
    for _ in 0..args.pages {
        let started = Instant::now();
        last = page().await?;
        page_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu = cpu_ticks("/proc/self/stat")? - cpu_before;
    let stand_in = threads_cpu(stand_in_threads) - stand_in_before;
    let sources = last["sources"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let count = |state: &str| sources.iter().filter(|s| s["state"] == state).count();
    Ok(Run {
        page_ms,
        cpu_ms: cpu as f64 * 1000.0 / TICKS_PER_SEC,
        stand_in_cpu_ms: stand_in as f64 * 1000.0 / TICKS_PER_SEC,
        ok: count("ok"),
        unavailable: count("unavailable"),
        entries: last["entries"].as_array().map_or(0, Vec::len),
    })
}

/// utime + stime of a `/proc/.../stat` file, in ticks.
fn cpu_ticks(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name in parentheses may hold spaces; the fields after it are fixed.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no command name")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .context("a short stat line")?
            .parse::<u64>()?)
    };
    Ok(field(14)? + field(15)?)
}

fn threads_cpu(threads: &Mutex<Vec<String>>) -> u64 {
    threads
        .lock()
        .map(|paths| paths.iter().filter_map(|p| cpu_ticks(p).ok()).sum())
        .unwrap_or(0)
}

/// The members (`JP/MUN/000000`…, `JP/GOV/…` for every tenth) and their latencies.
fn stand_in(args: &Args) -> anyhow::Result<StandIn> {
    let mut rng = SplitMix(args.seed);
    let mut entries = Vec::new();
    let mut latency = HashMap::new();
    for i in 0..args.members {
        let (class, code) = if i % 10 == 9 {
            ("GOV", format!("ministry-{i:05}"))
        } else {
            ("MUN", format!("{i:06}"))
        };
        let id = |object_type: &str| {
            json!({"object_type": object_type, "xroad_instance": "JP",
                   "member_class": class, "member_code": code})
        };
        let name = format!("Member {i}");
        entries.push(json!({"id": id("MEMBER"), "name": name}));
        let mut sid = id("SUBSYSTEM");
        sid["subsystem_code"] = "records".into();
        entries.push(json!({
            "id": sid,
            "name": name,
            "subsystem_name": "Records",
            "security_servers": [{"object_type": "SERVER", "xroad_instance": "JP",
                "member_class": class, "member_code": code, "server_code": "ss1"}],
        }));
        let draw = rng.unit() * 100.0;
        let l = if draw < args.hang_percent {
            Latency::Never
        } else if draw < args.hang_percent + args.slow_percent {
            Latency::After(Duration::from_millis(1000 + rng.below(2001)))
        } else {
            Latency::After(Duration::from_millis(5 + rng.below(46)))
        };
        latency.insert(format!("JP/{class}/{code}/records"), l);
    }
    Ok(StandIn {
        list_clients: serde_json::to_vec(&json!({ "member": entries }))?.into(),
        latency,
        records: args.records,
    })
}

async fn serve_stand_in(
    stand_in: Arc<StandIn>,
) -> anyhow::Result<(runtime::ShutdownTrigger, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = Router::new()
        .route("/listClients", get(list_clients))
        .route(
            "/r1/{instance}/{class}/{member}/{subsystem}/findUsage",
            get(find_usage),
        )
        .with_state(stand_in);
    // The portal's parallel calls all come from 127.0.0.1: no per-source limit here.
    let limits = ConnectionLimits {
        max: 1_000_000,
        max_per_source: 1_000_000,
        ..ConnectionLimits::default()
    };
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(runtime::serve_http_with(
        listener,
        None,
        router,
        shutdown.wait(),
        limits.serve_options(),
    ));
    Ok((trigger, url))
}

async fn list_clients(State(stand_in): State<Arc<StandIn>>) -> Response {
    (
        [("content-type", "application/json")],
        stand_in.list_clients.clone(),
    )
        .into_response()
}

/// One page holding all of the resident's records at this member (`more: false`), in the
/// shape of `security_server::usage::page_json`.
async fn find_usage(
    State(stand_in): State<Arc<StandIn>>,
    Path((instance, class, member, subsystem)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let provider = format!("{instance}/{class}/{member}/{subsystem}");
    match stand_in.latency.get(&provider) {
        None => return (http::StatusCode::NOT_FOUND, "no such provider").into_response(),
        Some(Latency::Never) => std::future::pending::<()>().await,
        Some(Latency::After(d)) => tokio::time::sleep(*d).await,
    }
    let names = json!({"ja": format!("{member} (ja)"), "en": member});
    let records: Vec<Value> = (0..stand_in.records)
        .map(|n| {
            let time_ms = 1_795_000_000_000_i64 + i64::from(n) * 60_000;
            json!({
                "time": "2026-11-21T10:00:00.000Z",
                "time_ms": time_ms,
                "message_id": format!("{member}-{n}"),
                "client": "JP/MUN/131016/welfare",
                "client_member_name": "Chiyoda City",
                "client_member_names": {"ja": "千代田区", "en": "Chiyoda City"},
                "client_privacy_contact": "https://example.jp/privacy",
                "provider_member_names": names,
                "client_subsystem_name": "Welfare office",
                "client_subsystem_names": {"ja": "福祉事務所", "en": "Welfare office"},
                "service": format!("{provider}/residentRecord"),
                "service_code": "residentRecord",
                "service_names": {"ja": "住民票", "en": "Resident record"},
                "method": "GET",
                "purpose": "児童手当の認定 (child allowance eligibility)",
                "status": 200,
            })
        })
        .collect();
    axum::Json(json!({
        "server": format!("{instance}/{class}/{member}/ss1"),
        "provider": provider,
        "provider_member_names": names,
        "provider_subsystem_names": {"ja": "記録", "en": "Records"},
        "offset": query.get("offset").and_then(|o| o.parse::<u64>().ok()).unwrap_or(0),
        "limit": query.get("limit").and_then(|l| l.parse::<u64>().ok()).unwrap_or(0),
        "more": false,
        "records": records,
    }))
    .into_response()
}

/// A small deterministic generator (SplitMix64): the same seed, the same instance.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

//! `cargo run --release --bin bench -- --clients 64 --seconds 10`: the cost of the message
//! exchange. Starts a sandbox federation in-process on ephemeral loopback ports (in a temporary
//! directory) with its demo backend, registers `JP/MUN/131016/records/echo` (the backend's
//! `POST /echo`) granted to `JP/GOV/digital-agency/portal`, and runs the same closed-loop load
//! twice: through the ministry's client proxy (client proxy → mutual-TLS gRPC → Chiyoda City's
//! server proxy → backend), then directly against the backend. Prints requests, errors,
//! throughput and exact latency percentiles of each, and the ratio gateway/direct.
//! `--compare-without-log` also starts a second federation whose message log is off and
//! measures the two in alternating windows (`--rounds`), printing what the log costs.
//!
//! The load generator, the three security servers, the registry and the backend share this one
//! process and the machine's cores, so the numbers compare the two paths on equal terms rather
//! than show what a dedicated server would do.
//!
//! `cargo run --release --bin bench -- peer`: the comparison an operator would make instead
//! ([`bench::peer`]): the shipped `security-server` binary as two processes against a two-hop
//! mutual-TLS nginx chain, both driven by `wrk` in alternating rounds, for 1 KiB, 1 MiB and
//! 100 MiB bodies (`scripts/install-bench-tools` installs nginx and wrk).
//!
//! `cargo run --release --bin bench -- converge`: 300 simulated security servers in this
//! process and how fast a new global configuration reaches them all with the registry stopped
//! right after publishing ([`bench::converge`]).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bench::load::{self, LoadOptions, LoadReport, Target};
use bench::peer::{PeerOptions, median_min_max};
use clap::{Parser, Subcommand};
use sandbox::{DemoApi, Federation, FederationSpec, Ports, ServiceSpec};

const CLIENT: &str = "JP/GOV/digital-agency/portal";
const ECHO_SERVICE: &str = "JP/MUN/131016/records/echo";

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "Closed-loop load through the xroad-rs gateway and directly against the backend (loopback only)"
)]
struct Args {
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    clients: u32,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup_seconds: u64,
    /// Size of each request body (POSTed to the echo service, which returns it).
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Only the direct run (no federation is started).
    #[arg(long, conflicts_with = "gateway_only")]
    direct_only: bool,
    /// Also run the gateway with the message log turned off, to show what logging costs: both
    /// federations run side by side and are measured in alternating windows (see `--rounds`).
    #[arg(long, conflicts_with = "direct_only")]
    compare_without_log: bool,
    /// With `--compare-without-log`: pairs of measured windows (each `--seconds` long, after
    /// its own warm-up), with and without the log, the order alternating from round to round.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Only the run through the gateway.
    #[arg(long)]
    gateway_only: bool,
    /// Run the federation with its message log turned off (for profiling what the log costs).
    #[arg(long, conflicts_with_all = ["direct_only", "compare_without_log"])]
    without_log: bool,
    /// Print one JSON line with the results instead of the table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The gateway's two security servers, as processes of the shipped binary with the message
    /// log on, against a two-hop mutual-TLS nginx chain in front of the same backend, driven
    /// alike by `wrk` in alternating rounds (the options above do not apply).
    Peer(PeerArgs),
    /// A simulated instance of security servers in this process (real configuration client,
    /// verification and peer relay over pinned mutual TLS): how long a newly published
    /// configuration takes to reach all of them when the registry stops right after publishing.
    Converge(ConvergeArgs),
}

#[derive(Debug, clap::Args)]
struct ConvergeArgs {
    /// Security servers in the instance.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(2..=5000))]
    servers: u32,
    /// Members the configuration lists (the national instance: 1,741 municipalities and the
    /// ministries); at least one per server.
    #[arg(long, default_value_t = 1800)]
    members: u32,
    /// Every server's poll interval, in seconds (the configuration's default is 60).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_secs: u64,
    /// Give up on servers that do not hold the new configuration after this many seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout_secs: u64,
}

#[derive(Debug, clap::Args)]
struct PeerArgs {
    /// Request body sizes in bytes, comma-separated (each echoed back).
    #[arg(long, value_delimiter = ',', default_values_t = [1024usize, 1_048_576, 104_857_600])]
    sizes: Vec<usize>,
    /// wrk connections; by default 64 for bodies up to 64 KiB, 16 up to 4 MiB, else 4.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: Option<u32>,
    /// wrk threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Rounds for bodies up to 64 KiB: each measures both paths, the order alternating.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Measured seconds per window for bodies up to 64 KiB.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Rounds for larger bodies.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    large_rounds: u32,
    /// Measured seconds per window for larger bodies.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    large_seconds: u64,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup_seconds: u64,
    /// The security server binary; by default the one beside this program.
    #[arg(long)]
    security_server: Option<PathBuf>,
    /// The nginx binary; by default found on PATH, /usr/sbin or /sbin.
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// The wrk binary; by default found on PATH.
    #[arg(long)]
    wrk: Option<PathBuf>,
    /// nginx `worker_processes` of each of the two nginx.
    #[arg(long, default_value = "auto")]
    nginx_workers: String,
    /// Stop before a window when the disk holding the run's files has fewer free gigabytes.
    #[arg(long, default_value_t = 8.0)]
    min_free_gb: f64,
    /// Keep the run's files (configurations, logs, message logs) here instead of a temporary
    /// directory that is removed.
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl PeerArgs {
    fn into_options(self) -> anyhow::Result<PeerOptions> {
        let beside_this = || -> anyhow::Result<PathBuf> {
            let exe = std::env::current_exe().context("where this program is")?;
            Ok(exe.with_file_name("security-server"))
        };
        Ok(PeerOptions {
            sizes: self.sizes,
            connections: self.connections,
            threads: self.threads,
            rounds: self.rounds,
            seconds: self.seconds,
            large_rounds: self.large_rounds,
            large_seconds: self.large_seconds,
            warmup_seconds: self.warmup_seconds,
            security_server: match self.security_server {
                Some(p) => p,
                None => beside_this()?,
            },
            nginx: self.nginx.unwrap_or_else(|| find_program("nginx")),
            wrk: self.wrk.unwrap_or_else(|| find_program("wrk")),
            nginx_workers: self.nginx_workers,
            min_free_bytes: (self.min_free_gb.max(0.0) * 1e9) as u64,
            dir: self.dir,
        })
    }
}

/// `name` on PATH or in /usr/sbin or /sbin (where Debian puts nginx); the bare name if nowhere,
/// so the error names it.
fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> std::process::ExitCode {
    runtime::cli::finish(main_with(Args::parse()))
}

fn main_with(mut args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.command.take() {
        Some(Command::Peer(peer)) => {
            let options = peer.into_options()?;
            rt.block_on(bench::peer::run(&options))
        }
        Some(Command::Converge(c)) => {
            let options = bench::converge::ConvergeOptions {
                servers: c.servers as usize,
                members: c.members as usize,
                poll: Duration::from_secs(c.poll_secs),
                timeout: Duration::from_secs(c.timeout_secs),
            };
            println!(
                "{} servers polling every {} s; the registry stops once the first holds the new configuration",
                options.servers, c.poll_secs
            );
            let report = rt.block_on(bench::converge::run(&options))?;
            print!("{}", bench::converge::describe(&report));
            if report.converged() {
                Ok(())
            } else {
                anyhow::bail!("not every server holds the new configuration")
            }
        }
        None => rt.block_on(run(args)),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let options = LoadOptions {
        clients: args.clients as usize,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(args.warmup_seconds),
        body_bytes: args.body_bytes,
        ..LoadOptions::default()
    };
    let dir = tempfile::tempdir().context("creating a temporary directory")?;

    let (gateway, direct, unlogged) = if args.direct_only {
        (None, Some(run_direct_only(&options).await?), None)
    } else if args.compare_without_log {
        let (gateway, direct, unlogged) = compare_without_log(dir.path(), &options, &args).await?;
        (gateway, direct, Some(unlogged))
    } else {
        let federation = start_federation(dir.path(), !args.without_log).await?;
        let result = run_through_federation(&federation, &options, args.gateway_only).await;
        print_checkpoint_metrics(&federation).await;
        eprintln!("stopping the federation…");
        federation.stop().await;
        let (gateway, direct) = result?;
        (gateway, direct, None)
    };
    if let (Some(logged), Some(unlogged)) = (&gateway, &unlogged) {
        println!(
            "gateway without message log: {:.0} req/s (p50 {}, p99 {}, {} CPU per request); \
             with log / without: {:.3}",
            unlogged.throughput(),
            ms(unlogged.percentile(50.0)),
            ms(unlogged.percentile(99.0)),
            cpu_us(unlogged),
            logged.throughput() / unlogged.throughput().max(f64::MIN_POSITIVE)
        );
        if let (Some(with), Some(without)) =
            (logged.cpu_us_per_request(), unlogged.cpu_us_per_request())
        {
            println!(
                "CPU per request without log / with log: {:.3} (the throughput ratio a machine \
                 not shared with other programs would show)",
                without / with
            );
        }
    }

    if args.json {
        println!(
            "{}",
            json_line(&args, gateway.as_ref(), direct.as_ref(), unlogged.as_ref())
        );
    } else {
        print_table(&args, gateway.as_ref(), direct.as_ref());
    }
    Ok(())
}

/// The provider server's checkpoint gauges after the load: how long a round (sign + witnesses)
/// took and how many witnesses cosigned.
async fn print_checkpoint_metrics(federation: &Federation) {
    let Some(admin) = federation
        .server("JP/MUN/131016/ss1")
        .and_then(|s| s.running())
        .map(|r| r.admin_addr)
    else {
        return;
    };
    let Ok(r) = runtime::HttpClient::plain()
        .get(&format!("http://{admin}/metrics"), None)
        .await
    else {
        return;
    };
    for line in r
        .text()
        .lines()
        .filter(|l| l.starts_with("xroad_checkpoint_"))
    {
        println!("provider {line}");
    }
    for s in federation.servers() {
        if let Some(r) = s.running() {
            let stats = r.log.stats();
            let per = |d: Duration, n: u64| d.as_secs_f64() * 1e3 / n.max(1) as f64;
            println!(
                "{} message log: {} records in {} group commits ({:.1} per commit, {:.3} ms \
                 to write and sync each), applied in {} database transactions ({:.1} ms each)",
                s.id,
                stats.entries_committed,
                stats.batches_committed,
                stats.entries_committed as f64 / stats.batches_committed.max(1) as f64,
                per(stats.sync_time, stats.batches_committed),
                stats.index_commits,
                per(stats.index_time, stats.index_commits),
            );
        }
    }
}

async fn start_federation(dir: &Path, messagelog: bool) -> anyhow::Result<Federation> {
    eprintln!("starting a sandbox federation on loopback…");
    let mut spec = FederationSpec::sandbox();
    spec.messagelog_enabled = messagelog;
    // No configuration polling during the measurement.
    spec.poll_interval_secs = 3600;
    spec.services.push(ServiceSpec::demo(
        ECHO_SERVICE.parse().context("echo service id")?,
        DemoApi::Echo,
        vec![CLIENT.parse().context("client id")?],
    ));
    Federation::start(
        spec,
        &dir.join("federation"),
        Ports::Ephemeral,
        Arc::new(certs::SystemClock),
    )
    .await
    .context("starting the sandbox federation")
}

/// The echo service through the client's security server of `federation`.
fn gateway_target(federation: &Federation) -> anyhow::Result<Target> {
    let proxy = federation
        .description()
        .security_servers
        .iter()
        .find(|s| s.hosts.iter().any(|h| h.to_string() == CLIENT))
        .map(|s| s.client_proxy.clone())
        .context("no security server hosts the client subsystem")?;
    Ok(
        Target::new("gateway", &format!("{proxy}/r1/{ECHO_SERVICE}"))?
            .header("X-Road-Client", CLIENT)?,
    )
}

async fn run_through_federation(
    federation: &Federation,
    options: &LoadOptions,
    gateway_only: bool,
) -> anyhow::Result<(Option<LoadReport>, Option<LoadReport>)> {
    let gateway = Some(measure(gateway_target(federation)?, options).await);
    let direct = if gateway_only {
        None
    } else {
        Some(measure_direct(federation, options).await?)
    };
    Ok((gateway, direct))
}

async fn measure_direct(
    federation: &Federation,
    options: &LoadOptions,
) -> anyhow::Result<LoadReport> {
    let target = Target::new("direct", &format!("{}/echo", federation.demo_url()))?;
    Ok(measure(target, options).await)
}

/// The gateway with and without the message log, in the same run: two federations started side
/// by side (one with its log turned off), measured in `--rounds` pairs of windows whose order
/// alternates (with, without; without, with; …), so that a machine that speeds up or slows down
/// during the run weighs on both alike. Returns the logged windows merged, the direct run (after
/// the rounds, unless `--gateway-only`) and the unlogged windows merged.
async fn compare_without_log(
    dir: &Path,
    options: &LoadOptions,
    args: &Args,
) -> anyhow::Result<(Option<LoadReport>, Option<LoadReport>, LoadReport)> {
    let logged = start_federation(&dir.join("logged"), true).await?;
    let unlogged = match start_federation(&dir.join("unlogged"), false).await {
        Ok(f) => f,
        Err(e) => {
            logged.stop().await;
            return Err(e);
        }
    };
    let result = compare_rounds(&logged, &unlogged, options, args).await;
    print_checkpoint_metrics(&logged).await;
    eprintln!("stopping the federations…");
    logged.stop().await;
    unlogged.stop().await;
    result
}

async fn compare_rounds(
    logged: &Federation,
    unlogged: &Federation,
    options: &LoadOptions,
    args: &Args,
) -> anyhow::Result<(Option<LoadReport>, Option<LoadReport>, LoadReport)> {
    let with_log = gateway_target(logged)?;
    let without_log = gateway_target(unlogged)?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    for round in 0..args.rounds {
        let with_first = round % 2 == 0;
        for logged_now in [with_first, !with_first] {
            if logged_now {
                eprint!("round {} with the log; ", round + 1);
                with.push(measure(with_log.clone(), options).await);
            } else {
                eprint!("round {} without the log; ", round + 1);
                without.push(measure(without_log.clone(), options).await);
            }
        }
        if let (Some(w), Some(o)) = (with.last(), without.last()) {
            let ratio = w.throughput() / o.throughput().max(f64::MIN_POSITIVE);
            ratios.push(ratio);
            println!(
                "round {}: with log {:.0} req/s ({} CPU per request, {}), without {:.0} req/s \
                 ({}, {}); with / without: {ratio:.3}",
                round + 1,
                w.throughput(),
                cpu_us(w),
                machine_shares(w),
                o.throughput(),
                cpu_us(o),
                machine_shares(o),
            );
        }
    }
    if let Some((median, min, max)) = median_min_max(&mut ratios) {
        println!(
            "with log / without over {} rounds: median {median:.3} (min {min:.3}, max {max:.3})",
            ratios.len(),
        );
    }
    let direct = if args.gateway_only {
        None
    } else {
        Some(measure_direct(logged, options).await?)
    };
    let without = LoadReport::merge(&without).context("no rounds were measured")?;
    Ok((LoadReport::merge(&with), direct, without))
}

async fn run_direct_only(options: &LoadOptions) -> anyhow::Result<LoadReport> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo backend")?;
    let url = format!("http://{}/echo", listener.local_addr()?);
    let (stop, shutdown) = tokio::sync::oneshot::channel::<()>();
    let backend = tokio::spawn(sandbox::demo::serve(listener, async {
        let _ = shutdown.await;
    }));
    let report = measure(Target::new("direct", &url)?, options).await;
    let _ = stop.send(());
    backend
        .await
        .context("demo backend task")?
        .context("demo backend")?;
    Ok(report)
}

async fn measure(target: Target, options: &LoadOptions) -> LoadReport {
    eprintln!(
        "{}: {} clients → {}; warming up {:?}, measuring {:?}…",
        target.name(),
        options.clients,
        target.url(),
        options.warmup,
        options.duration
    );
    load::run(target, options).await
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn cpu_us(r: &LoadReport) -> String {
    r.cpu_us_per_request()
        .map_or_else(|| "-".into(), |us| format!("{us:.0} µs"))
}

/// The machine's idle and stolen CPU time in the window, as shares of all of it.
fn machine_shares(r: &LoadReport) -> String {
    let share = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{:.1} %", x * 100.0));
    let m = r.machine.as_ref();
    format!(
        "machine idle {}, steal {}",
        share(m.and_then(|m| m.idle_fraction())),
        share(m.and_then(|m| m.steal_fraction()))
    )
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

fn ratios(gateway: &LoadReport, direct: &LoadReport) -> (Option<f64>, Option<f64>) {
    let throughput = (direct.throughput() > 0.0 && gateway.throughput() > 0.0)
        .then(|| gateway.throughput() / direct.throughput());
    let p50 = match (gateway.percentile(50.0), direct.percentile(50.0)) {
        (Some(g), Some(d)) if !d.is_zero() => Some(g.as_secs_f64() / d.as_secs_f64()),
        _ => None,
    };
    (throughput, p50)
}

fn print_table(args: &Args, gateway: Option<&LoadReport>, direct: Option<&LoadReport>) {
    println!();
    println!(
        "{} clients, {} s measured after {} s warm-up, {}-byte POST bodies to the echo service; \
         {} CPUs shared by the load generator, the federation and the backend",
        args.clients,
        args.seconds,
        args.warmup_seconds,
        args.body_bytes,
        cpus()
    );
    println!();
    println!(
        "{:<8} {:>10} {:>8} {:>12} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "path", "requests", "errors", "2xx req/s", "p50", "p90", "p99", "max", "CPU/request"
    );
    for r in [gateway, direct].into_iter().flatten() {
        println!(
            "{:<8} {:>10} {:>8} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>12}",
            r.target,
            r.requests,
            r.errors,
            r.throughput(),
            ms(r.percentile(50.0)),
            ms(r.percentile(90.0)),
            ms(r.percentile(99.0)),
            ms(r.max()),
            cpu_us(r)
        );
    }
    for r in [gateway, direct].into_iter().flatten() {
        println!("{}: {}", r.target, machine_shares(r));
    }
    if let (Some(g), Some(d)) = (gateway, direct) {
        let (throughput, p50) = ratios(g, d);
        let show = |x: Option<f64>| x.map_or_else(|| "n/a".into(), |x| format!("{x:.3}"));
        println!();
        println!(
            "gateway/direct: throughput {}, p50 latency {}",
            show(throughput),
            show(p50)
        );
    }
    for r in [gateway, direct].into_iter().flatten() {
        if let Some(e) = &r.first_error {
            println!();
            println!("first {} error: {e}", r.target);
        }
    }
}

fn json_line(
    args: &Args,
    gateway: Option<&LoadReport>,
    direct: Option<&LoadReport>,
    unlogged: Option<&LoadReport>,
) -> String {
    let (throughput, p50) = match (gateway, direct) {
        (Some(g), Some(d)) => ratios(g, d),
        _ => (None, None),
    };
    let log_ratio = match (gateway, unlogged) {
        (Some(g), Some(u)) if u.throughput() > 0.0 => Some(g.throughput() / u.throughput()),
        _ => None,
    };
    serde_json::json!({
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup_seconds,
        "body_bytes": args.body_bytes,
        "cpus": cpus(),
        "gateway": gateway.map(LoadReport::to_json),
        "direct": direct.map(LoadReport::to_json),
        "without_log": unlogged.map(LoadReport::to_json),
        "rounds": unlogged.map(|_| args.rounds),
        "ratio": {
            "throughput": throughput,
            "p50_latency": p50,
            "with_log_to_without": log_ratio,
        },
    })
    .to_string()
}

//! `bench peer`: the gateway against the peer a user would deploy instead, a plain two-hop
//! mutual-TLS reverse-proxy chain of nginx ([`nginx`]), on one machine, driven by the same
//! external load generator (`wrk`, [`wrk`]) in alternating rounds.
//!
//! For each body size: the two security servers run as processes of the shipped binary with the
//! message log on ([`gateway`]), the nginx chain beside them, both in front of the same echo
//! backend ([`backend`], in this process). Each round measures one path, then the other (the
//! order alternating from round to round, so a machine that speeds up or slows down weighs on
//! both alike), each after a warm-up of its own. A window reports throughput, latency
//! percentiles (from wrk), the CPU time each process spent per request and each server's memory
//! (from `/proc`, [`procfs`]), and how much of the machine sat idle.
//!
//! Everything runs on the one machine: the load generator, both paths and the backend share its
//! cores, as they would in any single-machine comparison. The two paths never run at once.

pub mod backend;
pub mod gateway;
pub mod nginx;
pub mod procfs;
pub mod wrk;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::load::MachineTicks;

/// What `bench peer` runs.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Request body sizes, each answered with the same bytes (echo).
    pub sizes: Vec<usize>,
    /// Connections of the load generator; `None`: [`default_connections`] of each size.
    pub connections: Option<u32>,
    /// wrk threads (at most one per connection).
    pub threads: u32,
    /// Rounds (one window of each path per round) for bodies up to 64 KiB, and their length.
    pub rounds: u32,
    pub seconds: u64,
    /// Rounds and their length for larger bodies (they fill the message log's disk quickly).
    pub large_rounds: u32,
    pub large_seconds: u64,
    /// Load before each measured window, not reported.
    pub warmup_seconds: u64,
    /// The programs.
    pub security_server: PathBuf,
    pub nginx: PathBuf,
    pub wrk: PathBuf,
    /// nginx `worker_processes` of each of the two.
    pub nginx_workers: String,
    /// Stop before a window when the disk holding the run's files has less free.
    pub min_free_bytes: u64,
    /// Where the run's files go (a temporary directory when `None`; kept when given).
    pub dir: Option<PathBuf>,
}

/// Bodies larger than this get [`PeerOptions::large_rounds`].
const SMALL_BODY: usize = 64 * 1024;

/// 64 connections for small bodies (the load); fewer for large ones, whose in-flight
/// bodies would otherwise be gigabytes.
pub fn default_connections(body_bytes: usize) -> u32 {
    if body_bytes <= SMALL_BODY {
        64
    } else if body_bytes <= 4 << 20 {
        16
    } else {
        4
    }
}

/// Which of the two paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path2 {
    Gateway,
    Chain,
}

impl Path2 {
    fn name(self) -> &'static str {
        match self {
            Path2::Gateway => "gateway",
            Path2::Chain => "nginx chain",
        }
    }
}

/// One measured window of one path.
#[derive(Debug, Clone)]
struct Window {
    path: Path2,
    round: u32,
    wrk: wrk::WrkResult,
    /// CPU time in the window of: the client's side, the provider's side, this process (the
    /// backend; the registry is idle), and wrk.
    cpu: [Option<Duration>; 4],
    machine: Option<MachineTicks>,
    /// Resident memory of each side's processes at the end of the window, in bytes.
    rss: [Option<u64>; 2],
}

impl Window {
    fn cpu_per_request(&self, i: usize) -> Option<Duration> {
        let n = u32::try_from(self.wrk.successes())
            .ok()
            .filter(|n| *n > 0)?;
        self.cpu[i].map(|t| t / n)
    }
}

/// Runs the comparison and prints its results.
pub async fn run(options: &PeerOptions) -> anyhow::Result<()> {
    for program in [&options.security_server, &options.nginx, &options.wrk] {
        if !program.exists() {
            anyhow::bail!(
                "{} is missing: build the servers with `cargo build --release -p security-server \
                 -p bench`, and install nginx and wrk with `scripts/install-bench-tools`",
                program.display()
            );
        }
    }
    let temp;
    let dir = match &options.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    println!(
        "bench peer: {} CPUs shared by wrk, both paths and the backend; {}",
        std::thread::available_parallelism().map_or(1, usize::from),
        load_average()
    );
    for &size in &options.sizes {
        let size_dir = dir.join(format!("body-{size}"));
        let result = compare_size(options, size, &size_dir).await;
        if options.dir.is_none() {
            // A large run's message log holds gigabytes: free them before the next size.
            let _ = std::fs::remove_dir_all(&size_dir);
        }
        result?;
    }
    Ok(())
}

/// The comparison for one body size, on a fresh federation and chain.
async fn compare_size(options: &PeerOptions, size: usize, dir: &Path) -> anyhow::Result<()> {
    let connections = options
        .connections
        .unwrap_or_else(|| default_connections(size));
    let (rounds, seconds) = if size > SMALL_BODY {
        (options.large_rounds, options.large_seconds)
    } else {
        (options.rounds, options.seconds)
    };
    eprintln!(
        "{}: starting the gateway and the nginx chain…",
        size_name(size)
    );
    let backend = backend::Backend::start()
        .await
        .context("starting the backend")?;
    let gateway = gateway::Gateway::start(
        &dir.join("gateway"),
        &options.security_server,
        &backend.url(),
        true,
    )
    .await
    .context("starting the gateway")?;
    let chain = match nginx::Chain::start(
        &options.nginx,
        &dir.join("nginx"),
        backend.addr,
        &options.nginx_workers,
    )
    .await
    {
        Ok(chain) => chain,
        Err(e) => {
            gateway.stop().await;
            return Err(e.context("starting the nginx chain"));
        }
    };
    let shape = Shape {
        size,
        connections,
        threads: options.threads.clamp(1, connections),
        rounds,
        seconds,
        warmup_seconds: options.warmup_seconds,
    };
    let result = measure_rounds(options, &shape, dir, &gateway, &chain).await;
    let after = Aftermath::take(&gateway, &chain).await;
    chain.stop().await;
    gateway.stop().await;
    let windows = result?;
    print_windows(&shape, &windows);
    after.print();
    Ok(())
}

/// The load of one body size.
#[derive(Debug, Clone, Copy)]
struct Shape {
    size: usize,
    connections: u32,
    threads: u32,
    rounds: u32,
    seconds: u64,
    warmup_seconds: u64,
}

/// The rounds: one window of each path per round, the order alternating.
async fn measure_rounds(
    options: &PeerOptions,
    shape: &Shape,
    dir: &Path,
    gateway: &gateway::Gateway,
    chain: &nginx::Chain,
) -> anyhow::Result<Vec<Window>> {
    let headers = [("X-Road-Client", gateway::CLIENT)];
    let script = dir.join("post.lua");
    std::fs::write(&script, wrk::script(shape.size, &headers))?;
    let mut windows = Vec::new();
    for round in 1..=shape.rounds {
        let order = if round % 2 == 1 {
            [Path2::Gateway, Path2::Chain]
        } else {
            [Path2::Chain, Path2::Gateway]
        };
        for path in order {
            if let Some(free) = procfs::available_bytes(dir)
                && free < options.min_free_bytes
            {
                anyhow::bail!(
                    "stopping before round {round}: {:.1} GB free on the disk of {}, less than \
                     the {:.1} GB asked for (--min-free-gb)",
                    free as f64 / 1e9,
                    dir.display(),
                    options.min_free_bytes as f64 / 1e9
                );
            }
            let (url, sides) = match path {
                Path2::Gateway => (
                    gateway.url.clone(),
                    [
                        vec![gateway.client_side.pid],
                        vec![gateway.provider_side.pid],
                    ],
                ),
                Path2::Chain => (
                    format!("{}/echo", chain.url),
                    [chain.client_side.pids(), chain.provider_side.pids()],
                ),
            };
            eprintln!(
                "round {round}: {} ({} s warm-up, {} s measured)…",
                path.name(),
                shape.warmup_seconds,
                shape.seconds
            );
            if shape.warmup_seconds > 0 {
                run_wrk(options, shape, shape.warmup_seconds, &script, &url).await?;
            }
            let before = CpuSample::take(&sides);
            let result = run_wrk(options, shape, shape.seconds, &script, &url).await?;
            let after = CpuSample::take(&sides);
            let window = Window {
                path,
                round,
                wrk: result,
                cpu: after.since(&before),
                rss: sides.each_ref().map(|pids| {
                    pids.iter()
                        .map(|pid| procfs::memory(*pid).map(|(rss, _)| rss))
                        .sum::<Option<u64>>()
                }),
                machine: after.machine.zip(before.machine).map(|(a, b)| a.since(b)),
            };
            if window.wrk.successes() == 0 {
                eprintln!(
                    "no request of {} succeeded in the window (longer windows, --large-seconds, \
                     for large bodies?)",
                    path.name()
                );
            }
            windows.push(window);
        }
    }
    Ok(windows)
}

async fn run_wrk(
    options: &PeerOptions,
    shape: &Shape,
    seconds: u64,
    script: &Path,
    url: &str,
) -> anyhow::Result<wrk::WrkResult> {
    let out = tokio::process::Command::new(&options.wrk)
        .arg(format!("-t{}", shape.threads))
        .arg(format!("-c{}", shape.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("120s")
        .arg("-s")
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", options.wrk.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wrk::parse(&stdout).map_err(anyhow::Error::msg)
}

/// CPU times at one moment: of each side's processes, of this process, of the children this
/// process has waited for (wrk), and of the machine.
#[derive(Debug)]
struct CpuSample {
    sides: [Option<Duration>; 2],
    this: Option<procfs::CpuTimes>,
    machine: Option<MachineTicks>,
}

impl CpuSample {
    fn take(sides: &[Vec<u32>; 2]) -> CpuSample {
        let sum = |pids: &Vec<u32>| {
            pids.iter()
                .map(|pid| procfs::cpu_times(*pid).map(|t| t.own))
                .sum::<Option<Duration>>()
        };
        CpuSample {
            sides: [sum(&sides[0]), sum(&sides[1])],
            this: procfs::self_cpu_times(),
            machine: MachineTicks::now(),
        }
    }

    /// Client's side, provider's side, this process (the backend), wrk.
    fn since(&self, before: &CpuSample) -> [Option<Duration>; 4] {
        let delta = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        let this = self.this.zip(before.this);
        [
            delta(self.sides[0], before.sides[0]),
            delta(self.sides[1], before.sides[1]),
            this.and_then(|(a, b)| delta(Some(a.own), Some(b.own))),
            this.and_then(|(a, b)| delta(Some(a.waited_children), Some(b.waited_children))),
        ]
    }
}

/// What is read before the servers stop: memory, start times, disk.
#[derive(Debug)]
struct Aftermath {
    lines: Vec<String>,
}

impl Aftermath {
    async fn take(gateway: &gateway::Gateway, chain: &nginx::Chain) -> Aftermath {
        let mut lines = Vec::new();
        let mb = |b: u64| b as f64 / 1e6;
        let memory = |pids: &[u32]| -> Option<(u64, u64)> {
            pids.iter()
                .map(|pid| procfs::memory(*pid))
                .try_fold((0, 0), |(r, h), m| m.map(|(rss, hwm)| (r + rss, h + hwm)))
        };
        for s in [&gateway.client_side, &gateway.provider_side] {
            if let Some((rss, hwm)) = memory(&[s.pid]) {
                lines.push(format!(
                    "{} security server (pid {}): RSS {:.1} MB after the first exchange, {:.1} MB \
                     after the rounds, peak {:.1} MB; /health 200 {} ms after it was started",
                    s.role,
                    s.pid,
                    s.rss_at_start.map_or(f64::NAN, mb),
                    mb(rss),
                    mb(hwm),
                    s.healthy_in.as_millis()
                ));
            }
        }
        lines.push(format!(
            "first exchange through both servers: {} ms after they were started",
            gateway.first_exchange_in.as_millis()
        ));
        for n in [&chain.client_side, &chain.provider_side] {
            let pids = n.pids();
            if let Some((rss, hwm)) = memory(&pids) {
                lines.push(format!(
                    "nginx {} (master and {} workers): RSS {:.1} MB after the rounds, peaks \
                     added up {:.1} MB (shared pages counted in each); listening {} ms after \
                     it was started",
                    n.name,
                    pids.len().saturating_sub(1),
                    mb(rss),
                    mb(hwm),
                    n.started_in.as_millis()
                ));
            }
        }
        for s in [&gateway.client_side, &gateway.provider_side] {
            let dir = s.dir.as_path();
            let bytes = procfs::disk_usage(dir);
            let exchanges = s.exchanges().await;
            lines.push(format!(
                "{} security server's data directory: {:.1} MB on disk after {} exchanges{}",
                s.role,
                mb(bytes),
                exchanges.map_or_else(|| "?".into(), |n| n.to_string()),
                exchanges
                    .filter(|n| *n > 0)
                    .map(|n| format!(" ({:.0} bytes per exchange)", bytes as f64 / n as f64))
                    .unwrap_or_default()
            ));
        }
        Aftermath { lines }
    }

    fn print(&self) {
        for line in &self.lines {
            println!("{line}");
        }
        println!();
    }
}

fn print_windows(shape: &Shape, windows: &[Window]) {
    println!();
    println!(
        "{} bodies (POST, echoed back): wrk -t{} -c{}, {} rounds of {} s after {} s of warm-up \
         each, the order of the two paths alternating",
        size_name(shape.size),
        shape.threads,
        shape.connections,
        shape.rounds,
        shape.seconds,
        shape.warmup_seconds
    );
    println!(
        "{:<5} {:<11} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>8} {:>6} {:>5} {:>5} {:>9}",
        "round",
        "path",
        "req/s",
        "MB/s",
        "p50",
        "p90",
        "p99",
        "max",
        "errors",
        "CPU client",
        "provider",
        "backend",
        "wrk",
        "idle",
        "steal",
        "RSS MB"
    );
    for w in windows {
        let us =
            |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{} µs", d.as_micros()));
        println!(
            "{:<5} {:<11} {:>9.1} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>8} {:>6} {:>5} {:>5} {:>9}",
            w.round,
            w.path.name(),
            rate(shape, w),
            rate(shape, w) * shape.size as f64 / 1e6,
            ms(w.wrk.p50),
            ms(w.wrk.p90),
            ms(w.wrk.p99),
            ms(w.wrk.max),
            w.wrk.errors(),
            us(w.cpu_per_request(0)),
            us(w.cpu_per_request(1)),
            us(w.cpu_per_request(2)),
            us(w.cpu_per_request(3)),
            share(w.machine.and_then(|m| m.idle_fraction())),
            share(w.machine.and_then(|m| m.steal_fraction())),
            match w.rss {
                [Some(c), Some(p)] => format!("{:.0}/{:.0}", c as f64 / 1e6, p as f64 / 1e6),
                _ => "-".into(),
            },
        );
    }
    let mut ratios: Vec<f64> = (1..=shape.rounds)
        .filter_map(|round| {
            let of = |p| windows.iter().find(|w| w.round == round && w.path == p);
            let (g, c) = (of(Path2::Gateway)?, of(Path2::Chain)?);
            (rate(shape, c) > 0.0).then(|| rate(shape, g) / rate(shape, c))
        })
        .collect();
    if shape.size > SMALL_BODY {
        println!(
            "req/s and MB/s: {} connections / the mean latency (a window of a few requests per \
             connection would count only those that ended in it); MB/s counts the request \
             bodies, each also sent back",
            shape.connections
        );
    }
    if let Some((median, min, max)) = median_min_max(&mut ratios) {
        println!(
            "gateway / nginx chain throughput, per round: median {median:.3} (min {min:.3}, max \
             {max:.3}); CPU columns: per request, of each process (client's side, provider's \
             side, the backend, wrk); idle and steal: shares of the whole machine's CPU time \
             (steal: taken by the hypervisor for other guests); RSS: client's side / provider's \
             side at the end of the window (nginx: master and workers added up)"
        );
    }
}

/// Requests per second of a window: those wrk counted, or for bodies over 64 KiB (seconds each)
/// the closed loop's rate by its mean latency ([`wrk::WrkResult::closed_loop_throughput`]).
fn rate(shape: &Shape, w: &Window) -> f64 {
    if shape.size > SMALL_BODY {
        w.wrk.closed_loop_throughput(shape.connections)
    } else {
        w.wrk.throughput()
    }
}

fn share(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "-".into(), |f| format!("{:.0} %", f * 100.0))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `1 KiB`, `1 MiB`, `100 MiB`, or bytes.
pub fn size_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b}-byte"),
    }
}

/// The median (the mean of the middle two for an even count), minimum and maximum; sorts `xs`.
pub fn median_min_max(xs: &mut [f64]) -> Option<(f64, f64, f64)> {
    xs.sort_by(f64::total_cmp);
    let (min, max) = (*xs.first()?, *xs.last()?);
    let mid = xs.len() / 2;
    let median = if xs.len().is_multiple_of(2) {
        (xs[mid - 1] + xs[mid]) / 2.0
    } else {
        xs[mid]
    };
    Some((median, min, max))
}

/// `/proc/loadavg`'s first three fields, so a reader sees what else was running.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .map_or_else(
            || "load average unknown".into(),
            |l| format!("load average before: {l}"),
        )
}

#[cfg(test)]
mod tests;

//! The gateway as an operator runs it: a sandbox federation reduced to what one exchange needs
//! (the registry, the ministry's server hosting the client subsystem, Chiyoda City's server
//! providing an echo service on a backend of the caller's), prepared in-process through the real
//! enrolment path, then its two security servers stopped and started again as `security-server
//! --config FILE run` processes of the shipped binary, message log on (the default). The registry
//! stays in this process; the servers ask the registry nothing during the run
//! (configuration poll once an hour).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sandbox::{Backend, DemoApi, Federation, FederationSpec, Ports, ServiceSpec};
use tokio::process::{Child, Command};

pub const CLIENT: &str = "JP/GOV/digital-agency/portal";
pub const ECHO_SERVICE: &str = "JP/MUN/131016/records/echo";
const CLIENT_SERVER: &str = "JP/GOV/digital-agency/ss1";
const PROVIDER_SERVER: &str = "JP/MUN/131016/ss1";

/// One security server process.
#[derive(Debug)]
pub struct ServerProcess {
    /// `client's` or `provider's`.
    pub role: &'static str,
    pub pid: u32,
    child: Child,
    /// Its directory: configuration file, data directory (keys, message log), `server.log`.
    pub dir: PathBuf,
    /// Its admin API (`http://…`: `/health`, `/metrics`).
    pub admin: String,
    /// From spawning it to its `/health` answering 200.
    pub healthy_in: Duration,
    /// Resident memory once the first exchange was answered, in bytes.
    pub rss_at_start: Option<u64>,
}

/// The federation with its two servers running as processes.
#[derive(Debug)]
pub struct Gateway {
    federation: Federation,
    pub client_side: ServerProcess,
    pub provider_side: ServerProcess,
    /// The echo service through the client's server (`http://…/r1/…`).
    pub url: String,
    /// From spawning both servers to the first exchange answered through them.
    pub first_exchange_in: Duration,
}

impl Gateway {
    /// Prepares the federation in `dir` (message log on or off), its echo service answered by
    /// `backend` (a base URL), and starts the two servers from `binary`.
    pub async fn start(
        dir: &Path,
        binary: &Path,
        backend: &str,
        messagelog: bool,
    ) -> anyhow::Result<Gateway> {
        let mut spec = FederationSpec::sandbox();
        spec.messagelog_enabled = messagelog;
        spec.poll_interval_secs = 3600;
        spec.servers
            .retain(|s| [CLIENT_SERVER, PROVIDER_SERVER].contains(&s.id.to_string().as_str()));
        spec.portal = None;
        spec.samples.clear();
        let mut echo = ServiceSpec::demo(
            ECHO_SERVICE.parse().context("echo service id")?,
            DemoApi::Echo,
            vec![CLIENT.parse().context("client id")?],
        );
        echo.backend = Backend::Url(backend.to_owned());
        spec.services = vec![echo];
        let mut federation = Federation::start(
            spec,
            &dir.join("federation"),
            Ports::Ephemeral,
            Arc::new(certs::SystemClock),
        )
        .await
        .context("preparing the sandbox federation")?;
        let configs: Vec<(PathBuf, String)> = [CLIENT_SERVER, PROVIDER_SERVER]
            .iter()
            .map(|id| {
                let s = federation.server(id).context("server missing")?;
                Ok((
                    s.config_path.clone(),
                    format!("http://{}", s.config.admin.listen),
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let proxy = federation
            .server(CLIENT_SERVER)
            .map(|s| format!("http://{}", s.config.client_proxy.listen))
            .context("client's server missing")?;
        for id in [CLIENT_SERVER, PROVIDER_SERVER] {
            federation.stop_server(id).await;
        }

        // From here on an error drops the children, which kills them (`kill_on_drop`), and the
        // federation, which aborts its tasks.
        let started = tokio::time::Instant::now();
        let mut children = Vec::new();
        for (config, role) in configs.iter().zip(["client's", "provider's"]) {
            children.push((spawn(binary, &config.0, role)?, config, role));
        }
        let mut servers = Vec::new();
        for (mut child, config, role) in children {
            let healthy_in = wait_healthy(&mut child, &config.1, started)
                .await
                .with_context(|| format!("the {role} security server"))?;
            servers.push(ServerProcess {
                role,
                pid: child.id().context("a security server exited")?,
                child,
                dir: config.0.parent().unwrap_or(Path::new(".")).to_owned(),
                admin: config.1.clone(),
                healthy_in,
                rss_at_start: None,
            });
        }
        let url = format!("{proxy}/r1/{ECHO_SERVICE}");
        let first_exchange_in = first_exchange(&url, started).await?;
        for s in &mut servers {
            s.rss_at_start = super::procfs::memory(s.pid).map(|(rss, _)| rss);
        }
        let [client_side, provider_side]: [ServerProcess; 2] = servers
            .try_into()
            .map_err(|_| anyhow::anyhow!("two security servers were expected"))?;
        Ok(Gateway {
            federation,
            client_side,
            provider_side,
            url,
            first_exchange_in,
        })
    }

    pub fn dir(&self) -> &Path {
        self.federation.dir()
    }

    /// Stops the servers (SIGTERM: they drain and flush their logs), then the registry.
    pub async fn stop(self) {
        self.client_side.stop().await;
        self.provider_side.stop().await;
        self.federation.stop().await;
    }
}

impl ServerProcess {
    /// Exchanges this server handled successfully, by its `/metrics`.
    pub async fn exchanges(&self) -> Option<u64> {
        let r = runtime::HttpClient::plain()
            .get(&format!("{}/metrics", self.admin), None)
            .await
            .ok()?;
        Some(exchanges_ok(&r.text()))
    }

    pub async fn stop(mut self) {
        super::procfs::signal(self.pid, "TERM");
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

fn spawn(binary: &Path, config: &Path, role: &str) -> anyhow::Result<Child> {
    let dir = config.parent().unwrap_or(Path::new("."));
    // Its log (to standard output, at the level RUST_LOG says, `info` by default) goes to a
    // file, as a service manager would keep it.
    let log = std::fs::File::create(dir.join("server.log"))?;
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the {role} security server {}", binary.display()))
}

/// Polls the server's `/health` until it answers 200 (within 30 s), or the process exits.
async fn wait_healthy(
    child: &mut Child,
    admin: &str,
    started: tokio::time::Instant,
) -> anyhow::Result<Duration> {
    let http = runtime::HttpClient::plain().with_timeout(Duration::from_secs(2));
    let health = format!("{admin}/health");
    loop {
        if let Ok(r) = http.get(&health, None).await
            && r.status.as_u16() == 200
        {
            return Ok(started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("exited with {status} (its server.log says why)");
        }
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("{health} did not answer 200 within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends one small exchange until one is answered with the body echoed (within 30 s).
async fn first_exchange(url: &str, started: tokio::time::Instant) -> anyhow::Result<Duration> {
    let http = runtime::HttpClient::plain().with_timeout(Duration::from_secs(5));
    let body = bytes::Bytes::from_static(b"first exchange");
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        match http
            .request(
                hyper::Method::POST,
                url,
                &[("X-Road-Client", CLIENT)],
                body.clone(),
            )
            .await
        {
            Ok(r) if r.is_success() && r.body == body => return Ok(started.elapsed()),
            Ok(r) => last = format!("HTTP {}: {}", r.status, r.text()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("no exchange through {url} within 30 s; the last answer: {last}")
}

/// The exchanges with outcome `ok` in an OpenMetrics text, both proxies added up.
pub fn exchanges_ok(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("xroad_exchanges_total{") && l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

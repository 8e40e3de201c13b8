#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kill -9 during load (issue 4): the client's and the provider's security servers run as child
//! processes and are killed with SIGKILL, one then the other, while exchanges are under way. Every
//! exchange the client saw succeed must be in both servers' logs afterwards, and both logs must
//! verify (inclusion of every record under a signed checkpoint).
//!
//! `harness = false`: this binary is both the test and, when `XROAD_CHILD_CONFIG` is set, the
//! security server process the test starts and kills.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use integration_tests::eventually;
use sandbox::FederationSpec;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const PORTAL: &str = "JP/GOV/digital-agency/portal";
const CHILD_ENV: &str = "XROAD_CHILD_CONFIG";

fn main() {
    if let Some(config) = std::env::var_os(CHILD_ENV) {
        run_child(Path::new(&config));
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(kill_nine_during_load());
    println!("test kill_nine_during_load ... ok");
    println!("1 passed, 0 failed");
}

/// Child mode: one security server until it is killed.
fn run_child(config: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = security_server::Config::load(config).unwrap();
        let listeners = security_server::Listeners::bind(&config).await.unwrap();
        let server = security_server::start(&config, listeners, Arc::new(certs::SystemClock))
            .await
            .unwrap();
        server.run_until(std::future::pending()).await;
    });
}

/// Kills the children if the test panics, so no server outlives it.
struct Children(Vec<(PathBuf, String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, _, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(config: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap()
}

/// Waits until the server whose admin API is at `admin` answers its health check.
async fn healthy(admin: &str) {
    eventually(
        &format!("the server at {admin} to be healthy"),
        || async move {
            runtime::HttpClient::plain()
                .get(&format!("http://{admin}/health"), None)
                .await
                .is_ok_and(|r| r.status.as_u16() == 200)
                .then_some(())
        },
    )
    .await;
}

/// Waits until the server whose admin API is at `admin` has stored a signed checkpoint (its
/// `xroad_checkpoint_size` metric is set after each checkpoint round that stored one).
async fn checkpointed(admin: &str) {
    eventually(
        &format!("a signed checkpoint at the server at {admin}"),
        || async move {
            let r = runtime::HttpClient::plain()
                .get(&format!("http://{admin}/metrics"), None)
                .await
                .ok()?;
            let text = r.text();
            let size: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("xroad_checkpoint_size "))?
                .trim()
                .parse()
                .ok()?;
            (size > 0).then_some(())
        },
    )
    .await;
}

async fn kill_nine_during_load() {
    let mut spec = FederationSpec::sandbox();
    spec.poll_interval_secs = 3600;
    let (_dir, mut f) =
        integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    let configs: Vec<(String, PathBuf, String)> = [MINISTRY, CHIYODA]
        .iter()
        .map(|id| {
            let s = f.server(id).unwrap();
            (
                id.to_string(),
                s.config_path.clone(),
                s.config.admin.listen.to_string(),
            )
        })
        .collect();
    let admin_addr = |id: &str| {
        let r = f.server(id).unwrap().running().unwrap();
        r.admin_addr.to_string()
    };
    let admins: Vec<String> = [MINISTRY, CHIYODA]
        .iter()
        .map(|id| admin_addr(id))
        .collect();

    // The in-process servers hand over to child processes on the same ports and data.
    let mut children = Children(Vec::new());
    // (The sandbox wrote the ports it bound into each configuration file, so a child binds the
    // same addresses the global configuration lists.)
    for ((id, config, _), admin) in configs.iter().zip(&admins) {
        f.stop_server(id).await;
        children
            .0
            .push((config.clone(), admin.clone(), spawn(config)));
    }
    for (_, admin, _) in &children.0 {
        healthy(admin).await;
    }
    eprintln!("crash test: both children are healthy");

    let succeeded = Arc::new(Mutex::new(BTreeSet::new()));
    let attempts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let url = format!("{proxy}/r1/JP/MUN/131016/records/residentRecord/131016000001");
    for round in 0..4 {
        // Load from 16 concurrent clients while the victim is killed.
        let load = {
            let url = url.clone();
            let succeeded = Arc::clone(&succeeded);
            let attempts = Arc::clone(&attempts);
            tokio::spawn(async move {
                let http = runtime::HttpClient::plain().with_timeout(Duration::from_secs(10));
                let mut tasks = Vec::new();
                for c in 0..16 {
                    let (http, url, succeeded, attempts) = (
                        http.clone(),
                        url.clone(),
                        Arc::clone(&succeeded),
                        Arc::clone(&attempts),
                    );
                    tasks.push(tokio::spawn(async move {
                        for i in 0..40 {
                            let id = format!("crash-{round}-{c}-{i}");
                            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let r = http
                                .request(
                                    Method::GET,
                                    &url,
                                    &[
                                        ("X-Road-Client", PORTAL),
                                        ("X-Road-Id", &id),
                                        ("X-Road-Data-Subject", "131016000001"),
                                    ],
                                    bytes::Bytes::new(),
                                )
                                .await;
                            match r {
                                Ok(r) if r.status.as_u16() == 200 => {
                                    succeeded.lock().unwrap().insert(id);
                                }
                                Ok(r) if c == 0 && i == 0 => {
                                    eprintln!("crash test: first answer {}: {}", r.status, r.text())
                                }
                                Err(e) if c == 0 && i == 0 => {
                                    eprintln!("crash test: first call failed: {e}")
                                }
                                _ => {}
                            }
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        };
        // Let some exchanges through, then SIGKILL one of the two servers mid-load.
        let before = succeeded.lock().unwrap().len();
        eventually(
            &format!("exchanges to succeed before the kill in round {round}"),
            || async { (succeeded.lock().unwrap().len() >= before + 20).then_some(()) },
        )
        .await;
        eprintln!(
            "crash test: round {round}: killing a server after {} successes",
            succeeded.lock().unwrap().len()
        );
        let victim = round % 2;
        let (config, admin, child) = &mut children.0[victim];
        child.kill().unwrap();
        child.wait().unwrap();
        load.await.unwrap();
        *child = spawn(config);
        healthy(admin).await;
    }
    let succeeded = succeeded.lock().unwrap().clone();
    let total = attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        succeeded.len() > 80,
        "enough exchanges succeeded to mean something: {}",
        succeeded.len()
    );
    assert!(
        (succeeded.len() as u64) < total,
        "some exchanges failed, so the kills happened mid-load"
    );

    // Wait until each server has signed a checkpoint of what it has, then stop them the hard way.
    for (_, admin, _) in &children.0 {
        checkpointed(admin).await;
    }
    for (_, _, child) in &mut children.0 {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    for (id, config, _) in &configs {
        let config = security_server::Config::load(config).unwrap();
        let log = security_server::log::open(&config).unwrap();
        for message_id in &succeeded {
            let found = log.find_by_message_id(message_id).unwrap();
            assert!(
                found.len() >= 2,
                "{id}: request and response of {message_id} are in the log ({found:?})"
            );
        }
        // Every record is included under the current root, and the newest signed checkpoint is
        // consistent with it (what was signed before the last kill was not rewritten).
        let size = integration_tests::assert_log_whole(&log);
        println!(
            "{id}: {size} records, {} succeeded exchanges found",
            succeeded.len()
        );
    }
    f.stop().await;
}

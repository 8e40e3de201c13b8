#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `bench converge` at a size a test can afford: a new configuration reaches every server of a
//! simulated instance with the registry stopped once the first server holds it, passed on by
//! peers (real configuration clients, verification and relay over pinned mutual TLS).

use std::time::Duration;

use bench::converge::{ConvergeOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_configuration_reaches_every_server_with_the_registry_stopped() {
    let report = run(&ConvergeOptions {
        servers: 16,
        members: 40,
        poll: Duration::from_secs(2),
        timeout: Duration::from_secs(60),
    })
    .await
    .unwrap();
    assert!(
        report.converged(),
        "{} of {} servers",
        report.times.len(),
        report.servers
    );
    // The registry stopped as soon as one server held it: the rest came from peers.
    assert!(report.from_registry >= 1);
    assert!(report.from_registry < 16, "{report:?}");
    assert!(report.offered >= 4, "{report:?}");
    let text = bench::converge::describe(&report);
    assert!(text.contains("holding it: 16 of 16 servers"), "{text}");
}

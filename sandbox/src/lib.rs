//! A whole xroad-rs federation on loopback, in one process: what `cargo run --bin sandbox`
//! starts, and the harness the integration tests build on.
//!
//! # Layout
//! - [`spec`]: what the federation is made of (the default demo: a ministry, two municipalities,
//!   the municipality's services and who may call them).
//! - [`federation`]: starting it through the real enrolment path, registering services and
//!   grants, stopping it, `federation.json`.
//! - [`demo`]: the demo provider information system (synthetic resident records and tax
//!   certificates of Chiyoda City, and an echo service).
#![forbid(unsafe_code)]

pub mod demo;
pub mod federation;
pub mod spec;

use std::future::Future;
use std::time::Duration;

pub use demo::DemoApi;
pub use federation::{
    Description, Federation, Ports, SandboxError, SandboxServer, ServiceDescription, prepare_dir,
};
pub use spec::{Backend, FederationSpec, MemberSpec, SampleExchange, ServerSpec, ServiceSpec};

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. Tests use this
/// instead of sleeping for a guessed time.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

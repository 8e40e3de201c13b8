//! Whole-federation tests live in `tests/`; the harness they use is the `sandbox` crate.
//!
//! # Layout
//! - [`webdriver`]: a real headless Chromium driven over ChromeDriver's W3C WebDriver HTTP API,
//!   for tests of what users see in a browser.
//! - [`start_federation`]: a sandbox federation on ephemeral loopback ports in a temporary
//!   directory.
//! - [`verify_offline`]: checks an evidence bundle against the federation's anchor.
//! - [`eventually`]: waits for a condition instead of sleeping (`runtime::testing`'s, re-exported).
#![forbid(unsafe_code)]

use std::sync::Arc;

use sandbox::{Federation, FederationSpec, Ports};

pub mod webdriver;

pub use runtime::testing::eventually;

/// Starts `spec` on port 0 everywhere, in a new temporary directory that lives as long as the
/// returned guard. Panics if the federation does not start: this is test set-up.
pub async fn start_federation(
    spec: FederationSpec,
    clock: Arc<dyn certs::Clock>,
) -> (tempfile::TempDir, Federation) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let federation = Federation::start(spec, &dir.path().join("fed"), Ports::Ephemeral, clock)
        .await
        .expect("the federation starts");
    (dir, federation)
}

/// Verifies an evidence bundle offline against `federation`'s trust anchor, as an auditor would
/// with `security-server evidence verify --anchor`, without requiring cosignatures (tests seal
/// records faster than witnesses answer). Panics if the bundle cannot be read.
pub fn verify_offline(federation: &Federation, bundle: &[u8]) -> msglog::Report {
    let anchor =
        globalconf::Anchor::load(&federation.description().anchor).expect("the sandbox anchor");
    msglog::verify_with(
        bundle,
        &anchor,
        msglog::VerifyOptions {
            require_cosignatures: 0,
        },
    )
    .expect("the bundle decodes")
}

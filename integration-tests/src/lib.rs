//! Whole-federation tests live in `tests/`; the harness they use is the `sandbox` crate.
//!
//! # Layout
//! - [`webdriver`]: a real headless Chromium driven over ChromeDriver's W3C WebDriver HTTP API,
//!   for tests of what users see in a browser.
//! - [`start_federation`]: a sandbox federation on ephemeral loopback ports in a temporary
//!   directory.
//! - [`verify_offline`]: checks an evidence bundle against the federation's anchor.
//! - [`export_evidence`]: exports a message's evidence bundle through a server's admin API.
//! - [`x_road_error`]: the `X-Road-Error` header of an answer.
//! - [`portal_login`]: a resident portal's development login over plain HTTP.
//! - [`assert_log_whole`]: every record of a message log under its root and its checkpoint.
//! - [`raw_peer`]: hand-made exchanges sent to a provider's server proxy, as a peer would.
//! - [`load`]: exchanges one after another while a test changes something underneath.
//! - [`eventually`]: waits for a condition instead of sleeping (`runtime::testing`'s, re-exported).
#![forbid(unsafe_code)]

use std::sync::Arc;

use sandbox::{Federation, FederationSpec, Ports};

pub mod load;
pub mod raw_peer;
pub mod webdriver;

pub use raw_peer::RawPeer;

pub use runtime::testing::eventually;

/// A client of `server`'s admin API, as the `security-server` CLI uses it. Panics if the
/// federation has no such running server.
pub fn admin(federation: &Federation, server: &str) -> security_server::admin::AdminClient {
    let s = federation
        .server(server)
        .expect("a server of the federation");
    security_server::admin::AdminClient::new(
        format!(
            "http://{}",
            s.running().expect("the server runs").admin_addr
        ),
        s.admin_token.clone(),
    )
}

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

/// Exports evidence for one X-Road-Id through `server`'s admin API, as the CLI does, waiting
/// until the checkpoint that covers it carries at least `signature_lines` signatures (1: the
/// log's own; 2 or more: a witness's cosignature too). Panics, naming what the server answered
/// last, if none comes within [`runtime::testing::PATIENCE`].
pub async fn export_evidence(
    federation: &Federation,
    server: &str,
    message_id: &str,
    signature_lines: usize,
) -> Vec<u8> {
    use prost::Message as _;

    let s = federation
        .server(server)
        .expect("a server of the federation");
    let url = format!(
        "http://{}/v1/evidence",
        s.running().expect("the server runs").admin_addr
    );
    let body = serde_json::json!({ "message_id": message_id });
    let http = runtime::HttpClient::plain();
    // What the server answered last, for the message if no such checkpoint comes.
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let bundle = runtime::testing::within(runtime::testing::PATIENCE, || {
        let (http, url, body, token) = (
            http.clone(),
            url.clone(),
            body.clone(),
            s.admin_token.clone(),
        );
        let last = Arc::clone(&last);
        async move {
            let r = http.post_json(&url, Some(&token), &body).await.ok()?;
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !r.is_success() {
                *last = format!("HTTP {}: {}", r.status, r.text());
                return None;
            }
            let b = proto::v1::EvidenceBundle::decode(r.body.as_ref())
                .expect("the server's bundle decodes");
            *last = b.checkpoint.clone();
            (b.checkpoint.matches("\n— ").count() >= signature_lines).then(|| r.body.to_vec())
        }
    })
    .await;
    bundle.unwrap_or_else(|| {
        panic!(
            "{server} exported evidence for {message_id} with {signature_lines} signatures; last: {}",
            last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        )
    })
}

/// Checks that a message log is whole: every record is included under the current root, and
/// the newest signed checkpoint is consistent with it (nothing signed was rewritten). Panics,
/// naming what does not hold; returns the size. A log without a checkpoint fails.
pub fn assert_log_whole(log: &msglog::MessageLog) -> u64 {
    use msglog::tlog;
    let size = log.size().expect("the log's size");
    let root = log.root(size).expect("the log's root");
    let (cp_size, note) = log
        .latest_checkpoint()
        .expect("the log's checkpoints")
        .expect("a checkpoint was signed");
    let cp = tlog::Checkpoint::parse_body(tlog::note::parse(&note).expect("a note").text())
        .expect("a checkpoint");
    assert_eq!(cp.size(), cp_size);
    let proof = log
        .consistency_proof(cp_size, size)
        .expect("a consistency proof");
    tlog::verify_consistency(cp_size, size, cp.root(), &root, &proof)
        .expect("the checkpoint is consistent with the current tree");
    for index in 0..size {
        let record = log
            .record(index)
            .expect("a record")
            .unwrap_or_else(|| panic!("record {index} is missing"));
        let leaf = tlog::leaf_hash(&record.record_bytes);
        let proof = log
            .inclusion_proof(index, size)
            .expect("an inclusion proof");
        tlog::verify_inclusion(&leaf, index, size, &proof, &root)
            .unwrap_or_else(|e| panic!("record {index} is not under the root: {e}"));
    }
    size
}

/// Logs in to the resident portal at `portal` with the development login, as `resident`;
/// answers the session cookie. Panics if the portal does not answer with a session.
pub async fn portal_login(portal: &str, resident: &str) -> String {
    let r = runtime::HttpClient::plain()
        .request(
            http::Method::POST,
            &format!("{portal}/login/dev"),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("resident={resident}").into(),
        )
        .await
        .expect("the portal answers");
    assert_eq!(r.status.as_u16(), 303, "{}", r.text());
    let cookie = r.headers["set-cookie"].to_str().expect("a session cookie");
    cookie.split(';').next().unwrap_or_default().to_owned()
}

/// The `X-Road-Error` header of `response`, or "" when it has none.
pub fn x_road_error(response: &runtime::Response) -> String {
    response
        .headers
        .get("x-road-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

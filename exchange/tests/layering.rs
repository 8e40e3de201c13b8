#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The protocol core stays free of I/O frameworks: no async runtime, HTTP server or client, gRPC
//! or database in its dependency tree (`cargo tree`), so that nothing in it can block, listen or
//! write. A dependency that pulls one in fails here.

use std::process::Command;

const FORBIDDEN: [&str; 6] = ["tokio", "hyper", "axum", "tonic", "redb", "mio"];

#[test]
fn the_core_depends_on_no_runtime_server_or_database() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "exchange",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--locked",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("UTF-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"exchange") && crates.contains(&"prost"),
        "{tree}"
    );
    for name in FORBIDDEN {
        assert!(
            !crates.contains(&name),
            "the protocol core depends on {name}:\n{tree}"
        );
    }
}

//! The `bench` program's comparison with and without the message log, end to end on loopback:
//! both federations run, every round measures both, and the JSON reports both.

use std::process::Command;

#[test]
fn compare_without_log_measures_both_federations_in_every_round() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--clients",
            "2",
            "--seconds",
            "1",
            "--warmup-seconds",
            "0",
            "--gateway-only",
            "--compare-without-log",
            "--rounds",
            "2",
            "--json",
        ])
        .output()
        .expect("running bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rounds: Vec<&str> = stdout.lines().filter(|l| l.starts_with("round ")).collect();
    assert_eq!(rounds.len(), 2, "{stdout}");
    assert!(
        rounds.iter().all(|l| l.contains("with / without: ")),
        "{stdout}"
    );
    let json: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a JSON line last");
    for run in ["gateway", "without_log"] {
        let r = &json[run];
        assert!(r["requests"].as_u64().unwrap_or(0) > 0, "{run}: {r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{run}: {r}");
        // Two windows of one second each.
        assert_eq!(r["window_secs"].as_f64(), Some(2.0), "{run}: {r}");
        if cfg!(target_os = "linux") {
            let idle = r["machine_idle_fraction"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&idle), "{run}: {r}");
        }
    }
    assert_eq!(json["rounds"].as_u64(), Some(2));
    assert!(json["direct"].is_null());
    let ratio = json["ratio"]["with_log_to_without"].as_f64().unwrap_or(0.0);
    assert!(ratio > 0.0, "{json}");
}

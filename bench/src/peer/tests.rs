use std::path::Path;
use std::time::Duration;

use super::gateway::exchanges_ok;
use super::nginx::{Hop, client_side_config, provider_side_config};
use super::procfs::{parse_df_available, parse_ppid, parse_stat, parse_status_bytes, parse_uid};
use super::wrk::{parse, script};
use super::{default_connections, median_min_max, size_name};

const WRK_OUTPUT: &str = "\
Running 10s test @ http://127.0.0.1:40000/echo
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.20ms  31.00ms   80.00%
  150000 requests in 10.00s, 170.00MB read
Requests/sec:  15000.00
xroad-bench-wrk requests=150000 bytes=178257920 duration_us=10000500 connect=0 read=1 write=0 \
status=20 timeout=5 p50_us=3900 p90_us=5200 p99_us=11000 max_us=31000 mean_us=4100
";

#[test]
fn the_wrk_result_line_is_read_whole() {
    let r = parse(WRK_OUTPUT).unwrap();
    assert_eq!(r.requests, 150_000);
    assert_eq!(r.bytes, 178_257_920);
    assert_eq!(r.duration, Duration::from_micros(10_000_500));
    assert_eq!(r.p50, Duration::from_micros(3_900));
    assert_eq!(r.p90, Duration::from_micros(5_200));
    assert_eq!(r.p99, Duration::from_millis(11));
    assert_eq!(r.max, Duration::from_millis(31));
    assert_eq!(r.mean, Duration::from_micros(4_100));
    // 64 connections, each waiting 4.1 ms per request on average.
    assert!((r.closed_loop_throughput(64) - 64.0 / 0.0041).abs() < 1e-6);
    // Bad statuses and late answers are not successes; failed reads are errors without an answer.
    assert_eq!(r.successes(), 150_000 - 20 - 5);
    assert_eq!(r.errors(), 1 + 20 + 5);
    assert!((r.throughput() - 149_975.0 / 10.0005).abs() < 1e-6);
}

#[test]
fn a_wrk_output_without_a_whole_result_line_is_refused() {
    assert!(
        parse("Running 10s test\n")
            .unwrap_err()
            .contains("no `xroad-bench-wrk`")
    );
    assert!(
        parse("xroad-bench-wrk requests=1 bytes=2\n")
            .unwrap_err()
            .contains("2 fields")
    );
    assert!(parse("xroad-bench-wrk requests=x\n").is_err());
    let extra = WRK_OUTPUT.replace("mean_us=4100", "mean_us=4100 other=1");
    assert!(parse(&extra).unwrap_err().contains("other"));
}

#[test]
fn the_script_posts_the_body_with_the_headers_and_prints_every_field() {
    let lua = script(1024, &[("X-Road-Client", "JP/GOV/digital-agency/portal")]);
    assert!(lua.contains("wrk.method = \"POST\""), "{lua}");
    assert!(lua.contains("wrk.body = string.rep(\"a\", 1024)"), "{lua}");
    assert!(lua.contains("wrk.headers[\"X-Road-Client\"] = \"JP/GOV/digital-agency/portal\""));
    for field in [
        "requests=",
        "duration_us=",
        "status=",
        "p99_us=",
        "max_us=",
        "mean_us=",
    ] {
        assert!(lua.contains(field), "{field}: {lua}");
    }
}

#[test]
fn proc_stat_is_read_after_a_command_name_with_spaces_and_parentheses() {
    // Fields 14-17: utime 250, stime 50, cutime 1000, cstime 200 (clock ticks of 10 ms).
    let stat = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 1000 200 20 0 \
                9 0 123 456 789";
    let t = parse_stat(stat).unwrap();
    assert_eq!(t.own, Duration::from_secs(3));
    assert_eq!(t.waited_children, Duration::from_secs(12));
    assert_eq!(parse_ppid(stat), Some(1));
    assert_eq!(parse_stat("4242 (x) S 1 2"), None);
}

#[test]
fn proc_status_memory_and_uid_and_df_are_read() {
    let status = "Name:\tsecurity-server\nUid:\t1000\t1000\t1000\t1000\nVmHWM:\t   41234 kB\n\
                  VmRSS:\t   30000 kB\n";
    assert_eq!(parse_status_bytes(status, "VmRSS"), Some(30_000 * 1024));
    assert_eq!(parse_status_bytes(status, "VmHWM"), Some(41_234 * 1024));
    assert_eq!(parse_status_bytes(status, "VmSwap"), None);
    assert_eq!(parse_uid(status), Some(1000));
    let df = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
              /dev/vda         263174212 59000000 36000000      63% /\n";
    assert_eq!(parse_df_available(df), Some(36_000_000 * 1024));
    assert_eq!(parse_df_available("Filesystem\n"), None);
}

#[test]
fn the_chain_is_mutual_tls_between_the_hops_with_keep_alive() {
    let dir = Path::new("/run/bench");
    let hop = |name, port: u16| Hop {
        name,
        listen: ([127, 0, 0, 1], port).into(),
        workers: "auto".into(),
    };
    let a = client_side_config(dir, &hop("a", 1001), ([127, 0, 0, 1], 1002).into());
    let b = provider_side_config(dir, &hop("b", 1002), ([127, 0, 0, 1], 1003).into());
    for c in [&a, &b] {
        assert!(c.contains("daemon off;"), "{c}");
        assert!(c.contains("pid /run/bench/"), "{c}");
        assert!(c.contains("access_log off;"), "{c}");
        assert!(c.contains("client_max_body_size 0;"), "{c}");
        assert!(c.contains("keepalive 256;"), "{c}");
        assert!(c.contains("worker_processes auto;"), "{c}");
        assert_eq!(c.matches('{').count(), c.matches('}').count(), "{c}");
    }
    // A: plain HTTP in, TLS with a client certificate out to B, B's certificate checked.
    assert!(a.contains("listen 127.0.0.1:1001;"), "{a}");
    assert!(a.contains("server 127.0.0.1:1002;"), "{a}");
    assert!(a.contains("proxy_pass https://provider_side;"), "{a}");
    assert!(a.contains("proxy_ssl_certificate /run/bench/a.pem;"), "{a}");
    assert!(a.contains("proxy_ssl_verify on;"), "{a}");
    // B: TLS in with a client certificate required, plain HTTP to the backend.
    assert!(b.contains("listen 127.0.0.1:1002 ssl;"), "{b}");
    assert!(b.contains("ssl_verify_client on;"), "{b}");
    assert!(b.contains("server 127.0.0.1:1003;"), "{b}");
    assert!(b.contains("proxy_pass http://backend;"), "{b}");
}

#[test]
fn exchanges_are_counted_from_the_metrics() {
    let metrics = "# TYPE xroad_exchanges counter\n\
                   xroad_exchanges_total{proxy=\"client_proxy\",outcome=\"ok\"} 1200\n\
                   xroad_exchanges_total{proxy=\"client_proxy\",outcome=\"Client.BadRequest\"} 3\n\
                   xroad_exchanges_total{proxy=\"server_proxy\",outcome=\"ok\"} 7\n\
                   xroad_service_exchanges_total{proxy=\"client_proxy\",outcome=\"ok\"} 99\n\
                   # EOF\n";
    assert_eq!(exchanges_ok(metrics), 1207);
    assert_eq!(exchanges_ok(""), 0);
}

#[test]
fn sizes_connections_and_medians() {
    assert_eq!(size_name(1024), "1 KiB");
    assert_eq!(size_name(1 << 20), "1 MiB");
    assert_eq!(size_name(100 << 20), "100 MiB");
    assert_eq!(size_name(1000), "1000-byte");
    assert_eq!(default_connections(1024), 64);
    assert_eq!(default_connections(1 << 20), 16);
    assert_eq!(default_connections(100 << 20), 4);
    assert_eq!(median_min_max(&mut []), None);
    assert_eq!(
        median_min_max(&mut [0.3, 0.1, 0.2, 0.4]),
        Some((0.25, 0.1, 0.4))
    );
}

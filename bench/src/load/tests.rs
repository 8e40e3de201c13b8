use super::*;

#[test]
fn percentiles_are_exact_nearest_rank() {
    let samples: Vec<u32> = (1..=100).collect();
    assert_eq!(percentile(&samples, 50.0), Some(50));
    assert_eq!(percentile(&samples, 90.0), Some(90));
    assert_eq!(percentile(&samples, 99.0), Some(99));
    assert_eq!(percentile(&samples, 100.0), Some(100));
    assert_eq!(percentile(&samples, 0.1), Some(1));
    assert_eq!(percentile(&[7], 99.0), Some(7));
    assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
    assert_eq!(percentile::<u32>(&[], 50.0), None);
}

fn report(requests: u64, errors: u64, secs: u64, cpu_ms: Option<u64>, lat: &[u32]) -> LoadReport {
    LoadReport {
        target: "gateway".into(),
        requests,
        errors,
        window: Duration::from_secs(secs),
        first_error: (errors > 0).then(|| format!("{errors} errors")),
        cpu: cpu_ms.map(Duration::from_millis),
        machine: Some(MachineTicks {
            idle: requests / 10,
            steal: requests / 100,
            total: requests,
        }),
        latencies_us: lat.to_vec(),
    }
}

#[test]
fn merged_windows_add_up_and_pool_their_latencies() {
    let a = report(100, 0, 2, Some(50), &[10, 30, 50]);
    let b = report(300, 2, 3, Some(150), &[20, 40]);
    let m = LoadReport::merge(&[a, b.clone()]).unwrap();
    assert_eq!((m.requests, m.errors), (400, 2));
    assert_eq!(m.window, Duration::from_secs(5));
    assert_eq!(m.throughput(), 398.0 / 5.0);
    assert_eq!(m.cpu, Some(Duration::from_millis(200)));
    assert_eq!(m.latencies_us, vec![10, 20, 30, 40, 50]);
    assert_eq!(m.percentile(50.0), Some(Duration::from_micros(30)));
    assert_eq!(m.first_error.as_deref(), Some("2 errors"));
    assert_eq!(
        m.machine,
        Some(MachineTicks {
            idle: 40,
            steal: 4,
            total: 400
        })
    );
    assert_eq!(m.machine.and_then(|t| t.idle_fraction()), Some(0.1));
    // A window without a CPU reading makes the sum unknown rather than too small.
    let c = report(10, 0, 1, None, &[5]);
    assert_eq!(LoadReport::merge(&[b, c]).unwrap().cpu, None);
    assert!(LoadReport::merge(&[]).is_none());
}

#[test]
fn machine_ticks_are_read_from_the_cpu_line_of_proc_stat() {
    let stat = "cpu  100 5 50 800 40 3 2 10 0 0\ncpu0 50 2 25 400 20 1 1 5 0 0\n";
    let t = MachineTicks::parse(stat).unwrap();
    assert_eq!(
        t,
        MachineTicks {
            idle: 840,
            steal: 10,
            total: 1010
        }
    );
    let later = MachineTicks {
        idle: 940,
        steal: 30,
        total: 1210,
    };
    let d = later.since(t);
    assert_eq!((d.idle, d.steal, d.total), (100, 20, 200));
    assert_eq!(d.idle_fraction(), Some(0.5));
    assert_eq!(d.steal_fraction(), Some(0.1));
    assert_eq!(MachineTicks::default().idle_fraction(), None);
    assert_eq!(MachineTicks::parse("cpu0 1 2 3\n"), None);
    assert_eq!(MachineTicks::parse("cpu 1 2 x 4 5 6 7 8\n"), None);
    assert_eq!(MachineTicks::parse("cpu 1 2 3\n"), None);
}

#[test]
fn targets_are_loopback_only() {
    assert!(Target::new("ok", "http://127.0.0.1:8080/echo").is_ok());
    for url in [
        "http://example.org/echo",
        "https://127.0.0.1:8080/echo",
        "http://10.0.0.1/echo",
        "http://localhost.example.org/",
    ] {
        assert!(
            matches!(Target::new("x", url), Err(TargetError::NotLoopback(_))),
            "{url}"
        );
    }
    assert!(matches!(
        Target::new("x", "not a url"),
        Err(TargetError::Url(_))
    ));
}

#[tokio::test]
async fn errors_are_counted_and_the_first_one_kept() {
    // A listener that accepts and answers 503 to everything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/echo", listener.local_addr().unwrap());
    let (stop, shutdown) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sandbox_like_server(listener, shutdown));
    let options = LoadOptions {
        clients: 2,
        duration: Duration::from_millis(200),
        warmup: Duration::from_millis(50),
        body_bytes: 16,
        request_timeout: Duration::from_secs(5),
    };
    let report = run(Target::new("failing", &url).unwrap(), &options).await;
    assert!(report.requests > 0);
    assert_eq!(report.errors, report.requests);
    assert_eq!(report.throughput(), 0.0);
    assert_eq!(report.percentile(50.0), None);
    let first = report.first_error.unwrap();
    assert!(first.contains("503"), "{first}");
    assert!(
        first.contains("Server.ServerProxy.ServiceFailed"),
        "{first}"
    );
    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test]
async fn an_echo_is_measured() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/echo", listener.local_addr().unwrap());
    let (stop, shutdown) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(echo_server(listener, shutdown));
    let options = LoadOptions {
        clients: 4,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        body_bytes: 100,
        request_timeout: Duration::from_secs(5),
    };
    let report = run(Target::new("echo", &url).unwrap(), &options).await;
    assert!(report.requests > 0);
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert!(report.percentile(50.0) <= report.percentile(99.0));
    assert!(report.percentile(99.0) <= report.max());
    assert_eq!(report.to_json()["requests"], report.requests);
    if cfg!(target_os = "linux") {
        let machine = report.machine.expect("/proc/stat read");
        assert!(
            machine.total > 0 && machine.idle <= machine.total,
            "{machine:?}"
        );
        assert!(report.to_json()["machine_idle_fraction"].is_f64());
    }
    let _ = stop.send(());
    server.await.unwrap();
}

async fn sandbox_like_server(
    listener: tokio::net::TcpListener,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    serve(listener, shutdown, |_body| {
        hyper::Response::builder()
            .status(503)
            .header("x-road-error", "Server.ServerProxy.ServiceFailed")
            .body(Full::new(Bytes::from_static(
                br#"{"type":"Server.ServerProxy.ServiceFailed","message":"down"}"#,
            )))
            .unwrap()
    })
    .await;
}

async fn echo_server(
    listener: tokio::net::TcpListener,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    serve(listener, shutdown, |body| {
        hyper::Response::new(Full::new(body))
    })
    .await;
}

/// A minimal HTTP/1 server for the tests, answering each request with `answer(body)`.
async fn serve(
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
    answer: fn(Bytes) -> hyper::Response<Full<Bytes>>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.unwrap(),
            _ = &mut shutdown => return,
        };
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(answer(body))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

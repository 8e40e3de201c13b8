//! `init` (secret files 0600, refusing a second run), the admin API's bearer token, and the CLI
//! driving a running registry through the admin API.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use central_registry::{DataDir, Registry, RegistryConfig, RegistryError, init_data_dir};
use certs::SystemClock;
use common::{TestRegistry, cli, error_type};
use tokio::net::TcpListener;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_the_bearer_token() {
    let mut registry = TestRegistry::start().await;
    let http = runtime::HttpClient::plain();
    let url = format!("{}/admin/v1/status", registry.admin_url);

    let r = http.get(&url, None).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(error_type(&r), "Registry.Unauthorized");
    let wrong = "0".repeat(registry.admin_token.len());
    let r = http.get(&url, Some(&wrong)).await.unwrap();
    assert_eq!(r.status, 401);
    let r = http
        .post_json(
            &format!("{}/admin/v1/members", registry.admin_url),
            Some("nope"),
            &serde_json::json!({"id": "JP/GOV/x", "name": "X"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(registry.admin.list_members().await.unwrap().is_empty());

    let r = http.get(&url, Some(&registry.admin_token)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let status: central_registry::StatusView = r.json().unwrap();
    assert_eq!(status.instance, "JP");

    // Bad input is a 400 with a JSON error body, unknown things a 404.
    let r = http
        .post_json(
            &format!("{}/admin/v1/members", registry.admin_url),
            Some(&registry.admin_token),
            &serde_json::json!({"id": "JP/GOV", "name": "X"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(error_type(&r), "Registry.BadRequest");
    // Dot segments are no identifier parts (a URL would resolve them away).
    for id in ["JP/GOV/..", "JP/../dots", "JP/GOV/."] {
        let r = http
            .post_json(
                &format!("{}/admin/v1/members", registry.admin_url),
                Some(&registry.admin_token),
                &serde_json::json!({"id": id, "name": "X"}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{id}");
        assert_eq!(error_type(&r), "Registry.BadRequest", "{id}");
    }
    assert!(registry.admin.list_members().await.unwrap().is_empty());
    let r = http
        .delete(
            &format!("{}/admin/v1/members/JP%2FGOV%2Fnobody", registry.admin_url),
            Some(&registry.admin_token),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(error_type(&r), "Registry.NotFound");
    registry.stop().await;
}

#[test]
fn init_writes_secret_files_0600_and_refuses_to_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = RegistryConfig {
        data_dir: dir.path().join("data"),
        ..RegistryConfig::default()
    };
    let summary = init_data_dir(&config, &SystemClock).unwrap();
    let files = DataDir::new(&config.data_dir);
    for secret in [
        files.signing_key(),
        files.ca_key(),
        files.tls_key(),
        files.admin_token(),
    ] {
        assert_eq!(mode(&secret), 0o600, "{}", secret.display());
    }
    assert_eq!(mode(&config.data_dir), 0o700);
    for public in [
        files.ca_pem(),
        files.tls_pem(),
        files.anchor(),
        files.database(),
    ] {
        assert!(public.exists(), "{}", public.display());
    }
    let anchor = globalconf::Anchor::load(&summary.anchor_path).unwrap();
    assert!(anchor.signing_key(&summary.signing_key_id).is_some());
    assert_eq!(anchor.registry_urls(), config.public_urls.as_slice());

    let again = init_data_dir(&config, &SystemClock);
    assert!(
        matches!(again, Err(RegistryError::Conflict(_))),
        "{again:?}"
    );

    // A second process cannot open the database while a registry holds it.
    let registry = Registry::open(config.clone(), Arc::new(SystemClock)).unwrap();
    let second = Registry::open(config, Arc::new(SystemClock));
    assert!(
        matches!(
            second,
            Err(RegistryError::Store(
                central_registry::store::StoreError::InUse
            ))
        ),
        "{second:?}"
    );
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_initialises_and_drives_a_running_registry() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("etc").join("central-registry.toml");
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", public.local_addr().unwrap().port());

    let (ok, stdout, stderr) = cli(&config_path, &["init", "--instance", "JP", "--url", &url]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("anchor.toml"), "{stdout}");
    let mut config = RegistryConfig::load(&config_path).unwrap();
    assert_eq!(config.public_urls, std::slice::from_ref(&url));
    assert_eq!(config.listen, public.local_addr().unwrap());
    assert_eq!(
        config.data_dir,
        dir.path().join("etc").join("registry-data")
    );
    let data = DataDir::new(&config.data_dir);
    assert_eq!(mode(&data.signing_key()), 0o600);
    assert_eq!(mode(&data.admin_token()), 0o600);
    let token = data.read_admin_token().unwrap();
    assert!(
        !stdout.contains(&token),
        "init must not print the admin token"
    );

    let (ok, _, stderr) = cli(&config_path, &["init", "--instance", "JP"]);
    assert!(!ok);
    assert!(stderr.contains("already initialised"), "{stderr}");

    // Point the config's admin address at the listener this test holds, then serve in-process.
    config.admin_listen = admin.local_addr().unwrap();
    std::fs::write(&config_path, config.to_toml().unwrap()).unwrap();
    let registry = Registry::open(config.clone(), Arc::new(SystemClock)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(registry.run(public, admin, async move {
        let _ = stopped.await;
    }));

    let run = |args: &'static [&'static str]| {
        let config_path = config_path.clone();
        async move {
            tokio::task::spawn_blocking(move || cli(&config_path, args))
                .await
                .unwrap()
        }
    };
    let (ok, stdout, stderr) = run(&[
        "member",
        "add",
        "JP/GOV/digital-agency",
        "--name",
        "Digital Agency",
    ])
    .await;
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = run(&["subsystem", "add", "JP/GOV/digital-agency/portal"]).await;
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, _) = run(&["--json", "member", "list"]).await;
    assert!(ok);
    let members: Vec<central_registry::MemberView> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].subsystems[0].name, "portal");
    let (ok, stdout, _) = run(&["token", "issue", "JP/GOV/digital-agency/ss1"]).await;
    assert!(ok);
    assert_eq!(stdout.trim().len(), 64, "{stdout}");
    let (ok, _, stderr) = run(&["member", "add", "JP/GOV/digital-agency", "--name", "Again"]).await;
    assert!(!ok);
    assert!(stderr.contains("Registry.Conflict"), "{stderr}");
    let (ok, stdout, _) = run(&["--json", "status"]).await;
    assert!(ok);
    let status: central_registry::StatusView = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status.members, 1);
    assert_eq!(status.subsystems, 1);
    let (ok, stdout, _) = run(&["audit"]).await;
    assert!(ok);
    assert!(
        stdout.contains("member.add") && stdout.contains("token.issue"),
        "{stdout}"
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[test]
fn init_puts_the_data_where_data_dir_says_and_keeps_it_there() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("etc").join("central-registry.toml");
    let data_dir = dir.path().join("var").join("central-registry");
    let url = "https://127.0.0.1:41001";
    let args = |data: &Path| {
        [
            "init".to_owned(),
            "--instance".into(),
            "JP".into(),
            "--url".into(),
            url.into(),
            "--data-dir".into(),
            data.display().to_string(),
        ]
    };
    let first = args(&data_dir);
    let (ok, stdout, stderr) = cli(&config_path, &first.each_ref().map(String::as_str));
    assert!(ok, "{stdout}{stderr}");
    let config = RegistryConfig::load(&config_path).unwrap();
    assert_eq!(config.data_dir, data_dir);
    assert!(data_dir.join("anchor.toml").exists());
    assert!(!dir.path().join("etc").join("registry-data").exists());

    // Again: the data is never overwritten. With another directory: refused, naming both.
    let (ok, _, stderr) = cli(&config_path, &first.each_ref().map(String::as_str));
    assert!(!ok && stderr.contains("already initialised"), "{stderr}");
    let other = dir.path().join("elsewhere");
    let (ok, _, stderr) = cli(&config_path, &args(&other).each_ref().map(String::as_str));
    assert!(!ok);
    assert!(
        stderr.contains(&data_dir.display().to_string())
            && stderr.contains(&other.display().to_string()),
        "{stderr}"
    );
    assert!(!other.exists());
}

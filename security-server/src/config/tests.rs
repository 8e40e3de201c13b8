use super::*;

#[test]
fn defaults_fill_missing_keys_and_paths_are_relative_to_the_file() {
    let c = Config::from_str(
        "server_id = \"JP/GOV/digital-agency/ss1\"\n",
        Path::new("/etc/xroad"),
    )
    .unwrap();
    assert_eq!(c.anchor, Path::new("/etc/xroad/anchor.toml"));
    assert_eq!(c.data_dir, Path::new("/etc/xroad/data"));
    assert_eq!(c.client_proxy.listen.port(), 8080);
    assert_eq!(c.advertised_addresses(), vec!["0.0.0.0:5500".to_string()]);
}

#[test]
fn the_production_template_parses_and_encrypts_logged_bodies() {
    let text = include_str!("../../templates/production.toml");
    let c = Config::from_str(text, Path::new("/etc/xroad")).unwrap();
    assert!(c.messagelog.enabled);
    assert!(c.messagelog.encrypt_bodies);
    assert!(c.client_proxy.tls);
    assert_eq!(c.messagelog.retention_days, 30);
    assert_eq!(c.messagelog.group_commit_interval_ms, 2);
    assert_eq!(c.messagelog.cache_mb, 32);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.server_proxy.connections.max_per_source, 100);
    assert_eq!(
        c.server_proxy.connections.serve_options().idle_timeout,
        Duration::from_secs(300)
    );
    assert_eq!(
        c.server_proxy.connections.header_read_timeout_secs, 10,
        "keys left out keep their defaults"
    );
    assert_eq!(c.admin.connections, runtime::ConnectionLimits::default());
    assert!(
        c.federation.instances.is_empty(),
        "no federated instance by default"
    );
}

#[test]
fn federated_instances_are_instance_identifiers() {
    let c = Config::from_str(
        "server_id = \"JP/GOV/a/ss1\"\n[federation]\ninstances = [\"FI\", \"EE\"]\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(
        c.federation
            .instances
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["FI", "EE"]
    );
    assert!(
        Config::from_str(
            "server_id = \"JP/GOV/a/ss1\"\n[federation]\ninstances = [\"F/I\"]\n",
            Path::new("."),
        )
        .is_err()
    );
}

#[test]
fn connection_limits_are_checked_per_listener() {
    let base = Path::new(".");
    let with = |table: &str| {
        Config::from_str(&format!("server_id = \"JP/GOV/x/ss1\"\n{table}\n"), base)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        with("[admin.connections]\nidle_timeout_secs = 0").unwrap_err(),
        "configuration is invalid: admin.connections.idle_timeout_secs must be at least 1"
    );
    assert_eq!(
        with("[client_proxy.connections]\nmax = 10\nmax_per_source = 11").unwrap_err(),
        "configuration is invalid: client_proxy.connections.max_per_source (11) is more than client_proxy.connections.max (10)"
    );
    assert!(
        with("[server_proxy.connections]\nidle = 5").is_err(),
        "unknown key"
    );
    assert!(with("[server_proxy.connections]\nmin_body_bytes_per_sec = 0").is_ok());
    assert_eq!(
        with("[server_proxy.connections]\nbody_read_timeout_secs = 18446744073709551615")
            .unwrap_err(),
        "configuration is invalid: server_proxy.connections.body_read_timeout_secs must be at most 86400 (a day)"
    );
}

#[test]
fn unknown_keys_bad_ids_and_missing_id_are_refused() {
    let base = Path::new(".");
    assert!(Config::from_str("server_id = \"JP/GOV/x/ss1\"\nlisten = 1\n", base).is_err());
    assert!(Config::from_str("server_id = \"JP/GOV/x\"\n", base).is_err());
    assert!(Config::from_str("", base).is_err());
    assert!(
        Config::from_str(
            "server_id = \"JP/GOV/x/ss1\"\n[server_proxy]\nadvertise = [\"nohost\"]\n",
            base
        )
        .is_err()
    );
    assert!(
        Config::from_str(
            "server_id = \"JP/GOV/x/ss1\"\n[messagelog]\ngroup_commit_interval_ms = 5000\n",
            base
        )
        .is_err()
    );
    assert!(
        Config::from_str(
            "server_id = \"JP/GOV/x/ss1\"\n[messagelog]\ncache_mb = 0\n",
            base
        )
        .is_err()
    );
    let c = Config::from_str(
        "server_id = \"JP/GOV/x/ss1\"\n[messagelog]\ncache_mb = 8\n",
        base,
    )
    .unwrap();
    assert_eq!(c.messagelog.cache_mb, 8);
}

#[test]
fn hsm_settings_resolve_paths_and_need_one_pin_source_and_distinct_labels() {
    let base = Path::new("/etc/xroad");
    let with = |hsm: &str| {
        Config::from_str(
            &format!("server_id = \"JP/GOV/x/ss1\"\n[hsm]\n{hsm}\n"),
            base,
        )
    };
    let c = with(
        "module = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"xroad\"\n\
         pin_file = \"hsm-pin\"\ntls_key_label = \"tls\"\n\
         signing_keys = [{ member = \"JP/GOV/x\", key_label = \"sign\" }]",
    )
    .unwrap();
    let hsm = c.hsm.unwrap();
    assert_eq!(
        hsm.pin_file.as_deref(),
        Some(Path::new("/etc/xroad/hsm-pin"))
    );
    assert_eq!(hsm.module, Path::new("/usr/lib/softhsm/libsofthsm2.so"));
    assert_eq!(
        hsm.signing_key_label(&"JP/GOV/x".parse().unwrap()),
        Some("sign")
    );
    let refused = |hsm: &str| with(hsm).unwrap_err().to_string();
    let module = "module = \"m.so\"\ntoken_label = \"t\"\n";
    assert!(refused(module).contains("exactly one of pin_file and pin_env"));
    assert!(
        refused(&format!("{module}pin_file = \"p\"\npin_env = \"PIN\"")).contains("exactly one")
    );
    for labels in [
        "tls_key_label = \"k\"\nsigning_keys = [{ member = \"JP/GOV/x\", key_label = \"k\" }]",
        "tls_key_label = \"\"",
        "tls_key_label = \"k.next\"",
        "tls_key_label = \"a/b\"",
    ] {
        assert!(
            refused(&format!("{module}pin_env = \"PIN\"\n{labels}")).contains("label"),
            "{labels}"
        );
    }
    assert!(with(&format!("{module}pin_env = \"PIN\"\nslot = 1")).is_err());
}

#[test]
fn the_hsm_pin_comes_from_a_private_file_or_the_environment() {
    use certs::pkcs11::testing;
    let Some(module) = testing::in_own_softhsm_with(
        "config::tests::the_hsm_pin_comes_from_a_private_file_or_the_environment",
        &[("XROAD_RS_TEST_PIN", "env-pin-1234")],
    ) else {
        return;
    };
    certs::pkcs11::init_token(&module, "t", "so-pin-1", "env-pin-1234").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hsm = |pin_file: Option<PathBuf>, pin_env: Option<&str>| HsmConfig {
        module: module.clone(),
        token_label: "t".into(),
        pin_file,
        pin_env: pin_env.map(str::to_owned),
        tls_key_label: None,
        signing_keys: Vec::new(),
    };
    // A wrong PIN is refused without being repeated. (Checked first: once this process is
    // logged in to the token, PKCS#11 does not ask again.)
    let file = dir.path().join("pin");
    certs::write_secret_file(&file, b"wrong-pin-5678").unwrap();
    let wrong = hsm(Some(file.clone()), None).open().unwrap_err();
    assert!(!wrong.to_string().contains("wrong-pin-5678"), "{wrong}");
    std::fs::remove_file(&file).unwrap();

    hsm(None, Some("XROAD_RS_TEST_PIN")).open().unwrap();
    let unset = hsm(None, Some("XROAD_RS_TEST_NO_SUCH_PIN"))
        .open()
        .unwrap_err();
    assert!(
        unset.to_string().contains("XROAD_RS_TEST_NO_SUCH_PIN"),
        "{unset}"
    );

    certs::write_secret_file(&file, b"env-pin-1234\n").unwrap();
    hsm(Some(file.clone()), None).open().unwrap();
    // A PIN file others can read is refused, as key files are.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = hsm(Some(file.clone()), None).open().unwrap_err();
    assert!(matches!(open, certs::Error::Permissions { .. }), "{open}");
}

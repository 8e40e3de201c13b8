use super::*;

const FILE: &str = r#"
[[services]]
id = "JP/MUN/131016/records/residentRecord"
url = "http://records.internal:8000/api"
openapi_file = "residentRecord.yaml"
names = { ja = "住民票", en = "Resident record" }

[[services]]
id = "JP/MUN/131016/records/taxRecord"
url = "http://tax.internal:8000"
timeout_secs = 10

[[access]]
service = "JP/MUN/131016/records/residentRecord"
subject = "JP/GOV/digital-agency/portal"
method = "GET"
path = "/residents/*"

[[suppressions]]
client = "JP/GOV/npa"
delay_secs = 7776000
reason = "刑事訴訟法第197条 照会"

[[client_auth]]
subsystem = "JP/MUN/131016/records"
connection = "https"
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    std::fs::write(dir.join("residentRecord.yaml"), "openapi: 3.0.3\n").unwrap();
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_declared_file_loads_with_the_admin_apis_rules() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&write(dir.path(), FILE)).unwrap();
    let conf = loaded.conf;
    assert_eq!(conf.services.len(), 2);
    let record = conf
        .services
        .get(&"JP/MUN/131016/records/residentRecord".parse().unwrap())
        .unwrap();
    assert_eq!(record.openapi.as_deref(), Some("openapi: 3.0.3\n"));
    assert_eq!(record.timeout_secs, 30, "the default");
    assert_eq!(record.names.get("ja").map(String::as_str), Some("住民票"));
    assert_eq!(conf.access.grants().len(), 1);
    assert_eq!(conf.suppressions.len(), 1);
    assert_eq!(conf.client_auth.len(), 1);

    for (bad, why) in [
        (
            "[[access]]\nservice = \"JP/MUN/131016/records/nothing\"\nsubject = \"JP/GOV/x/y\"\n",
            "add the service before granting it",
        ),
        (
            "[[services]]\nid = \"JP/MUN/131016/records/a\"\nurl = \"http://a\"\n\
             [[services]]\nid = \"JP/MUN/131016/records/a\"\nurl = \"http://b\"\n",
            "declared twice",
        ),
        (
            "[[services]]\nid = \"JP/MUN/131016/records/a\"\nurl = \"ftp://a\"\n",
            "is not http:// or https://",
        ),
        (
            "[[services]]\nid = \"JP/MUN/../a/b\"\nurl = \"http://a\"\n",
            "JP/MUN/../a/b",
        ),
        ("unknown = 1\n", "unknown field"),
        (
            "[[services]]\nid = \"JP/MUN/131016/records/a\"\nurl = \"http://a\"\nopenapi_file = \"missing.yaml\"\n",
            "missing.yaml",
        ),
    ] {
        let e = load(&write(dir.path(), bad)).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(
            e.contains("cluster.toml") || e.contains("missing.yaml"),
            "{e}"
        );
    }
}

#[test]
fn the_diff_names_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let desired = load(&write(dir.path(), FILE)).unwrap().conf;
    let source = json!({"file": "cluster.toml"});
    let added = diff(&LocalConf::default(), &desired, &source);
    let actions: Vec<&str> = added.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "service.add",
            "service.add",
            "access.grant",
            "suppression.add",
            "client_auth.set"
        ]
    );
    assert!(added.iter().all(|(_, d)| d["declared"] == source));
    assert!(diff(&desired, &desired, &source).is_empty());
    let removed = diff(&desired, &LocalConf::default(), &source);
    let actions: Vec<&str> = removed.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "service.remove",
            "service.remove",
            "access.revoke",
            "suppression.remove",
            "client_auth.remove"
        ]
    );
}

#[test]
fn a_reloader_applies_a_file_that_holds_and_keeps_the_last_one_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), FILE);
    let conf = Arc::new(
        ServerConf::open(&dir.path().join("serverconf.redb"))
            .unwrap()
            .declared_in(file.clone()),
    );
    let mut reloader = Reloader::new(
        file.clone(),
        Arc::clone(&conf),
        Arc::new(certs::SystemClock),
    );
    reloader.reload();
    let status = reloader.status().lock().unwrap().clone();
    assert!(status.error.is_none(), "{status:?}");
    assert!(status.applied_sha256.is_some());
    assert_eq!(conf.snapshot().services.len(), 2);
    let audited = conf.audit(100).unwrap();
    assert_eq!(audited.len(), 5, "one record per change: {audited:?}");
    assert!(
        audited
            .iter()
            .all(|e| e.details["declared"]["sha256"]
                == json!(status.applied_sha256.clone().unwrap()))
    );

    // The admin API's changes are refused.
    let e = conf.remove_service(&"JP/MUN/131016/records/taxRecord".parse().unwrap());
    assert!(
        matches!(e, Err(crate::serverconf::ServerConfError::Declared(_))),
        "{e:?}"
    );

    // Unchanged: nothing new. A bad file: nothing changes, and status says why.
    reloader.reload();
    assert_eq!(conf.audit(100).unwrap().len(), 5);
    write(dir.path(), &FILE.replace("[[services]]", "[[service]]"));
    reloader.reload();
    let status = reloader.status().lock().unwrap().clone();
    assert!(
        status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("service")),
        "{status:?}"
    );
    assert_eq!(conf.snapshot().services.len(), 2);
    assert_eq!(conf.audit(100).unwrap().len(), 5);

    // Fixed, with one service less: exactly that change.
    let fewer = FILE.replace(
        "[[services]]\nid = \"JP/MUN/131016/records/taxRecord\"\nurl = \"http://tax.internal:8000\"\ntimeout_secs = 10\n",
        "",
    );
    write(dir.path(), &fewer);
    reloader.reload();
    assert!(reloader.status().lock().unwrap().error.is_none());
    assert_eq!(conf.snapshot().services.len(), 1);
    let audited = conf.audit(100).unwrap();
    assert_eq!(audited.len(), 6);
    assert_eq!(audited[5].action, "service.remove");

    // Kept across a restart of the node.
    drop(reloader);
    drop(conf);
    let reopened = ServerConf::open(&dir.path().join("serverconf.redb")).unwrap();
    assert_eq!(reopened.snapshot().services.len(), 1);
}

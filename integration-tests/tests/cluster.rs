#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A cluster of two security servers serving the same subsystem, both loading one declared
//! file (docs/clusters.md): a change of the file reaches both, with an audit record per change;
//! a file that does not hold is refused by both while they go on serving what they had; the
//! admin API refuses changes meanwhile.

use std::path::Path;
use std::sync::Arc;

use integration_tests::load::resident_record;
use integration_tests::{admin, eventually};
use sandbox::{FederationSpec, ServerSpec};
use security_server::admin::ops::{AddService, Audit, ListAccess, ListServices, Status};
use security_server::config::DeclaredConfig;
use security_server::serverconf::ServiceEntry;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const NODES: [&str; 2] = ["JP/MUN/131016/ss1", "JP/MUN/131016/ss2"];
const RECORD: &str = "JP/MUN/131016/records/residentRecord";

fn declared(backend: &str, extra: &str) -> String {
    format!(
        "[[services]]\nid = \"{RECORD}\"\nurl = \"{backend}\"\n\n\
         [[access]]\nservice = \"{RECORD}\"\nsubject = \"JP/GOV/digital-agency/portal\"\n{extra}"
    )
}

fn write(file: &Path, text: &str) {
    // Written whole and renamed, as a deployment tool does: a node never reads half a file.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

async fn services_on(f: &sandbox::Federation, node: &str) -> Vec<String> {
    admin(f, node)
        .call(&ListServices)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_follow_one_declared_file_and_refuse_a_bad_one() {
    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    spec.servers.push(ServerSpec {
        id: NODES[1].parse().unwrap(),
        hosts: vec!["JP/MUN/131016/records".parse().unwrap()],
        system_certificates: false,
    });
    let (dir, mut f) =
        integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let backend = f
        .description()
        .services
        .iter()
        .find(|s| s.id == RECORD)
        .unwrap()
        .backend
        .clone();
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();

    // Both nodes load one file: the resident record service, for the portal only.
    let file = dir.path().join("cluster.toml");
    write(&file, &declared(&backend, ""));
    for node in NODES {
        f.server_mut(node).unwrap().config.declared = Some(DeclaredConfig {
            file: file.clone(),
            reload_interval_secs: 1,
        });
        f.restart_server(node).await.unwrap();
    }
    for node in NODES {
        assert_eq!(services_on(&f, node).await, [RECORD], "{node}");
        assert_eq!(admin(&f, node).call(&ListAccess).await.unwrap().len(), 1);
        let status = admin(&f, node).call(&Status).await.unwrap();
        let declared = status.declared.expect("declared status");
        assert!(declared.error.is_none(), "{node}: {declared:?}");
    }
    resident_record(&proxy, "cluster-1").await.unwrap();

    // The admin API refuses changes: the file is the one place they are made.
    let refused = admin(&f, NODES[0])
        .call(&AddService(ServiceEntry {
            id: "JP/MUN/131016/records/other".parse().unwrap(),
            url: "http://127.0.0.1:1".into(),
            timeout_secs: 5,
            openapi: None,
            names: Default::default(),
        }))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("Admin.Declared"), "{refused}");
    assert!(refused.contains("cluster.toml"), "{refused}");

    // One change of the file: a second service, granted too. Both nodes apply it.
    let second = "JP/MUN/131016/records/residentRecordCopy";
    write(
        &file,
        &declared(
            &backend,
            &format!(
                "\n[[services]]\nid = \"{second}\"\nurl = \"{backend}\"\n\n\
                 [[access]]\nservice = \"{second}\"\nsubject = \"JP/GOV/digital-agency/portal\"\n"
            ),
        ),
    );
    for node in NODES {
        eventually("the node to apply the changed file", || async {
            (services_on(&f, node).await.len() == 2).then_some(())
        })
        .await;
        let audit = admin(&f, node)
            .call(&Audit { limit: Some(10) })
            .await
            .unwrap();
        let applied: Vec<_> = audit
            .iter()
            .filter(|e| e.details["id"] == second || e.details["service"] == second)
            .collect();
        let actions: Vec<&str> = applied.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["service.add", "access.grant"],
            "{node}: {audit:?}"
        );
        for e in applied {
            assert_eq!(
                e.details["declared"]["file"],
                file.display().to_string(),
                "{node}: {e:?}"
            );
        }
    }

    // A file that does not hold (a grant for a service it does not declare): both nodes keep
    // what they had, say why, and go on serving.
    write(
        &file,
        &declared(
            &backend,
            "\n[[access]]\nservice = \"JP/MUN/131016/records/nothing\"\nsubject = \"JP/GOV/digital-agency/portal\"\n",
        ),
    );
    for node in NODES {
        eventually("the node to refuse the file", || async {
            let status = admin(&f, node).call(&Status).await.ok()?;
            status
                .declared
                .and_then(|d| d.error)
                .filter(|e| e.contains("JP/MUN/131016/records/nothing"))
        })
        .await;
        assert_eq!(
            services_on(&f, node).await.len(),
            2,
            "{node} kept its services"
        );
    }
    resident_record(&proxy, "cluster-2").await.unwrap();
    f.stop().await;
}

//! The systemd units as the package test reads them: their `[Service]` keys, the hardening the
//! issue asks for, and a start the way the unit starts its binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::USER;

/// The unit's hardening, as the issue lists it.
pub fn check_unit(pkg: &str, unit: &Unit) {
    let want = [
        ("User", USER.to_owned()),
        ("Group", USER.to_owned()),
        ("NoNewPrivileges", "yes".to_owned()),
        ("ProtectSystem", "strict".to_owned()),
        ("PrivateTmp", "yes".to_owned()),
        ("ProtectHome", "yes".to_owned()),
        ("ReadWritePaths", format!("/var/lib/xroad-rs/{pkg}")),
        ("KillSignal", "SIGTERM".to_owned()),
        ("UMask", "0077".to_owned()),
    ];
    for (key, value) in want {
        assert_eq!(unit.get(key), Some(value.as_str()), "{pkg}: {key}");
    }
    let caps = unit
        .get("CapabilityBoundingSet")
        .expect("CapabilityBoundingSet");
    let allowed: &[&str] = if pkg == "security-server" {
        &[]
    } else {
        // The registry's and the portal's public ports may be 443.
        &["CAP_NET_BIND_SERVICE"]
    };
    assert_eq!(
        caps.split_whitespace().collect::<Vec<_>>(),
        allowed,
        "{pkg}: CapabilityBoundingSet"
    );
    assert!(
        unit.get("ExecStart").is_some_and(
            |e| e.starts_with(&format!("/usr/bin/{pkg} --config /etc/xroad-rs/{pkg}.toml"))
        ),
        "{pkg}: ExecStart {:?}",
        unit.get("ExecStart")
    );
}

/// The `[Service]` keys of a unit file (the last value of a repeated key).
pub struct Unit(BTreeMap<String, String>);

impl Unit {
    pub fn read(path: &Path) -> Unit {
        let text = std::fs::read_to_string(path).unwrap();
        let mut keys = BTreeMap::new();
        let mut in_service = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
            } else if let Some((key, value)) = line.split_once('=')
                && in_service
                && !line.starts_with('#')
            {
                keys.insert(key.to_owned(), value.to_owned());
            }
        }
        Unit(keys)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Starts the unit's `ExecStart` as systemd would (without its sandbox of namespaces): as
    /// `User`/`Group` with their groups, `UMask`, a clean environment, no new privileges and
    /// only the capabilities of `CapabilityBoundingSet`.
    pub fn start(&self, log: &Path) -> Child {
        let exec: Vec<&str> = self.get("ExecStart").unwrap().split_whitespace().collect();
        let user = self.get("User").unwrap();
        let mut bounding = vec!["-all".to_owned()];
        for cap in self
            .get("CapabilityBoundingSet")
            .unwrap_or("")
            .split_whitespace()
        {
            bounding.push(format!(
                "+{}",
                cap.trim_start_matches("CAP_").to_ascii_lowercase()
            ));
        }
        let mut setpriv = vec![
            format!("--reuid={user}"),
            format!("--regid={}", self.get("Group").unwrap()),
            "--init-groups".to_owned(),
            format!("--bounding-set={}", bounding.join(",")),
        ];
        if self.get("NoNewPrivileges") == Some("yes") {
            setpriv.push("--no-new-privs".to_owned());
        }
        let log = std::fs::File::create(log).unwrap();
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {} && exec setpriv \"$@\"",
                self.get("UMask").unwrap_or("0022")
            ))
            .arg("sh")
            .args(&setpriv)
            .arg("--")
            .args(&exec)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
            .env("HOME", "/var/lib/xroad-rs")
            .env("USER", user)
            .env("LOGNAME", user)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

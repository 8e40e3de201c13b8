#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The Debian packages (issue: operations). `scripts/package` packages the binaries this test
//! run built; the test checks what each package holds, then installs all three into this machine
//! with dpkg, as an operator would:
//! - the service user and the directories exist with their owners and modes;
//! - `systemd-analyze verify` accepts the units;
//! - the walkthrough's steps run as the service user: the registry is initialised and serves,
//!   a security server is initialised, enrolled and runs, and the portal serves, each started
//!   the way its unit starts it (its `ExecStart`, user, umask, no new privileges, its capability
//!   bounding set), and each stops with exit status 0 on SIGTERM.
//!
//! Installing needs root and dpkg, as on the CI machine; elsewhere the test checks the packages'
//! contents only and says so. It refuses to run over an existing installation, and purges the
//! packages, their directories and the user when it ends.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

#[path = "packages/unit.rs"]
mod unit;

use unit::{Unit, check_unit};

const PACKAGES: [&str; 3] = ["security-server", "central-registry", "resident-portal"];
const USER: &str = "xroad-rs";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// `target/` of this run: this test is `target/debug/deps/packages-…`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.ancestors()
        .nth(3)
        .expect("target/debug/deps/<test>")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// Builds the three packages from `target/debug`, building the binaries first only when this run
/// did not (`cargo test -p integration-tests --test packages` alone).
fn build_packages(out: &Path) -> BTreeMap<&'static str, PathBuf> {
    let target = target_dir();
    if PACKAGES
        .iter()
        .any(|bin| !target.join("debug").join(bin).exists())
    {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--locked"]);
        for bin in PACKAGES {
            cargo.args(["-p", bin]);
        }
        run(cargo.env("CARGO_TARGET_DIR", &target));
    }
    run(Command::new(repo_root().join("scripts/package"))
        .args(["--profile", "dev", "--no-build", "--fast", "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", &target));
    let mut debs = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let pkg = PACKAGES
            .into_iter()
            .find(|p| name.starts_with(&format!("xroad-rs-{p}_")))
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        assert!(
            name.ends_with("_amd64.deb") || name.ends_with(".deb"),
            "{name}"
        );
        assert!(debs.insert(pkg, path).is_none(), "two packages of {pkg}");
    }
    assert_eq!(debs.len(), 3, "{debs:?}");
    debs
}

/// Path → (mode string, owner) of each entry of a package, from `dpkg-deb --contents`.
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    stdout(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.').to_owned();
            (path, (fields[0].to_owned(), fields[1].to_owned()))
        })
        .collect()
}

fn check_contents(pkg: &str, deb: &Path) {
    let files = contents(deb);
    let file = |path: &str, mode: &str| match files.get(path) {
        Some((m, owner)) => {
            assert_eq!(m, mode, "{pkg}: mode of {path}");
            assert_eq!(owner, "0/0", "{pkg}: owner of {path} (uid/gid)");
        }
        None => panic!("{pkg} lacks {path}: {:#?}", files.keys()),
    };
    let name = format!("xroad-rs-{pkg}");
    file(&format!("/usr/bin/{pkg}"), "-rwxr-xr-x");
    file(
        &format!("/usr/lib/systemd/system/{name}.service"),
        "-rw-r--r--",
    );
    file(&format!("/usr/lib/sysusers.d/{name}.conf"), "-rw-r--r--");
    file(&format!("/usr/lib/tmpfiles.d/{name}.conf"), "-rw-r--r--");
    file(&format!("/usr/share/man/man1/{pkg}.1.gz"), "-rw-r--r--");
    file(
        &format!("/usr/share/bash-completion/completions/{pkg}"),
        "-rw-r--r--",
    );
    file(
        &format!("/usr/share/zsh/vendor-completions/_{pkg}"),
        "-rw-r--r--",
    );
    file(
        &format!("/usr/share/fish/vendor_completions.d/{pkg}.fish"),
        "-rw-r--r--",
    );
    file(&format!("/usr/share/doc/{name}/copyright"), "-rw-r--r--");
    file(&format!("/usr/share/doc/{name}/README.md"), "-rw-r--r--");
    if pkg != "resident-portal" {
        // One page per command: `man security-server-init`.
        file(
            &format!("/usr/share/man/man1/{pkg}-init.1.gz"),
            "-rw-r--r--",
        );
    }
    // Nothing outside the package's own places: no configuration or state is shipped (init
    // writes them), so a purge never deletes an operator's keys or message log.
    for path in files.keys() {
        assert!(
            ["/usr/bin/", "/usr/lib/", "/usr/share/"]
                .iter()
                .any(|p| path.starts_with(p))
                || ["/", "/usr/"].contains(&path.as_str()),
            "{pkg} installs {path}"
        );
    }
    let depends = stdout(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(deb)
            .arg("Depends"),
    );
    assert!(depends.contains("libc6"), "{pkg}: Depends: {depends}");
}

/// A command run as the service user, as the operator runs the CLIs (`sudo -u xroad-rs …`).
fn as_user(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", USER, "--", program]);
    cmd
}

/// Purges what the test installed, even when it fails half-way.
struct Installation {
    services: Vec<(String, Child)>,
}

impl Drop for Installation {
    fn drop(&mut self) {
        for (_, child) in &mut self.services {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut purge = Command::new("dpkg");
        purge.arg("--purge");
        for pkg in PACKAGES {
            purge.arg(format!("xroad-rs-{pkg}"));
        }
        let _ = purge.output();
        let _ = std::fs::remove_dir_all("/etc/xroad-rs");
        let _ = std::fs::remove_dir_all("/var/lib/xroad-rs");
        let _ = Command::new("userdel").arg(USER).output();
        let _ = Command::new("groupdel").arg(USER).output();
    }
}

impl Installation {
    fn start(&mut self, pkg: &str, logs: &Path) {
        let unit = Unit::read(Path::new(&format!(
            "/usr/lib/systemd/system/xroad-rs-{pkg}.service"
        )));
        check_unit(pkg, &unit);
        let child = unit.start(&logs.join(format!("{pkg}.log")));
        self.services.push((pkg.to_owned(), child));
    }

    /// SIGTERM, as `systemctl stop` sends it; the service must exit 0 within the unit's
    /// `TimeoutStopSec` (60 s).
    fn stop_all(&mut self, logs: &Path) {
        for (pkg, mut child) in self.services.drain(..).rev() {
            run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
            let deadline = Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "{pkg} did not stop within 60 s of SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            let log = std::fs::read_to_string(logs.join(format!("{pkg}.log"))).unwrap();
            assert!(
                status.success(),
                "{pkg} exited with {status} on SIGTERM:\n{log}"
            );
        }
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Retries `ready` until it holds (a service that has just been started).
fn wait_until(what: &str, log: &Path, mut ready: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let error = match ready() {
            Ok(()) => return,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!(
                "{what} did not come up: {error}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a command succeeds, with its stderr when not.
fn succeeds(mut cmd: Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn mode_and_owner(path: &str) -> (u32, String) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let owner = stdout(Command::new("id").args(["-nu", &meta.uid().to_string()]));
    (meta.mode() & 0o7777, owner.trim().to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

#[test]
fn the_packages_install_and_each_service_runs_as_its_unit_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("debs");
    let debs = build_packages(&out);
    for (pkg, deb) in &debs {
        check_contents(pkg, deb);
        check_unit(
            pkg,
            &Unit::read(&repo_root().join(format!("packaging/debian/xroad-rs-{pkg}.service"))),
        );
    }
    if !is_root() || Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("not root, or no dpkg: the packages' contents are checked, not installed");
        return;
    }
    for leftover in ["/etc/xroad-rs", "/var/lib/xroad-rs"] {
        assert!(
            !Path::new(leftover).exists(),
            "{leftover} exists: an installation of xroad-rs, or left by an earlier run of this \
             test; remove it (dpkg --purge xroad-rs-…) before running the test here"
        );
    }
    let mut installed = Installation {
        services: Vec::new(),
    };
    run(Command::new("dpkg").arg("--install").args(debs.values()));

    // The user and the directories, from the packages' sysusers.d and tmpfiles.d files.
    let passwd = stdout(Command::new("getent").args(["passwd", USER]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields[5], "/var/lib/xroad-rs", "home: {passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "shell: {passwd}");
    assert!(
        fields[2].parse::<u32>().unwrap() < 1000,
        "a system user: {passwd}"
    );
    assert_eq!(mode_and_owner("/etc/xroad-rs"), (0o750, USER.to_owned()));
    assert_eq!(
        mode_and_owner("/var/lib/xroad-rs"),
        (0o750, USER.to_owned())
    );
    for pkg in PACKAGES {
        assert_eq!(
            mode_and_owner(&format!("/var/lib/xroad-rs/{pkg}")),
            (0o700, USER.to_owned())
        );
        let unit = format!("/usr/lib/systemd/system/xroad-rs-{pkg}.service");
        let verify = run(Command::new("systemd-analyze").args(["verify", &unit]));
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(
            !said.contains("xroad-rs"),
            "systemd-analyze verify {unit}:\n{said}"
        );
        // The binary on PATH is the packaged one, and says its version.
        let version = stdout(Command::new(format!("/usr/bin/{pkg}")).arg("--version"));
        assert_eq!(
            version.trim(),
            format!("{pkg} {}", env!("CARGO_PKG_VERSION"))
        );
    }

    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let registry_port = free_port();
    let registry_admin = free_port();
    let client_proxy = free_port();
    let server_proxy = free_port();
    let ss_admin = free_port();
    let portal_port = free_port();

    // The registry, as README's walkthrough sets it up, with the packaged paths.
    let registry = |args: &[&str]| {
        let mut cmd = as_user("central-registry");
        cmd.args(["--config", "/etc/xroad-rs/central-registry.toml"])
            .args(args);
        cmd
    };
    run(&mut registry(&[
        "init",
        "--instance",
        "JP",
        "--url",
        &format!("https://127.0.0.1:{registry_port}"),
        "--data-dir",
        "/var/lib/xroad-rs/central-registry",
    ]));
    let config = "/etc/xroad-rs/central-registry.toml";
    let text = std::fs::read_to_string(config).unwrap();
    let text = text.replace(
        "admin_listen = \"127.0.0.1:41002\"",
        &format!("admin_listen = \"127.0.0.1:{registry_admin}\""),
    );
    assert!(text.contains(&registry_admin.to_string()), "{text}");
    std::fs::write(config, text).unwrap();
    installed.start("central-registry", &logs);
    wait_until("the registry", &logs.join("central-registry.log"), || {
        succeeds(registry(&["status"]))
    });
    run(&mut registry(&[
        "member",
        "add",
        "JP/GOV/digital-agency",
        "--name",
        "Digital Agency",
    ]));
    run(&mut registry(&[
        "subsystem",
        "add",
        "JP/GOV/digital-agency/portal",
        "--name",
        "Portal",
    ]));
    let token = stdout(&mut registry(&[
        "token",
        "issue",
        "JP/GOV/digital-agency/ss1",
    ]));

    // The security server: init and enrol as the service user, then run as the unit does.
    let server = |args: &[&str]| {
        let mut cmd = as_user("security-server");
        cmd.args(["--config", "/etc/xroad-rs/security-server.toml"])
            .args(args);
        cmd
    };
    run(&mut server(&[
        "init",
        "--id",
        "JP/GOV/digital-agency/ss1",
        "--anchor",
        "/var/lib/xroad-rs/central-registry/anchor.toml",
        "--data-dir",
        "/var/lib/xroad-rs/security-server",
        "--client-proxy",
        &format!("127.0.0.1:{client_proxy}"),
        "--server-proxy",
        &format!("127.0.0.1:{server_proxy}"),
        "--advertise",
        &format!("127.0.0.1:{server_proxy}"),
        "--admin",
        &format!("127.0.0.1:{ss_admin}"),
    ]));
    run(&mut server(&["enroll", "--token", token.trim()]));
    run(&mut registry(&[
        "server",
        "add-subsystem",
        "JP/GOV/digital-agency/ss1",
        "JP/GOV/digital-agency/portal",
    ]));
    installed.start("security-server", &logs);
    wait_until(
        "the security server",
        &logs.join("security-server.log"),
        || succeeds(server(&["status"])),
    );
    // The admin CLIs as an operator reads them: text with dates, not JSON.
    let status = stdout(&mut server(&["status"]));
    assert!(
        status.starts_with("configuration:  serial ") && status.contains(" expires 20"),
        "{status}"
    );
    let operational = stdout(&mut server(&["operational", "--from", "0"]));
    assert!(
        operational.contains("no exchanges in that time"),
        "{operational}"
    );
    // A declared file checked against the running server: what it would change.
    let declared = "/var/lib/xroad-rs/security-server/cluster.toml";
    std::fs::write(
        declared,
        "[[services]]\nid = \"JP/GOV/digital-agency/portal/echo\"\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    run(Command::new("chown").args([USER, declared]));
    let check = stdout(&mut server(&["declared", "check", "--file", declared]));
    assert!(
        check.contains("holds") && check.contains("service.add") && check.contains("/echo"),
        "{check}"
    );

    // Keys and the admin token are the service user's alone.
    for file in ["admin-token", "tls.key"] {
        let path = format!("/var/lib/xroad-rs/security-server/{file}");
        assert_eq!(mode_and_owner(&path), (0o600, USER.to_owned()), "{path}");
    }

    // The portal: the operator writes its configuration (docs/portal.md).
    let portal_config = "/etc/xroad-rs/resident-portal.toml";
    std::fs::write(
        portal_config,
        format!(
            "listen = \"127.0.0.1:{portal_port}\"\n\
             security_server = \"http://127.0.0.1:{client_proxy}\"\n\
             client = \"JP/GOV/digital-agency/portal\"\n\
             [login]\n\
             kind = \"trusted-header\"\n\
             header = \"X-Authenticated-Resident\"\n"
        ),
    )
    .unwrap();
    run(Command::new("chown").args([&format!("root:{USER}"), portal_config]));
    run(Command::new("chmod").args(["0640", portal_config]));
    installed.start("resident-portal", &logs);
    wait_until("the portal", &logs.join("resident-portal.log"), || {
        std::net::TcpStream::connect(("127.0.0.1", portal_port))
            .map(drop)
            .map_err(|e| e.to_string())
    });
    let health = http_get(portal_port, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Backups of the running servers, as the service user, into the one place the units let
    // them write; each restored elsewhere with the packaged binary.
    let key_out = stdout(&mut server(&[
        "backup-key",
        "--out",
        "/var/lib/xroad-rs/backup.key",
    ]));
    let recipient = key_out
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap_or_else(|| panic!("no recipient in {key_out}"))
        .to_owned();
    for (pkg, restore_says) in [
        ("security-server", "message log:"),
        ("central-registry", "restored the backup of JP"),
    ] {
        let backups = format!("/var/lib/xroad-rs/{pkg}/backups");
        run(as_user("mkdir").arg(&backups));
        let file = format!("{backups}/{pkg}.age");
        let mut backup = as_user(pkg);
        backup.args(["--config", &format!("/etc/xroad-rs/{pkg}.toml"), "backup"]);
        let said = stdout(backup.args(["--recipient", &recipient, "--out", &file]));
        assert!(said.contains("backup written"), "{said}");
        let restored = dir.path().join(format!("restored-{pkg}"));
        let said = stdout(
            Command::new(format!("/usr/bin/{pkg}"))
                .arg("--config")
                .arg(restored.join(format!("{pkg}.toml")))
                .args([
                    "restore",
                    &file,
                    "--identity",
                    "/var/lib/xroad-rs/backup.key",
                ])
                .arg("--data-dir")
                .arg(restored.join("data")),
        );
        assert!(said.contains(restore_says), "{said}");
    }

    installed.stop_all(&logs);
}

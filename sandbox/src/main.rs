//! `cargo run --release --bin sandbox [-- --dir DIR]`: a whole federation on loopback with
//! embedded defaults and the demo services, until Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sandbox::{Description, Federation, FederationSpec, Ports};

#[derive(Debug, Parser)]
#[command(
    name = "sandbox",
    version,
    about = "Run a local xroad-rs federation on loopback"
)]
struct Args {
    /// Where the federation's files go (recreated on each start).
    #[arg(long, default_value = "sandbox-data")]
    dir: PathBuf,
    /// First port of the fixed layout (registry base+1; client proxies base+80..); 0 picks free ports.
    #[arg(long, default_value_t = 41000)]
    base_port: u16,
    /// JSON logs.
    #[arg(long)]
    json_logs: bool,
    /// Also run a second instance, FI (its own registry and server, ports base+300..; files in
    /// DIR/FI), federated with JP both ways.
    #[arg(long)]
    federated: bool,
}

fn main() -> std::process::ExitCode {
    runtime::cli::finish(main_with(Args::parse()))
}

fn main_with(args: Args) -> anyhow::Result<()> {
    runtime::init_tracing(args.json_logs);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let ports = if args.base_port == 0 {
        Ports::Ephemeral
    } else {
        Ports::Fixed(args.base_port)
    };
    let clock: Arc<dyn certs::Clock> = Arc::new(certs::SystemClock);
    let spec = if args.federated {
        FederationSpec::sandbox_federated()
    } else {
        FederationSpec::sandbox()
    };
    let mut federation = Federation::start(spec, &args.dir, ports, Arc::clone(&clock))
        .await
        .context("starting the sandbox federation")?;
    let mut finland = None;
    if args.federated {
        let fi_ports = match ports {
            Ports::Fixed(base) => Ports::Fixed(base.saturating_add(300)),
            Ports::Ephemeral => Ports::Ephemeral,
        };
        let mut fi = Federation::start(
            FederationSpec::finland(),
            &args.dir.join("FI"),
            fi_ports,
            clock,
        )
        .await
        .context("starting the federated instance FI")?;
        sandbox::federate::federate(&mut federation, &mut fi)
            .await
            .context("federating JP and FI")?;
        finland = Some(fi);
    }
    print_summary(&federation);
    if let Some(fi) = &finland {
        print_federated(&federation, fi);
    }
    runtime::signal().await;
    println!("stopping…");
    if let Some(fi) = finland {
        fi.stop().await;
    }
    federation.stop().await;
    Ok(())
}

/// What runs of the second instance, and the cross-border calls to paste.
fn print_federated(jp: &Federation, fi: &Federation) {
    let (d, theirs) = (jp.description(), fi.description());
    println!();
    println!(
        "Instance '{}' runs beside it, federated both ways (its files in {}):",
        theirs.instance,
        fi.dir().display()
    );
    println!("  anchor:       {}", theirs.anchor.display());
    for f in &d.federated {
        println!(
            "  fingerprint:  {} (as JP's registry holds it)",
            f.anchor_fingerprint
        );
    }
    println!("  registry:     {}", theirs.registries.join(", "));
    for s in &theirs.security_servers {
        println!("  {}   client proxy {}", s.id, s.client_proxy);
    }
    let (Some(benefits), Some(population)) = (
        client_proxy_of(d, BENEFITS),
        client_proxy_of(theirs, sandbox::spec::FI_POPULATION),
    ) else {
        return;
    };
    let fi_service = sandbox::spec::FI_POPULATION;
    println!();
    println!("Across the border:");
    println!("  # Japan's benefits system reads Finland's population information");
    println!("  curl -s {benefits}/r1/{fi_service}/personInfo/131016000001 \\");
    println!("    -H 'X-Road-Client: {BENEFITS}' -H 'X-Road-Data-Subject: 131016000001' \\");
    println!("    -H 'X-Road-Purpose: 児童手当の認定 (child allowance eligibility)'");
    println!("  # Finland's population register reads a Chiyoda City resident record");
    println!("  curl -s {population}/r1/{RECORDS}/residentRecord/131016000002 \\");
    println!("    -H 'X-Road-Client: {fi_service}'");
    println!("  # FI's members, as JP's servers know them");
    println!("  curl -s '{benefits}/listClients?xRoadInstance=FI'");
    println!("  # the federation as a server sees it");
    if let Some(s) = d.security_servers.first() {
        println!(
            "  {} --config {} status",
            cli("security-server"),
            s.config.display()
        );
    }
}

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const WELFARE: &str = "JP/MUN/271004/welfare";
const BENEFITS: &str = "JP/GOV/digital-agency/benefits";
const RECORDS: &str = "JP/MUN/131016/records";

/// The client proxy of the server hosting `subsystem`.
fn client_proxy_of<'a>(d: &'a Description, subsystem: &str) -> Option<&'a str> {
    d.security_servers
        .iter()
        .find(|s| s.hosts.iter().any(|h| h.to_string() == subsystem))
        .map(|s| s.client_proxy.as_str())
}

/// Ready-to-paste calls through the gateway: allowed, denied, and the metaservices.
fn print_exchange_examples(d: &Description) {
    let (Some(ministry), Some(osaka)) = (client_proxy_of(d, PORTAL), client_proxy_of(d, WELFARE))
    else {
        return;
    };
    println!(
        "  # 住民票: the Digital Agency's benefits system reads a resident record through its security server"
    );
    println!("  curl -s {ministry}/r1/{RECORDS}/residentRecord/131016000001 \\");
    println!("    -H 'X-Road-Client: {BENEFITS}' -H 'X-Road-Data-Subject: 131016000001' \\");
    println!("    -H 'X-Road-Purpose: 児童手当の認定 (child allowance eligibility)'");
    println!("  # search residents by name (kanji, kana or romaji)");
    println!(
        "  curl -s -G {ministry}/r1/{RECORDS}/residentRecord --data-urlencode 'name=山田' -H 'X-Road-Client: {PORTAL}'"
    );
    println!(
        "  # 課税証明書: Osaka's welfare office reads a tax certificate through its own server"
    );
    println!("  curl -s '{osaka}/r1/{RECORDS}/taxCertificate/131016000005?year=2025' \\");
    println!("    -H 'X-Road-Client: {WELFARE}' -H 'X-Road-Data-Subject: 131016000005' \\");
    println!("    -H 'X-Road-Purpose: 生活保護の要否判定 (public assistance assessment)'");
    println!(
        "  # denied: the welfare office has no grant for resident records (Server.ServerProxy.AccessDenied)"
    );
    println!(
        "  curl -s -i {osaka}/r1/{RECORDS}/residentRecord/131016000005 -H 'X-Road-Client: {WELFARE}'"
    );
    println!(
        "  # metaservices: clients, the provider's services, what the caller may use, OpenAPI"
    );
    println!("  curl -s {ministry}/listClients");
    println!("  curl -s {ministry}/r1/{RECORDS}/listMethods -H 'X-Road-Client: {PORTAL}'");
    println!("  curl -s {osaka}/r1/{RECORDS}/allowedMethods -H 'X-Road-Client: {WELFARE}'");
    println!(
        "  curl -s '{ministry}/r1/{RECORDS}/getOpenAPI?serviceCode=residentRecord' -H 'X-Road-Client: {PORTAL}'"
    );
    println!(
        "  # 利用履歴: who accessed resident 131016000001's data, as Chiyoda's server recorded it"
    );
    println!(
        "  curl -s {ministry}/r1/{RECORDS}/findUsage -H 'X-Road-Client: {PORTAL}' -H 'X-Road-Data-Subject: 131016000001'"
    );
    println!("  # the demo backend directly, without the gateway");
    println!("  curl -s {}/residents/131016000001", d.demo_backend);
    print_shared_examples(d);
}

/// 共同利用方式: each system on a shared server calls with its own certificate; naming another
/// member's subsystem is refused.
fn print_shared_examples(d: &Description) {
    for s in &d.security_servers {
        let [own, other, ..] = s.systems.as_slice() else {
            continue;
        };
        let (cert, key) = (own.cert.display(), own.key.display());
        println!(
            "  # 共同利用: {} is shared; each system calls with its own certificate",
            s.id
        );
        println!("  # (-k: the server's certificate names the server, not 127.0.0.1)");
        println!(
            "  curl -s -k --cert {cert} --key {key} {}/r1/{RECORDS}/residentRecord/131016000001 \\",
            s.client_proxy
        );
        println!(
            "    -H 'X-Road-Client: {}' -H 'X-Road-Data-Subject: 131016000001' -H 'X-Road-Purpose: 転入 (moving in)'",
            own.subsystem
        );
        println!(
            "  # refused: the same system naming {}'s subsystem (Client.ClientNotAuthenticated)",
            other.subsystem.member()
        );
        println!(
            "  curl -s -k -i --cert {cert} --key {key} {}/r1/{RECORDS}/listMethods -H 'X-Road-Client: {}'",
            s.client_proxy, other.subsystem
        );
    }
}

/// The binary `name` in this sandbox binary's directory (`target/release/` after
/// `cargo run --release --bin sandbox`), if it was built there.
fn beside_this_binary(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join(name);
    path.exists().then_some(path)
}

/// How to run the CLI `name` in the examples: the binary beside this one, else through cargo
/// (which builds it).
fn cli(name: &str) -> String {
    match beside_this_binary(name) {
        Some(path) => path.display().to_string(),
        None => format!("cargo run -q --release --bin {name} --"),
    }
}

fn print_summary(f: &Federation) {
    let d = f.description();
    let dir = f.dir().display();
    println!();
    println!("xroad-rs sandbox federation '{}' is running.", d.instance);
    println!("  description:  {dir}/federation.json");
    println!("  anchor:       {}", d.anchor.display());
    println!(
        "  registry:     {} (admin {})",
        d.registries.join(", "),
        d.registry_admin
    );
    for s in &d.security_servers {
        let hosts: Vec<String> = s.hosts.iter().map(ToString::to_string).collect();
        println!("  {}", s.id);
        println!(
            "      client proxy {}   admin {}   hosts {}",
            s.client_proxy,
            s.admin,
            hosts.join(", ")
        );
    }
    println!("  admin tokens: {} (0600)", d.credentials.display());
    match std::env::current_exe() {
        Ok(exe) => println!("  binaries:     {} (this sandbox)", exe.display()),
        Err(e) => println!("  binaries:     (this sandbox's path is unknown: {e})"),
    }
    for name in ["security-server", "central-registry"] {
        match beside_this_binary(name) {
            Some(path) => println!("                {}", path.display()),
            None => println!(
                "                {name}: not built beside the sandbox; `cargo build --release --bins` builds it"
            ),
        }
    }
    println!(
        "  demo backend: {} (Chiyoda City's systems; synthetic data)",
        d.demo_backend
    );
    for service in &d.services {
        println!(
            "      {}  allowed: {}",
            service.id,
            service.allowed.join(", ")
        );
    }
    if let Some(portal) = &d.portal {
        println!("  resident portal: {portal}");
        println!(
            "      development login (no authentication): try residents 131016000001, 131016000002, 131016000003"
        );
    }
    println!();
    println!("Try:");
    print_exchange_examples(d);
    println!("  # the signed global configuration, over HTTPS trusting only the instance CA");
    println!(
        "  curl -s --cacert {dir}/registry/data/ca.pem {}/v1/global-configuration -D - -o /dev/null",
        d.registries.first().map(String::as_str).unwrap_or_default()
    );
    if let Some(s) = d.security_servers.first() {
        println!("  # a security server's status, with its own CLI and configuration file");
        println!(
            "  {} --config {} status",
            cli("security-server"),
            s.config.display()
        );
    }
    println!("  # the registry's members, with the registry CLI");
    println!(
        "  {} --config {} member list",
        cli("central-registry"),
        d.registry_config.display()
    );
    println!();
    println!("Ctrl-C stops the federation.");
}

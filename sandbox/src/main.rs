//! `cargo run --release --bin sandbox [-- --dir DIR]`: a whole federation on loopback with
//! embedded defaults, until Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sandbox::{Federation, FederationSpec, Ports};

#[derive(Debug, Parser)]
#[command(
    name = "sandbox",
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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    let federation = Federation::start(
        FederationSpec::sandbox(),
        &args.dir,
        ports,
        Arc::new(certs::SystemClock),
    )
    .await
    .context("starting the sandbox federation")?;
    print_summary(&federation);
    runtime::signal().await;
    println!("stopping…");
    federation.stop().await;
    Ok(())
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
    println!();
    println!("Try:");
    println!("  # the signed global configuration, over HTTPS trusting only the instance CA");
    println!(
        "  curl -s --cacert {dir}/registry/data/ca.pem {}/v1/global-configuration -D - -o /dev/null",
        d.registries.first().map(String::as_str).unwrap_or_default()
    );
    if let Some(s) = d.security_servers.first() {
        println!("  # a security server's status, with its own CLI and configuration file");
        println!(
            "  cargo run -q --bin security-server -- --config {} status",
            s.config.display()
        );
    }
    println!("  # the registry's members, with the registry CLI");
    println!(
        "  cargo run -q --bin central-registry -- --config {} member list",
        d.registry_config.display()
    );
    println!();
    println!("Ctrl-C stops the federation.");
}

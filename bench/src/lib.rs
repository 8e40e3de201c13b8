//! Benchmarks of xroad-rs. Results and the machine they ran on are in `docs/performance.md`.
//!
//! # Layout
//! - [`load`]: a closed-loop HTTP load generator (N clients, warm-up, exact latency percentiles),
//!   used by the `bench` program (`src/main.rs`: the message exchange through the gateway
//!   against the same load sent directly to the provider's backend).
//! - [`peer`]: `bench peer`, the gateway's two security servers as processes against a two-hop
//!   mutual-TLS nginx chain, driven alike by `wrk` in alternating rounds.
//! - [`converge`]: `bench converge`, a simulated instance of security servers converging on a
//!   newly published global configuration with the registry stopped.
//! - `src/bin/portal-scale.rs`: the resident portal's page over thousands of stand-in members
//!   (time and CPU per page, `docs/performance.md`, "National scale").
//! - `benches/`: `cargo bench -p bench` targets (the global configuration at national size).
#![forbid(unsafe_code)]

pub mod converge;
pub mod load;
pub mod peer;

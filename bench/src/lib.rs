//! Benchmarks live in `benches/` (`cargo bench -p bench`); results and the machine they ran on are
//! in `docs/performance.md`.
#![forbid(unsafe_code)]

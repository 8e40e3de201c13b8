//! Whole-federation tests live in `tests/`; the harness they use is the `sandbox` crate.
#![forbid(unsafe_code)]

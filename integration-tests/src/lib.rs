//! Whole-federation tests live in `tests/`; the harness they use is the `sandbox` crate.
//!
//! # Layout
//! - [`webdriver`]: a real headless Chromium driven over ChromeDriver's W3C WebDriver HTTP API,
//!   for tests of what users see in a browser.
#![forbid(unsafe_code)]

pub mod webdriver;

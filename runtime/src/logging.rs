//! `tracing` set-up: human-readable text by default, JSON lines on request; the filter comes from
//! `RUST_LOG` (default `info`). Logs go to standard output; text has ANSI colours only when that
//! is a terminal, so files, pipes and journald get plain lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber once; later calls do nothing (tests start many servers).
pub fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    let _ = subscriber(json, ansi, filter, std::io::stdout).try_init();
}

/// The subscriber [`init_tracing`] installs, writing to `writer`.
fn subscriber<W>(
    json: bool,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer);
    if json {
        Box::new(builder.json().flatten_event(true).finish())
    } else {
        Box::new(builder.with_ansi(ansi).finish())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    /// Everything the subscriber writes, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text_log(ansi: bool) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(false, ansi, EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(peer = "127.0.0.1", "refused");
        });
        let bytes = out.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn text_logs_have_colours_only_when_asked() {
        let plain = text_log(false);
        assert!(plain.contains("refused"), "{plain:?}");
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        assert!(text_log(true).contains('\u{1b}'));
    }
}

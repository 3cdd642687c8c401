//! Log output: the platform's own lines at `info`, its dependencies only at `warn` unless
//! `RUST_LOG` asks for more (lance alone logs several INFO lines per ingested document).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Used when `RUST_LOG` is unset: our crates at `info`, everything else at `warn`.
pub const DEFAULT_LOG_FILTER: &str = "warn,server=info,app=info,migration=info";

/// `RUST_LOG` if set and valid, otherwise [`DEFAULT_LOG_FILTER`].
pub fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
}

/// Installs the global subscriber in the configured format. Every line is masked
/// ([`crate::pii::mask`]) before it is written: errors from LLM providers, fetched pages and
/// mail servers quote customer text, and no call site can be trusted to remember.
pub fn init(format: LogFormat) {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(|| Masked(std::io::stdout()));
    match format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
}

/// A writer that masks personal data in what it is given: one formatted log line per write.
pub struct Masked<W>(pub W);

impl<W: std::io::Write> std::io::Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(crate::pii::mask(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::{Masked, DEFAULT_LOG_FILTER};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `log` writes through the default filter and the masking writer.
    fn logged(log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER))
            .with_writer(move || Masked(writer.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn default_filter_keeps_our_info_and_drops_dependencies_info() {
        let out = logged(|| {
            tracing::info!(target: "server::rag::ingest", "ours-info");
            tracing::info!(target: "lance::file_audit", "lance-info");
            tracing::info!(target: "lance::dataset_events", "lance-events");
            tracing::warn!(target: "lance::io", "lance-warning");
            tracing::debug!(target: "server::jobs", "ours-debug");
        });
        assert!(out.contains("ours-info"), "{out}");
        assert!(out.contains("lance-warning"), "{out}");
        assert!(!out.contains("lance-info"), "{out}");
        assert!(!out.contains("lance-events"), "{out}");
        assert!(!out.contains("ours-debug"), "{out}");
    }

    #[test]
    fn every_line_is_masked_whoever_wrote_it() {
        let out = logged(|| {
            tracing::warn!(
                error = "provider said: unknown user ana@shop.example (+351 912 345 678)",
                "LLM call failed"
            );
            tracing::warn!(target: "lettre::transport", "550 rejected rui@mail.example");
        });
        assert!(
            out.contains("LLM call failed") && out.contains("[email]"),
            "{out}"
        );
        assert!(
            !out.contains("ana@shop.example") && !out.contains("912 345"),
            "{out}"
        );
        assert!(!out.contains("rui@mail.example"), "{out}");
    }
}

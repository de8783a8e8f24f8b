//! Drawing progress events on stderr: plain lines, JSON lines, or only warnings.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::ProgressMode;
use crate::progress::{Event, Reporter};

/// Creates the reporter for `mode`. Script output is shown in `plain` mode, and in `auto` mode with `-v`.
pub fn reporter(mode: ProgressMode, verbose: u8) -> Arc<dyn Reporter> {
    match mode {
        ProgressMode::Auto => Arc::new(Lines {
            show_logs: verbose > 0,
            out: Mutex::new(()),
        }),
        ProgressMode::Plain => Arc::new(Lines {
            show_logs: true,
            out: Mutex::new(()),
        }),
        ProgressMode::Json => Arc::new(JsonLines(Mutex::new(()))),
        ProgressMode::Quiet => Arc::new(WarningsOnly),
    }
}

struct Lines {
    show_logs: bool,
    out: Mutex<()>,
}

impl Reporter for Lines {
    fn report(&self, event: Event) {
        let line = match event {
            Event::Base { message } | Event::Info { message } => message,
            Event::Warning { message } => format!("warning: {message}"),
            Event::StepStarted {
                index,
                total,
                feature,
            } => {
                format!("[{}/{total}] {feature}: running install script", index + 1)
            }
            Event::StepCached {
                index,
                total,
                feature,
            } => {
                format!("[{}/{total}] {feature}: cached", index + 1)
            }
            Event::StepLog { line, .. } if self.show_logs => format!("      | {line}"),
            Event::StepLog { .. } => return,
            Event::StepDone {
                feature,
                duration,
                size,
                ..
            } => {
                // An engine that learns the layer's size only later reports 0.
                let layer = if size > 0 {
                    format!(", layer {}", bytes(size))
                } else {
                    String::new()
                };
                format!(
                    "      {feature}: done in {:.2}s{layer}",
                    duration.as_secs_f64()
                )
            }
        };
        let _guard = self.out.lock();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

struct JsonLines(Mutex<()>);

impl Reporter for JsonLines {
    fn report(&self, event: Event) {
        let value = match event {
            Event::Base { message } => serde_json::json!({"event": "base", "message": message}),
            Event::Info { message } => serde_json::json!({"event": "info", "message": message}),
            Event::Warning { message } => {
                serde_json::json!({"event": "warning", "message": message})
            }
            Event::StepStarted {
                index,
                total,
                feature,
            } => serde_json::json!(
                {"event": "stepStarted", "index": index, "total": total, "feature": feature}
            ),
            Event::StepCached {
                index,
                total,
                feature,
            } => serde_json::json!(
                {"event": "stepCached", "index": index, "total": total, "feature": feature}
            ),
            Event::StepLog { index, line } => {
                serde_json::json!({"event": "stepLog", "index": index, "line": line})
            }
            Event::StepDone {
                index,
                feature,
                duration,
                size,
            } => serde_json::json!({
                "event": "stepDone", "index": index, "feature": feature,
                "seconds": duration.as_secs_f64(), "size": size
            }),
        };
        let _guard = self.0.lock();
        let _ = writeln!(std::io::stderr().lock(), "{value}");
    }
}

struct WarningsOnly;

impl Reporter for WarningsOnly {
    fn report(&self, event: Event) {
        if let Event::Warning { message } = event {
            let _ = writeln!(std::io::stderr().lock(), "warning: {message}");
        }
    }
}

/// A `tracing` event format for `--progress json` that keeps stderr at one JSON object a line.
/// Warnings become `{"event":"warning",...}` as the reporter writes them, and other levels
/// `{"event":"log",...}`. Each line has `level` and `message`, and `fields` when there are any.
pub struct JsonLogs;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLogs
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        writeln!(writer, "{}", log_line(event.metadata().level(), fields))
    }
}

/// Builds the JSON object of one log event.
fn log_line(level: &tracing::Level, fields: JsonFields) -> serde_json::Value {
    let kind = if *level == tracing::Level::WARN {
        "warning"
    } else {
        "log"
    };
    let mut line = serde_json::json!({
        "event": kind,
        "level": level.as_str().to_ascii_lowercase(),
        "message": fields.message,
    });
    if !fields.others.is_empty() {
        line["fields"] = serde_json::Value::Object(fields.others);
    }
    line
}

/// The message and other fields of a log event.
#[derive(Default)]
struct JsonFields {
    message: String,
    others: serde_json::Map<String, serde_json::Value>,
}

impl JsonFields {
    fn insert(&mut self, field: &tracing::field::Field, value: serde_json::Value) {
        let name = field.name();
        // Events bridged from the `log` crate carry their origin in `log.*` fields.
        if name.starts_with("log.") {
            return;
        }
        match (name, value) {
            ("message", serde_json::Value::String(text)) => self.message = text,
            (_, value) => {
                self.others.insert(name.to_string(), value);
            }
        }
    }
}

impl tracing::field::Visit for JsonFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.insert(field, value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.insert(field, value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.insert(field, value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.insert(field, value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.insert(field, value.into());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.insert(field, format!("{value:?}").into());
    }
}

/// Builds the JSON line for the error that ended the command: message, causes, hint, exit code.
pub fn error_line(error: &crate::error::Error) -> serde_json::Value {
    serde_json::json!({
        "event": "error",
        "message": error.to_string(),
        "causes": error.causes(),
        "hint": error.hint(),
        "exitCode": error.exit_kind().code(),
    })
}

/// Formats a byte count with a binary unit, such as `6.0 MiB`.
fn bytes(size: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{bytes, error_line, JsonLogs};
    use std::sync::{Arc, Mutex};

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `log` under [`JsonLogs`] at debug level and parses the lines it writes.
    fn json_logs(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .event_format(JsonLogs)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn json_logs_mark_warnings_apart() {
        let lines = json_logs(|| {
            tracing::warn!("key `a` is repeated");
            tracing::debug!(round = 2, cached = true, feature = %"./f", "install \"round\"");
            tracing::trace!("not shown");
        });
        assert_eq!(
            lines,
            vec![
                serde_json::json!(
                    {"event": "warning", "level": "warn", "message": "key `a` is repeated"}
                ),
                serde_json::json!({
                    "event": "log", "level": "debug", "message": "install \"round\"",
                    "fields": {"round": 2, "cached": true, "feature": "./f"}
                }),
            ]
        );
    }

    #[test]
    fn error_line_has_every_part() {
        let error = crate::error::Error::usage("no `--key` given", Some("pass `--key`".into()));
        assert_eq!(
            error_line(&error),
            serde_json::json!({
                "event": "error", "message": "no `--key` given", "causes": [],
                "hint": "pass `--key`", "exitCode": 2
            })
        );
    }

    #[test]
    fn byte_counts_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(6 * 1024 * 1024), "6.0 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}

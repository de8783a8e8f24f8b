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
                format!(
                    "      {feature}: done in {:.2}s, layer {}",
                    duration.as_secs_f64(),
                    bytes(size)
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
    use super::bytes;

    #[test]
    fn byte_counts_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(6 * 1024 * 1024), "6.0 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}

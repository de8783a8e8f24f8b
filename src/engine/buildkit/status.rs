//! BuildKit's status stream as envc's progress events.
//!
//! BuildKit reports vertexes by op digest, and the lowering gives the exec op of each
//! Feature, so that vertex becomes the step's events. A vertex from a cache becomes
//! [`Event::StepCached`]; one that runs becomes [`Event::StepStarted`] and [`Event::StepDone`]
//! with BuildKit's own times, and one [`Event::StepLog`] per line the script printed. Other
//! vertexes (the base image, the Feature files, the export) go to the log at debug level.
//!
//! Not handled here: the layer sizes, which are only known once the image is exported.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use prost_types::Timestamp;

use super::proto::control;
use crate::progress::{Event, Reporter};

/// How many lines of a script's output a failure shows.
pub const TAIL_LINES: usize = 20;

/// The state of each step as the status stream has reported it so far.
pub struct StepProgress<'a> {
    reporter: &'a dyn Reporter,
    features: Vec<String>,
    /// Exec op digest to step index.
    index: HashMap<String, usize>,
    steps: Vec<StepState>,
    /// The digest of the base image's source op, and whether its fetch was reported.
    base: (String, bool),
}

#[derive(Debug, Default, Clone)]
struct StepState {
    started: Option<Timestamp>,
    reported_start: bool,
    cached: bool,
    done: bool,
    duration: Duration,
    /// Output not yet ended by a newline.
    partial: Vec<u8>,
    tail: VecDeque<String>,
    error: Option<String>,
}

/// The outcome of one step as the status stream reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub cached: bool,
    pub duration: Duration,
}

/// A step whose exec failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub index: usize,
    /// BuildKit's message, such as `process "..." did not complete successfully: exit code: 1`.
    pub message: String,
    pub exit_code: i32,
    /// The last [`TAIL_LINES`] lines the script printed.
    pub tail: Vec<String>,
}

impl<'a> StepProgress<'a> {
    /// Tracks the steps whose exec ops are `digests`, named `features`, index for index, and
    /// the base image's source op `base`.
    pub fn new(
        reporter: &'a dyn Reporter,
        base: &str,
        digests: &[String],
        features: Vec<String>,
    ) -> Self {
        // A step solved with the cache ignored while the same op of another build is loaded
        // is reported under a second digest, the SHA-256 of `<digest>-ignorecache`.
        let index = digests
            .iter()
            .enumerate()
            .flat_map(|(i, digest)| {
                let twin =
                    super::proto::pb::bytes_digest(format!("{digest}-ignorecache").as_bytes());
                [(digest.clone(), i), (twin, i)]
            })
            .collect();
        StepProgress {
            reporter,
            steps: vec![StepState::default(); features.len()],
            features,
            index,
            base: (base.to_string(), false),
        }
    }

    /// Takes in one batch of the status stream and reports what changed: starts first, then
    /// output, then ends, so that a batch holding all three keeps their order.
    pub fn update(&mut self, response: &control::StatusResponse) {
        let mut ours = Vec::new();
        for vertex in &response.vertexes {
            match self.index.get(&vertex.digest) {
                Some(&index) => {
                    self.start(index, vertex);
                    ours.push((index, vertex));
                }
                None if vertex.digest == self.base.0 => self.base(vertex),
                None => tracing::debug!(
                    vertex = %vertex.name,
                    cached = vertex.cached,
                    done = vertex.completed.is_some(),
                    error = %vertex.error,
                    "BuildKit vertex"
                ),
            }
        }
        for log in &response.logs {
            if let Some(&index) = self.index.get(&log.vertex) {
                self.output(index, &log.msg);
            }
        }
        for (index, vertex) in ours {
            self.end(index, vertex);
        }
        for warning in &response.warnings {
            self.reporter.report(Event::Warning {
                message: format!("BuildKit: {}", String::from_utf8_lossy(&warning.short)),
            });
        }
    }

    /// Reports the base image once BuildKit has fetched it, unless it came from a cache.
    fn base(&mut self, vertex: &control::Vertex) {
        let Some(completed) = vertex.completed else {
            return;
        };
        if self.base.1 || vertex.cached || !vertex.error.is_empty() {
            return;
        }
        self.base.1 = true;
        let took = between(vertex.started.as_ref(), &completed);
        self.reporter.report(Event::Base {
            message: format!(
                "BuildKit fetched {} in {:.2}s",
                vertex.name,
                took.as_secs_f64()
            ),
        });
    }

    /// Reports a step as cached or started the first time its vertex shows it.
    fn start(&mut self, index: usize, vertex: &control::Vertex) {
        let (total, feature) = (self.features.len(), self.features[index].clone());
        let state = &mut self.steps[index];
        if state.done || state.reported_start {
            return;
        }
        if vertex.cached {
            state.cached = true;
            state.done = true;
            state.reported_start = true;
            self.reporter.report(Event::StepCached {
                index,
                total,
                feature,
            });
        } else if vertex.started.is_some() {
            state.started = vertex.started;
            state.reported_start = true;
            self.reporter.report(Event::StepStarted {
                index,
                total,
                feature,
            });
        }
    }

    /// Reports a started step as done when its vertex completes without an error.
    fn end(&mut self, index: usize, vertex: &control::Vertex) {
        let state = &mut self.steps[index];
        if !vertex.error.is_empty() && state.error.is_none() {
            state.error = Some(vertex.error.clone());
        }
        let Some(completed) = vertex.completed else {
            return;
        };
        if state.done {
            return;
        }
        state.done = true;
        state.duration = between(state.started.as_ref(), &completed);
        self.flush(index);
        let state = &self.steps[index];
        if state.error.is_none() {
            self.reporter.report(Event::StepDone {
                index,
                feature: self.features[index].clone(),
                duration: state.duration,
                size: 0,
            });
        }
    }

    /// Reports every full line of `bytes`, keeping a partial last line for later.
    fn output(&mut self, index: usize, bytes: &[u8]) {
        let state = &mut self.steps[index];
        state.partial.extend_from_slice(bytes);
        let Some(end) = state.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let rest = state.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut state.partial, rest);
        for line in complete[..end].split(|b| *b == b'\n') {
            self.line(index, line);
        }
    }

    /// Reports the partial last line of step `index`, if any.
    fn flush(&mut self, index: usize) {
        let partial = std::mem::take(&mut self.steps[index].partial);
        if !partial.is_empty() {
            self.line(index, &partial);
        }
    }

    fn line(&mut self, index: usize, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_string();
        let tail = &mut self.steps[index].tail;
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        self.reporter.report(Event::StepLog { index, line });
    }

    /// Returns the first step whose exec failed, with its output's tail.
    pub fn failure(&mut self) -> Option<StepFailure> {
        let index = self.steps.iter().position(|s| s.error.is_some())?;
        self.flush(index);
        let state = &self.steps[index];
        let message = state.error.clone().unwrap_or_default();
        Some(StepFailure {
            index,
            exit_code: exit_code(&message).unwrap_or(1),
            message,
            tail: state.tail.iter().cloned().collect(),
        })
    }

    /// Returns the outcome of every step, index for index. A step the stream never finished
    /// counts as built, with no time.
    pub fn outcomes(&self) -> Vec<StepOutcome> {
        self.steps
            .iter()
            .map(|state| StepOutcome {
                cached: state.cached,
                duration: state.duration,
            })
            .collect()
    }
}

/// Reads the exit code from BuildKit's message for a failed process: `... exit code: 3`.
pub fn exit_code(message: &str) -> Option<i32> {
    let (_, rest) = message.rsplit_once("exit code: ")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn between(start: Option<&Timestamp>, end: &Timestamp) -> Duration {
    let Some(start) = start else {
        return Duration::ZERO;
    };
    let nanos = |t: &Timestamp| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let delta = nanos(end) - nanos(start);
    u64::try_from(delta).map_or(Duration::ZERO, Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Recorder;

    fn time(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    fn vertex(
        digest: &str,
        started: Option<Timestamp>,
        completed: Option<Timestamp>,
    ) -> control::Vertex {
        control::Vertex {
            digest: digest.into(),
            started,
            completed,
            ..control::Vertex::default()
        }
    }

    fn log(digest: &str, text: &str) -> control::VertexLog {
        control::VertexLog {
            vertex: digest.into(),
            stream: 1,
            msg: text.as_bytes().to_vec(),
            ..control::VertexLog::default()
        }
    }

    fn tracker(recorder: &Recorder) -> StepProgress<'_> {
        StepProgress::new(
            recorder,
            "sha256:base",
            &["sha256:a".to_string(), "sha256:b".to_string()],
            vec!["one".into(), "two".into()],
        )
    }

    #[test]
    fn ignore_cache_twin_maps_to_step() {
        let recorder = Recorder::default();
        let mut progress = tracker(&recorder);
        let twin = crate::engine::buildkit::proto::pb::bytes_digest(b"sha256:a-ignorecache");
        progress.update(&control::StatusResponse {
            vertexes: vec![vertex(&twin, time(10, 0), None)],
            logs: vec![log(&twin, "from the twin\n")],
            ..Default::default()
        });

        let events = recorder.0.lock().unwrap().clone();
        assert_eq!(
            events,
            [
                Event::StepStarted {
                    index: 0,
                    total: 2,
                    feature: "one".into()
                },
                Event::StepLog {
                    index: 0,
                    line: "from the twin".into()
                },
            ]
        );
    }

    #[test]
    fn run_step_start_logs_done() {
        let recorder = Recorder::default();
        let mut progress = tracker(&recorder);
        progress.update(&control::StatusResponse {
            vertexes: vec![vertex("sha256:b", time(10, 0), None)],
            ..Default::default()
        });
        progress.update(&control::StatusResponse {
            logs: vec![
                log("sha256:b", "first\nsec"),
                log("sha256:b", "ond\r\nlast"),
            ],
            ..Default::default()
        });
        progress.update(&control::StatusResponse {
            vertexes: vec![vertex("sha256:b", time(10, 0), time(12, 500_000_000))],
            ..Default::default()
        });

        let events = recorder.0.lock().unwrap().clone();
        let line = |l: &str| Event::StepLog {
            index: 1,
            line: l.into(),
        };
        assert_eq!(
            events,
            [
                Event::StepStarted {
                    index: 1,
                    total: 2,
                    feature: "two".into()
                },
                line("first"),
                line("second"),
                line("last"),
                Event::StepDone {
                    index: 1,
                    feature: "two".into(),
                    duration: Duration::from_millis(2500),
                    size: 0
                },
            ]
        );
        assert_eq!(
            progress.outcomes()[1],
            StepOutcome {
                cached: false,
                duration: Duration::from_millis(2500)
            }
        );
    }

    #[test]
    fn cached_step_reported_once() {
        let recorder = Recorder::default();
        let mut progress = tracker(&recorder);
        let mut cached = vertex("sha256:a", time(5, 0), None);
        cached.cached = true;
        progress.update(&control::StatusResponse {
            vertexes: vec![cached.clone()],
            ..Default::default()
        });
        cached.completed = time(5, 0);
        progress.update(&control::StatusResponse {
            vertexes: vec![cached, vertex("sha256:other", time(1, 0), None)],
            ..Default::default()
        });
        let events = recorder.0.lock().unwrap().clone();
        assert_eq!(
            events,
            [Event::StepCached {
                index: 0,
                total: 2,
                feature: "one".into()
            }]
        );
        assert!(progress.outcomes()[0].cached);
    }

    #[test]
    fn failed_step_keeps_code_and_tail() {
        let recorder = Recorder::default();
        let mut progress = tracker(&recorder);
        progress.update(&control::StatusResponse {
            vertexes: vec![vertex("sha256:a", time(1, 0), None)],
            logs: (0..30)
                .map(|i| log("sha256:a", &format!("line {i}\n")))
                .collect(),
            ..Default::default()
        });
        let mut failed = vertex("sha256:a", time(1, 0), time(2, 0));
        failed.error =
            r#"process "/bin/sh -c ..." did not complete successfully: exit code: 3"#.into();
        progress.update(&control::StatusResponse {
            vertexes: vec![failed],
            logs: vec![log("sha256:a", "no newline")],
            ..Default::default()
        });

        let failure = progress.failure().unwrap();
        assert_eq!(failure.index, 0);
        assert_eq!(failure.exit_code, 3);
        assert_eq!(failure.tail.len(), TAIL_LINES);
        assert_eq!(failure.tail[0], "line 11");
        assert_eq!(failure.tail.last().unwrap(), "no newline");
        let events = recorder.0.lock().unwrap();
        assert!(!events.iter().any(|e| matches!(e, Event::StepDone { .. })));
    }

    #[test]
    fn base_fetch_reported_once() {
        let recorder = Recorder::default();
        let mut progress = tracker(&recorder);
        let mut base = vertex("sha256:base", time(1, 0), time(3, 250_000_000));
        base.name = "base 127.0.0.1:5000/debian:bookworm".into();
        for _ in 0..2 {
            progress.update(&control::StatusResponse {
                vertexes: vec![base.clone()],
                ..Default::default()
            });
        }
        let events = recorder.0.lock().unwrap().clone();
        assert_eq!(
            events,
            [Event::Base {
                message: "BuildKit fetched base 127.0.0.1:5000/debian:bookworm in 2.25s".into()
            }]
        );
    }

    #[test]
    fn exit_code_from_message() {
        assert_eq!(
            exit_code("did not complete successfully: exit code: 127"),
            Some(127)
        );
        assert_eq!(exit_code("something else"), None);
    }
}

//! The frontend's status stream as progress lines, and where in the Dockerfile a failed step
//! was written.
//!
//! The Dockerfile frontend names each instruction's vertex `[STAGE N/M] INSTRUCTION`, with
//! variables possibly expanded. Those vertexes become [`Event::Base`] lines when they start or
//! come from the cache; BuildKit's own vertexes (loading the definition, resolving metadata,
//! exporting) only reach the debug log. For a failure, the vertex's name is matched back to the
//! instruction in the Dockerfile to find its line.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::engine::buildkit::proto::control::{StatusResponse, Vertex};
use crate::progress::{Event, Reporter};

/// How many lines of a failed step's output its error shows.
pub const TAIL_LINES: usize = 20;

/// Progress built from the status stream: vertex names, reported steps, the first failure
/// and the output of each vertex.
pub struct StageProgress<'a> {
    reporter: &'a dyn Reporter,
    names: HashMap<String, String>,
    reported: HashSet<String>,
    /// The first vertex that failed, with BuildKit's error for it.
    failed: Option<(String, String)>,
    tails: HashMap<String, Tail>,
}

#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            self.lines.push_back(text.trim_end_matches('\r').to_owned());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }

    fn finish(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            if lines.len() > TAIL_LINES {
                lines.remove(0);
            }
        }
        lines
    }
}

/// A failed vertex, as reported by the status stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStep {
    /// The vertex name, such as `[dev 2/3] RUN make`.
    pub name: String,
    pub error: String,
    /// The last [`TAIL_LINES`] lines the step printed.
    pub tail: Vec<String>,
}

impl<'a> StageProgress<'a> {
    pub fn new(reporter: &'a dyn Reporter) -> Self {
        StageProgress {
            reporter,
            names: HashMap::new(),
            reported: HashSet::new(),
            failed: None,
            tails: HashMap::new(),
        }
    }

    /// Processes one batch of the status stream.
    pub fn update(&mut self, response: &StatusResponse) {
        for vertex in &response.vertexes {
            self.vertex(vertex);
        }
        for log in &response.logs {
            self.tails
                .entry(log.vertex.clone())
                .or_default()
                .push(&log.msg);
        }
        for warning in &response.warnings {
            let message = String::from_utf8_lossy(&warning.short).trim().to_owned();
            self.reporter.report(Event::Warning {
                message: format!("Dockerfile: {message}"),
            });
        }
    }

    fn vertex(&mut self, vertex: &Vertex) {
        if !vertex.name.is_empty() {
            self.names
                .insert(vertex.digest.clone(), vertex.name.clone());
        }
        if !vertex.error.is_empty() && self.failed.is_none() {
            self.failed = Some((vertex.digest.clone(), vertex.error.clone()));
        }
        let started = vertex.cached || vertex.started.is_some();
        if !started || !is_step(&vertex.name) {
            tracing::debug!(
                vertex = %vertex.name,
                cached = vertex.cached,
                done = vertex.completed.is_some(),
                "BuildKit vertex"
            );
            return;
        }
        if self.reported.insert(vertex.digest.clone()) {
            let suffix = if vertex.cached { " (cached)" } else { "" };
            self.reporter.report(Event::Base {
                message: format!("{}{suffix}", vertex.name),
            });
        }
    }

    /// Returns the failed step: the vertex BuildKit named in its error, else the first vertex
    /// with an error in the status stream.
    pub fn failed_step(&self, vertex: Option<&str>) -> Option<FailedStep> {
        let (digest, error) = match (vertex, &self.failed) {
            (Some(digest), Some((failed, error))) if failed == digest => (digest, error.clone()),
            (Some(digest), _) => (digest, String::new()),
            (None, Some((failed, error))) => (failed.as_str(), error.clone()),
            (None, None) => return None,
        };
        let name = self.names.get(digest)?.clone();
        let tail = self.tails.get(digest).map(Tail::finish).unwrap_or_default();
        Some(FailedStep { name, error, tail })
    }
}

/// True for the frontend's instruction vertexes, `[STAGE N/M] ...`, and not for `[internal]`
/// or `[auth]` ones.
fn is_step(name: &str) -> bool {
    split_step(name).is_some()
}

/// Splits `[STAGE N/M] INSTRUCTION` into the stage name and the instruction. The frontend
/// leaves the stage name out (`[N/M] ...`) when the Dockerfile has a single stage.
pub fn split_step(name: &str) -> Option<(Option<&str>, &str)> {
    let rest = name.strip_prefix('[')?;
    let (inside, instruction) = rest.split_once("] ")?;
    let (stage, counter) = match inside.rsplit_once(' ') {
        Some((stage, counter)) => (Some(stage).filter(|s| !s.is_empty()), counter),
        None => (None, inside),
    };
    let (step, of) = counter.split_once('/')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(step) && numeric(of)).then_some((stage, instruction))
}

/// One instruction of a Dockerfile, continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    line: usize,
    keyword: String,
    text: String,
}

/// Splits a Dockerfile into instructions: comment and blank lines skipped, lines ending in `\`
/// joined with the next.
fn instructions(dockerfile: &str) -> Vec<Instruction> {
    let mut found = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in dockerfile.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (line, false),
        };
        let (start, mut text) = current.take().unwrap_or((index + 1, String::new()));
        text.push(' ');
        text.push_str(body);
        if continues {
            current = Some((start, text));
        } else {
            found.push(instruction(start, &text));
        }
    }
    if let Some((start, text)) = current {
        found.push(instruction(start, &text));
    }
    found
}

fn instruction(line: usize, text: &str) -> Instruction {
    let text = collapse(text);
    let keyword = text
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    Instruction {
        line,
        keyword,
        text,
    }
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Finds the line of the instruction that the vertex `name` (`[STAGE N/M] INSTRUCTION`) ran.
/// Variables in the Dockerfile match any text, since the frontend may show them expanded; a
/// `FROM` step is the stage's `FROM` line. Without a stage name, every stage is searched in
/// order. `None` when nothing matches.
pub fn instruction_line(dockerfile: &str, name: &str) -> Option<usize> {
    let (stage, wanted) = split_step(name)?;
    let wanted = collapse(wanted);
    let keyword = wanted.split(' ').next()?.to_ascii_uppercase();

    let all = instructions(dockerfile);
    let mut stages: Vec<&[Instruction]> = Vec::new();
    let mut start = None;
    for (index, instruction) in all.iter().enumerate() {
        if instruction.keyword == "FROM" {
            if let Some(start) = start {
                stages.push(&all[start..index]);
            }
            start = Some(index);
        }
    }
    if let Some(start) = start {
        stages.push(&all[start..]);
    }

    let numbered = stage
        .and_then(|stage| stage.strip_prefix("stage-"))
        .and_then(|n| n.parse::<usize>().ok());
    let searched = stages
        .iter()
        .enumerate()
        .filter(|(index, body)| match stage {
            Some(stage) => {
                let named =
                    stage_name(&body[0].text).is_some_and(|s| s.eq_ignore_ascii_case(stage));
                named || numbered == Some(*index)
            }
            None => true,
        });
    let rest = &wanted[keyword.len()..];
    searched.map(|(_, body)| *body).find_map(|body| {
        if keyword == "FROM" {
            return Some(body[0].line);
        }
        body.iter()
            .filter(|instruction| instruction.keyword == keyword)
            .find(|instruction| matches_with_variables(&instruction.text[keyword.len()..], rest))
            .map(|instruction| instruction.line)
    })
}

/// Returns the `AS NAME` of a `FROM` instruction.
fn stage_name(from: &str) -> Option<&str> {
    let words: Vec<&str> = from.split(' ').collect();
    match words.as_slice() {
        [.., as_word, name] if as_word.eq_ignore_ascii_case("as") => Some(name),
        _ => None,
    }
}

/// True when `text` equals `pattern` with each `$NAME` or `${...}` in the pattern standing for
/// any text, compared case-sensitively.
fn matches_with_variables(pattern: &str, text: &str) -> bool {
    let literals = literal_parts(pattern);
    let [first, middle @ .., last] = literals.as_slice() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    for part in middle {
        match rest.find(part.as_str()) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last.as_str())
}

/// Splits a pattern into the literal text between variable references: `a ${B} c` gives
/// `["a ", " c"]`.
fn literal_parts(pattern: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('$', Some('{')) => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                parts.push(String::new());
            }
            ('$', Some(next)) if next.is_ascii_alphabetic() || *next == '_' => {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    chars.next();
                }
                parts.push(String::new());
            }
            _ => parts.last_mut().expect("parts is never empty").push(c),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::buildkit::proto::control::VertexLog;
    use crate::progress::Recorder;

    const DOCKERFILE: &str = "\
# An ARG before the first FROM picks the base image.
ARG BASE=127.0.0.1:5000/debian:bookworm

FROM ${BASE} AS tools
ARG TOOL_VERSION=0
RUN mkdir -p /opt/tools && echo \"tool ${TOOL_VERSION}\" > /opt/tools/version
COPY context/ /opt/tools/context/

FROM tools AS dev
ARG GREETING=unset
RUN echo \"${GREETING}\" > /etc/greeting
# a comment inside the stage
RUN apt-get update && \\
    apt-get install -y \\
      curl
WORKDIR /opt/tools

FROM dev
RUN echo release > /etc/release
";

    #[test]
    fn split_step_cases() {
        assert_eq!(
            split_step("[dev 2/3] RUN echo hi"),
            Some((Some("dev"), "RUN echo hi"))
        );
        assert_eq!(
            split_step("[stage-0 1/1] FROM x"),
            Some((Some("stage-0"), "FROM x"))
        );
        assert_eq!(split_step("[2/2] RUN make"), Some((None, "RUN make")));
        assert_eq!(
            split_step("[internal] load build definition from Dockerfile"),
            None
        );
        assert_eq!(split_step("[auth] library/debian:pull token"), None);
        assert_eq!(split_step("exporting to oci image format"), None);
    }

    #[test]
    fn instruction_line_cases() {
        let cases = [
            (
                "[tools 1/3] FROM 127.0.0.1:5000/debian:bookworm@sha256:ab",
                Some(4),
            ),
            (
                "[tools 2/3] RUN mkdir -p /opt/tools && echo \"tool 2.5\" > /opt/tools/version",
                Some(6),
            ),
            ("[tools 3/3] COPY context/ /opt/tools/context/", Some(7)),
            (
                "[dev 1/3] RUN echo \"hello there\" > /etc/greeting",
                Some(11),
            ),
            (
                "[dev 2/3] RUN apt-get update &&     apt-get install -y       curl",
                Some(13),
            ),
            ("[dev 3/3] WORKDIR /opt/tools", Some(16)),
            ("[stage-2 2/2] RUN echo release > /etc/release", Some(19)),
            ("[dev 1/3] RUN something else", None),
            ("[nope 1/1] RUN echo release > /etc/release", None),
            ("[2/2] RUN echo release > /etc/release", Some(19)),
            ("[1/2] FROM busybox", Some(4)),
            ("[internal] load metadata", None),
        ];
        for (name, line) in cases {
            assert_eq!(instruction_line(DOCKERFILE, name), line, "{name}");
        }
    }

    #[test]
    fn variables_match_any_text() {
        assert!(matches_with_variables(
            " echo \"${A}\" > /x",
            " echo \"hi there\" > /x"
        ));
        assert!(matches_with_variables(" a $B c", " a  c"));
        assert!(matches_with_variables(" $A", " anything"));
        assert!(!matches_with_variables(" echo ${A} > /x", " echo hi > /y"));
        assert!(!matches_with_variables(" a", " b"));
        assert!(matches_with_variables(" same", " same"));
    }

    fn vertex(digest: &str, name: &str, cached: bool, started: bool, error: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            cached,
            started: started.then(prost_types::Timestamp::default),
            error: error.into(),
            ..Vertex::default()
        }
    }

    #[test]
    fn steps_reported_once() {
        let recorder = Recorder::default();
        let mut progress = StageProgress::new(&recorder);
        progress.update(&StatusResponse {
            vertexes: vec![
                vertex(
                    "a",
                    "[internal] load build definition from Dockerfile",
                    false,
                    true,
                    "",
                ),
                vertex(
                    "b",
                    "[tools 1/3] FROM 127.0.0.1:5000/debian:bookworm",
                    true,
                    false,
                    "",
                ),
                vertex("c", "[tools 2/3] RUN mkdir -p /opt/tools", false, false, ""),
            ],
            ..StatusResponse::default()
        });
        progress.update(&StatusResponse {
            vertexes: vec![
                vertex("c", "[tools 2/3] RUN mkdir -p /opt/tools", false, true, ""),
                vertex("c", "[tools 2/3] RUN mkdir -p /opt/tools", false, true, ""),
            ],
            ..StatusResponse::default()
        });
        let events = recorder.0.lock().unwrap().clone();
        assert_eq!(
            events,
            [
                Event::Base {
                    message: "[tools 1/3] FROM 127.0.0.1:5000/debian:bookworm (cached)".into()
                },
                Event::Base {
                    message: "[tools 2/3] RUN mkdir -p /opt/tools".into()
                },
            ]
        );
    }

    #[test]
    fn failed_step_name_error_tail() {
        let recorder = Recorder::default();
        let mut progress = StageProgress::new(&recorder);
        let log = |msg: &str| VertexLog {
            vertex: "f".into(),
            msg: msg.as_bytes().to_vec(),
            ..VertexLog::default()
        };
        let mut lines = String::new();
        for i in 0..30 {
            lines.push_str(&format!("line {i}\n"));
        }
        progress.update(&StatusResponse {
            vertexes: vec![vertex("f", "[dev 1/1] RUN make", false, true, "")],
            logs: vec![log(&lines), log("no newline")],
            ..StatusResponse::default()
        });
        progress.update(&StatusResponse {
            vertexes: vec![vertex(
                "f",
                "[dev 1/1] RUN make",
                false,
                true,
                "exit code: 2",
            )],
            ..StatusResponse::default()
        });

        for named in [Some("f"), None] {
            let failed = progress.failed_step(named).unwrap();
            assert_eq!(failed.name, "[dev 1/1] RUN make");
            assert_eq!(failed.error, "exit code: 2");
            assert_eq!(failed.tail.len(), TAIL_LINES);
            assert_eq!(failed.tail.last().unwrap(), "no newline");
            assert_eq!(failed.tail[0], "line 11");
        }
        assert_eq!(progress.failed_step(Some("unknown")), None);
    }
}

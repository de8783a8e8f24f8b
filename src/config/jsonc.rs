//! JSONC parsing with source spans.
//!
//! A [`Document`] contains one file's text and maps byte offsets to `file:line:column`. Parsing
//! accepts JSON plus line and block comments, trailing commas and a leading UTF-8 byte order
//! mark, and nothing else of JSON5: single quotes, bare keys, hexadecimal numbers and the like
//! are errors. The result is a [`Value`] tree in which every value, and every object key, keeps
//! its byte range, so later validation can point at the exact place in the file.
//!
//! Duplicate object keys behave as in a JavaScript `JSON.parse`: the last value wins and the key
//! keeps the position of its first appearance. Each duplicate is logged as a warning that names
//! both places.

use std::path::{Path, PathBuf};

use jsonc_parser::ast;
use jsonc_parser::{CollectOptions, ParseOptions};

use super::{Error, Location};

/// Maximum number of characters of source text quoted in a message.
const MAX_SNIPPET_CHARS: usize = 60;

/// A byte range in a [`Document`]'s text: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl From<jsonc_parser::common::Range> for Span {
    fn from(range: jsonc_parser::common::Range) -> Self {
        Span {
            start: range.start,
            end: range.end,
        }
    }
}

/// One JSON file's text, with the offset-to-position mapping that error messages need.
#[derive(Debug, Clone)]
pub struct Document {
    path: PathBuf,
    text: String,
    /// Byte offset at which each line starts; the first entry is 0.
    line_starts: Vec<usize>,
}

impl Document {
    /// Wraps `text` read from `path`, dropping a leading byte order mark.
    ///
    /// Offsets and columns then count from the first character after the mark, as an editor
    /// shows the file.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let mut text = text.into();
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        let line_starts = line_starts(&text);
        Document {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// Reads `path` as UTF-8.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] naming the path when the file cannot be read or is not UTF-8.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Document::new(path, text))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the text without its byte order mark.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Maps byte `offset` to its 1-based line and column. Columns count characters, not bytes.
    ///
    /// An offset past the end maps to the end of the text.
    pub fn location(&self, offset: usize) -> Location {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        Location {
            file: self.path.clone(),
            line,
            column,
        }
    }

    /// Returns the source text of `span` for quoting in a message: its first line, at most
    /// [`MAX_SNIPPET_CHARS`] characters, with `...` where it was cut.
    pub fn snippet(&self, span: Span) -> String {
        let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
        let end = floor_char_boundary(&self.text, span.end.clamp(start, self.text.len()));
        let text = &self.text[start..end];
        let first_line = text.lines().next().unwrap_or("");
        let mut snippet: String = first_line.chars().take(MAX_SNIPPET_CHARS).collect();
        if snippet.len() < text.len() {
            snippet.push_str("...");
        }
        snippet
    }

    /// Parses the text into a [`Value`] tree.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] at the offending token for malformed JSONC or an empty file.
    pub fn parse(&self) -> Result<Value, Error> {
        let options = ParseOptions {
            allow_comments: true,
            allow_trailing_commas: true,
            allow_loose_object_property_names: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        let parsed = jsonc_parser::parse_to_ast(&self.text, &CollectOptions::default(), &options)
            .map_err(|err| self.syntax_error(&err))?;
        match parsed.value {
            Some(value) => Ok(self.convert(value)),
            None => Err(Error::Invalid {
                location: self.location(0),
                message: "missing JSON value: the file is empty or contains only comments".into(),
                hint: Some(
                    "write a JSON object, such as `{ \"image\": \"debian:bookworm\" }`".into(),
                ),
            }),
        }
    }

    fn syntax_error(&self, err: &jsonc_parser::errors::ParseError) -> Error {
        let (offset, token) = self.offending_token(err.range().into());
        Error::Invalid {
            location: self.location(offset),
            message: format!(
                "invalid JSON: {} at {token}",
                lowercase_first(&err.kind().to_string())
            ),
            hint: Some(
                "fix the syntax here; the file is JSON with `//` and `/* */` comments and \
                 trailing commas allowed"
                    .into(),
            ),
        }
    }

    /// Finds the offset of a syntax error and the token to quote. An empty range (such as a missing comma
    /// after a value) is moved to the next token, which is what the user has to look at.
    fn offending_token(&self, span: Span) -> (usize, String) {
        if span.start < span.end {
            return (span.start, format!("`{}`", self.snippet(span)));
        }
        let rest = &self.text[floor_char_boundary(&self.text, span.start.min(self.text.len()))..];
        let skipped = rest.len() - rest.trim_start().len();
        let start = self.text.len() - rest.len() + skipped;
        let rest = rest.trim_start();
        let len = match rest.chars().next() {
            None => return (start, "end of file".into()),
            Some('"') => rest[1..]
                .find(['"', '\n'])
                .map_or(rest.len(), |end| end + 2),
            Some(first) => match rest.find(|c: char| c.is_whitespace() || ",:{}[]\"".contains(c)) {
                Some(0) => first.len_utf8(),
                Some(end) => end,
                None => rest.len(),
            },
        };
        (
            start,
            format!(
                "`{}`",
                self.snippet(Span {
                    start,
                    end: start + len
                })
            ),
        )
    }

    fn convert(&self, value: ast::Value<'_>) -> Value {
        match value {
            ast::Value::NullKeyword(null) => Value {
                kind: Kind::Null,
                span: null.range.into(),
            },
            ast::Value::BooleanLit(b) => Value {
                kind: Kind::Bool(b.value),
                span: b.range.into(),
            },
            ast::Value::NumberLit(n) => Value {
                kind: Kind::Number(n.value.to_string()),
                span: n.range.into(),
            },
            ast::Value::StringLit(s) => Value {
                kind: Kind::String(s.value.into_owned()),
                span: s.range.into(),
            },
            ast::Value::Array(array) => {
                let elements = array
                    .elements
                    .into_iter()
                    .map(|e| self.convert(e))
                    .collect();
                Value {
                    kind: Kind::Array(elements),
                    span: array.range.into(),
                }
            }
            ast::Value::Object(object) => {
                let span = object.range.into();
                let mut result = Object::default();
                for prop in object.properties {
                    let (key, key_span) = match prop.name {
                        ast::ObjectPropName::String(s) => (s.value.into_owned(), s.range.into()),
                        ast::ObjectPropName::Word(w) => (w.value.to_string(), w.range.into()),
                    };
                    let member = Member {
                        key,
                        key_span,
                        value: self.convert(prop.value),
                    };
                    if let Some(earlier) = result.insert(member) {
                        self.warn_duplicate(&earlier, &result);
                    }
                }
                Value {
                    kind: Kind::Object(result),
                    span,
                }
            }
        }
    }

    fn warn_duplicate(&self, earlier: &Member, object: &Object) {
        if let Some(later) = object.get(&earlier.key) {
            tracing::warn!(
                "{}: key `{}` is repeated at {}; the later value is used",
                self.location(earlier.key_span.start),
                earlier.key,
                self.location(later.key_span.start),
            );
        }
    }
}

/// A parsed JSON value and the byte range it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: Kind,
    pub span: Span,
}

/// The kind of a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    /// The number exactly as written.
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match &self.kind {
            Kind::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Names the kind of value with an article, for messages: `a string`, `an object`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }

    /// Converts the value to `serde_json` data, with object keys in the order a JavaScript object enumerates
    /// them (see [`Object::iter_js_order`]), numbers as JavaScript would print them where
    /// `serde_json` can hold them (integral values without a fraction).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Null => serde_json::Value::Null,
            Kind::Bool(b) => serde_json::Value::Bool(*b),
            Kind::Number(n) => number_to_json(n),
            Kind::String(s) => serde_json::Value::String(s.clone()),
            Kind::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Kind::Object(o) => serde_json::Value::Object(
                o.iter_js_order()
                    .map(|m| (m.key.clone(), m.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// An object's members: one per distinct key, in the order keys first appear, each holding the
/// last value written for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    members: Vec<Member>,
}

/// One key of an [`Object`] and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    /// The range of the key with its quotes. For a repeated key, the range of the last one.
    pub key_span: Span,
    pub value: Value,
}

impl Object {
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.key == key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Members in the order their keys first appear in the file.
    pub fn iter(&self) -> std::slice::Iter<'_, Member> {
        self.members.iter()
    }

    /// Members in JavaScript property order: keys that are array indices (`0` to `2^32 - 2`
    /// with no leading zero) first, ascending, then the others in the order they first appear.
    /// That is the order in which the reference implementation writes an object back out.
    pub fn iter_js_order(&self) -> impl Iterator<Item = &Member> {
        let mut indices: Vec<(u32, &Member)> = self
            .members
            .iter()
            .filter_map(|m| array_index(&m.key).map(|i| (i, m)))
            .collect();
        indices.sort_by_key(|(i, _)| *i);
        let others = self
            .members
            .iter()
            .filter(|m| array_index(&m.key).is_none());
        indices.into_iter().map(|(_, m)| m).chain(others)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds `member`, or replaces the value of an existing key in place and returns the member
    /// it replaced.
    fn insert(&mut self, member: Member) -> Option<Member> {
        match self.members.iter_mut().find(|m| m.key == member.key) {
            Some(existing) => Some(std::mem::replace(existing, member)),
            None => {
                self.members.push(member);
                None
            }
        }
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = &'a Member;
    type IntoIter = std::slice::Iter<'a, Member>;

    fn into_iter(self) -> Self::IntoIter {
        self.members.iter()
    }
}

/// The key as a JavaScript array index, if it is one.
fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u32>().ok().filter(|&i| i != u32::MAX)
}

/// Converts a JSON number literal, keeping integers exact and printing integral decimals such
/// as `1.0` or `1e2` as JavaScript does (`1`, `100`).
fn number_to_json(literal: &str) -> serde_json::Value {
    if let Ok(i) = literal.parse::<i64>() {
        return i.into();
    }
    if let Ok(u) = literal.parse::<u64>() {
        return u.into();
    }
    match literal.parse::<f64>() {
        // Below 2^53 an integral double converts to i64 exactly.
        Ok(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => (f as i64).into(),
        Ok(f) => serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
        Err(_) => serde_json::Value::Null,
    }
}

/// Byte offsets at which lines start. `\n`, `\r\n` and a lone `\r` each end a line.
fn line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    for (i, &b) in bytes.iter().enumerate() {
        let ends_line = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
        if ends_line {
            starts.push(i + 1);
        }
    }
    starts
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Document, Result<Value, Error>) {
        let doc = Document::new("dir/file.json", text);
        let value = doc.parse();
        (doc, value)
    }

    fn message(result: Result<Value, Error>) -> String {
        match result {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_comments_trailing_commas_and_bom() {
        let text =
            "\u{feff}// head\n{\n  /* block */ \"a\": [1, 2,],\n  \"b\": {\"c\": true,},\n}\n";
        let (doc, value) = parse(text);
        let value = value.unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(
            object.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let a = &object.get("a").unwrap();
        assert_eq!(
            doc.location(a.key_span.start).to_string(),
            "dir/file.json:3:15"
        );
        assert_eq!(doc.snippet(a.value.span), "[1, 2,]");
        assert_eq!(
            value.to_json(),
            serde_json::json!({"a": [1, 2], "b": {"c": true}})
        );
    }

    #[test]
    fn bom_does_not_shift_columns() {
        let (doc, value) = parse("\u{feff}{\"a\": 1}");
        let value = value.unwrap();
        let member = value.as_object().unwrap().get("a").unwrap();
        assert_eq!(doc.location(member.key_span.start).column, 2);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let (doc, value) = parse("{\"é€\": \"ü\", \"x\": 1}");
        let value = value.unwrap();
        let x = value.as_object().unwrap().get("x").unwrap();
        assert_eq!(doc.location(x.key_span.start).column, 13);
    }

    #[test]
    fn line_endings_crlf_and_lone_cr() {
        let doc = Document::new("f", "a\r\nb\rc\nd");
        assert_eq!(doc.location(3).line, 2);
        assert_eq!(doc.location(5).line, 3);
        assert_eq!(doc.location(7).line, 4);
        assert_eq!(doc.location(7).column, 1);
        assert_eq!(doc.location(100).line, 4);
    }

    #[test]
    fn syntax_errors_name_position_and_token() {
        let cases: &[(&str, &str)] = &[
            (
                "{\n  \"a\": 1\n  \"b\": 2\n}",
                "dir/file.json:3:3: invalid JSON: expected comma at `\"b\"`",
            ),
            (
                "{\"a\": 'x'}",
                "dir/file.json:1:7: invalid JSON: single-quoted strings are not allowed",
            ),
            (
                "{\"a\": tru}",
                "dir/file.json:1:7: invalid JSON: unexpected token at `tru`",
            ),
            (
                "{\"a\": 1",
                "dir/file.json:1:1: invalid JSON: unterminated object",
            ),
            (
                "{a: 1}",
                "dir/file.json:1:2: invalid JSON: expected string for object property at `a`",
            ),
            (
                "{\"a\": 0x10}",
                "dir/file.json:1:7: invalid JSON: hexadecimal numbers are not allowed",
            ),
            (
                "{} {}",
                "dir/file.json:1:4: invalid JSON: text cannot contain more than one JSON value",
            ),
            (
                "/* open",
                "dir/file.json:1:1: invalid JSON: unterminated comment block at `/* open`",
            ),
            ("", "dir/file.json:1:1: missing JSON value"),
            (
                "  // only a comment\n",
                "dir/file.json:1:1: missing JSON value",
            ),
        ];
        for (text, expected) in cases {
            let (_, result) = parse(text);
            let got = message(result);
            assert!(
                got.starts_with(expected),
                "for {text:?}: got {got:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn syntax_error_has_hint() {
        let (_, result) = parse("{,}");
        let err = result.unwrap_err();
        assert!(err.hint().unwrap().contains("comments"));
    }

    #[test]
    fn duplicate_keys_keep_first_position_and_last_value() {
        let (_, value) = parse("{\"a\": 1, \"b\": 2, \"a\": 3}");
        let value = value.unwrap();
        let object = value.as_object().unwrap();
        let keys: Vec<_> = object.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        let a = object.get("a").unwrap();
        assert_eq!(a.value.to_json(), serde_json::json!(3));
        assert_eq!(a.key_span.start, 17);
    }

    #[test]
    fn duplicate_keys_warn_with_both_locations() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            parse("{\n  \"a\": {\"x\": 1, \"x\": 2},\n  \"a\": 3\n}")
                .1
                .unwrap();
        });

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("WARN"), "{logs}");
        assert!(
            logs.contains("dir/file.json:2:3: key `a` is repeated at dir/file.json:3:3"),
            "{logs}"
        );
        assert!(
            logs.contains("dir/file.json:2:9: key `x` is repeated at dir/file.json:2:17"),
            "{logs}"
        );
    }

    #[test]
    fn js_order_puts_index_keys_first() {
        let (_, value) = parse("{\"b\": 1, \"10\": 2, \"2\": 3, \"01\": 4, \"a\": 5}");
        let json = value.unwrap().to_json();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["2", "10", "b", "01", "a"]);
    }

    #[test]
    fn numbers_convert_like_javascript() {
        let cases = [
            ("1", "1"),
            ("-3", "-3"),
            ("1.0", "1"),
            ("1e2", "100"),
            ("1.5", "1.5"),
            ("18446744073709551615", "18446744073709551615"),
        ];
        for (literal, printed) in cases {
            assert_eq!(
                number_to_json(literal).to_string(),
                printed,
                "for {literal}"
            );
        }
    }

    #[test]
    fn snippet_cuts_long_and_multiline_text() {
        let long = format!("\"{}\"", "x".repeat(100));
        let doc = Document::new("f", format!("{long}\nmore"));
        let snippet = doc.snippet(Span {
            start: 0,
            end: doc.text().len(),
        });
        assert!(snippet.ends_with("..."));
        assert_eq!(snippet.chars().count(), MAX_SNIPPET_CHARS + 3);
    }

    #[test]
    fn read_names_missing_path() {
        let err = Document::read(Path::new("/nonexistent/envc/x.json")).unwrap_err();
        assert!(
            err.to_string().contains("`/nonexistent/envc/x.json`"),
            "{err}"
        );
    }

    #[test]
    fn type_names_have_articles() {
        let (_, value) = parse("[null, true, 1, \"s\", [], {}]");
        let value = value.unwrap();
        let names: Vec<_> = value
            .as_array()
            .unwrap()
            .iter()
            .map(Value::type_name)
            .collect();
        assert_eq!(
            names,
            [
                "null",
                "a boolean",
                "a number",
                "a string",
                "an array",
                "an object"
            ]
        );
    }
}

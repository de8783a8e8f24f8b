//! Include and exclude patterns with `.dockerignore` semantics.
//!
//! A pattern is a `/`-separated glob. `*` matches any run of characters but `/`, `?` one
//! character but `/`, `[...]` a character class (`^` negates it), and `\` escapes the next
//! character. `**` matches any number of folders: `**/x` matches `x` at any depth, `x/**`
//! everything under `x`. Patterns are cleaned like paths, a leading `/` is ignored, and a leading `!` makes
//! a pattern an exception. A pattern matches a path when it matches the path itself or one of
//! the folders above it; the last pattern that matches decides, so `!` patterns re-include what
//! earlier patterns excluded.

use super::Error;

/// An ordered list of patterns, as sent in `include-patterns` or `exclude-patterns`.
#[derive(Debug, Clone, Default)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
}

/// The match state of a folder, kept so that its entries are matched without the folder again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    /// Per pattern: whether it matched the folder or a folder above it.
    matched: Vec<bool>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exception: bool,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// `foo/**`: every path starting with the text before the `**`.
    Prefix(String),
    /// `**/foo` or `**foo` without other wildcards: every path ending with the text after `**`.
    Suffix(String),
    Glob(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Run,
    /// `?`: one character but `/`.
    One,
    Class(Class),
    /// `**` followed by more pattern: nothing, or anything that ends with `/`.
    Folders,
    /// `**` at the end of a pattern: anything.
    Rest,
}

#[derive(Debug, Clone, PartialEq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let inside = self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        inside != self.negated
    }
}

impl MatchInfo {
    /// The state above a top-level entry.
    pub const fn new() -> Self {
        MatchInfo {
            matched: Vec::new(),
        }
    }
}

impl PatternSet {
    /// Parses patterns in order; blank entries are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPattern`] for a lone `!`, an unclosed `[`, or a bad class range.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Error> {
        let mut parsed = Vec::with_capacity(patterns.len());
        for raw in patterns {
            if let Some(pattern) = Pattern::parse(raw.as_ref())? {
                parsed.push(pattern);
            }
        }
        Ok(PatternSet { patterns: parsed })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative, `/`-separated) or a folder above it is matched.
    pub fn matches(&self, path: &str) -> bool {
        let mut parent = MatchInfo::default();
        let mut result = false;
        let mut end = 0;
        for component in path.split('/') {
            end += component.len();
            let (matched, info) = self.matches_below(&path[..end], &parent);
            result = matched;
            parent = info;
            end += 1;
        }
        result
    }

    /// Matches `path` given what its parent folder gave (the default for a top-level entry).
    /// Returns whether it is matched and what its own entries need.
    pub fn matches_below(&self, path: &str, parent: &MatchInfo) -> (bool, MatchInfo) {
        let mut matched = Vec::with_capacity(self.patterns.len());
        let mut result = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let hit = parent.matched.get(i).copied().unwrap_or(false) || pattern.matches(path);
            matched.push(hit);
            if hit {
                result = !pattern.exception;
            }
        }
        (result, MatchInfo { matched })
    }

    /// Whether a pattern of the given polarity (exceptions when `exception` is true) could match
    /// something inside the folder `dir`. A `false` result lets a walk skip the folder.
    pub fn may_match_inside(&self, dir: &str, exception: bool) -> bool {
        self.patterns
            .iter()
            .filter(|p| p.exception == exception)
            .any(|p| p.may_match_inside(dir))
    }
}

impl Pattern {
    fn parse(raw: &str) -> Result<Option<Pattern>, Error> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let (exception, rest) = match trimmed.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, trimmed),
        };
        if rest.is_empty() {
            return Err(invalid(raw, "`!` needs a pattern after it"));
        }
        let cleaned = clean(rest);
        let text = cleaned.trim_start_matches('/');
        if text.is_empty() {
            return Ok(None);
        }
        let kind = compile(text).map_err(|reason| invalid(raw, reason))?;
        Ok(Some(Pattern {
            text: text.to_owned(),
            exception,
            kind,
        }))
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Kind::Glob(tokens) => glob_matches(tokens, path),
        }
    }

    /// Compares the pattern's leading literal components with `dir`'s. Any wildcard component
    /// makes the result true.
    fn may_match_inside(&self, dir: &str) -> bool {
        let mut pattern = self.text.split('/');
        for dir_component in dir.split('/') {
            let Some(component) = pattern.next() else {
                // The pattern matches `dir` or a folder above it.
                return true;
            };
            if component.contains(['*', '?', '[', '\\']) {
                return true;
            }
            if component != dir_component {
                return false;
            }
        }
        true
    }
}

fn invalid(pattern: &str, reason: &str) -> Error {
    Error::InvalidPattern {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Lexical path cleaning, like Go's `filepath.Clean`: repeated and trailing `/` go, `.`
/// components go, `..` removes the component before it.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

fn compile(text: &str) -> Result<Kind, &'static str> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    // Mirrors how Docker picks a fast path: only a pattern whose sole wildcard is one `**` at
    // its start or end avoids the full glob.
    let mut fast: Option<Kind> = None;
    let mut wildcard = false;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let starts = i == 0;
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                let at_end = i == chars.len();
                tokens.push(if at_end { Token::Rest } else { Token::Folders });
                fast = if starts {
                    Some(Kind::Suffix(text[2..].to_owned()))
                } else if at_end && !wildcard {
                    let prefix = text.strip_suffix("**").unwrap_or(text);
                    Some(Kind::Prefix(prefix.to_owned()))
                } else {
                    None
                };
                wildcard = true;
                continue;
            }
            '*' => {
                tokens.push(Token::Run);
                wildcard = true;
                fast = None;
            }
            '?' => {
                tokens.push(Token::One);
                wildcard = true;
                fast = None;
            }
            '[' => {
                let (class, next) = parse_class(&chars, i + 1)?;
                tokens.push(Token::Class(class));
                wildcard = true;
                fast = None;
                i = next;
                continue;
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some(&c) => {
                        tokens.push(Token::Char(c));
                        i += 1;
                    }
                    None => return Err("a trailing `\\` escapes nothing"),
                }
                wildcard = true;
                fast = None;
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    if !wildcard {
        return Ok(Kind::Exact);
    }
    Ok(fast.unwrap_or(Kind::Glob(tokens)))
}

/// Parses a class body starting after `[`; returns the class and the index after `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Class, usize), &'static str> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("a `[` has no closing `]`");
        };
        if c == ']' && !first {
            return Ok((Class { negated, ranges }, i + 1));
        }
        first = false;
        let lo = read_class_char(chars, &mut i)?;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
            i += 1;
            let hi = read_class_char(chars, &mut i)?;
            if hi < lo {
                return Err("a class range ends before it starts");
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

fn read_class_char(chars: &[char], i: &mut usize) -> Result<char, &'static str> {
    let mut c = chars[*i];
    if c == '\\' {
        *i += 1;
        c = *chars.get(*i).ok_or("a `[` has no closing `]`")?;
    }
    *i += 1;
    Ok(c)
}

/// Runs the tokens as a small NFA over `path`: one pass, no backtracking.
fn glob_matches(tokens: &[Token], path: &str) -> bool {
    let mut states = vec![false; tokens.len() + 1];
    states[0] = true;
    close_over_empty(tokens, &mut states);
    let mut next = vec![false; tokens.len() + 1];
    for c in path.chars() {
        next.iter_mut().for_each(|s| *s = false);
        for (k, token) in tokens.iter().enumerate() {
            if !states[k] {
                continue;
            }
            match token {
                Token::Char(x) if *x == c => next[k + 1] = true,
                Token::One if c != '/' => next[k + 1] = true,
                Token::Class(class) if class.matches(c) => next[k + 1] = true,
                Token::Run if c != '/' => next[k] = true,
                Token::Rest => next[k] = true,
                Token::Folders => {
                    next[k] = true;
                    if c == '/' {
                        next[k + 1] = true;
                    }
                }
                _ => {}
            }
        }
        close_over_empty(tokens, &mut next);
        std::mem::swap(&mut states, &mut next);
        if !states.iter().any(|s| *s) {
            return false;
        }
    }
    states[tokens.len()]
}

/// Adds the states reachable without reading a character: `*`, `**` and `**/` may match
/// nothing.
fn close_over_empty(tokens: &[Token], states: &mut [bool]) {
    for (k, token) in tokens.iter().enumerate() {
        if states[k] && matches!(token, Token::Run | Token::Rest | Token::Folders) {
            states[k + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> PatternSet {
        PatternSet::parse(patterns).unwrap()
    }

    fn matches(patterns: &[&str], path: &str) -> bool {
        set(patterns).matches(path)
    }

    #[test]
    fn exact_names_match_subtree() {
        assert!(matches(&["node_modules"], "node_modules"));
        assert!(matches(&["node_modules"], "node_modules/a/b.js"));
        assert!(!matches(&["node_modules"], "src/node_modules"));
        assert!(!matches(&["node_modules"], "node_modules2"));
    }

    #[test]
    fn star_stays_in_folder() {
        assert!(matches(&["*.md"], "README.md"));
        assert!(!matches(&["*.md"], "docs/guide.md"));
        assert!(matches(&["*/temp*"], "somedir/temporary.txt"));
        assert!(matches(&["*/temp*"], "somedir/temp"));
        assert!(!matches(&["*/temp*"], "a/b/temp"));
        assert!(matches(&["*/*/temp*"], "a/b/temp.txt"));
    }

    #[test]
    fn question_mark_one_char() {
        assert!(matches(&["temp?"], "tempa"));
        assert!(!matches(&["temp?"], "temp"));
        assert!(!matches(&["a?b"], "a/b"));
    }

    #[test]
    fn double_star_spans_folders() {
        assert!(matches(&["**/*.go"], "main.go"));
        assert!(matches(&["**/*.go"], "a/b/c.go"));
        assert!(matches(&["**/foo"], "foo"));
        assert!(matches(&["**/foo"], "x/y/foo"));
        assert!(matches(&["**/foo"], "x/foo/bar"));
        assert!(!matches(&["**/foo"], "xfoo"));
        assert!(matches(&["a/**/b"], "a/b"));
        assert!(matches(&["a/**/b"], "a/x/y/b"));
        assert!(!matches(&["a/**/b"], "ab"));
        assert!(matches(&["docs/**"], "docs/a/b.md"));
        assert!(!matches(&["docs/**"], "docs"));
        assert!(matches(&["**"], "anything/at/all"));
        assert!(matches(&["a/*/**"], "a/b/c"));
        assert!(matches(&["**/a/**"], "x/a/b"));
        assert!(!matches(&["**/a/**"], "x/ab"));
        assert!(matches(&["foo**"], "foobar"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(matches(&["file[0-9].txt"], "file3.txt"));
        assert!(!matches(&["file[0-9].txt"], "filex.txt"));
        assert!(matches(&["file[^0-9].txt"], "filex.txt"));
        assert!(!matches(&["file[^0-9].txt"], "file3.txt"));
        assert!(matches(&["[ab]c"], "bc"));
        assert!(matches(&[r"a\*b"], "a*b"));
        assert!(!matches(&[r"a\*b"], "axb"));
        assert!(matches(&["a.b"], "a.b"));
        assert!(!matches(&["a.b"], "axb"));
    }

    #[test]
    fn last_match_wins() {
        let patterns = ["*.md", "!README.md"];
        assert!(matches(&patterns, "CHANGES.md"));
        assert!(!matches(&patterns, "README.md"));
        let patterns = ["*.md", "!README*.md", "README-secret.md"];
        assert!(matches(&patterns, "README-secret.md"));
        assert!(!matches(&patterns, "README-public.md"));
        let patterns = ["!README.md", "*.md"];
        assert!(matches(&patterns, "README.md"));
    }

    #[test]
    fn patterns_are_cleaned() {
        assert!(matches(&["/secret"], "secret"));
        assert!(matches(&["./build/"], "build/out"));
        assert!(matches(&["a//b/../c"], "a/c"));
        assert!(!matches(&["!/keep"], "x"));
        let patterns = ["*", "!/keep"];
        assert!(!matches(&patterns, "keep"));
    }

    #[test]
    fn blank_and_bad_patterns() {
        assert!(set(&["", "   "]).is_empty());
        assert!(set(&["/"]).is_empty());
        for bad in ["!", "[abc", r"a\", "[z-a]"] {
            let err = PatternSet::parse(&[bad]).unwrap_err();
            assert!(
                matches!(err, Error::InvalidPattern { ref pattern, .. } if pattern == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn parent_state_matches_full_path() {
        let patterns = set(&["a/*", "!a/keep", "**/*.tmp"]);
        let (dir, info) = patterns.matches_below("a", &MatchInfo::default());
        assert!(!dir);
        for path in ["a/x", "a/keep", "a/keep/y.tmp", "a/keep/z"] {
            let mut parent = info.clone();
            let mut end = 1;
            let mut got = false;
            for component in path["a/".len()..].split('/') {
                end += 1 + component.len();
                let (m, i) = patterns.matches_below(&path[..end], &parent);
                got = m;
                parent = i;
            }
            assert_eq!(got, patterns.matches(path), "{path}");
        }
        assert!(patterns.matches("a/x"));
        assert!(!patterns.matches("a/keep"));
        assert!(patterns.matches("a/keep/y.tmp"));
        assert!(!patterns.matches("a/keep/z"));
    }

    #[test]
    fn folder_pruning_is_safe() {
        let patterns = set(&["src/app", "!vendor/keep", "docs/*.md"]);
        assert!(patterns.may_match_inside("src", false));
        assert!(!patterns.may_match_inside("target", false));
        assert!(patterns.may_match_inside("docs", false));
        assert!(patterns.may_match_inside("src/app/deep", false));
        assert!(patterns.may_match_inside("vendor", true));
        assert!(!patterns.may_match_inside("node_modules", true));
        assert!(set(&["**/x"]).may_match_inside("anything", false));
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("a//b/./c/"), "a/b/c");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("a/.."), ".");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/"), "/");
    }
}

//! The image environment as Features extend it.
//!
//! A Feature's `containerEnv` becomes image `Env` before its install script runs, the way the
//! reference CLI writes it as a Dockerfile `ENV` instruction. Values are expanded like Docker
//! expands `ENV`: `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alternative}` take the
//! value the variable has before this entry, so `PATH=/opt/bin:${PATH}` extends the base
//! image's `PATH`. Unlike one Docker `ENV` instruction, entries of one `containerEnv` are applied
//! in the order written, so a later entry can refer to an earlier one of the same Feature. A backslash
//! keeps the next character literal (`\$HOME`).

/// An ordered `KEY=value` environment with set-or-replace semantics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    /// Reads an image config's `Env` list. Entries without `=` are kept with an empty value.
    pub fn from_image_env(entries: &[String]) -> Environment {
        let mut env = Environment::default();
        for entry in entries {
            let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            env.set(key, value);
        }
        env
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value` as given, keeping its position when it already exists.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
    }

    /// Sets `key` to `value` after expanding variable references against the current values.
    pub fn set_expanded(&mut self, key: &str, value: &str) {
        let expanded = self.expand(value);
        self.set(key, &expanded);
    }

    /// Expands `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME:+word}`; unset names expand to
    /// the empty string.
    pub fn expand(&self, value: &str) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::with_capacity(value.len());
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' if i + 1 < chars.len() => {
                    out.push(chars[i + 1]);
                    i += 2;
                }
                '$' if i + 1 < chars.len() && chars[i + 1] == '{' => {
                    match chars[i + 2..].iter().position(|&c| c == '}') {
                        Some(len) => {
                            let inner: String = chars[i + 2..i + 2 + len].iter().collect();
                            out.push_str(&self.expand_braced(&inner));
                            i += len + 3;
                        }
                        None => {
                            out.extend(&chars[i..]);
                            i = chars.len();
                        }
                    }
                }
                '$' if i + 1 < chars.len() && is_name_start(chars[i + 1]) => {
                    let len = chars[i + 1..]
                        .iter()
                        .take_while(|&&c| is_name_char(c))
                        .count();
                    let name: String = chars[i + 1..i + 1 + len].iter().collect();
                    out.push_str(self.get(&name).unwrap_or(""));
                    i += len + 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    }

    fn expand_braced(&self, inner: &str) -> String {
        if let Some((name, word)) = inner.split_once(":-") {
            return match self.get(name) {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => self.expand(word),
            };
        }
        if let Some((name, word)) = inner.split_once(":+") {
            return match self.get(name) {
                Some(v) if !v.is_empty() => self.expand(word),
                _ => String::new(),
            };
        }
        self.get(inner).unwrap_or("").to_string()
    }

    /// The `KEY=value` list for an image config.
    pub fn to_image_env(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.vars
    }

    /// Returns the `(KEY, value)` pairs in order, without copying them.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.vars
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Environment {
        Environment::from_image_env(&[
            "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
            "HOME=/root".to_string(),
        ])
    }

    #[test]
    fn path_extends_previous_value() {
        let mut env = base();
        env.set_expanded("PATH", "/opt/data/bin:${PATH}");
        assert_eq!(
            env.get("PATH"),
            Some("/opt/data/bin:/usr/local/bin:/usr/bin:/bin")
        );
    }

    #[test]
    fn bare_dollar_names_expand() {
        let env = base();
        assert_eq!(env.expand("$HOME/x"), "/root/x");
        assert_eq!(env.expand("a$UNSET-b"), "a-b");
    }

    #[test]
    fn later_entry_sees_earlier_entry() {
        let mut env = base();
        env.set_expanded("NVS_HOME", "/usr/local/nvs");
        env.set_expanded("PATH", "${NVS_HOME}/bin:${PATH}");
        assert_eq!(
            env.get("PATH"),
            Some("/usr/local/nvs/bin:/usr/local/bin:/usr/bin:/bin")
        );
    }

    #[test]
    fn defaults_and_alternatives() {
        let env = base();
        assert_eq!(env.expand("${UNSET:-fallback}"), "fallback");
        assert_eq!(env.expand("${HOME:-fallback}"), "/root");
        assert_eq!(env.expand("${HOME:+set}"), "set");
        assert_eq!(env.expand("${UNSET:+set}"), "");
    }

    #[test]
    fn escapes_and_unclosed_braces_stay_literal() {
        let env = base();
        assert_eq!(env.expand(r"\$HOME"), "$HOME");
        assert_eq!(env.expand("${HOME"), "${HOME");
        assert_eq!(env.expand("cost: 5$"), "cost: 5$");
    }

    #[test]
    fn values_with_spaces_stay_one_value() {
        let mut env = base();
        env.set_expanded("GREETING", "hello  world");
        assert_eq!(env.to_image_env()[2], "GREETING=hello  world");
    }

    #[test]
    fn set_keeps_position_of_existing_key() {
        let mut env = base();
        env.set("PATH", "/x");
        assert_eq!(env.to_image_env()[0], "PATH=/x");
    }
}

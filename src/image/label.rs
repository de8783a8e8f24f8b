//! The `devcontainer.metadata` label, byte for byte as the reference CLI writes it.
//!
//! What the reference implementation does (devcontainers/cli, `src/spec-node/imageMetadata.ts`:
//! `getDevcontainerMetadata`, `getDevcontainerMetadataLabel`, `toLabelString`; and
//! `src/spec-node/containerFeatures.ts`, which puts the result in the generated Dockerfile):
//!
//! - Entries, in order: the base image's own label (a JSON array, or a single object taken as a
//!   one-entry array, and no entries when it does not parse), then one entry per installed
//!   Feature in install order, then the devcontainer.json entry. Entries with no keys are
//!   dropped. With no entry left, no label is written at all.
//! - A Feature entry is `id` (the reference exactly as the user wrote it) followed by those of
//!   `onCreateCommand`, `updateContentCommand`, `postCreateCommand`, `postStartCommand`,
//!   `postAttachCommand`, `init`, `privileged`, `capAdd`, `securityOpt`, `entrypoint`, `mounts`,
//!   `customizations` that the Feature's `devcontainer-feature.json` has, in that order, with
//!   their raw values.
//! - Each entry is `JSON.stringify`'d (compact, no spaces) and the CLI emits
//!   `LABEL devcontainer.metadata="[ \⏎{...}, \⏎{...} \⏎]"`, escaping `"`, `\` and `$`. The
//!   Dockerfile parser removes each backslash-newline and undoes the escapes, so the label value
//!   is `[ ` + the entries joined by `, ` + ` ]`: one space after `[`, one after each comma and
//!   one before `]`.
//! - `JSON.stringify` writes object keys in JavaScript property order: keys that are array
//!   indices (canonical decimal integers below 2^32 - 1, such as port numbers in
//!   `portsAttributes`) first in ascending numeric order, then the other keys in insertion
//!   order. Numbers are printed the JavaScript way (`1.0` as `1`, `1e21` as `1e+21`).
//!
//! The devcontainer.json entry arrives ready-made from the config module, which picks its
//! properties (`crate::config::metadata::LABEL_PROPERTIES`).

use serde_json::{Map, Value};

/// The label's name.
pub const LABEL: &str = "devcontainer.metadata";

/// Properties of `devcontainer-feature.json` copied into a Feature's entry, in order.
pub const FEATURE_PROPERTIES: [&str; 12] = [
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "entrypoint",
    "mounts",
    "customizations",
];

/// One installed Feature, as far as the label uses it.
#[derive(Debug, Clone, Copy)]
pub struct FeatureMetadata<'a> {
    /// The Feature reference exactly as written in devcontainer.json (or added by `dependsOn`).
    pub user_reference: &'a str,
    /// The Feature's `devcontainer-feature.json`, as parsed.
    pub metadata: &'a Map<String, Value>,
}

/// The entries of a base image's `devcontainer.metadata` label value.
pub fn base_entries(label: Option<&str>) -> Vec<Value> {
    let Some(text) = label.filter(|t| !t.is_empty()) else {
        return Vec::new();
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(entries)) => entries,
        Ok(object @ Value::Object(_)) => vec![object],
        Ok(_) | Err(_) => {
            tracing::debug!("ignoring unreadable `{LABEL}` label of the base image");
            Vec::new()
        }
    }
}

/// A Feature's entry: `id`, then the picked properties in [`FEATURE_PROPERTIES`] order.
pub fn feature_entry(feature: &FeatureMetadata<'_>) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert(
        "id".to_string(),
        Value::String(feature.user_reference.to_string()),
    );
    entry.extend(pick(feature.metadata, &FEATURE_PROPERTIES));
    entry
}

/// Every entry of the label in order, empty ones dropped.
pub fn entries(
    base_label: Option<&str>,
    features: &[FeatureMetadata<'_>],
    config_entry: &Map<String, Value>,
) -> Vec<Value> {
    let mut all = base_entries(base_label);
    all.extend(features.iter().map(|f| Value::Object(feature_entry(f))));
    all.push(Value::Object(config_entry.clone()));
    all.retain(has_keys);
    all
}

/// The label value, or `None` when there is no entry (the reference then writes no label).
pub fn label_value(
    base_label: Option<&str>,
    features: &[FeatureMetadata<'_>],
    config_entry: &Map<String, Value>,
) -> Option<String> {
    let entries = entries(base_label, features, config_entry);
    if entries.is_empty() {
        return None;
    }
    let parts: Vec<String> = entries.iter().map(js_stringify).collect();
    Some(format!("[ {} ]", parts.join(", ")))
}

fn pick(source: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|key| source.get(*key).map(|v| (key.to_string(), v.clone())))
        .collect()
}

/// Whether JavaScript's `Object.keys` of the value is non-empty.
fn has_keys(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `value` serialised as JavaScript's `JSON.stringify` does.
pub fn js_stringify(value: &Value) -> String {
    let mut out = String::new();
    write_js(value, &mut out);
    out
}

fn write_js(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_js_number(n, out),
        Value::String(s) => write_js_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_js(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut index_keys: Vec<(u32, &String)> = map
                .keys()
                .filter_map(|k| array_index(k).map(|i| (i, k)))
                .collect();
            index_keys.sort();
            let keys = index_keys
                .iter()
                .map(|(_, k)| *k)
                .chain(map.keys().filter(|k| array_index(k).is_none()));
            out.push('{');
            for (i, key) in keys.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_js_string(key, out);
                out.push(':');
                write_js(&map[key.as_str()], out);
            }
            out.push('}');
        }
    }
}

/// The numeric value of a key JavaScript treats as an array index.
fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u32>().ok().filter(|n| *n != u32::MAX)
}

fn write_js_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

// NOTE: integers beyond 2^53 are written exactly, while JavaScript would first round them to
// the nearest double; such values do not occur in devcontainer metadata in practice.
fn write_js_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
        return;
    }
    if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        out.push('0');
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        out.push_str(&format!("{f:.0}"));
    } else if f.abs() >= 1e21 || f.abs() < 1e-6 {
        // Rust writes `1.5e21` and `1e-7`; JavaScript writes `1.5e+21` and `1e-7`.
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => {
                out.push_str(&format!("{mantissa}e+{exp}"));
            }
            _ => out.push_str(&text),
        }
    } else {
        out.push_str(&f.to_string());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn label_joins_entries_as_the_reference_dockerfile_yields() {
        let base = r#"{"id":"baseFeature"}"#;
        let feature_json = map(json!({
            "id": "someFeature",
            "version": "1.0.0",
            "customizations": {"vscode": {"extensions": ["a.b"]}},
            "containerEnv": {"X": "1"},
            "postCreateCommand": "echo hi",
            "privileged": true
        }));
        let features = [FeatureMetadata {
            user_reference: "ghcr.io/my-org/my-repo/someFeature:1",
            metadata: &feature_json,
        }];
        let config = map(json!({
            "containerEnv": {"A": "$HOME \"q\""},
            "remoteUser": "testUser"
        }));
        let label = label_value(Some(base), &features, &config).unwrap();
        assert_eq!(
            label,
            concat!(
                r#"[ {"id":"baseFeature"}, "#,
                r#"{"id":"ghcr.io/my-org/my-repo/someFeature:1","postCreateCommand":"echo hi","#,
                r#""privileged":true,"customizations":{"vscode":{"extensions":["a.b"]}}}, "#,
                r#"{"containerEnv":{"A":"$HOME \"q\""},"remoteUser":"testUser"} ]"#
            )
        );
        // The value is a JSON array that parses back to the entries.
        let parsed: Value = serde_json::from_str(&label).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 3);
    }

    #[test]
    fn base_array_entries_come_first_and_empty_entries_are_dropped() {
        let base = r#"[{"id":"one"},{},{"remoteUser":"vscode"}]"#;
        let empty = Map::new();
        let label = label_value(Some(base), &[], &empty).unwrap();
        assert_eq!(label, r#"[ {"id":"one"}, {"remoteUser":"vscode"} ]"#);
    }

    #[test]
    fn no_entries_means_no_label() {
        assert_eq!(label_value(None, &[], &Map::new()), None);
        assert_eq!(label_value(Some("not json"), &[], &Map::new()), None);
    }

    #[test]
    fn a_feature_without_picked_properties_still_has_its_id() {
        let metadata = map(json!({"id": "x", "options": {}}));
        let features = [FeatureMetadata {
            user_reference: "./local-x",
            metadata: &metadata,
        }];
        let label = label_value(None, &features, &Map::new()).unwrap();
        assert_eq!(label, r#"[ {"id":"./local-x"} ]"#);
    }

    #[test]
    fn keys_and_numbers_follow_javascript() {
        let value = json!({
            "b": 1,
            "8080": {"label": "web"},
            "3000": {"label": "api"},
            "01": "not an index",
            "f": 2.0,
            "big": 1.5e21,
            "tiny": 1e-7,
            "half": 0.5,
            "ctl": "\u{1}\t"
        });
        assert_eq!(
            js_stringify(&value),
            concat!(
                r#"{"3000":{"label":"api"},"8080":{"label":"web"},"b":1,"01":"not an index","#,
                r#""f":2,"big":1.5e+21,"tiny":1e-7,"half":0.5,"ctl":"\u0001\t"}"#
            )
        );
    }
}

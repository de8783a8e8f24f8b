//! The devcontainer.json entry of the `devcontainer.metadata` image label.
//!
//! The reference implementation copies a fixed list of properties from the raw (unsubstituted)
//! devcontainer.json into the label, in the order of that list, not the order of the file. A
//! property is copied whenever its key is present, whatever its value, `null` included. Before
//! that it moves the legacy top-level `extensions`, `settings` and `devPort` into
//! `customizations.vscode`. `remoteEnv` is kept: `devcontainer build` has no switch to drop it
//! (only `up` has a hidden one).

use serde_json::{Map, Value};

use super::jsonc::Object;

/// The properties the label keeps, in the order they are written.
pub const LABEL_PROPERTIES: &[&str] = &[
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "waitFor",
    "customizations",
    "mounts",
    "containerEnv",
    "containerUser",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "remoteUser",
    "userEnvProbe",
    "remoteEnv",
    "overrideCommand",
    "portsAttributes",
    "otherPortsAttributes",
    "forwardPorts",
    "shutdownAction",
    "updateRemoteUserUID",
    "hostRequirements",
];

/// Builds the label entry for the top-level object `root`, with raw values.
pub fn config_entry(root: &Object) -> Map<String, Value> {
    let mut raw: Map<String, Value> = root
        .iter_js_order()
        .map(|m| (m.key.clone(), m.value.to_json()))
        .collect();
    move_legacy_vscode_properties(&mut raw);

    LABEL_PROPERTIES
        .iter()
        .filter_map(|&key| raw.get(key).map(|value| (key.to_string(), value.clone())))
        .collect()
}

/// Moves top-level `extensions`, `settings` and `devPort` into `customizations.vscode` the way
/// the reference does when it reads an older devcontainer.json: extensions are appended,
/// settings already under `vscode` win, `devPort` moves only when `vscode` has none.
///
/// Only the shapes a real file has are handled: when `customizations` or `vscode` is not an
/// object (the reference fails or loses data there), nothing moves.
fn move_legacy_vscode_properties(raw: &mut Map<String, Value>) {
    let extensions = raw.get("extensions").filter(|v| is_truthy(v)).cloned();
    let settings = raw.get("settings").filter(|v| is_truthy(v)).cloned();
    let dev_port = raw.get("devPort").cloned();
    if extensions.is_none() && settings.is_none() && dev_port.is_none() {
        return;
    }

    if !raw.get("customizations").is_some_and(is_truthy) {
        raw.insert("customizations".into(), Value::Object(Map::new()));
    }
    let Some(Value::Object(customizations)) = raw.get_mut("customizations") else {
        return;
    };
    if !customizations.get("vscode").is_some_and(is_truthy) {
        customizations.insert("vscode".into(), Value::Object(Map::new()));
    }
    let Some(Value::Object(vscode)) = customizations.get_mut("vscode") else {
        return;
    };
    let mut moved = Vec::new();

    if let Some(extensions) = extensions {
        let mut merged = match vscode.get("extensions") {
            Some(Value::Array(existing)) => existing.clone(),
            Some(existing) if is_truthy(existing) => vec![existing.clone()],
            _ => Vec::new(),
        };
        match extensions {
            Value::Array(items) => merged.extend(items),
            other => merged.push(other),
        }
        vscode.insert("extensions".into(), Value::Array(merged));
        moved.push("extensions");
    }

    if let Some(settings) = settings {
        let mut merged = match settings {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Some(Value::Object(existing)) = vscode.get("settings") {
            merged.extend(existing.clone());
        }
        vscode.insert("settings".into(), Value::Object(merged));
        moved.push("settings");
    }

    if let Some(dev_port) = dev_port {
        if !vscode.contains_key("devPort") {
            vscode.insert("devPort".into(), dev_port);
            moved.push("devPort");
        }
    }

    for key in moved {
        raw.shift_remove(key);
    }
}

/// JavaScript truthiness of a JSON value.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::jsonc::Document;

    fn entry(text: &str) -> Value {
        let value = Document::new("devcontainer.json", text).parse().unwrap();
        Value::Object(config_entry(value.as_object().unwrap()))
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn keeps_the_label_properties_in_the_reference_order() {
        // Every property once, in reverse order, between properties the label drops.
        let mut text = String::from("{\"image\": \"debian\", \"name\": \"x\", \"features\": {}");
        for (i, key) in LABEL_PROPERTIES.iter().rev().enumerate() {
            text.push_str(&format!(", \"{key}\": {i}, \"other{i}\": true"));
        }
        text.push('}');
        let entry = entry(&text);
        assert_eq!(keys(&entry), LABEL_PROPERTIES);
        assert_eq!(entry["hostRequirements"], json!(0));
        assert_eq!(entry["onCreateCommand"], json!(LABEL_PROPERTIES.len() - 1));
    }

    #[test]
    fn values_stay_raw() {
        let entry = entry(
            r#"{
                "image": "${localEnv:IMAGE}",
                "remoteEnv": { "PATH": "${containerEnv:PATH}:/opt/bin", "HOME": null },
                "containerEnv": { "B": "${localEnv:B:x:y}", "A": "${localWorkspaceFolder}" },
                "mounts": ["source=${localEnv:HOME}/.ssh,target=/root/.ssh,type=bind"],
                "postCreateCommand": { "a": "echo ${devcontainerId}", "b": ["ls", "-l"] },
                "forwardPorts": [3000, "db:5432"],
                "hostRequirements": { "cpus": 2.0, "memory": "4gb" },
                "customizations": { "vscode": { "settings": { "2": 1, "b": 2, "1": 3 } } },
            }"#,
        );
        assert_eq!(
            entry,
            json!({
                "postCreateCommand": { "a": "echo ${devcontainerId}", "b": ["ls", "-l"] },
                "customizations": { "vscode": { "settings": { "1": 3, "2": 1, "b": 2 } } },
                "mounts": ["source=${localEnv:HOME}/.ssh,target=/root/.ssh,type=bind"],
                "containerEnv": { "B": "${localEnv:B:x:y}", "A": "${localWorkspaceFolder}" },
                "remoteEnv": { "PATH": "${containerEnv:PATH}:/opt/bin", "HOME": null },
                "forwardPorts": [3000, "db:5432"],
                "hostRequirements": { "cpus": 2, "memory": "4gb" },
            })
        );
        assert_eq!(keys(&entry["containerEnv"]), ["B", "A"]);
        assert_eq!(
            keys(&entry["customizations"]["vscode"]["settings"]),
            ["1", "2", "b"]
        );
        assert_eq!(
            serde_json::to_string(&entry["hostRequirements"]).unwrap(),
            r#"{"cpus":2,"memory":"4gb"}"#
        );
    }

    #[test]
    fn no_label_properties_give_an_empty_entry() {
        assert_eq!(
            entry(r#"{"image": "debian", "features": {"./f": {}}}"#),
            json!({})
        );
    }

    #[test]
    fn legacy_vscode_properties_move_into_customizations() {
        let cases = [
            (
                r#"{"extensions": ["a"], "settings": {"s": 1}, "devPort": 8000}"#,
                json!({"customizations": {"vscode": {"extensions": ["a"], "settings": {"s": 1}, "devPort": 8000}}}),
            ),
            (
                r#"{"extensions": ["b", "c"], "settings": {"s": 1, "t": 1}, "devPort": 1,
                    "customizations": {"codespaces": {}, "vscode": {"settings": {"t": 2, "u": 2},
                    "extensions": ["a"], "devPort": 2}}}"#,
                json!({"customizations": {"codespaces": {}, "vscode": {
                    "settings": {"s": 1, "t": 2, "u": 2},
                    "extensions": ["a", "b", "c"],
                    "devPort": 2,
                }}}),
            ),
            (
                r#"{"extensions": [], "customizations": null}"#,
                json!({"customizations": {"vscode": {"extensions": []}}}),
            ),
            (r#"{"extensions": "", "settings": null}"#, json!({})),
            (
                r#"{"devPort": null}"#,
                json!({"customizations": {"vscode": {"devPort": null}}}),
            ),
        ];
        for (text, expected) in cases {
            let got = entry(text);
            assert_eq!(got, expected, "for {text}");
            assert_eq!(
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "key order for {text}"
            );
        }
    }

    #[test]
    fn legacy_properties_of_a_real_config() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/config/corpus/home-assistant__core/.devcontainer/devcontainer.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let entry = entry(&text);
        assert_eq!(keys(&entry), ["postCreateCommand", "customizations"]);
        let vscode = &entry["customizations"]["vscode"];
        assert_eq!(keys(vscode), ["extensions", "settings"]);
        assert_eq!(vscode["extensions"].as_array().unwrap().len(), 5);
        assert_eq!(vscode["settings"]["editor.formatOnSave"], json!(true));
    }
}

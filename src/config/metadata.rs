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

/// The label entry for the top-level object `root`, with raw values.
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

//! Credentials from the Docker config file (`auths` entries), anonymous without an entry.
//!
//! The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. Credential helpers
//! (`credsStore`, `credHelpers`) are not run yet: a registry whose credentials live only in a
//! helper is reached anonymously. Credentials never appear in logs or errors.

use std::path::PathBuf;

use oci_client::secrets::RegistryAuth;
use serde_json::Value;

/// Returns the credentials the Docker config file contains for `registry` (`host[:port]`).
pub(crate) fn auth_for(registry: &str) -> RegistryAuth {
    let Some(path) = config_path() else {
        return RegistryAuth::Anonymous;
    };
    let Ok(bytes) = std::fs::read(&path) else {
        return RegistryAuth::Anonymous;
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(config) => auth_from_config(&config, registry),
        Err(_) => {
            tracing::warn!(
                "ignoring unreadable Docker config file `{}`",
                path.display()
            );
            RegistryAuth::Anonymous
        }
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

fn auth_from_config(config: &Value, registry: &str) -> RegistryAuth {
    let Some(auths) = config.get("auths").and_then(Value::as_object) else {
        return RegistryAuth::Anonymous;
    };
    let expected = normalise(registry);
    for (key, entry) in auths {
        if normalise(key) != expected {
            continue;
        }
        if let Some(token) = entry.get("registrytoken").and_then(Value::as_str) {
            return RegistryAuth::Bearer(token.to_string());
        }
        let user = entry.get("username").and_then(Value::as_str);
        let pass = entry.get("password").and_then(Value::as_str);
        if let (Some(user), Some(pass)) = (user, pass) {
            return RegistryAuth::Basic(user.to_string(), pass.to_string());
        }
        if let Some(encoded) = entry.get("auth").and_then(Value::as_str) {
            let decoded = decode_base64(encoded).and_then(|b| String::from_utf8(b).ok());
            if let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                return RegistryAuth::Basic(user.to_string(), pass.to_string());
            }
            tracing::warn!(
                "ignoring a malformed `auth` entry for `{registry}` in the Docker config"
            );
        }
    }
    RegistryAuth::Anonymous
}

/// `host[:port]` of a config key such as `https://index.docker.io/v1/` or `ghcr.io`.
fn normalise(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

/// Decodes standard base64 (padding optional), or returns `None` when the text is not base64.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI").unwrap(), b"ab");
        assert!(decode_base64("not base64!").is_none());
    }

    #[test]
    fn auth_entries_match_by_host() {
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
            "ghcr.io": {"registrytoken": "tok"}
        }});
        assert!(matches!(auth_from_config(&config, "docker.io"),
            RegistryAuth::Basic(u, p) if u == "user" && p == "pass"));
        assert!(matches!(auth_from_config(&config, "127.0.0.1:5000"),
            RegistryAuth::Basic(u, p) if u == "u" && p == "p"));
        assert!(
            matches!(auth_from_config(&config, "ghcr.io"), RegistryAuth::Bearer(t) if t == "tok")
        );
        assert!(matches!(
            auth_from_config(&config, "quay.io"),
            RegistryAuth::Anonymous
        ));
        assert!(matches!(
            auth_from_config(&json!({}), "ghcr.io"),
            RegistryAuth::Anonymous
        ));
    }
}

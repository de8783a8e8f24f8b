//! Cache keys and the plan digest.
//!
//! Each key is the SHA-256 of a canonical JSON document (sorted keys, no whitespace), so the
//! same inputs give the same key on every machine and every run.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Bumped whenever the local engine or the layer writer changes what a step produces, so that
/// old cache entries stop matching.
pub const LAYER_FORMAT: u32 = 2;

/// Returns `sha256:<hex>` of `value` serialized as canonical JSON.
pub fn digest_of<T: Serialize>(value: &T) -> String {
    let value = serde_json::to_value(value).expect("plan values serialize");
    let mut bytes = Vec::new();
    write_canonical(&value, &mut bytes);
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// Writes JSON with object keys sorted and no whitespace, independent of map insertion order.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("strings serialize");
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialize"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_key_order() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, 2], "x": "v"}});
        let b = serde_json::json!({"a": {"x": "v", "y": [1, 2]}, "b": 1});
        assert_eq!(digest_of(&a), digest_of(&b));
    }

    #[test]
    fn digest_changes_with_array_order() {
        let a = serde_json::json!(["x", "y"]);
        let b = serde_json::json!(["y", "x"]);
        assert_ne!(digest_of(&a), digest_of(&b));
    }

    #[test]
    fn digest_is_sha256_of_canonical_bytes() {
        let value = serde_json::json!({"b": true, "a": "x"});
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(br#"{"a":"x","b":true}"#))
        );
        assert_eq!(digest_of(&value), expected);
    }
}

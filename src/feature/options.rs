//! Option values: validation against the declared options, defaults, and environment names.
//!
//! Values are never quoted or escaped here: the engine sets them directly in the install
//! script's process environment, so they reach the script byte for byte.

use std::collections::BTreeMap;

use super::{Error, FeatureMetadata, OptionSpec};
use crate::config::{Location, OptionValue};

/// The option that a plain string value (`"feature": "1.2"`) sets.
pub const SHORTHAND_OPTION: &str = "version";

/// One option value as written, with where it was written when known.
#[derive(Debug, Clone, PartialEq)]
pub struct UserOption {
    pub id: String,
    pub value: OptionValue,
    pub location: Option<Location>,
}

/// Turns a shorthand string into the `version` option.
///
/// # Errors
///
/// [`Error::Option`] when the Feature declares no `version` option.
pub fn shorthand(
    feature: &str,
    metadata: &FeatureMetadata,
    value: &str,
    location: Option<&Location>,
) -> Result<UserOption, Error> {
    if metadata.option(SHORTHAND_OPTION).is_none() {
        return Err(Error::Option {
            feature: feature.to_string(),
            option: SHORTHAND_OPTION.to_string(),
            location: location.cloned(),
            message: format!(
                "the plain value `{value}` sets option `version`, which this Feature does not \
                 declare (it declares {})",
                declared(metadata)
            ),
            hint: Some(
                "write the options as an object, such as `{ \"option\": \"value\" }`".into(),
            ),
        });
    }
    Ok(UserOption {
        id: SHORTHAND_OPTION.to_string(),
        value: OptionValue::String(value.to_string()),
        location: location.cloned(),
    })
}

/// Converts a `dependsOn` option object (JSON) into option values.
///
/// # Errors
///
/// [`Error::Option`] for a value that is neither a string nor a boolean.
pub fn from_json(
    feature: &str,
    options: &serde_json::Map<String, serde_json::Value>,
    location: Option<&Location>,
) -> Result<Vec<UserOption>, Error> {
    options
        .iter()
        .map(|(id, value)| {
            let value = match value {
                serde_json::Value::Bool(b) => OptionValue::Bool(*b),
                serde_json::Value::String(s) => OptionValue::String(s.clone()),
                other => {
                    return Err(Error::Option {
                        feature: feature.to_string(),
                        option: id.clone(),
                        location: location.cloned(),
                        message: format!("value `{other}` is neither a string nor a boolean"),
                        hint: Some(format!("quote it: `\"{id}\": \"{other}\"`")),
                    })
                }
            };
            Ok(UserOption {
                id: id.clone(),
                value,
                location: location.cloned(),
            })
        })
        .collect()
}

/// Checks `user` against the options `metadata` declares and returns every declared option:
/// its default overlaid by the user's value. `feature` names the Feature in errors.
///
/// # Errors
///
/// [`Error::Option`] for a value of the wrong type or a value outside `enum`. An option the
/// Feature does not declare is kept as written, with a warning, as the reference CLI keeps it.
pub fn resolve(
    feature: &str,
    metadata: &FeatureMetadata,
    user: &[UserOption],
) -> Result<BTreeMap<String, OptionValue>, Error> {
    let mut resolved: BTreeMap<String, OptionValue> = metadata
        .options
        .iter()
        .map(|(id, spec)| {
            let default = match spec {
                OptionSpec::Boolean { default } => OptionValue::Bool(*default),
                OptionSpec::String { default, .. } => OptionValue::String(default.clone()),
            };
            (id.clone(), default)
        })
        .collect();

    for option in user {
        let fail = |message: String, hint: String| Error::Option {
            feature: feature.to_string(),
            option: option.id.clone(),
            location: option.location.clone(),
            message,
            hint: Some(hint),
        };
        // The reference CLI passes an undeclared option through to the install script
        // unchecked; so does envc, with a warning.
        let Some(spec) = metadata.option(&option.id) else {
            tracing::warn!(
                "Feature `{feature}` declares no option `{}` (it declares {}); passing it to \
                 the install script as written",
                option.id,
                declared(metadata)
            );
            resolved.insert(option.id.clone(), option.value.clone());
            continue;
        };
        match (spec, &option.value) {
            (OptionSpec::Boolean { .. }, OptionValue::Bool(_)) => {}
            (OptionSpec::Boolean { .. }, OptionValue::String(s)) if s == "true" || s == "false" => {
            }
            (OptionSpec::Boolean { .. }, OptionValue::String(s)) => {
                return Err(fail(
                    format!("value `{s}` is not a boolean"),
                    "use `true` or `false`".into(),
                ))
            }
            (OptionSpec::String { .. }, OptionValue::Bool(b)) => {
                return Err(fail(
                    format!("value `{b}` is a boolean, but the option takes a string"),
                    format!("quote it: `\"{b}\"`"),
                ))
            }
            (
                OptionSpec::String {
                    enum_values: Some(allowed),
                    ..
                },
                OptionValue::String(s),
            ) if !allowed.contains(s) => {
                let allowed: Vec<String> = allowed.iter().map(|v| format!("`{v}`")).collect();
                return Err(fail(
                    format!("value `{s}` is not one of the allowed values"),
                    format!("use one of {}", allowed.join(", ")),
                ));
            }
            (OptionSpec::String { .. }, OptionValue::String(_)) => {}
        }
        resolved.insert(option.id.clone(), option.value.clone());
    }
    Ok(resolved)
}

/// The environment variable name of option `id`: every character outside `[A-Za-z0-9_]`
/// becomes `_`, a leading run of digits and underscores becomes one `_`, then uppercase.
pub fn env_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let rest = safe.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_');
    let name = if rest.len() == safe.len() {
        safe.clone()
    } else {
        format!("_{rest}")
    };
    name.to_ascii_uppercase()
}

/// The environment variable of every declared option, in declaration order.
///
/// # Errors
///
/// [`Error::Option`] when two option ids map to one name.
pub fn env_names(
    feature: &str,
    metadata: &FeatureMetadata,
) -> Result<Vec<(String, String)>, Error> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut names = Vec::with_capacity(metadata.options.len());
    for (index, (id, _)) in metadata.options.iter().enumerate() {
        let name = env_name(id);
        if let Some(first) = seen.insert(name.clone(), id) {
            return Err(Error::Option {
                feature: feature.to_string(),
                option: id.clone(),
                location: metadata.locations.options.get(index).cloned(),
                message: format!(
                    "options `{first}` and `{id}` both become environment variable `{name}`"
                ),
                hint: Some("rename one of the options in devcontainer-feature.json".into()),
            });
        }
        names.push((id.clone(), name));
    }
    Ok(names)
}

fn declared(metadata: &FeatureMetadata) -> String {
    if metadata.options.is_empty() {
        return "no options".into();
    }
    let names: Vec<String> = metadata
        .options
        .iter()
        .map(|(id, _)| format!("`{id}`"))
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::metadata::parse_metadata;

    fn metadata() -> FeatureMetadata {
        parse_metadata(
            r#"{
              "id": "demo",
              "options": {
                "version": { "type": "string", "proposals": ["1", "2"], "default": "latest" },
                "flavor": { "type": "string", "enum": ["minimal", "full"], "default": "minimal" },
                "installZsh": { "type": "boolean", "default": true },
                "motd": { "type": "string", "default": "" }
              }
            }"#,
            std::path::Path::new("/f/devcontainer-feature.json"),
        )
        .unwrap()
    }

    fn user(id: &str, value: OptionValue) -> UserOption {
        UserOption {
            id: id.into(),
            value,
            location: None,
        }
    }

    fn s(value: &str) -> OptionValue {
        OptionValue::String(value.into())
    }

    #[test]
    fn defaults_are_overlaid_by_user_values() {
        let resolved = resolve(
            "demo",
            &metadata(),
            &[
                user("flavor", s("full")),
                user("installZsh", OptionValue::Bool(false)),
            ],
        )
        .unwrap();
        assert_eq!(resolved["version"], s("latest"));
        assert_eq!(resolved["flavor"], s("full"));
        assert_eq!(resolved["installZsh"], OptionValue::Bool(false));
        assert_eq!(resolved["motd"], s(""));
    }

    #[test]
    fn accepted_values() {
        let ok = [
            ("installZsh", OptionValue::Bool(true)),
            ("installZsh", s("true")),
            ("installZsh", s("false")),
            ("version", s("3.12")),
            ("version", s("not-a-proposal")),
            ("flavor", s("minimal")),
            ("motd", s("")),
            ("motd", s("a \"quoted\" $HOME `cmd` \\ back\nslash ünïcode")),
        ];
        for (id, value) in ok {
            let resolved = resolve("demo", &metadata(), &[user(id, value.clone())]).unwrap();
            assert_eq!(resolved[id], value, "{id}");
        }
    }

    #[test]
    fn an_undeclared_option_is_passed_through_as_written() {
        let resolved = resolve("demo", &metadata(), &[user("username", s("root"))]).unwrap();
        assert_eq!(resolved["username"], s("root"));
        assert_eq!(resolved["flavor"], s("minimal"));
    }

    #[test]
    fn rejected_values_name_feature_option_value_and_allowed_ones() {
        let cases = [
            (
                "installZsh",
                s("yes"),
                "value `yes` is not a boolean",
                "`true` or `false`",
            ),
            (
                "installZsh",
                s("True"),
                "value `True` is not a boolean",
                "`true` or `false`",
            ),
            (
                "flavor",
                s("huge"),
                "value `huge` is not one of the allowed",
                "`minimal`, `full`",
            ),
            (
                "flavor",
                s("Full"),
                "value `Full` is not one of the allowed",
                "`minimal`, `full`",
            ),
            (
                "motd",
                OptionValue::Bool(true),
                "value `true` is a boolean",
                "quote it",
            ),
        ];
        for (id, value, message, hint) in cases {
            let err = resolve("demo", &metadata(), &[user(id, value)]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("Feature `demo`"), "{text}");
            assert!(text.contains(message), "{text}");
            assert!(err.hint().unwrap().contains(hint), "{:?}", err.hint());
        }
    }

    #[test]
    fn errors_carry_the_location_of_the_value() {
        let location = Location {
            file: "/w/devcontainer.json".into(),
            line: 7,
            column: 9,
        };
        let option = UserOption {
            id: "flavor".into(),
            value: s("x"),
            location: Some(location),
        };
        let err = resolve("demo", &metadata(), &[option]).unwrap_err();
        assert!(
            err.to_string().starts_with("/w/devcontainer.json:7:9: "),
            "{err}"
        );
    }

    #[test]
    fn shorthand_sets_version_or_fails_without_one() {
        let option = shorthand("demo", &metadata(), "1.18", None).unwrap();
        assert_eq!((option.id.as_str(), option.value), ("version", s("1.18")));

        let mut without = metadata();
        without.options.retain(|(id, _)| id != "version");
        let err = shorthand("demo", &without, "1.18", None).unwrap_err();
        assert!(err.to_string().contains("does not declare"), "{err}");
    }

    #[test]
    fn dependency_options_from_json() {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"a": true, "b": "x"}"#).unwrap();
        let options = from_json("demo", &map, None).unwrap();
        assert_eq!(options[0].value, OptionValue::Bool(true));
        assert_eq!(options[1].value, s("x"));

        let bad: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"n": 3}"#).unwrap();
        assert!(from_json("demo", &bad, None)
            .unwrap_err()
            .to_string()
            .contains("`3`"));
    }

    #[test]
    fn env_names_follow_the_spec_rule() {
        let table = [
            ("version", "VERSION"),
            ("install-zsh", "INSTALL_ZSH"),
            ("installZsh", "INSTALLZSH"),
            ("1name", "_NAME"),
            ("123", "_"),
            ("a.b", "A_B"),
            ("__x", "_X"),
            ("_1_x", "_X"),
            ("x__y", "X__Y"),
            ("a b/c", "A_B_C"),
            ("ünï", "_N_"),
            ("9-lives", "_LIVES"),
            ("v1", "V1"),
        ];
        for (id, expected) in table {
            assert_eq!(env_name(id), expected, "{id}");
        }
    }

    #[test]
    fn two_options_with_one_env_name_are_an_error() {
        let mut clash = metadata();
        clash
            .options
            .push(("install-zsh".into(), OptionSpec::Boolean { default: false }));
        clash
            .options
            .push(("install_zsh".into(), OptionSpec::Boolean { default: false }));
        let err = env_names("demo", &clash).unwrap_err();
        assert!(
            err.to_string().contains(
                "`install-zsh` and `install_zsh` both become environment variable `INSTALL_ZSH`"
            ),
            "{err}"
        );
        let names = env_names("demo", &metadata()).unwrap();
        assert_eq!(names[2], ("installZsh".into(), "INSTALLZSH".into()));
    }
}

//! Finding and loading devcontainer.json.
//!
//! Loading reads the file as JSONC, checks the properties that shape the image and builds a
//! [`Config`] with build-time variables substituted. Other properties are allowed and ignored,
//! apart from what the `devcontainer.metadata` label keeps (see [`super::metadata`]). A property
//! set to `null` counts as not set, as in the reference implementation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::jsonc::{Document, Kind, Member, Object, Span, Value};
use super::variables::{self, MissingName};
use super::{metadata, Config, Error, FeatureEntry, FeatureOptions, ImageSource, OptionValue};

const FOLDER: &str = ".devcontainer";
const FILE: &str = "devcontainer.json";
const ROOT_FILE: &str = ".devcontainer.json";

/// Finds the devcontainer.json of the project at `workspace`, or checks `explicit` when given.
///
/// Without `explicit`, the first that exists of `.devcontainer/devcontainer.json`,
/// `.devcontainer.json`, and a single `.devcontainer/<name>/devcontainer.json`.
///
/// # Errors
///
/// [`Error::ExplicitNotFound`] when `explicit` does not exist, [`Error::NotFound`] when there is
/// no file, [`Error::Ambiguous`] when several `.devcontainer/<name>/devcontainer.json` exist,
/// [`Error::Read`] when `.devcontainer/` cannot be listed.
pub fn find_config(workspace: &Path, explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = explicit {
        return match path.exists() {
            true => Ok(path.to_path_buf()),
            false => Err(Error::ExplicitNotFound(path.to_path_buf())),
        };
    }

    let folder = workspace.join(FOLDER);
    for candidate in [folder.join(FILE), workspace.join(ROOT_FILE)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }

    let mut named = named_configs(&folder)?;
    match named.len() {
        0 => Err(Error::NotFound(workspace.to_path_buf())),
        1 => Ok(named.remove(0)),
        _ => Err(Error::Ambiguous {
            workspace: workspace.to_path_buf(),
            found: named,
        }),
    }
}

/// The `<folder>/<name>/devcontainer.json` files, sorted.
fn named_configs(folder: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: folder.to_path_buf(),
                source,
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: folder.to_path_buf(),
            source,
        })?;
        let candidate = entry.path().join(FILE);
        if candidate.is_file() {
            found.push(candidate);
        }
    }
    found.sort();
    Ok(found)
}

/// Loads and validates `file`, substituting build-time variables from `local_env`.
///
/// # Errors
///
/// [`Error::Read`] naming the path when the file cannot be read; [`Error::Invalid`] at the
/// offending `file:line:column` for malformed JSONC, a value of the wrong type, a Dockerfile or
/// Compose source, or a missing `image`.
pub fn load(file: &Path, local_env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let doc = Document::read(file)?;
    let root = doc.parse()?;
    let Some(object) = root.as_object() else {
        return Err(Error::Invalid {
            location: doc.location(root.span.start),
            message: format!(
                "the file must hold a JSON object, found {}",
                found(&doc, &root)
            ),
            hint: Some("write the settings as an object: `{ \"image\": \"...\" }`".into()),
        });
    };

    let absolute = std::path::absolute(file).map_err(|source| Error::Read {
        path: file.into(),
        source,
    })?;
    let config_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let workspace = workspace_of(&absolute);
    let reader = Reader {
        doc: &doc,
        context: variables::Context {
            local_workspace_folder: &workspace,
            local_env,
        },
    };

    Ok(Config {
        file: file.to_path_buf(),
        image: reader.image(object, root.span)?,
        features: reader.features(object)?,
        override_install_order: reader.override_install_order(object)?,
        container_env: reader.container_env(object)?,
        container_user: reader.user(object, "containerUser")?,
        remote_user: reader.user(object, "remoteUser")?,
        update_remote_user_uid: reader.update_remote_user_uid(object)?,
        metadata_entry: metadata::config_entry(object),
        config_dir,
        workspace,
    })
}

/// The project folder for a config file: the folder that holds `.devcontainer/` for
/// `.devcontainer/devcontainer.json` and `.devcontainer/<name>/devcontainer.json`, otherwise the
/// folder of the file.
fn workspace_of(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new("/"));
    for folder in parent.ancestors().take(2) {
        if folder.file_name().is_some_and(|name| name == FOLDER) {
            if let Some(workspace) = folder.parent() {
                return workspace.to_path_buf();
            }
        }
    }
    parent.to_path_buf()
}

/// Reads properties out of the top-level object, with errors pointing into `doc`.
struct Reader<'a> {
    doc: &'a Document,
    context: variables::Context<'a>,
}

impl Reader<'_> {
    fn image(&self, root: &Object, root_span: Span) -> Result<ImageSource, Error> {
        if let Some(compose) = set(root, "dockerComposeFile") {
            return Err(self.unsupported(compose, "Docker Compose"));
        }
        if let Some(dockerfile) = set(root, "dockerFile") {
            return Err(self.unsupported(dockerfile, "Dockerfile"));
        }
        if let Some(build) = set(root, "build") {
            // `build` without a `dockerfile` only carries settings; next to `image` it is unused.
            let names_dockerfile = build
                .value
                .as_object()
                .is_some_and(|b| b.contains_key("dockerfile"));
            if names_dockerfile || set(root, "image").is_none() {
                return Err(self.unsupported(build, "Dockerfile"));
            }
        }

        let Some(image) = set(root, "image") else {
            return Err(self.error(
                root_span,
                "no `image` property: the base image must be named".into(),
                "add `\"image\": \"REFERENCE\"`, such as `\"image\": \"debian:bookworm\"`",
            ));
        };
        let reference = self.string(image, "`image`", "\"image\": \"debian:bookworm\"")?;
        if reference.trim().is_empty() {
            return Err(self.error(
                image.value.span,
                format!(
                    "`image` is empty, found `{}`",
                    self.doc.snippet(image.value.span)
                ),
                "name the base image, such as `\"image\": \"debian:bookworm\"`",
            ));
        }
        Ok(ImageSource {
            reference,
            location: self.doc.location(image.value.span.start),
        })
    }

    fn features(&self, root: &Object) -> Result<Vec<FeatureEntry>, Error> {
        let Some(features) = set(root, "features") else {
            return Ok(Vec::new());
        };
        let Some(features) = features.value.as_object() else {
            return Err(self.wrong_type(
                "`features`",
                &features.value,
                "an object",
                "write `\"features\": { \"REFERENCE\": {} }`",
            ));
        };

        let mut entries = Vec::with_capacity(features.len());
        for feature in features {
            let options = match &feature.value.kind {
                Kind::String(version) => {
                    FeatureOptions::Shorthand(self.substitute(version, feature.value.span)?)
                }
                Kind::Object(options) => FeatureOptions::Map(self.options(&feature.key, options)?),
                _ => {
                    let key = &feature.key;
                    return Err(self.wrong_type(
                        &format!("Feature `{key}`"),
                        &feature.value,
                        "an object of options or a version string",
                        &format!(
                            "write `\"{key}\": {{}}` for its defaults, or \
                             `\"{key}\": {{ \"option\": \"value\" }}`"
                        ),
                    ));
                }
            };
            entries.push(FeatureEntry {
                reference: feature.key.clone(),
                options,
                location: self.doc.location(feature.key_span.start),
            });
        }
        Ok(entries)
    }

    fn options(
        &self,
        feature: &str,
        options: &Object,
    ) -> Result<BTreeMap<String, (OptionValue, super::Location)>, Error> {
        let mut result = BTreeMap::new();
        for option in options {
            let value = match &option.value.kind {
                Kind::Bool(b) => OptionValue::Bool(*b),
                Kind::String(s) => OptionValue::String(self.substitute(s, option.value.span)?),
                Kind::Number(_) => OptionValue::String(option.value.to_json().to_string()),
                _ => {
                    let name = &option.key;
                    return Err(self.wrong_type(
                        &format!("option `{name}` of Feature `{feature}`"),
                        &option.value,
                        "a string, a boolean or a number",
                        &format!("write `\"{name}\": \"value\"` or `\"{name}\": true`"),
                    ));
                }
            };
            let location = self.doc.location(option.value.span.start);
            result.insert(option.key.clone(), (value, location));
        }
        Ok(result)
    }

    fn override_install_order(
        &self,
        root: &Object,
    ) -> Result<Vec<(String, super::Location)>, Error> {
        let Some(order) = set(root, "overrideFeatureInstallOrder") else {
            return Ok(Vec::new());
        };
        let Some(items) = order.value.as_array() else {
            return Err(self.wrong_type(
                "`overrideFeatureInstallOrder`",
                &order.value,
                "an array of Feature ids",
                "write `\"overrideFeatureInstallOrder\": [\"FEATURE-ID\", ...]`",
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.as_str() {
                Some(id) => Ok((id.to_string(), self.doc.location(item.span.start))),
                None => Err(self.wrong_type(
                    &format!("`overrideFeatureInstallOrder[{i}]`"),
                    item,
                    "a string",
                    "write the Feature id as a string, such as `\"ghcr.io/devcontainers/features/git\"`",
                )),
            })
            .collect()
    }

    fn container_env(&self, root: &Object) -> Result<Vec<(String, String)>, Error> {
        let Some(env) = set(root, "containerEnv") else {
            return Ok(Vec::new());
        };
        let Some(env) = env.value.as_object() else {
            return Err(self.wrong_type(
                "`containerEnv`",
                &env.value,
                "an object",
                "write `\"containerEnv\": { \"NAME\": \"value\" }`",
            ));
        };
        env.iter()
            .map(|var| {
                let name = &var.key;
                let example = format!("\"{name}\": \"value\"");
                let value = self.string(var, &format!("`containerEnv.{name}`"), &example)?;
                Ok((name.clone(), value))
            })
            .collect()
    }

    fn user(&self, root: &Object, key: &str) -> Result<Option<String>, Error> {
        set(root, key)
            .map(|user| self.string(user, &format!("`{key}`"), &format!("\"{key}\": \"vscode\"")))
            .transpose()
    }

    fn update_remote_user_uid(&self, root: &Object) -> Result<Option<bool>, Error> {
        let Some(update) = set(root, "updateRemoteUserUID") else {
            return Ok(None);
        };
        match update.value.as_bool() {
            Some(b) => Ok(Some(b)),
            None => Err(self.wrong_type(
                "`updateRemoteUserUID`",
                &update.value,
                "a boolean",
                "write `\"updateRemoteUserUID\": true` or `false`, without quotes",
            )),
        }
    }

    /// The member's string value, substituted; `example` shows a correct property.
    fn string(&self, member: &Member, what: &str, example: &str) -> Result<String, Error> {
        match member.value.as_str() {
            Some(s) => self.substitute(s, member.value.span),
            None => Err(self.wrong_type(
                what,
                &member.value,
                "a string",
                &format!("write it in quotes: `{example}`"),
            )),
        }
    }

    fn substitute(&self, text: &str, span: Span) -> Result<String, Error> {
        variables::substitute(text, &self.context).map_err(|MissingName { reference }| {
            self.error(
                span,
                format!("`{reference}` names no environment variable"),
                "write `${localEnv:NAME}`, or `${localEnv:NAME:default}` for a default",
            )
        })
    }

    fn unsupported(&self, member: &Member, kind: &str) -> Error {
        self.error(
            member.key_span,
            format!(
                "`{}`: {kind} sources are not supported by the local engine, found `{}`",
                member.key,
                self.doc.snippet(member.value.span)
            ),
            "use `image` with a prebuilt base image; the BuildKit engine will build from \
             Dockerfiles and Compose files",
        )
    }

    fn wrong_type(&self, what: &str, value: &Value, expected: &str, hint: &str) -> Error {
        self.error(
            value.span,
            format!(
                "{what} must be {expected}, found {}",
                found(self.doc, value)
            ),
            hint,
        )
    }

    fn error(&self, span: Span, message: String, hint: &str) -> Error {
        Error::Invalid {
            location: self.doc.location(span.start),
            message,
            hint: Some(hint.to_string()),
        }
    }
}

/// The member for `key` unless it is absent or `null`.
fn set<'o>(object: &'o Object, key: &str) -> Option<&'o Member> {
    object.get(key).filter(|m| m.value.kind != Kind::Null)
}

/// `a number `42``, for messages; `null` alone for null.
fn found(doc: &Document, value: &Value) -> String {
    match value.kind {
        Kind::Null => "`null`".into(),
        _ => format!("{} `{}`", value.type_name(), doc.snippet(value.span)),
    }
}

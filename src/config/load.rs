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
use super::{
    metadata, Config, DockerfileSource, Error, FeatureEntry, FeatureOptions, ImageSource,
    OptionValue, Source,
};

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

/// Lists the `<folder>/<name>/devcontainer.json` files, sorted.
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
        config_dir: &config_dir,
        context: variables::Context {
            local_workspace_folder: &workspace,
            local_env,
        },
    };

    Ok(Config {
        file: file.to_path_buf(),
        source: reader.source(object, root.span)?,
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

/// Returns the project folder of a config file: the folder that contains `.devcontainer/` for
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
    /// The folder of the file, which relative Dockerfile and context paths start from.
    config_dir: &'a Path,
    context: variables::Context<'a>,
}

impl Reader<'_> {
    fn source(&self, root: &Object, root_span: Span) -> Result<Source, Error> {
        if let Some(compose) = set(root, "dockerComposeFile") {
            return Err(self.unsupported(compose, "Docker Compose"));
        }
        let build = set(root, "build");
        let build_object = match build {
            Some(member) => Some(member.value.as_object().ok_or_else(|| {
                self.wrong_type(
                    "`build`",
                    &member.value,
                    "an object",
                    "write `\"build\": { \"dockerfile\": \"Dockerfile\" }`",
                )
            })?),
            None => None,
        };
        if let Some(legacy) = set(root, "dockerFile") {
            let dockerfile = (legacy, "`dockerFile`");
            let context = set(root, "context").map(|c| (c, "`context`"));
            return self.dockerfile(legacy, dockerfile, context, build_object);
        }
        if let (Some(member), Some(object)) = (build, build_object) {
            match set(object, "dockerfile") {
                Some(dockerfile) => {
                    let dockerfile = (dockerfile, "`build.dockerfile`");
                    let context = set(object, "context").map(|c| (c, "`build.context`"));
                    return self.dockerfile(member, dockerfile, context, Some(object));
                }
                // `build` without a `dockerfile` only carries settings; next to `image` it is
                // unused.
                None if set(root, "image").is_none() => {
                    return Err(self.error(
                        member.key_span,
                        format!(
                            "`build` names no `dockerfile`, found `{}`",
                            self.doc.snippet(member.value.span)
                        ),
                        "add `\"dockerfile\": \"Dockerfile\"` to `build`, or name a prebuilt \
                         base with `image`",
                    ));
                }
                None => {}
            }
        }
        self.image(root, root_span).map(Source::Image)
    }

    /// Reads a Dockerfile source: `key` is the `build` or `dockerFile` member, `dockerfile` and
    /// `context` the members naming the file and the folder with their names for messages,
    /// `build` the `build` object with the other settings. Whether the paths exist is checked
    /// when the Dockerfile is built.
    fn dockerfile(
        &self,
        key: &Member,
        (dockerfile, subject): (&Member, &str),
        context: Option<(&Member, &str)>,
        build: Option<&Object>,
    ) -> Result<Source, Error> {
        let path = self.string(dockerfile, subject, "\"dockerfile\": \"Dockerfile\"")?;
        let context_dir = match context {
            Some((context, name)) => {
                self.config_dir
                    .join(self.string(context, name, "\"context\": \"..\"")?)
            }
            None => self.config_dir.to_path_buf(),
        };

        let mut source = DockerfileSource {
            dockerfile: self.config_dir.join(path),
            context: context_dir,
            args: Vec::new(),
            target: None,
            cache_from: Vec::new(),
            options: Vec::new(),
            location: self.doc.location(key.key_span.start),
            key: key.key.clone(),
            snippet: self.doc.snippet(key.value.span),
        };
        let Some(build) = build else {
            return Ok(Source::Dockerfile(source));
        };
        if let Some(args) = set(build, "args") {
            let Some(args) = args.value.as_object() else {
                return Err(self.wrong_type(
                    "`build.args`",
                    &args.value,
                    "an object",
                    "write `\"args\": { \"NAME\": \"value\" }`",
                ));
            };
            for arg in args {
                let name = &arg.key;
                let example = format!("\"{name}\": \"value\"");
                let value = self.string(arg, &format!("`build.args.{name}`"), &example)?;
                source.args.push((name.clone(), value));
            }
        }
        if let Some(target) = set(build, "target") {
            source.target = Some(self.string(target, "`build.target`", "\"target\": \"dev\"")?);
        }
        if let Some(cache_from) = set(build, "cacheFrom") {
            source.cache_from = self.strings(cache_from, "build.cacheFrom", true)?;
        }
        if let Some(options) = set(build, "options") {
            source.options = self.strings(options, "build.options", false)?;
        }
        Ok(Source::Dockerfile(source))
    }

    /// Reads the array of strings at property `name`, or a single string when `single` allows it.
    fn strings(&self, member: &Member, name: &str, single: bool) -> Result<Vec<String>, Error> {
        if single {
            if let Some(text) = member.value.as_str() {
                return Ok(vec![self.substitute(text, member.value.span)?]);
            }
        }
        let expected = match single {
            true => "a string or an array of strings",
            false => "an array of strings",
        };
        let Some(items) = member.value.as_array() else {
            let subject = format!("`{name}`");
            return Err(self.wrong_type(&subject, &member.value, expected, "write `[\"...\"]`"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.as_str() {
                Some(text) => self.substitute(text, item.span),
                None => Err(self.wrong_type(
                    &format!("`{name}[{i}]`"),
                    item,
                    "a string",
                    "write it in quotes",
                )),
            })
            .collect()
    }

    fn image(&self, root: &Object, root_span: Span) -> Result<ImageSource, Error> {
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

    /// Returns the member's string value, substituted. `example` shows a correct property.
    fn string(&self, member: &Member, subject: &str, example: &str) -> Result<String, Error> {
        match member.value.as_str() {
            Some(s) => self.substitute(s, member.value.span),
            None => Err(self.wrong_type(
                subject,
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
                "`{}`: {kind} sources are not supported by envc, found `{}`",
                member.key,
                self.doc.snippet(member.value.span)
            ),
            "use `image` with a prebuilt base image, or `build.dockerfile` with \
             `--engine buildkit`; envc does not build Compose services",
        )
    }

    fn wrong_type(&self, subject: &str, value: &Value, expected: &str, hint: &str) -> Error {
        self.error(
            value.span,
            format!(
                "{subject} must be {expected}, found {}",
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

/// Returns the member for `key` unless it is absent or `null`.
fn set<'o>(object: &'o Object, key: &str) -> Option<&'o Member> {
    object.get(key).filter(|m| m.value.kind != Kind::Null)
}

/// Describes a value for messages, such as ``a number `42` ``, or `` `null` `` alone.
fn found(doc: &Document, value: &Value) -> String {
    match value.kind {
        Kind::Null => "`null`".into(),
        _ => format!("{} `{}`", value.type_name(), doc.snippet(value.span)),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Returns the image source of `config`, which the test expects to be an image config.
    fn image_of(config: &Config) -> &ImageSource {
        match &config.source {
            Source::Image(image) => image,
            Source::Dockerfile(dockerfile) => panic!("expected `image`, found {dockerfile:?}"),
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_NAME" => Some("alice".into()),
            "REGISTRY" => Some("127.0.0.1:5000".into()),
            _ => None,
        }
    }

    fn write(root: &Path, relative: &str, text: &str) -> PathBuf {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    /// Writes `text` as `.devcontainer/devcontainer.json` in a fresh workspace and loads it.
    fn load_text(text: &str) -> (tempfile::TempDir, Result<Config, Error>) {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), ".devcontainer/devcontainer.json", text);
        let result = load(&file, &env);
        (dir, result)
    }

    fn load_err(text: &str) -> (String, String) {
        let (dir, result) = load_text(text);
        let err = result.expect_err("expected an error");
        let prefix = format!("{}/", dir.path().display());
        (
            err.to_string().replace(&prefix, ""),
            err.hint().unwrap_or_default(),
        )
    }

    #[test]
    fn finds_the_default_locations_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(matches!(find_config(root, None), Err(Error::NotFound(p)) if p == root));

        let named = write(root, ".devcontainer/python/devcontainer.json", "{}");
        assert_eq!(find_config(root, None).unwrap(), named);

        let root_file = write(root, ".devcontainer.json", "{}");
        assert_eq!(find_config(root, None).unwrap(), root_file);

        let main = write(root, ".devcontainer/devcontainer.json", "{}");
        assert_eq!(find_config(root, None).unwrap(), main);
    }

    #[test]
    fn several_named_configs_are_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let rust = write(root, ".devcontainer/rust/devcontainer.json", "{}");
        let node = write(root, ".devcontainer/node/devcontainer.json", "{}");
        write(root, ".devcontainer/notes/readme.md", "not a config");

        let err = find_config(root, None).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("found 2 devcontainer.json files"),
            "{message}"
        );
        assert!(
            message.contains(&format!("`{}`, `{}`", node.display(), rust.display())),
            "{message}"
        );
        assert!(err
            .hint()
            .unwrap()
            .contains(&format!("--config {}", node.display())));
    }

    #[test]
    fn explicit_config_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let custom = write(dir.path(), "elsewhere/custom.json", "{}");
        write(dir.path(), ".devcontainer/devcontainer.json", "{}");
        assert_eq!(find_config(dir.path(), Some(&custom)).unwrap(), custom);

        let missing = dir.path().join("missing.json");
        let err = find_config(dir.path(), Some(&missing)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("config file `{}` does not exist", missing.display())
        );
        assert!(err.hint().unwrap().contains("--config"));
    }

    #[test]
    fn workspace_and_config_dir_follow_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let image = r#"{"image": "debian"}"#;
        let cases = [
            (".devcontainer/devcontainer.json", "", ".devcontainer"),
            (".devcontainer/go/devcontainer.json", "", ".devcontainer/go"),
            (".devcontainer.json", "", ""),
            ("configs/custom.json", "configs", "configs"),
        ];
        for (relative, workspace, config_dir) in cases {
            let file = write(root, relative, image);
            let config = load(&file, &env).unwrap();
            assert_eq!(config.workspace, root.join(workspace), "{relative}");
            assert_eq!(config.config_dir, root.join(config_dir), "{relative}");
            assert_eq!(config.file, file);
        }
    }

    #[test]
    fn loads_every_image_property() {
        let text = r#"
// comment
{
    "name": "demo",
    "image": "${localEnv:REGISTRY}/debian:${localEnv:TAG:bookworm}",
    "features": {
        "./features/b": { "user": "${localEnv:USER_NAME}", "flag": true, "count": 3, "ratio": 1.5 },
        "ghcr.io/devcontainers/features/git:1": "${localEnv:GIT:latest}",
        "./features/a": {},
    },
    "overrideFeatureInstallOrder": ["./features/a", "./features/b"],
    "containerEnv": { "Z": "${localWorkspaceFolderBasename}", "A": "${containerEnv:PATH}" },
    "containerUser": "root",
    "remoteUser": "${localEnv:USER_NAME}",
    "updateRemoteUserUID": false,
    "unknownProperty": [1, 2, 3],
}
"#;
        let (dir, result) = load_text(text);
        let config = result.unwrap();
        let file = dir.path().join(".devcontainer/devcontainer.json");

        assert_eq!(
            image_of(&config).reference,
            "127.0.0.1:5000/debian:bookworm"
        );
        assert_eq!(
            image_of(&config).location.to_string(),
            format!("{}:5:14", file.display())
        );

        let refs: Vec<_> = config
            .features
            .iter()
            .map(|f| f.reference.as_str())
            .collect();
        assert_eq!(
            refs,
            [
                "./features/b",
                "ghcr.io/devcontainers/features/git:1",
                "./features/a"
            ]
        );
        assert_eq!(
            (
                config.features[0].location.line,
                config.features[0].location.column
            ),
            (7, 9)
        );
        let FeatureOptions::Map(options) = &config.features[0].options else {
            panic!("expected options, got {:?}", config.features[0].options);
        };
        let values: Vec<_> = options
            .iter()
            .map(|(k, (v, _))| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(
            values,
            [
                ("count", OptionValue::String("3".into())),
                ("flag", OptionValue::Bool(true)),
                ("ratio", OptionValue::String("1.5".into())),
                ("user", OptionValue::String("alice".into())),
            ]
        );
        assert_eq!(options["user"].1.column, 35);
        assert_eq!(
            config.features[1].options,
            FeatureOptions::Shorthand("latest".into())
        );
        assert_eq!(
            config.features[2].options,
            FeatureOptions::Map(BTreeMap::new())
        );

        let order: Vec<_> = config
            .override_install_order
            .iter()
            .map(|(id, at)| (id.as_str(), at.line, at.column))
            .collect();
        assert_eq!(order, [("./features/a", 11, 37), ("./features/b", 11, 53)]);

        let basename = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            config.container_env,
            [
                ("Z".to_string(), basename),
                ("A".to_string(), "${containerEnv:PATH}".to_string())
            ]
        );
        assert_eq!(config.container_user.as_deref(), Some("root"));
        assert_eq!(config.remote_user.as_deref(), Some("alice"));
        assert_eq!(config.update_remote_user_uid, Some(false));

        let entry = serde_json::Value::Object(config.metadata_entry);
        assert_eq!(
            entry,
            serde_json::json!({
                "containerEnv": { "Z": "${localWorkspaceFolderBasename}", "A": "${containerEnv:PATH}" },
                "containerUser": "root",
                "remoteUser": "${localEnv:USER_NAME}",
                "updateRemoteUserUID": false,
            })
        );
    }

    #[test]
    fn null_properties_count_as_unset() {
        let text = r#"{"image": "debian", "features": null, "containerEnv": null, "remoteUser": null,
            "overrideFeatureInstallOrder": null, "updateRemoteUserUID": null, "build": null}"#;
        let (_dir, result) = load_text(text);
        let config = result.unwrap();
        assert!(config.features.is_empty());
        assert!(config.container_env.is_empty());
        assert!(config.remote_user.is_none());
        assert!(config.update_remote_user_uid.is_none());
        assert!(config.override_install_order.is_empty());
        // The label keeps keys that are present, even as `null`, as the reference does.
        assert_eq!(config.metadata_entry["remoteUser"], serde_json::Value::Null);
    }

    #[test]
    fn dockerfile_source_paths_and_settings() {
        let (dir, result) = load_text(
            r#"{
              "image": "ignored",
              "build": {
                "dockerfile": "../docker/Dockerfile",
                "context": "..",
                "args": {"B": "2", "A": "${localEnv:USER_NAME}"},
                "target": "dev",
                "cacheFrom": "127.0.0.1:5000/cache",
                "options": ["--add-host=db:127.0.0.1"]
              }
            }"#,
        );
        let config = result.unwrap();
        let Source::Dockerfile(source) = &config.source else {
            panic!("expected a Dockerfile source, got {:?}", config.source);
        };
        let folder = dir.path().join(".devcontainer");
        assert_eq!(source.dockerfile, folder.join("../docker/Dockerfile"));
        assert_eq!(source.context, folder.join(".."));
        let args: Vec<(&str, &str)> = source
            .args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(args, [("B", "2"), ("A", "alice")]);
        assert_eq!(source.target.as_deref(), Some("dev"));
        assert_eq!(source.cache_from, ["127.0.0.1:5000/cache"]);
        assert_eq!(source.options, ["--add-host=db:127.0.0.1"]);
        assert_eq!((source.location.line, source.location.column), (3, 15));
        assert_eq!(source.key, "build");
    }

    #[test]
    fn legacy_dockerfile_defaults_context() {
        let (dir, result) = load_text(r#"{"dockerFile": "Dockerfile"}"#);
        let Source::Dockerfile(source) = result.unwrap().source else {
            panic!("expected a Dockerfile source");
        };
        let folder = dir.path().join(".devcontainer");
        assert_eq!(source.dockerfile, folder.join("Dockerfile"));
        assert_eq!(source.context, folder);
        assert_eq!(source.key, "dockerFile");
    }

    #[test]
    fn build_settings_next_to_image_are_ignored() {
        let (_dir, result) = load_text(r#"{"image": "debian", "build": {"args": {"A": "1"}}}"#);
        assert_eq!(image_of(&result.unwrap()).reference, "debian");
    }

    #[test]
    fn invalid_configs_name_position_value_and_fix() {
        let file = ".devcontainer/devcontainer.json";
        // (text, start of the message, fragment of the hint)
        let cases: &[(&str, &str, &str)] = &[
            ("{\"image\": 42}", "1:11: `image` must be a string, found a number `42`", "\"image\": \"debian:bookworm\""),
            ("{\"image\": \"  \"}", "1:11: `image` is empty, found `\"  \"`", "name the base image"),
            ("{\"name\": \"x\"}", "1:1: no `image` property", "add `\"image\""),
            ("[1]", "1:1: the file must hold a JSON object, found an array `[1]`", "as an object"),
            ("{\"build\": {\"context\": \"..\"}}", "1:2: `build` names no `dockerfile`, found `{\"context\": \"..\"}`", "add `\"dockerfile\""),
            ("{\"build\": 3}", "1:11: `build` must be an object, found a number `3`", "\"dockerfile\": \"Dockerfile\""),
            ("{\"build\": {\"dockerfile\": 1}}", "1:26: `build.dockerfile` must be a string, found a number `1`", "\"dockerfile\": \"Dockerfile\""),
            ("{\"build\": {\"dockerfile\": \"D\", \"args\": [\"A=1\"]}}", "1:39: `build.args` must be an object, found an array `[\"A=1\"]`", "\"NAME\": \"value\""),
            ("{\"build\": {\"dockerfile\": \"D\", \"args\": {\"A\": 1}}}", "1:45: `build.args.A` must be a string, found a number `1`", "\"A\": \"value\""),
            ("{\"build\": {\"dockerfile\": \"D\", \"options\": \"--pull\"}}", "1:42: `build.options` must be an array of strings, found a string `\"--pull\"`", "[\""),
            ("{\"build\": {\"dockerfile\": \"D\", \"cacheFrom\": [2]}}", "1:45: `build.cacheFrom[0]` must be a string, found a number `2`", "in quotes"),
            ("{\"image\": \"x\", \"dockerComposeFile\": [\"a.yml\"], \"service\": \"app\"}",
             "1:16: `dockerComposeFile`: Docker Compose sources are not supported by envc, found `[\"a.yml\"]`",
             "`--engine buildkit`"),
            ("{\"image\": \"x\", \"features\": [\"git\"]}", "1:28: `features` must be an object, found an array `[\"git\"]`", "\"features\": {"),
            ("{\"image\": \"x\", \"features\": {\"./f\": true}}",
             "1:36: Feature `./f` must be an object of options or a version string, found a boolean `true`",
             "`\"./f\": {}`"),
            ("{\"image\": \"x\", \"features\": {\"./f\": {\"opt\": [1]}}}",
             "1:44: option `opt` of Feature `./f` must be a string, a boolean or a number, found an array `[1]`",
             "`\"opt\": \"value\"`"),
            ("{\"image\": \"x\", \"features\": {\"./f\": {\"opt\": null}}}",
             "1:44: option `opt` of Feature `./f` must be a string, a boolean or a number, found `null`",
             "`\"opt\": true`"),
            ("{\"image\": \"x\", \"overrideFeatureInstallOrder\": \"./f\"}",
             "1:47: `overrideFeatureInstallOrder` must be an array of Feature ids, found a string `\"./f\"`",
             "[\"FEATURE-ID\", ...]"),
            ("{\"image\": \"x\", \"overrideFeatureInstallOrder\": [\"a\", {}]}",
             "1:53: `overrideFeatureInstallOrder[1]` must be a string, found an object `{}`",
             "as a string"),
            ("{\"image\": \"x\", \"containerEnv\": [\"A=1\"]}", "1:32: `containerEnv` must be an object, found an array `[\"A=1\"]`", "\"NAME\": \"value\""),
            ("{\"image\": \"x\", \"containerEnv\": {\"PORT\": 8080}}",
             "1:41: `containerEnv.PORT` must be a string, found a number `8080`",
             "`\"PORT\": \"value\"`"),
            ("{\"image\": \"x\", \"containerUser\": 0}", "1:33: `containerUser` must be a string, found a number `0`", "\"containerUser\": \"vscode\""),
            ("{\"image\": \"x\", \"remoteUser\": false}", "1:30: `remoteUser` must be a string, found a boolean `false`", "in quotes"),
            ("{\"image\": \"x\", \"updateRemoteUserUID\": \"true\"}",
             "1:39: `updateRemoteUserUID` must be a boolean, found a string `\"true\"`",
             "without quotes"),
            ("{\"image\": \"x:${localEnv}\"}", "1:11: `${localEnv}` names no environment variable", "${localEnv:NAME}"),
            ("{\"image\": \"x\", \"containerEnv\": {\"A\": \"${env}\"}}", "1:38: `${env}` names no environment variable", "${localEnv:NAME}"),
            ("{\"image\": \"x\",, }", "1:15: invalid JSON: unexpected token in object at `,`", "comments"),
            ("{\n  \"image\": \"x\"\n  \"remoteUser\": \"dev\"\n}", "3:3: invalid JSON: expected comma at `\"remoteUser\"`", "trailing commas"),
        ];
        for (text, message, hint) in cases {
            let (got, got_hint) = load_err(text);
            let expected = format!("{file}:{message}");
            assert!(
                got.starts_with(&expected),
                "for {text}:\n got  {got}\n want {expected}"
            );
            assert!(
                got_hint.contains(hint),
                "for {text}: hint {got_hint:?} lacks {hint:?}"
            );
        }
    }

    #[test]
    fn unreadable_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join(".devcontainer/devcontainer.json");
        let err = load(&missing, &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("failed to read `{}`", missing.display())
        );

        let binary = write(dir.path(), "bad.json", "");
        fs::write(&binary, [0xff, 0xfe, b'{', b'}']).unwrap();
        let err = load(&binary, &env).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err:?}");
    }

    #[test]
    fn duplicate_keys_use_the_last_value() {
        let (_dir, result) = load_text(r#"{"image": "a", "remoteUser": "x", "image": "b"}"#);
        let config = result.unwrap();
        assert_eq!(image_of(&config).reference, "b");
        assert_eq!(image_of(&config).location.column, 44);
    }

    /// The anchor benchmark project of the acceptance build.
    #[test]
    fn loads_the_anchor_project() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/anchor-project");
        let file = find_config(&root, None).unwrap();
        let config = load(&file, &env).unwrap();
        assert_eq!(config.workspace, root);
        assert_eq!(
            image_of(&config).reference,
            "127.0.0.1:5000/debian:bookworm"
        );
        let refs: Vec<_> = config
            .features
            .iter()
            .map(|f| f.reference.as_str())
            .collect();
        assert_eq!(
            refs,
            [
                "./features/base-user",
                "./features/data-pack",
                "./features/shell-env",
                "./features/app-tool"
            ]
        );
        let FeatureOptions::Map(base_user) = &config.features[0].options else {
            panic!("expected options");
        };
        assert_eq!(base_user["userUid"].0, OptionValue::String("1001".into()));
        assert_eq!(base_user["createHome"].0, OptionValue::Bool(true));
        assert_eq!(config.remote_user.as_deref(), Some("dev"));
        assert_eq!(config.container_env.len(), 2);
        let keys: Vec<_> = config.metadata_entry.keys().map(String::as_str).collect();
        assert_eq!(keys, ["customizations", "containerEnv", "remoteUser"]);
    }

    /// Every devcontainer.json of the real-world corpus loads, or fails with the error for a
    /// source the local engine cannot build.
    #[test]
    fn real_world_configs_load_or_fail_clearly() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/corpus");
        // (workspace, config, Ok(image) or Err(start of the message after the location))
        let cases: &[(&str, Option<&str>, Result<&str, &str>)] = &[
            (
                "devcontainers__cli",
                None,
                Ok("Dockerfile .devcontainer/Dockerfile"),
            ),
            (
                "devcontainers__images/src/universal",
                None,
                Ok("Dockerfile .devcontainer/./Dockerfile"),
            ),
            (
                "devcontainers__templates/src/docker-outside-of-docker-compose",
                None,
                Err("`dockerComposeFile`: Docker Compose sources are not supported"),
            ),
            (
                "home-assistant__core",
                None,
                Ok("Dockerfile .devcontainer/../Dockerfile.dev"),
            ),
            (
                "kubernetes__kubernetes",
                None,
                Ok("mcr.microsoft.com/devcontainers/base:bullseye"),
            ),
            (
                "mastodon__mastodon",
                None,
                Err("`dockerComposeFile`: Docker Compose sources"),
            ),
            (
                "mastodon__mastodon",
                Some(".devcontainer/codespaces/devcontainer.json"),
                Err("`dockerComposeFile`: Docker Compose sources"),
            ),
            (
                "microsoft__TypeScript",
                None,
                Ok("mcr.microsoft.com/devcontainers/javascript-node:1-22-bookworm"),
            ),
            (
                "pytorch__pytorch",
                None,
                Ok("Dockerfile .devcontainer/cpu/../Dockerfile"),
            ),
            (
                "rails__rails",
                None,
                Err("`dockerComposeFile`: Docker Compose sources"),
            ),
        ];

        let mut covered = Vec::new();
        for (workspace, explicit, expected) in cases {
            let root = corpus.join(workspace);
            let explicit = explicit.map(|e| root.join(e));
            let file = find_config(&root, explicit.as_deref()).unwrap();
            covered.push(file.clone());
            match (load(&file, &env), expected) {
                (Ok(config), Ok(expected)) => {
                    let got = match &config.source {
                        Source::Image(image) => image.reference.clone(),
                        Source::Dockerfile(dockerfile) => format!(
                            "Dockerfile {}",
                            dockerfile.dockerfile.strip_prefix(&root).unwrap().display()
                        ),
                    };
                    assert!(got.starts_with(expected), "{}: {got}", file.display());
                }
                (
                    Err(Error::Invalid {
                        location,
                        message,
                        hint,
                    }),
                    Err(start),
                ) => {
                    assert_eq!(location.file, file);
                    assert!(message.starts_with(start), "{}: {message}", file.display());
                    assert!(hint.unwrap().contains("--engine buildkit"));
                }
                (got, _) => panic!("{}: unexpected {got:?}", file.display()),
            }
        }

        // No file of the corpus is left out of the table.
        let mut all = Vec::new();
        collect_configs(&corpus, &mut all);
        all.sort();
        covered.sort();
        assert_eq!(all, covered);
    }

    fn collect_configs(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect_configs(&path, found);
            } else if path
                .file_name()
                .is_some_and(|n| n == FILE || n == ROOT_FILE)
            {
                found.push(path);
            }
        }
    }
}

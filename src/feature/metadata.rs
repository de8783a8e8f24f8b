//! `devcontainer-feature.json`: parsing (JSONC), shape checks, and the install command.

use std::path::{Path, PathBuf};

use jsonc_parser::ast::{ObjectPropName, Value as Ast};
use serde_json::{Map, Value};

use super::Error;
use crate::config::Location;

/// The metadata file of a v2 Feature.
pub const METADATA_FILE: &str = "devcontainer-feature.json";

/// The install script of a Feature.
pub const INSTALL_SCRIPT: &str = "install.sh";

/// A parsed `devcontainer-feature.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMetadata {
    /// The file it was read from.
    pub file: PathBuf,
    pub id: String,
    pub version: Option<String>,
    pub name: Option<String>,
    /// Declared options in the order written.
    pub options: Vec<(String, OptionSpec)>,
    /// `containerEnv` in the order written.
    pub container_env: Vec<(String, String)>,
    /// `dependsOn` keys and their option objects, in the order written.
    pub depends_on: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
    pub installs_after: Vec<String>,
    pub legacy_ids: Vec<String>,
    /// The whole document, for the metadata label and the SBOM.
    pub raw: serde_json::Map<String, serde_json::Value>,
    /// Where the entries above were written, for error messages.
    pub locations: MetadataLocations,
}

/// Source positions of the entries of a [`FeatureMetadata`], index for index.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetadataLocations {
    pub options: Vec<Location>,
    pub depends_on: Vec<Location>,
    pub installs_after: Vec<Location>,
}

/// A declared option.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionSpec {
    Boolean {
        default: bool,
    },
    /// A string option; with `enum_values` the value must be one of them, `proposals` are hints.
    String {
        default: String,
        enum_values: Option<Vec<String>>,
        proposals: Vec<String>,
    },
}

impl FeatureMetadata {
    /// The id the Feature goes by now (`currentId` when a renamed Feature declares it), then
    /// its legacy ids: every name that refers to this Feature in its namespace.
    pub fn aliases(&self) -> Vec<&str> {
        let current = self
            .raw
            .get("currentId")
            .and_then(Value::as_str)
            .unwrap_or(&self.id);
        std::iter::once(current)
            .chain(self.legacy_ids.iter().map(String::as_str))
            .collect()
    }

    /// The declared option `id`.
    pub fn option(&self, id: &str) -> Option<&OptionSpec> {
        self.options
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, spec)| spec)
    }
}

/// Reads and checks the `devcontainer-feature.json` in `dir`.
///
/// # Errors
///
/// [`Error::MissingFile`] when the file is absent, [`Error::Metadata`] with `file:line:column`
/// when it is malformed or has the wrong shape.
pub fn read_metadata(dir: &Path) -> Result<FeatureMetadata, Error> {
    let file = dir.join(METADATA_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingFile {
                feature: dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                file: METADATA_FILE,
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io("read", file, e)),
    };
    parse_metadata(&text, &file)
}

/// Parses the text of a `devcontainer-feature.json` read from `file`.
pub fn parse_metadata(text: &str, file: &Path) -> Result<FeatureMetadata, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = LineIndex { text, file };
    let parsed = jsonc_parser::parse_to_ast(text, &Default::default(), &Default::default())
        .map_err(|e| Error::Metadata {
            location: Location {
                file: file.to_path_buf(),
                line: e.line_display(),
                column: e.column_display(),
            },
            message: format!("invalid JSON: {}", e.kind()),
            hint: Some("fix the syntax of the Feature's metadata file".into()),
        })?;
    let Some(Ast::Object(root)) = parsed.value else {
        return Err(lines.error(
            0,
            "the document is not a JSON object",
            "write an object `{ \"id\": ... }`",
        ));
    };

    let mut metadata = FeatureMetadata {
        file: file.to_path_buf(),
        id: String::new(),
        version: None,
        name: None,
        options: Vec::new(),
        container_env: Vec::new(),
        depends_on: Vec::new(),
        installs_after: Vec::new(),
        legacy_ids: Vec::new(),
        raw: Map::new(),
        locations: MetadataLocations::default(),
    };
    let mut saw_id = false;
    for prop in &root.properties {
        let key = prop_name(&prop.name);
        match key.as_str() {
            "id" => {
                metadata.id = lines.string(&prop.value, "`id`")?;
                saw_id = true;
            }
            "version" => metadata.version = Some(lines.string(&prop.value, "`version`")?),
            "name" => metadata.name = Some(lines.string(&prop.value, "`name`")?),
            "options" => {
                for (name, value, at) in lines.object(&prop.value, "`options`")? {
                    let spec = lines.option(&name, value)?;
                    metadata.options.push((name, spec));
                    metadata.locations.options.push(lines.location(at));
                }
            }
            "containerEnv" => {
                for (name, value, _) in lines.object(&prop.value, "`containerEnv`")? {
                    let value = lines.string(value, &format!("`containerEnv.{name}`"))?;
                    metadata.container_env.push((name, value));
                }
            }
            "dependsOn" => {
                for (name, value, at) in lines.object(&prop.value, "`dependsOn`")? {
                    let Value::Object(options) = to_json(value) else {
                        return Err(lines.error(
                            range_start(value),
                            &format!("`dependsOn` entry `{name}` must be an object of options"),
                            "write `{}` when the dependency takes no options",
                        ));
                    };
                    metadata.depends_on.push((name, options));
                    metadata.locations.depends_on.push(lines.location(at));
                }
            }
            "installsAfter" => {
                for (value, at) in lines.strings(&prop.value, "`installsAfter`")? {
                    metadata.installs_after.push(value);
                    metadata.locations.installs_after.push(lines.location(at));
                }
            }
            "legacyIds" => {
                metadata.legacy_ids = lines
                    .strings(&prop.value, "`legacyIds`")?
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect()
            }
            _ => {}
        }
        metadata.raw.insert(key, to_json(&prop.value));
    }
    if !saw_id || metadata.id.is_empty() {
        return Err(lines.error(
            root.range.start,
            "the Feature has no `id`",
            "add `\"id\"`, equal to the Feature's folder name",
        ));
    }
    Ok(metadata)
}

/// The command that runs a Feature's `install.sh` from inside its folder: the interpreter of
/// the `#!` line with its optional single argument, or `/bin/sh`.
///
/// # Errors
///
/// [`Error::MissingFile`] naming the folder when `install.sh` is absent.
pub fn install_command(dir: &Path) -> Result<Vec<String>, Error> {
    let script = dir.join(INSTALL_SCRIPT);
    let bytes = match std::fs::read(&script) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingFile {
                feature: dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                file: INSTALL_SCRIPT,
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io("read", script, e)),
    };
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let first_line = String::from_utf8_lossy(first_line);
    let run = format!("./{INSTALL_SCRIPT}");
    let Some(shebang) = first_line.strip_prefix("#!") else {
        return Ok(vec!["/bin/sh".into(), run]);
    };
    let shebang = shebang.trim();
    let (interpreter, argument) = match shebang.split_once([' ', '\t']) {
        Some((interpreter, rest)) => (interpreter, rest.trim()),
        None => (shebang, ""),
    };
    if interpreter.is_empty() {
        return Ok(vec!["/bin/sh".into(), run]);
    }
    let mut argv = vec![interpreter.to_string()];
    if !argument.is_empty() {
        argv.push(argument.to_string());
    }
    argv.push(run);
    Ok(argv)
}

fn prop_name(name: &ObjectPropName<'_>) -> String {
    match name {
        ObjectPropName::String(s) => s.value.to_string(),
        ObjectPropName::Word(w) => w.value.to_string(),
    }
}

fn range_start(value: &Ast<'_>) -> usize {
    match value {
        Ast::StringLit(v) => v.range.start,
        Ast::NumberLit(v) => v.range.start,
        Ast::BooleanLit(v) => v.range.start,
        Ast::Object(v) => v.range.start,
        Ast::Array(v) => v.range.start,
        Ast::NullKeyword(v) => v.range.start,
    }
}

fn type_name(value: &Ast<'_>) -> &'static str {
    match value {
        Ast::StringLit(_) => "a string",
        Ast::NumberLit(_) => "a number",
        Ast::BooleanLit(_) => "a boolean",
        Ast::Object(_) => "an object",
        Ast::Array(_) => "an array",
        Ast::NullKeyword(_) => "null",
    }
}

/// Converts a JSONC value to JSON, keeping key order.
fn to_json(value: &Ast<'_>) -> Value {
    match value {
        Ast::StringLit(s) => Value::String(s.value.to_string()),
        Ast::NumberLit(n) => serde_json::from_str::<serde_json::Number>(n.value)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(n.value.to_string())),
        Ast::BooleanLit(b) => Value::Bool(b.value),
        Ast::NullKeyword(_) => Value::Null,
        Ast::Array(a) => Value::Array(a.elements.iter().map(to_json).collect()),
        Ast::Object(o) => Value::Object(
            o.properties
                .iter()
                .map(|p| (prop_name(&p.name), to_json(&p.value)))
                .collect(),
        ),
    }
}

/// Turns byte offsets into locations and builds shape errors.
struct LineIndex<'a> {
    text: &'a str,
    file: &'a Path,
}

impl LineIndex<'_> {
    fn location(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    fn error(&self, offset: usize, message: &str, hint: &str) -> Error {
        Error::Metadata {
            location: self.location(offset),
            message: message.to_string(),
            hint: Some(hint.to_string()),
        }
    }

    fn wrong_type(&self, value: &Ast<'_>, what: &str, expected: &str) -> Error {
        self.error(
            range_start(value),
            &format!("{what} must be {expected}, not {}", type_name(value)),
            &format!("write {what} as {expected}"),
        )
    }

    fn string(&self, value: &Ast<'_>, what: &str) -> Result<String, Error> {
        match value {
            Ast::StringLit(s) => Ok(s.value.to_string()),
            other => Err(self.wrong_type(other, what, "a string")),
        }
    }

    fn strings(&self, value: &Ast<'_>, what: &str) -> Result<Vec<(String, usize)>, Error> {
        let Ast::Array(array) = value else {
            return Err(self.wrong_type(value, what, "an array of strings"));
        };
        array
            .elements
            .iter()
            .map(|element| match element {
                Ast::StringLit(s) => Ok((s.value.to_string(), s.range.start)),
                other => Err(self.wrong_type(other, &format!("each entry of {what}"), "a string")),
            })
            .collect()
    }

    fn object<'v, 'a>(
        &self,
        value: &'v Ast<'a>,
        what: &str,
    ) -> Result<Vec<(String, &'v Ast<'a>, usize)>, Error> {
        let Ast::Object(object) = value else {
            return Err(self.wrong_type(value, what, "an object"));
        };
        Ok(object
            .properties
            .iter()
            .map(|p| (prop_name(&p.name), &p.value, p.range.start))
            .collect())
    }

    fn option(&self, name: &str, value: &Ast<'_>) -> Result<OptionSpec, Error> {
        let what = format!("option `{name}`");
        let Ast::Object(object) = value else {
            return Err(self.wrong_type(value, &what, "an object"));
        };
        let field = |key: &str| object.properties.iter().find(|p| prop_name(&p.name) == key);
        let Some(kind) = field("type") else {
            return Err(self.error(
                object.range.start,
                &format!("{what} has no `type`"),
                "add `\"type\": \"string\"` or `\"type\": \"boolean\"`",
            ));
        };
        let kind_name = self.string(&kind.value, &format!("`type` of {what}"))?;
        let default = field("default");
        match kind_name.as_str() {
            "boolean" => match default.map(|d| &d.value) {
                Some(Ast::BooleanLit(b)) => Ok(OptionSpec::Boolean { default: b.value }),
                Some(other) => Err(self.wrong_type(
                    other,
                    &format!("the default of boolean {what}"),
                    "`true` or `false`",
                )),
                None => Err(self.error(
                    object.range.start,
                    &format!("boolean {what} has no `default`"),
                    "add `\"default\": false` or `\"default\": true`",
                )),
            },
            "string" => {
                let default = match default.map(|d| &d.value) {
                    Some(Ast::StringLit(s)) => s.value.to_string(),
                    Some(other) => {
                        return Err(self.wrong_type(
                            other,
                            &format!("the default of string {what}"),
                            "a string",
                        ))
                    }
                    None => {
                        return Err(self.error(
                            object.range.start,
                            &format!("string {what} has no `default`"),
                            "add a `\"default\"` string",
                        ))
                    }
                };
                let list = |key: &str| -> Result<Option<Vec<String>>, Error> {
                    field(key)
                        .map(|p| {
                            self.strings(&p.value, &format!("`{key}` of {what}"))
                                .map(|v| v.into_iter().map(|(s, _)| s).collect())
                        })
                        .transpose()
                };
                Ok(OptionSpec::String {
                    default,
                    enum_values: list("enum")?,
                    proposals: list("proposals")?.unwrap_or_default(),
                })
            }
            other => Err(self.error(
                range_start(&kind.value),
                &format!("{what} has unknown type `{other}`"),
                "use `\"string\"` or `\"boolean\"`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/features");

    fn parse(text: &str) -> Result<FeatureMetadata, Error> {
        parse_metadata(text, Path::new("/f/devcontainer-feature.json"))
    }

    #[test]
    fn every_corpus_feature_parses() {
        let dir = Path::new(TESTDATA).join("corpus");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let folder = entry.unwrap().path();
            let metadata = read_metadata(&folder).unwrap();
            assert_eq!(metadata.id, folder.file_name().unwrap().to_str().unwrap());
            assert!(metadata.version.is_some(), "{}", folder.display());
            assert!(!metadata.options.is_empty());
            assert_eq!(metadata.locations.options.len(), metadata.options.len());
            assert_eq!(metadata.raw["id"], metadata.id.as_str());
            count += 1;
        }
        assert_eq!(count, 8);
    }

    #[test]
    fn corpus_details_survive_parsing() {
        let dir = Path::new(TESTDATA).join("corpus");
        let dind = read_metadata(&dir.join("docker-in-docker")).unwrap();
        assert_eq!(
            dind.container_env,
            vec![("DOCKER_BUILDKIT".to_string(), "1".to_string())]
        );
        assert_eq!(
            dind.installs_after,
            vec!["ghcr.io/devcontainers/features/common-utils"]
        );
        assert_eq!(dind.raw["privileged"], true);

        let common = read_metadata(&dir.join("common-utils")).unwrap();
        assert_eq!(common.options[0].0, "installZsh");
        assert_eq!(
            common.option("installZsh"),
            Some(&OptionSpec::Boolean { default: true })
        );
        let keys: Vec<&str> = common.raw.keys().map(String::as_str).collect();
        assert_eq!(&keys[..3], &["id", "version", "name"]);
    }

    #[test]
    fn options_keep_their_order_and_shapes() {
        let metadata = parse(
            r#"// leading comment
            {
              "id": "x", "version": "1.0.0",
              "options": {
                "zeta": { "type": "string", "enum": ["a", "b"], "default": "a" },
                "alpha": { "type": "boolean", "default": false, },
                "mid": { "type": "string", "proposals": ["p"], "default": "" },
              },
              "containerEnv": { "Z": "1", "A": "${PATH}:/x" },
              "dependsOn": { "./b": {}, "ghcr.io/o/f/c:1": { "flag": true } },
              "installsAfter": ["./d"],
              "legacyIds": ["old-x"],
              "currentId": "x",
            }"#,
        )
        .unwrap();
        let names: Vec<&str> = metadata.options.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
        assert_eq!(
            metadata.options[0].1,
            OptionSpec::String {
                default: "a".into(),
                enum_values: Some(vec!["a".into(), "b".into()]),
                proposals: vec![]
            }
        );
        assert_eq!(metadata.container_env[0].0, "Z");
        assert_eq!(metadata.depends_on[1].0, "ghcr.io/o/f/c:1");
        assert_eq!(metadata.depends_on[1].1["flag"], true);
        assert_eq!(metadata.locations.depends_on[0].line, 10);
        assert_eq!(metadata.aliases(), ["x", "old-x"]);
    }

    #[test]
    fn malformed_metadata_names_file_line_and_column() {
        let cases: &[(&str, &str, &str)] = &[
            ("{ \"id\": \"x\", }\n}", "/f/devcontainer-feature.json:2:1", "invalid JSON"),
            ("[1]", ":1:1", "not a JSON object"),
            ("{\"version\": \"1\"}", ":1:1", "no `id`"),
            ("{\"id\": 3}", ":1:8", "`id` must be a string, not a number"),
            (
                "{\"id\": \"x\",\n \"options\": {\"a\": {\"type\": \"boolean\", \"default\": \"yes\"}}}",
                ":2:50",
                "default of boolean option `a` must be `true` or `false`, not a string",
            ),
            (
                "{\"id\": \"x\", \"options\": {\"a\": {\"type\": \"string\", \"default\": 1}}}",
                ":1:",
                "default of string option `a` must be a string",
            ),
            (
                "{\"id\": \"x\", \"options\": {\"a\": {\"type\": \"number\", \"default\": 1}}}",
                ":1:",
                "unknown type `number`",
            ),
            ("{\"id\": \"x\", \"options\": {\"a\": {\"default\": \"1\"}}}", ":1:", "no `type`"),
            ("{\"id\": \"x\", \"options\": {\"a\": {\"type\": \"boolean\"}}}", ":1:", "no `default`"),
            (
                "{\"id\": \"x\", \"options\": {\"a\": {\"type\": \"string\", \"default\": \"\", \"enum\": [1]}}}",
                ":1:",
                "each entry of `enum` of option `a` must be a string",
            ),
            ("{\"id\": \"x\", \"dependsOn\": {\"./a\": true}}", ":1:", "must be an object of options"),
            ("{\"id\": \"x\", \"installsAfter\": \"./a\"}", ":1:", "must be an array of strings"),
            ("{\"id\": \"x\", \"containerEnv\": {\"A\": 1}}", ":1:", "`containerEnv.A` must be a string"),
        ];
        for (text, at, message) in cases {
            let err = parse(text).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(at), "{text}: {shown}");
            assert!(shown.contains(message), "{text}: {shown}");
            assert!(err.hint().is_some());
            assert!(err.is_invalid_input());
        }
    }

    #[test]
    fn a_leading_bom_is_accepted() {
        assert_eq!(parse("\u{feff}{\"id\": \"x\"}").unwrap().id, "x");
    }

    fn command_for(script: Option<&str>) -> Result<Vec<String>, Error> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(script) = script {
            std::fs::write(dir.path().join(INSTALL_SCRIPT), script).unwrap();
        }
        install_command(dir.path())
    }

    #[test]
    fn install_command_follows_the_shebang() {
        let cases: &[(&str, &[&str])] = &[
            ("#!/bin/bash\necho", &["/bin/bash", "./install.sh"]),
            (
                "#!/usr/bin/env bash\n",
                &["/usr/bin/env", "bash", "./install.sh"],
            ),
            ("#! /bin/sh -e -u\n", &["/bin/sh", "-e -u", "./install.sh"]),
            ("echo hi\n", &["/bin/sh", "./install.sh"]),
            ("", &["/bin/sh", "./install.sh"]),
            ("#!\n", &["/bin/sh", "./install.sh"]),
        ];
        for (script, expected) in cases {
            assert_eq!(command_for(Some(script)).unwrap(), *expected, "{script:?}");
        }
    }

    #[test]
    fn a_missing_install_script_names_the_folder() {
        let err = command_for(None).unwrap_err();
        assert!(
            err.to_string().contains("has no `install.sh` in `/"),
            "{err}"
        );
    }
}

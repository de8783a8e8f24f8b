//! Feature references: OCI, tarball URL or local folder.
//!
//! Classification follows the reference CLI: a bare id is a legacy id (mapped onto
//! `ghcr.io/devcontainers/features` when the CLI maps it, an error otherwise), `https://` is a
//! tarball, `./` and `../` are local folders, and anything else is an OCI reference whose first
//! segment names a registry. The deprecated GitHub-release form (`owner/repo/feature`) is not
//! supported.

use std::path::{Component, Path, PathBuf};

use super::Error;
use crate::config::Location;
use crate::registry::ImageRef;

/// A Feature reference as written, with its parsed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureRef {
    /// The reference exactly as written in devcontainer.json or a `dependsOn` key.
    pub written: String,
    pub source: FeatureSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeatureSource {
    /// A folder under `.devcontainer/`, as an absolute path.
    Local { path: PathBuf },
    /// `registry/namespace/id[:tag|@sha256:...]`.
    Oci(crate::registry::ImageRef),
    /// An `https://.../devcontainer-feature-<id>.tgz` archive.
    Tarball { url: String },
}

/// Where legacy ids are published now.
pub const LEGACY_NAMESPACE: &str = "ghcr.io/devcontainers/features";

/// Legacy ids the reference CLI maps onto `ghcr.io/devcontainers/features/<id>:1`.
const MIGRATED_IDS: [&str; 18] = [
    "aws-cli",
    "azure-cli",
    "desktop-lite",
    "docker-in-docker",
    "docker-from-docker",
    "dotnet",
    "git",
    "git-lfs",
    "github-cli",
    "java",
    "kubectl-helm-minikube",
    "node",
    "powershell",
    "python",
    "ruby",
    "rust",
    "sshd",
    "terraform",
];

/// Legacy ids whose Feature was renamed.
const RENAMED_IDS: [(&str, &str); 2] = [("golang", "go"), ("common", "common-utils")];

/// Legacy ids folded into an option of another Feature: `(id, Feature, option)`.
pub const FOLDED_IDS: [(&str, &str, &str); 3] = [
    ("gradle", "java", "installGradle"),
    ("maven", "java", "installMaven"),
    ("jupyterlab", "python", "installJupyterlab"),
];

/// The namespace owner the reference CLI redirects, and where to.
const REDIRECTED_OWNER: (&str, &str) = ("devcontainers-contrib", "devcontainers-extra");

const LAYER_NAME_PREFIX: &str = "devcontainer-feature-";

impl FeatureRef {
    /// Parses `written`, resolving a local path against `config_dir` (the folder holding
    /// devcontainer.json). The `.devcontainer/` folder local Features must stay in is the
    /// nearest ancestor of `config_dir` named `.devcontainer`, or `config_dir/.devcontainer`
    /// for a `.devcontainer.json` at the workspace root.
    ///
    /// # Errors
    ///
    /// [`Error::Reference`] naming the reference, `location` and the fix.
    pub fn parse(written: &str, config_dir: &Path, location: &Location) -> Result<Self, Error> {
        let devcontainer_dir = devcontainer_dir_of(config_dir);
        Self::parse_in(written, config_dir, &devcontainer_dir, Some(location))
    }

    /// Like [`FeatureRef::parse`], with the `.devcontainer/` folder given.
    pub fn parse_in(
        written: &str,
        config_dir: &Path,
        devcontainer_dir: &Path,
        location: Option<&Location>,
    ) -> Result<Self, Error> {
        let fail = |reason: String, hint: &str| Error::Reference {
            reference: written.to_string(),
            location: location.cloned(),
            reason,
            hint: Some(hint.to_string()),
        };

        if written.is_empty() {
            return Err(fail("the reference is empty".into(), "name a Feature"));
        }
        if !written.contains('/') && !written.contains('\\') {
            let Some(mapped) = legacy_mapping(written) else {
                return Err(fail(
                    "a bare id is neither a local folder nor an OCI reference".into(),
                    &format!(
                        "write `./{written}` for a folder under `.devcontainer/`, or a full OCI \
                         reference such as `ghcr.io/OWNER/features/{written}:1`"
                    ),
                ));
            };
            tracing::info!(from = written, to = %mapped, "mapped legacy Feature id");
            let mut parsed = Self::parse_in(&mapped, config_dir, devcontainer_dir, location)?;
            parsed.written = written.to_string();
            return Ok(parsed);
        }

        let source = if written.starts_with("https://") {
            parse_tarball(written).map_err(|(reason, hint)| fail(reason, &hint))?
        } else if written.starts_with("http://") {
            return Err(fail(
                "tarball Features are downloaded over HTTPS only".into(),
                "use an `https://` URL",
            ));
        } else if written.starts_with("./") || written.starts_with("../") {
            parse_local(written, config_dir, devcontainer_dir)
                .map_err(|(reason, hint)| fail(reason, &hint))?
        } else if written.starts_with('/') || written.starts_with('\\') {
            return Err(fail(
                "absolute paths are not allowed for local Features".into(),
                "put the Feature under `.devcontainer/` and write a path such as `./my-feature` \
                 relative to devcontainer.json",
            ));
        } else {
            FeatureSource::Oci(parse_oci(written).map_err(|(reason, hint)| fail(reason, &hint))?)
        };
        Ok(FeatureRef {
            written: written.to_string(),
            source,
        })
    }

    /// The Feature id the reference names: the folder name, the archive's id or the last
    /// segment of the OCI repository.
    pub fn id(&self) -> &str {
        match &self.source {
            FeatureSource::Local { path } => path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or(""),
            FeatureSource::Oci(image) => image
                .repository
                .rsplit('/')
                .next()
                .unwrap_or(&image.repository),
            FeatureSource::Tarball { url } => tarball_id(url).unwrap_or(""),
        }
    }
}

impl std::fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

/// The OCI reference a legacy id maps to, as the reference CLI maps it.
fn legacy_mapping(id: &str) -> Option<String> {
    if MIGRATED_IDS.contains(&id) {
        return Some(format!("{LEGACY_NAMESPACE}/{id}:1"));
    }
    RENAMED_IDS
        .iter()
        .find(|(old, _)| *old == id)
        .map(|(_, new)| format!("{LEGACY_NAMESPACE}/{new}:1"))
}

/// The `.devcontainer/` folder local Features must stay inside.
pub fn devcontainer_dir_of(config_dir: &Path) -> PathBuf {
    let normalized = normalize(config_dir);
    normalized
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == ".devcontainer"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| normalized.join(".devcontainer"))
}

/// Resolves `.` and `..` components without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

type ParseFailure = (String, String);

fn parse_local(
    written: &str,
    config_dir: &Path,
    devcontainer_dir: &Path,
) -> Result<FeatureSource, ParseFailure> {
    let path = normalize(&config_dir.join(written));
    let root = normalize(devcontainer_dir);
    let inside = path.strip_prefix(&root).ok().filter(|rest| {
        !rest.as_os_str().is_empty() && rest.components().all(|c| matches!(c, Component::Normal(_)))
    });
    if inside.is_none() {
        return Err((
            format!(
                "it resolves to `{}`, which is not inside `{}`",
                path.display(),
                root.display()
            ),
            "local Features must be folders under `.devcontainer/`; move the Feature there".into(),
        ));
    }
    // A symbolic link inside `.devcontainer/` must not lead out of it either, because the
    // folder it names is mounted into the build.
    if let (Ok(real), Ok(real_root)) = (path.canonicalize(), root.canonicalize()) {
        if !real.starts_with(&real_root) || real == real_root {
            return Err((
                format!(
                    "it resolves through a symbolic link to `{}`, which is not inside `{}`",
                    real.display(),
                    real_root.display()
                ),
                "local Features must be folders under `.devcontainer/`; move the Feature there \
                 instead of linking to it"
                    .into(),
            ));
        }
    }
    Ok(FeatureSource::Local { path })
}

fn tarball_id(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    let name = path.rsplit('/').next()?;
    name.strip_prefix(LAYER_NAME_PREFIX)?.strip_suffix(".tgz")
}

fn parse_tarball(written: &str) -> Result<FeatureSource, ParseFailure> {
    let rest = &written["https://".len()..];
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err((
            "the URL has no host".into(),
            "write `https://HOST/.../devcontainer-feature-ID.tgz`".into(),
        ));
    }
    match tarball_id(written) {
        Some(id)
            if !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(FeatureSource::Tarball {
                url: written.to_string(),
            })
        }
        _ => Err((
            "a tarball URL must end in `devcontainer-feature-<id>.tgz`, with an id of letters, \
             digits, `-` and `_`"
                .into(),
            "rename the archive, or publish the Feature to an OCI registry".into(),
        )),
    }
}

fn is_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        // `+` (semver build metadata) is accepted here and asked for as `_`.
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// A path component as the reference CLI accepts it: `[a-z0-9]+([._-][a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let mut previous_separator = true;
    for c in component.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            previous_separator = false;
        } else if matches!(c, '.' | '_' | '-') && !previous_separator {
            previous_separator = true;
        } else {
            return false;
        }
    }
    !previous_separator
}

fn is_registry(host: &str) -> bool {
    host.contains('.') || host.contains(':') || host == "localhost"
}

fn parse_oci(written: &str) -> Result<ImageRef, ParseFailure> {
    let input = written.to_lowercase();
    let example =
        "write `REGISTRY/NAMESPACE/ID[:TAG]`, such as `ghcr.io/devcontainers/features/git:1`";
    if input.starts_with('.') {
        return Err((
            "an OCI reference cannot start with `.`".into(),
            "local Features start with `./` or `../`".into(),
        ));
    }

    let (resource, tag, digest) = if let Some(at) = input.rfind('@') {
        let digest = &input[at + 1..];
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err((
                format!("`{digest}` is not a sha256 digest"),
                "pin with `@sha256:` followed by 64 hex digits".into(),
            ));
        }
        (&input[..at], None, Some(digest.to_string()))
    } else {
        match input.rfind(':') {
            Some(colon) if colon > input.rfind('/').unwrap_or(0) => {
                let tag = &input[colon + 1..];
                if !is_tag(tag) {
                    return Err((format!("`{tag}` is not a valid tag"), example.into()));
                }
                (&input[..colon], Some(tag.to_string()), None)
            }
            _ => (input.as_str(), Some("latest".to_string()), None),
        }
    };

    let mut segments: Vec<&str> = resource.split('/').collect();
    let registry = segments[0];
    if !is_registry(registry) {
        let reason = if segments.len() == 3 {
            "the GitHub-release form `OWNER/REPO/FEATURE` is deprecated and not supported"
        } else {
            "the first segment is not a registry host (it needs a `.`, a port, or `localhost`)"
        };
        return Err((reason.into(), example.into()));
    }
    if segments.len() < 3 {
        return Err((
            "an OCI Feature needs a registry, a namespace and an id".into(),
            example.into(),
        ));
    }
    if segments[1] == REDIRECTED_OWNER.0 {
        tracing::info!(
            from = REDIRECTED_OWNER.0,
            to = REDIRECTED_OWNER.1,
            "redirected Feature namespace"
        );
        segments[1] = REDIRECTED_OWNER.1;
    }
    let path = &segments[1..];
    if let Some(bad) = path.iter().find(|segment| !is_path_component(segment)) {
        return Err((
            format!("path segment `{bad}` may hold only lowercase letters, digits and single `.`, `_` or `-` between them"),
            example.into(),
        ));
    }
    Ok(ImageRef {
        registry: registry.to_string(),
        repository: path.join("/"),
        tag,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Location {
        Location {
            file: "/w/.devcontainer/devcontainer.json".into(),
            line: 3,
            column: 5,
        }
    }

    fn parse(written: &str) -> Result<FeatureRef, Error> {
        FeatureRef::parse(written, Path::new("/w/.devcontainer"), &location())
    }

    fn oci(written: &str) -> ImageRef {
        match parse(written).unwrap().source {
            FeatureSource::Oci(image) => image,
            other => panic!("expected OCI for {written}, got {other:?}"),
        }
    }

    fn error(written: &str) -> (String, String) {
        let err = parse(written).expect_err(written);
        (err.to_string(), err.hint().unwrap_or_default())
    }

    #[test]
    fn oci_references_split_into_registry_repository_and_version() {
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "ghcr.io/devcontainers/features/git:1",
                "ghcr.io",
                "devcontainers/features/git",
                Some("1"),
                None,
            ),
            (
                "ghcr.io/devcontainers/features/git",
                "ghcr.io",
                "devcontainers/features/git",
                Some("latest"),
                None,
            ),
            (
                "GHCR.io/Devcontainers/Features/Git:1.2",
                "ghcr.io",
                "devcontainers/features/git",
                Some("1.2"),
                None,
            ),
            (
                "127.0.0.1:5000/team/a:1.0.2-rc1",
                "127.0.0.1:5000",
                "team/a",
                Some("1.0.2-rc1"),
                None,
            ),
            (
                "127.0.0.1:5000/team/b",
                "127.0.0.1:5000",
                "team/b",
                Some("latest"),
                None,
            ),
            (
                "localhost/ns/deep/feature:v2",
                "localhost",
                "ns/deep/feature",
                Some("v2"),
                None,
            ),
            (
                "localhost:5000/ns/x_y.z-w",
                "localhost:5000",
                "ns/x_y.z-w",
                Some("latest"),
                None,
            ),
            (
                "ghcr.io/devcontainers-contrib/features/bun:1",
                "ghcr.io",
                "devcontainers-extra/features/bun",
                Some("1"),
                None,
            ),
        ];
        for (written, registry, repository, tag, digest) in cases {
            let image = oci(written);
            assert_eq!(image.registry, *registry, "{written}");
            assert_eq!(image.repository, *repository, "{written}");
            assert_eq!(image.tag.as_deref(), *tag, "{written}");
            assert_eq!(image.digest.as_deref(), *digest, "{written}");
        }
        let digest = format!("sha256:{}", "ab".repeat(32));
        let image = oci(&format!("ghcr.io/o/f/node@{digest}"));
        assert_eq!((image.tag, image.digest), (None, Some(digest)));
    }

    #[test]
    fn two_features_on_one_registry_with_a_port_stay_two() {
        assert_ne!(oci("127.0.0.1:5000/team/a"), oci("127.0.0.1:5000/team/b"));
        assert_eq!(parse("127.0.0.1:5000/team/a").unwrap().id(), "a");
    }

    #[test]
    fn legacy_ids_map_like_the_reference_and_keep_what_was_written() {
        for (written, mapped) in [
            ("node", "devcontainers/features/node"),
            (
                "docker-in-docker",
                "devcontainers/features/docker-in-docker",
            ),
            ("golang", "devcontainers/features/go"),
            ("common", "devcontainers/features/common-utils"),
        ] {
            let reference = parse(written).unwrap();
            assert_eq!(reference.written, written);
            let FeatureSource::Oci(image) = reference.source else {
                panic!("{written}")
            };
            assert_eq!(image.repository, mapped);
            assert_eq!(image.tag.as_deref(), Some("1"));
        }
    }

    #[test]
    fn local_folders_resolve_against_the_config_folder() {
        let reference = parse("./features/app-tool").unwrap();
        assert_eq!(
            reference.source,
            FeatureSource::Local {
                path: "/w/.devcontainer/features/app-tool".into()
            }
        );
        assert_eq!(reference.id(), "app-tool");

        let nested =
            FeatureRef::parse("../shared/x", Path::new("/w/.devcontainer/py"), &location())
                .unwrap();
        assert_eq!(
            nested.source,
            FeatureSource::Local {
                path: "/w/.devcontainer/shared/x".into()
            }
        );
    }

    #[test]
    fn local_folders_of_a_root_config_must_still_be_under_dot_devcontainer() {
        let root = Path::new("/w");
        let ok = FeatureRef::parse("./.devcontainer/a", root, &location()).unwrap();
        assert_eq!(
            ok.source,
            FeatureSource::Local {
                path: "/w/.devcontainer/a".into()
            }
        );
        let err = FeatureRef::parse("./features/a", root, &location()).unwrap_err();
        assert!(
            err.to_string().contains("not inside `/w/.devcontainer`"),
            "{err}"
        );
    }

    #[test]
    fn tarball_urls_are_tarballs() {
        let url = "https://example.com/releases/download/v1/devcontainer-feature-color.tgz";
        let reference = parse(url).unwrap();
        assert_eq!(reference.source, FeatureSource::Tarball { url: url.into() });
        assert_eq!(reference.id(), "color");
    }

    #[test]
    fn bad_references_say_where_and_how_to_fix() {
        let cases: &[(&str, &str, &str)] = &[
            ("myfeature", "bare id", "`./myfeature`"),
            ("/abs/feature", "absolute paths", "under `.devcontainer/`"),
            ("../../etc/feature", "not inside", "move the Feature"),
            ("./../outside", "not inside", "move the Feature"),
            ("./", "not inside", "move the Feature"),
            (
                "owner/repo/feature",
                "GitHub-release",
                "REGISTRY/NAMESPACE/ID",
            ),
            (
                "ghcr.io/feature",
                "registry, a namespace and an id",
                "REGISTRY",
            ),
            ("ghcr.io/o/f/x:bad tag", "not a valid tag", "REGISTRY"),
            ("ghcr.io/o/f/x@sha256:abc", "not a sha256 digest", "64 hex"),
            ("ghcr.io/o/f/x@md5:0123", "not a sha256 digest", "64 hex"),
            ("ghcr.io/o/f__g/x", "path segment `f__g`", "REGISTRY"),
            ("ghcr.io/o//x", "path segment ``", "REGISTRY"),
            (
                "https://example.com/feature.tgz",
                "devcontainer-feature-<id>.tgz",
                "rename",
            ),
            (
                "https://example.com/devcontainer-feature-a b.tgz",
                "letters, digits",
                "rename",
            ),
            (
                "http://example.com/devcontainer-feature-a.tgz",
                "HTTPS only",
                "https://",
            ),
            ("", "empty", "name a Feature"),
        ];
        for (written, message, hint) in cases {
            let (got_message, got_hint) = error(written);
            assert!(got_message.contains(message), "{written}: {got_message}");
            assert!(got_hint.contains(hint), "{written}: {got_hint}");
            assert!(
                got_message.starts_with("/w/.devcontainer/devcontainer.json:3:5: "),
                "{got_message}"
            );
            assert!(
                got_message.contains(&format!("`{written}`")),
                "{got_message}"
            );
        }
    }

    #[test]
    fn devcontainer_dir_is_found_above_named_configs() {
        assert_eq!(
            devcontainer_dir_of(Path::new("/w/.devcontainer/py")),
            Path::new("/w/.devcontainer")
        );
        assert_eq!(
            devcontainer_dir_of(Path::new("/w")),
            Path::new("/w/.devcontainer")
        );
    }
}

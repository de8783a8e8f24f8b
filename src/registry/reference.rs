//! Image references: `registry[:port]/repository[:tag][@sha256:digest]`.

use std::fmt;

use super::Error;

/// The registry Docker assumes for names without one.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// `host[:port]`, such as `127.0.0.1:5000` or `ghcr.io`.
    pub registry: String,
    /// The path after the registry, such as `devcontainers/features/git`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `text` the way Docker does: the first path component is the registry when it
    /// has a `.` or a `:` or is `localhost`; otherwise the registry is `docker.io` (and a
    /// one-component name gets `library/`). Without a tag or digest the tag is `latest`.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] naming what is wrong.
    pub fn parse(text: &str) -> Result<ImageRef, Error> {
        let invalid = |reason: &str| Error::InvalidReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }

        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| invalid("the digest must start with `sha256:`"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(invalid("the digest must be 64 lowercase hex digits"));
                }
                (name, Some(digest.to_string()))
            }
            None => (text, None),
        };

        let (registry, rest) = match name.split_once('/') {
            Some((first, rest)) if is_registry(first) => (first.to_string(), rest),
            _ => (DEFAULT_REGISTRY.to_string(), name),
        };

        // A tag is a `:` after the last `/`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };

        if let Some(tag) = &tag {
            if !valid_tag(tag) {
                return Err(invalid(
                    "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
                ));
            }
        }
        if !valid_repository(repository) {
            return Err(invalid(
                "the repository must be lowercase letters, digits and `.`, `_`, `-` separated by `/`",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The same repository, pinned to `digest` (any tag kept for display).
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// Whether the registry is on this machine: `localhost`, `127.0.0.0/8` or `[::1]`.
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(&self.registry)
    }
}

/// Tells whether `text` starts with a registry host (`host.domain`, `host:port` or
/// `localhost`), as a reference to push to must, rather than implying Docker Hub.
pub fn names_registry(text: &str) -> bool {
    match text.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost",
        None => false,
    }
}

/// Whether `registry` (`host[:port]`) names this machine.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") || host == "::1" {
        return true;
    }
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

fn is_registry(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component == "localhost"
        || component.starts_with('[')
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && part
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(text).unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn fully_qualified_forms() {
        assert_eq!(
            parts("127.0.0.1:5000/debian:bookworm"),
            (
                "127.0.0.1:5000".into(),
                "debian".into(),
                Some("bookworm".into()),
                None
            )
        );
        assert_eq!(
            parts("ghcr.io/devcontainers/features/git:1"),
            (
                "ghcr.io".into(),
                "devcontainers/features/git".into(),
                Some("1".into()),
                None
            )
        );
        let pinned = format!("localhost:5000/a/b@{DIGEST}");
        assert_eq!(
            parts(&pinned),
            (
                "localhost:5000".into(),
                "a/b".into(),
                None,
                Some(DIGEST.into())
            )
        );
        let both = format!("[::1]:5000/a:v1@{DIGEST}");
        assert_eq!(
            parts(&both),
            (
                "[::1]:5000".into(),
                "a".into(),
                Some("v1".into()),
                Some(DIGEST.into())
            )
        );
        assert_eq!(parts("localhost/x").2, Some("latest".into()));
    }

    #[test]
    fn unqualified_names_normalise_like_docker() {
        assert_eq!(
            parts("debian"),
            (
                "docker.io".into(),
                "library/debian".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(parts("user/app:1").1, "user/app");
        assert_eq!(parts("user/app:1").0, "docker.io");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "127.0.0.1:5000/debian:bookworm",
            &format!("ghcr.io/a/b:1@{DIGEST}"),
        ] {
            assert_eq!(ImageRef::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn invalid_references_say_why() {
        for bad in [
            "",
            "Host.io/UPPER:1",
            "host.io/a:",
            "host.io/a@sha256:12",
            "host.io/a@md5:00",
            "host.io//a",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn loopback_registries() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback_registry(r), "{r}");
        }
        for r in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!is_loopback_registry(r), "{r}");
        }
    }
}

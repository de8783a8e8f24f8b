//! Choosing the tag an OCI Feature reference means from a repository's tag list.
//!
//! The reference CLI asks the registry for the tag as written, relying on publishers to push
//! `1`, `1.2`, `1.2.3` and `latest` for every release. envc does the same first; only when the
//! registry has no such tag does it read `GET /v2/<repository>/tags/list` and pick a version
//! with [`select_tag`]:
//!
//! - a tag present in the list is used as is (so pre-release tags such as `1.0.2-rc1` are
//!   exact matches);
//! - `latest` means the highest release (no pre-release part);
//! - `1` and `1.2` mean the highest release with that major, or major and minor;
//! - a full version with build metadata (`1.0.2+b`) matches the tag `1.0.2_b`, because `+`
//!   cannot appear in an OCI tag and publishers write `_` for it.
//!
//! Versions are ordered by semver precedence, with build metadata breaking ties; tags that
//! are not versions are ignored.

use semver::Version;

/// The tag of `tags` that `wanted` names, if any. See the module docs for the rules.
pub fn select_tag(wanted: &str, tags: &[String]) -> Option<String> {
    if tags.iter().any(|tag| tag == wanted) {
        return Some(wanted.to_string());
    }
    let versions: Vec<(Version, &String)> = tags
        .iter()
        .filter_map(|tag| Some((tag_version(tag)?, tag)))
        .collect();
    let highest = |keep: &dyn Fn(&Version) -> bool| {
        versions
            .iter()
            .filter(|(version, _)| version.pre.is_empty() && keep(version))
            .max_by(|(a, _), (b, _)| a.cmp(b))
            .map(|(_, tag)| tag.to_string())
    };

    if wanted == "latest" {
        return highest(&|_| true);
    }
    if let Some(exact) = tag_version(wanted) {
        return versions
            .iter()
            .find(|(version, _)| *version == exact)
            .map(|(_, tag)| tag.to_string());
    }
    let parts: Vec<u64> = wanted
        .split('.')
        .map(|part| part.parse().ok().filter(|_| is_number(part)))
        .collect::<Option<_>>()?;
    match parts[..] {
        [major] => highest(&|v| v.major == major),
        [major, minor] => highest(&|v| v.major == major && v.minor == minor),
        _ => None,
    }
}

/// The tag to ask a registry for when `written` is an exact version: `+` becomes `_`.
pub fn registry_tag(written: &str) -> String {
    written.replacen('+', "_", 1)
}

/// The semver version a tag spells, reading `_` as `+` (a pre-release cannot hold `_`).
fn tag_version(tag: &str) -> Option<Version> {
    Version::parse(&tag.replacen('_', "+", 1)).ok()
}

/// Digits only, without a leading zero (as semver writes numbers).
fn is_number(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn versions_are_chosen_by_semver_precedence() {
        let list = tags(&[
            "1.0.0",
            "1.2.0",
            "1.2.9",
            "1.10.0",
            "1.10.1-rc1",
            "2.0.0-beta.2",
            "2.0.0-beta.11",
            "1.0.2-rc1",
            "1.0.2_b",
            "1.0.2_a",
            "0.9.0",
            "sha256-abc.sig",
        ]);
        let cases = [
            ("1", Some("1.10.0")),
            ("1.2", Some("1.2.9")),
            ("1.10", Some("1.10.0")),
            ("0", Some("0.9.0")),
            ("latest", Some("1.10.0")),
            ("1.2.0", Some("1.2.0")),
            ("1.0.2-rc1", Some("1.0.2-rc1")),
            ("1.0.2+b", Some("1.0.2_b")),
            ("1.0.2_a", Some("1.0.2_a")),
            ("2.0.0-beta.11", Some("2.0.0-beta.11")),
            ("2", None),
            ("3", None),
            ("1.3", None),
            ("1.2.3", None),
            ("01", None),
            ("1.x", None),
            ("stable", None),
        ];
        for (wanted, expected) in cases {
            assert_eq!(
                select_tag(wanted, &list).as_deref(),
                expected,
                "wanted `{wanted}`"
            );
        }
    }

    #[test]
    fn a_listed_tag_wins_over_the_semver_choice() {
        let list = tags(&["1", "1.0.0", "1.5.0", "latest", "stable"]);
        assert_eq!(select_tag("1", &list).as_deref(), Some("1"));
        assert_eq!(select_tag("latest", &list).as_deref(), Some("latest"));
        assert_eq!(select_tag("stable", &list).as_deref(), Some("stable"));
    }

    #[test]
    fn pre_releases_are_ordered_as_semver_orders_them() {
        // Only pre-releases: ranges never pick them.
        let list = tags(&["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta"]);
        assert_eq!(select_tag("1", &list), None);
        assert_eq!(select_tag("latest", &list), None);
        // Build metadata breaks ties deterministically.
        let list = tags(&["1.0.0_b", "1.0.0_a"]);
        assert_eq!(select_tag("1", &list).as_deref(), Some("1.0.0_b"));
    }

    #[test]
    fn build_metadata_is_asked_for_with_an_underscore() {
        assert_eq!(registry_tag("1.0.2+b"), "1.0.2_b");
        assert_eq!(registry_tag("1.0.2"), "1.0.2");
    }
}

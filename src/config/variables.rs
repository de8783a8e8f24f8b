//! Build-time variable substitution.
//!
//! A variable is written `${name}` or `${name:arg[:default]}`; the name runs up to the first `}`
//! on the same line. At build time envc replaces:
//!
//! - `${localEnv:VAR}` and its alias `${env:VAR}`: the variable from the environment envc runs
//!   in. When it is unset, the default after the second colon, or else the empty string.
//! - `${localWorkspaceFolder}` and `${localWorkspaceFolderBasename}`: the workspace folder and its
//!   last component.
//!
//! Everything else stays as written, to be resolved later or never: `${containerEnv:VAR}`,
//! `${containerWorkspaceFolder}`, `${containerWorkspaceFolderBasename}`, `${devcontainerId}`
//! and unknown names.
//!
//! NOTE: the reference implementation resolves `${containerWorkspaceFolder}` and its basename at
//! this stage too, to `workspaceFolder` (by default `/workspaces/<workspace folder name>`). envc
//! keeps them literal, so an image property that uses them differs from the reference's image.
//!
//! One deliberate difference from the reference implementation: the default of
//! `${localEnv:VAR:default}` is all the text after the second colon, so
//! `${localEnv:PROXY:http://proxy:8080}` gives `http://proxy:8080` when `PROXY` is unset. The
//! reference splits on every colon and keeps only the first piece (`http`).

use std::path::Path;

/// The inputs that substitution needs.
pub struct Context<'a> {
    /// The workspace folder, for `${localWorkspaceFolder}`.
    pub local_workspace_folder: &'a Path,
    /// Looks up a variable of the local environment.
    pub local_env: &'a dyn Fn(&str) -> Option<String>,
}

/// A `${localEnv}` or `${env}` with no variable name, which cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingName {
    /// The whole reference as written, such as `${localEnv}`.
    pub reference: String,
}

/// Replaces the build-time variables in `input`.
///
/// # Errors
///
/// [`MissingName`] for `${localEnv}` or `${env}` without a variable name.
pub fn substitute(input: &str, context: &Context<'_>) -> Result<String, MissingName> {
    let mut output = String::with_capacity(input.len());
    let mut rest = input;

    while let Some(open) = rest.find("${") {
        output.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = variable_end(after) else {
            // No `}` on this line: keep `${` and look for the next variable after it.
            output.push_str("${");
            rest = after;
            continue;
        };
        let reference = &rest[open..open + 2 + close + 1];
        output.push_str(&resolve(reference, &after[..close], context)?);
        rest = &after[close + 1..];
    }

    output.push_str(rest);
    Ok(output)
}

/// Finds the `}` that closes a variable, if it comes before any line break.
fn variable_end(text: &str) -> Option<usize> {
    for (i, c) in text.char_indices() {
        match c {
            '}' => return Some(i),
            '\n' | '\r' | '\u{2028}' | '\u{2029}' => return None,
            _ => {}
        }
    }
    None
}

/// Returns the replacement for `reference` (`${inner}`).
fn resolve(reference: &str, inner: &str, context: &Context<'_>) -> Result<String, MissingName> {
    let (name, args) = match inner.split_once(':') {
        Some((name, args)) => (name, Some(args)),
        None => (inner, None),
    };

    match name {
        "localEnv" | "env" => {
            let Some(args) = args else {
                return Err(MissingName {
                    reference: reference.to_string(),
                });
            };
            let (variable, default) = match args.split_once(':') {
                Some((variable, default)) => (variable, default),
                None => (args, ""),
            };
            Ok((context.local_env)(variable).unwrap_or_else(|| default.to_string()))
        }
        "localWorkspaceFolder" => Ok(context
            .local_workspace_folder
            .to_string_lossy()
            .into_owned()),
        "localWorkspaceFolderBasename" => Ok(context
            .local_workspace_folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()),
        _ => Ok(reference.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            "PROXY" => Some("http://proxy:3128".into()),
            _ => None,
        }
    }

    fn run(input: &str) -> Result<String, MissingName> {
        let context = Context {
            local_workspace_folder: Path::new("/src/my-app"),
            local_env: &env,
        };
        substitute(input, &context)
    }

    #[test]
    fn substitutes_build_time_variables() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("", ""),
            ("${localEnv:HOME}", "/home/me"),
            ("${env:HOME}", "/home/me"),
            ("a-${localEnv:HOME}-b", "a-/home/me-b"),
            ("${localEnv:UNSET}", ""),
            ("${localEnv:UNSET:fallback}", "fallback"),
            ("${localEnv:HOME:fallback}", "/home/me"),
            ("${localEnv:EMPTY:fallback}", ""),
            ("${localEnv:UNSET:http://x:8080}", "http://x:8080"),
            ("${localEnv:UNSET:}", ""),
            ("${localEnv:PROXY}", "http://proxy:3128"),
            ("${localEnv:}", ""),
            ("${localWorkspaceFolder}/.cache", "/src/my-app/.cache"),
            ("${localWorkspaceFolderBasename}", "my-app"),
            (
                "${localEnv:HOME}${localWorkspaceFolderBasename}",
                "/home/memy-app",
            ),
            ("${containerEnv:PATH}", "${containerEnv:PATH}"),
            ("${containerEnv:PATH:/bin}", "${containerEnv:PATH:/bin}"),
            ("${containerWorkspaceFolder}", "${containerWorkspaceFolder}"),
            (
                "${containerWorkspaceFolderBasename}",
                "${containerWorkspaceFolderBasename}",
            ),
            ("${devcontainerId}", "${devcontainerId}"),
            ("${unknown}", "${unknown}"),
            ("${unknown:a:b}", "${unknown:a:b}"),
            ("$HOME ${HOME}", "$HOME ${HOME}"),
            ("${localEnv:HOME", "${localEnv:HOME"),
            ("${localEnv:\nHOME}", "${localEnv:\nHOME}"),
            ("${ ${localEnv:HOME}", "${ ${localEnv:HOME}"),
            ("${a\n${localEnv:HOME}", "${a\n/home/me"),
            ("${}", "${}"),
            ("é${localWorkspaceFolderBasename}ü", "émy-appü"),
            ("${localEnv:UNSET:{x}}", "{x}"),
        ];
        for (input, expected) in cases {
            assert_eq!(run(input).as_deref(), Ok(*expected), "for {input:?}");
        }
    }

    #[test]
    fn env_without_a_name_is_an_error() {
        for input in ["${localEnv}", "x ${env} y"] {
            let err = run(input).unwrap_err();
            assert!(input.contains(&err.reference), "{err:?}");
        }
    }

    #[test]
    fn basename_of_root_is_empty() {
        let context = Context {
            local_workspace_folder: Path::new("/"),
            local_env: &env,
        };
        assert_eq!(
            substitute("${localWorkspaceFolderBasename}", &context).unwrap(),
            ""
        );
    }
}

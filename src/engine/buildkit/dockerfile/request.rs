//! The frontend request of a stage build: attrs from the source's settings and from the
//! `build.options` envc supports, cache imports, and the entitlements they need.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Error, StageOptions};
use crate::config::DockerfileSource;
use crate::engine::buildkit::proto::control::CacheOptionsEntry;
use crate::engine::Network;

/// The `docker build` options envc maps onto the frontend, as the hint lists them.
pub const SUPPORTED_OPTIONS: &str = "`--build-arg NAME=VALUE`, `--target STAGE`, \
     `--label NAME=VALUE`, `--add-host HOST:IP` and `--network none|host`";

/// The build argument that sets `SOURCE_DATE_EPOCH`. The exporter clamps timestamps to it too.
pub const EPOCH_ARG: &str = "SOURCE_DATE_EPOCH";

/// The frontend attrs, cache imports and entitlements of one stage build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendRequest {
    pub attrs: BTreeMap<String, String>,
    pub cache_imports: Vec<CacheOptionsEntry>,
    /// Such as `network.host` for `--network host`.
    pub entitlements: Vec<String>,
    /// The `SOURCE_DATE_EPOCH` the stage is built with, for the exporter.
    pub epoch: String,
    /// The target stage, when one is named.
    pub target: Option<String>,
}

/// One recognised entry of `build.options`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BuildOption {
    /// `--build-arg NAME[=VALUE]`. Without a value, the host environment's value is used when
    /// it is set.
    Arg(String, Option<String>),
    Target(String),
    Label(String, String),
    Host(String, IpAddr),
    Network(Network),
}

/// Builds the frontend request for `source`, whose Dockerfile is named `filename` inside the
/// shared `dockerfile` folder. Settings apply in the order `docker build` applies them:
/// `build.args` and `build.target` first, then `build.options`, so an option wins. The
/// build's network choice applies to every `RUN` unless `--network` in `build.options`
/// overrides it. `env` looks up host variables for `--build-arg NAME` without a value.
///
/// # Errors
///
/// [`Error::UnsupportedOption`] for an option envc does not map, and
/// [`Error::InvalidOption`] for a supported one with a value it cannot use.
pub fn frontend_request(
    source: &DockerfileSource,
    filename: &str,
    settings: &StageOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FrontendRequest, Error> {
    let options = parse_options(source)?;

    let mut args: BTreeMap<String, String> = source.args.iter().cloned().collect();
    let mut target = source.target.clone();
    let mut labels = BTreeMap::new();
    let mut hosts = Vec::new();
    let mut network = settings.network;
    for option in options {
        match option {
            BuildOption::Arg(name, Some(value)) => {
                args.insert(name, value);
            }
            BuildOption::Arg(name, None) => {
                if let Some(value) = env(&name) {
                    args.insert(name, value);
                }
            }
            BuildOption::Target(stage) => target = Some(stage),
            BuildOption::Label(name, value) => {
                labels.insert(name, value);
            }
            BuildOption::Host(host, ip) => hosts.push(format!("{host}={ip}")),
            BuildOption::Network(mode) => network = mode,
        }
    }
    let epoch = args
        .entry(EPOCH_ARG.to_owned())
        .or_insert_with(|| settings.source_date_epoch.to_string())
        .clone();

    let mut attrs = BTreeMap::from([("filename".to_owned(), filename.to_owned())]);
    if let Some(target) = &target {
        attrs.insert("target".to_owned(), target.clone());
    }
    for (name, value) in args {
        attrs.insert(format!("build-arg:{name}"), value);
    }
    for (name, value) in labels {
        attrs.insert(format!("label:{name}"), value);
    }
    if !hosts.is_empty() {
        attrs.insert("add-hosts".to_owned(), hosts.join(","));
    }
    let mut entitlements = Vec::new();
    match network {
        Network::None => {
            attrs.insert("force-network-mode".to_owned(), "none".to_owned());
        }
        Network::Host => {
            attrs.insert("force-network-mode".to_owned(), "host".to_owned());
            entitlements.push("network.host".to_owned());
        }
    }

    let cache_imports: Vec<CacheOptionsEntry> = source
        .cache_from
        .iter()
        .map(|reference| CacheOptionsEntry {
            r#type: "registry".to_owned(),
            attrs: BTreeMap::from([("ref".to_owned(), reference.clone())]),
        })
        .collect();
    if !cache_imports.is_empty() {
        attrs.insert(
            "cache-imports".to_owned(),
            cache_imports_json(&cache_imports),
        );
    }

    Ok(FrontendRequest {
        attrs,
        cache_imports,
        entitlements,
        epoch,
        target,
    })
}

/// Encodes the imports as the `cache-imports` attr, the JSON list that BuildKit's Go client
/// writes: `[{"Type":"registry","Attrs":{"ref":"..."}}]`.
fn cache_imports_json(imports: &[CacheOptionsEntry]) -> String {
    let entries: Vec<serde_json::Value> = imports
        .iter()
        .map(|entry| serde_json::json!({ "Type": entry.r#type, "Attrs": entry.attrs }))
        .collect();
    serde_json::Value::Array(entries).to_string()
}

/// Reads `build.options`. Each option is `--name=value` or `--name` followed by its value as
/// the next entry, as `docker build` takes them.
fn parse_options(source: &DockerfileSource) -> Result<Vec<BuildOption>, Error> {
    let mut parsed = Vec::new();
    let mut entries = source.options.iter();
    while let Some(entry) = entries.next() {
        let unsupported = || Error::UnsupportedOption {
            location: source.location.clone(),
            option: entry.clone(),
        };
        let (name, inline) = match entry.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (entry.as_str(), None),
        };
        if !matches!(
            name,
            "--build-arg" | "--target" | "--label" | "--add-host" | "--network"
        ) {
            return Err(unsupported());
        }
        let value = match inline {
            Some(value) => value,
            None => entries
                .next()
                .cloned()
                .ok_or_else(|| Error::InvalidOption {
                    location: source.location.clone(),
                    option: name.to_owned(),
                    reason: "it needs a value".to_owned(),
                })?,
        };
        let invalid = |reason: &str| Error::InvalidOption {
            location: source.location.clone(),
            option: format!("{name} {value}"),
            reason: reason.to_owned(),
        };
        let option = match name {
            "--build-arg" => {
                let (arg, arg_value) = name_value(&value).map_err(invalid)?;
                BuildOption::Arg(arg, arg_value)
            }
            "--target" if value.is_empty() => return Err(invalid("the stage name is empty")),
            "--target" => BuildOption::Target(value.clone()),
            "--label" => {
                let (label, label_value) = name_value(&value).map_err(invalid)?;
                BuildOption::Label(label, label_value.unwrap_or_default())
            }
            "--add-host" => {
                let (host, ip) = parse_host(&value).map_err(|reason| invalid(&reason))?;
                BuildOption::Host(host, ip)
            }
            _ => match value.as_str() {
                "none" => BuildOption::Network(Network::None),
                "host" => BuildOption::Network(Network::Host),
                _ => return Err(invalid("envc supports `none` and `host`")),
            },
        };
        parsed.push(option);
    }
    Ok(parsed)
}

/// Splits `NAME=VALUE`. The value is `None` without a `=`.
fn name_value(text: &str) -> Result<(String, Option<String>), &'static str> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (text, None),
    };
    if name.is_empty() {
        return Err("the name is empty");
    }
    Ok((name.to_owned(), value))
}

/// Splits `HOST:IP` (or `HOST=IP`) at the first separator, so an IPv6 address keeps its
/// colons, and checks both halves.
fn parse_host(value: &str) -> Result<(String, IpAddr), String> {
    let split = value
        .find([':', '='])
        .map(|at| (&value[..at], &value[at + 1..]));
    let Some((host, ip)) = split else {
        return Err("write it as `HOST:IP`".to_owned());
    };
    if host.is_empty() || host.contains(',') {
        return Err(format!("`{host}` is not a host name"));
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip = ip
        .parse::<IpAddr>()
        .map_err(|_| format!("`{ip}` is not an IP address"))?;
    Ok((host.to_ascii_lowercase(), ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;
    use std::path::PathBuf;

    fn source(options: &[&str]) -> DockerfileSource {
        DockerfileSource {
            dockerfile: PathBuf::from("/p/Dockerfile"),
            context: PathBuf::from("/p"),
            args: vec![
                ("GREETING".into(), "hi".into()),
                ("TOOL_VERSION".into(), "2.5".into()),
            ],
            target: Some("dev".into()),
            cache_from: Vec::new(),
            options: options.iter().map(|o| o.to_string()).collect(),
            location: Location {
                file: PathBuf::from("/p/.devcontainer/devcontainer.json"),
                line: 4,
                column: 5,
            },
            key: "build".into(),
            snippet: "{\"dockerfile\": \"../Dockerfile\"}".into(),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn epoch(source_date_epoch: i64) -> StageOptions {
        StageOptions {
            source_date_epoch,
            ..StageOptions::default()
        }
    }

    fn request(options: &[&str]) -> Result<FrontendRequest, Error> {
        frontend_request(&source(options), "Dockerfile", &epoch(0), &no_env)
    }

    fn attrs(request: &FrontendRequest) -> Vec<(&str, &str)> {
        request
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn settings_become_frontend_attrs() {
        let request = request(&[]).unwrap();
        assert_eq!(
            attrs(&request),
            [
                ("build-arg:GREETING", "hi"),
                ("build-arg:SOURCE_DATE_EPOCH", "0"),
                ("build-arg:TOOL_VERSION", "2.5"),
                ("filename", "Dockerfile"),
                ("force-network-mode", "none"),
                ("target", "dev"),
            ]
        );
        assert_eq!(request.epoch, "0");
        assert!(request.entitlements.is_empty());
        assert!(request.cache_imports.is_empty());
    }

    #[test]
    fn options_override_settings() {
        let request = request(&[
            "--build-arg",
            "GREETING=bye",
            "--build-arg=EXTRA=a=b",
            "--target=tools",
            "--label",
            "org.example.team=dev",
            "--add-host=DB:127.0.0.1",
            "--add-host",
            "v6:::1",
            "--network",
            "none",
        ])
        .unwrap();
        let attrs = attrs(&request);
        assert!(attrs.contains(&("build-arg:GREETING", "bye")), "{attrs:?}");
        assert!(attrs.contains(&("build-arg:EXTRA", "a=b")), "{attrs:?}");
        assert!(attrs.contains(&("target", "tools")), "{attrs:?}");
        assert!(
            attrs.contains(&("label:org.example.team", "dev")),
            "{attrs:?}"
        );
        assert!(
            attrs.contains(&("add-hosts", "db=127.0.0.1,v6=::1")),
            "{attrs:?}"
        );
        assert!(attrs.contains(&("force-network-mode", "none")), "{attrs:?}");
        assert_eq!(request.target.as_deref(), Some("tools"));
    }

    #[test]
    fn host_network_entitlement() {
        let request = request(&["--network=host"]).unwrap();
        assert_eq!(request.attrs["force-network-mode"], "host");
        assert_eq!(request.entitlements, ["network.host"]);

        let settings = StageOptions {
            network: Network::Host,
            ..StageOptions::default()
        };
        let from_build = frontend_request(&source(&[]), "Dockerfile", &settings, &no_env);
        let from_build = from_build.unwrap();
        assert_eq!(from_build.attrs["force-network-mode"], "host");
        assert_eq!(from_build.entitlements, ["network.host"]);
        let overridden = frontend_request(
            &source(&["--network=none"]),
            "Dockerfile",
            &settings,
            &no_env,
        );
        let overridden = overridden.unwrap();
        assert_eq!(overridden.attrs["force-network-mode"], "none");
        assert!(overridden.entitlements.is_empty());
    }

    #[test]
    fn build_arg_value_from_env() {
        let env = |name: &str| (name == "FROM_HOST").then(|| "yes".to_owned());
        let source = source(&["--build-arg", "FROM_HOST", "--build-arg", "UNSET"]);
        let request = frontend_request(&source, "Dockerfile", &epoch(0), &env).unwrap();
        assert_eq!(request.attrs["build-arg:FROM_HOST"], "yes");
        assert!(!request.attrs.contains_key("build-arg:UNSET"));
    }

    #[test]
    fn epoch_arg_overrides_setting() {
        let source = source(&["--build-arg", "SOURCE_DATE_EPOCH=1700000000"]);
        let request = frontend_request(&source, "Dockerfile", &epoch(42), &no_env).unwrap();
        assert_eq!(request.epoch, "1700000000");
        assert_eq!(request.attrs["build-arg:SOURCE_DATE_EPOCH"], "1700000000");

        let request =
            frontend_request(&self::source(&[]), "Dockerfile", &epoch(42), &no_env).unwrap();
        assert_eq!(request.epoch, "42");
    }

    #[test]
    fn cache_from_registry_imports() {
        let mut source = source(&[]);
        source.cache_from = vec!["127.0.0.1:5000/cache:dev".into()];
        let request = frontend_request(&source, "Dockerfile", &epoch(0), &no_env).unwrap();
        assert_eq!(request.cache_imports.len(), 1);
        assert_eq!(request.cache_imports[0].r#type, "registry");
        assert_eq!(
            request.attrs["cache-imports"],
            r#"[{"Type":"registry","Attrs":{"ref":"127.0.0.1:5000/cache:dev"}}]"#
        );
    }

    #[test]
    fn unsupported_option_error() {
        let err = request(&["--target", "dev", "--squash"]).unwrap_err();
        assert!(matches!(err, Error::UnsupportedOption { .. }), "{err:?}");
        assert!(err.is_invalid_input());
        assert_eq!(
            err.to_string(),
            "/p/.devcontainer/devcontainer.json:4:5: `build.options`: envc does not support \
             option `--squash`"
        );
        let hint = err.hint().unwrap();
        assert!(hint.contains("--build-arg NAME=VALUE"), "{hint}");
        assert!(hint.contains("--network none|host"), "{hint}");

        for option in ["-t", "--no-cache", "--platform=linux/arm64", "dev"] {
            let err = request(&[option]).unwrap_err();
            assert!(err.to_string().contains(&format!("`{option}`")), "{err}");
        }
    }

    #[test]
    fn invalid_option_values() {
        let cases: [(&[&str], &str); 7] = [
            (&["--target"], "needs a value"),
            (&["--network", "bridge"], "`none` and `host`"),
            (&["--add-host", "db"], "HOST:IP"),
            (
                &["--add-host=db:host-gateway"],
                "`host-gateway` is not an IP address",
            ),
            (&["--add-host=:1.2.3.4"], "is not a host name"),
            (&["--build-arg", "=x"], "the name is empty"),
            (&["--target="], "the stage name is empty"),
        ];
        for (options, reason) in cases {
            let err = request(options).unwrap_err();
            assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
            assert!(err.is_invalid_input());
            let text = err.to_string();
            assert!(
                text.starts_with("/p/.devcontainer/devcontainer.json:4:5: "),
                "{text}"
            );
            assert!(text.contains(reason), "{options:?}: {text}");
        }
    }
}

//! `envc build`.

use std::path::PathBuf;
use std::sync::Arc;

use super::password::EnvOrPrompt;
use super::{BuildArgs, BuildKitArgs, EngineArg, ProjectArgs};
use crate::build::{self, EngineChoice, LockMode, Outputs, ProjectOptions};
use crate::engine::Cancel;
use crate::progress::Reporter;
use crate::sign::KeyPair;
use crate::{Error, Result};

pub async fn run(args: BuildArgs, reporter: Arc<dyn Reporter>) -> Result<()> {
    let options = project_options(&args.project)?;
    // Read the key first, so a wrong password fails before anything is built.
    let sign_key = match &args.sign_key {
        Some(path) => Some(Arc::new(KeyPair::read(path, &EnvOrPrompt)?)),
        None => None,
    };
    let outputs = Outputs {
        tags: args.tags.clone(),
        push: args.push.clone(),
        layout: args.output.as_deref().map(parse_output).transpose()?,
        sign_key,
        sbom: args.sbom.clone(),
        cache_to: args.cache_to.clone(),
        cache_from: args.cache_from.clone(),
    };

    let cancel = Cancel::default();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });

    let engine = engine_choice(args.engine, &args.buildkit)?;
    let outcome = build::build(
        &options,
        &outputs,
        &engine,
        args.no_cache,
        reporter,
        &cancel,
    )
    .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).expect("outcome serializes")
        );
    } else {
        println!("{}", outcome.digest);
        for tag in &outcome.tags {
            println!("{tag}");
        }
        for pushed in &outcome.pushed {
            println!("{pushed}");
        }
        for object in outcome.signatures.iter().chain(&outcome.attestations) {
            println!("{object}");
        }
    }
    Ok(())
}

/// Returns the engine that `engine` and the BuildKit `flags` choose. The daemon is `--buildkit-addr`, else
/// `BUILDKIT_HOST`, else the Docker daemon of `DOCKER_HOST`, else Docker's default socket.
pub(super) fn engine_choice(engine: EngineArg, flags: &BuildKitArgs) -> Result<EngineChoice> {
    use crate::engine::buildkit::connect::{Address, TlsFiles};

    let tls = TlsFiles {
        ca: flags.buildkit_tls_ca.clone(),
        cert: flags.buildkit_tls_cert.clone(),
        key: flags.buildkit_tls_key.clone(),
    };
    if engine == EngineArg::Local {
        if flags.buildkit_addr.is_some() || !tls.is_empty() {
            return Err(Error::usage(
                "`--buildkit-addr` and the `--buildkit-tls-*` files need `--engine buildkit`",
                Some("add `--engine buildkit`, or drop the BuildKit options".to_string()),
            ));
        }
        return Ok(EngineChoice::Local);
    }
    let address_error = |e: crate::engine::buildkit::connect::Error| {
        crate::engine::Error::from(crate::engine::buildkit::Error::from(e))
    };
    let address = match &flags.buildkit_addr {
        Some(text) => Address::parse(text).map_err(address_error)?,
        None => Address::from_env()
            .map_err(address_error)?
            .unwrap_or_else(Address::default_docker),
    };
    Ok(EngineChoice::BuildKit {
        address,
        tls: (!tls.is_empty()).then_some(tls),
    })
}

/// Resolves the options shared by `build` and `plan`.
pub(super) fn project_options(args: &ProjectArgs) -> Result<ProjectOptions> {
    // The last second of year 9999: the latest time an RFC 3339 date in an image config can hold.
    const LATEST_EPOCH: i64 = 253_402_300_799;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.is_empty() => Some(
            text.trim()
                .parse::<i64>()
                .ok()
                .filter(|epoch| (0..=LATEST_EPOCH).contains(epoch))
                .ok_or_else(|| {
                    Error::usage(
                        format!("invalid `SOURCE_DATE_EPOCH` value `{text}`"),
                        Some(format!(
                            "set it to whole seconds since the Unix epoch, from 0 to \
                             {LATEST_EPOCH}, or unset it"
                        )),
                    )
                })?,
        ),
        _ => None,
    };
    if !args.path.is_dir() {
        return Err(Error::usage(
            format!("project folder `{}` does not exist", args.path.display()),
            Some("pass the folder that holds `.devcontainer/`".to_string()),
        ));
    }
    Ok(ProjectOptions {
        workspace: std::path::absolute(&args.path).unwrap_or_else(|_| args.path.clone()),
        config: args.config.clone(),
        store: args
            .store
            .clone()
            .unwrap_or_else(crate::store::Store::default_root),
        insecure_registries: args.registry.insecure_registries.clone(),
        network: args.network,
        compression: args.compression.into(),
        source_date_epoch,
        lockfile: match (args.no_lockfile, args.frozen_lockfile) {
            (true, _) => LockMode::Off,
            (false, true) => LockMode::Frozen,
            (false, false) => LockMode::Write,
        },
    })
}

/// Parses `oci:DIR` or `oci:DIR:TAG`.
fn parse_output(text: &str) -> Result<(PathBuf, Option<String>)> {
    let Some(rest) = text.strip_prefix("oci:") else {
        return Err(Error::usage(
            format!("unsupported output `{text}`"),
            Some("write `--output oci:DIR` or `--output oci:DIR:TAG`".to_string()),
        ));
    };
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !dir.is_empty() && !tag.is_empty() && !tag.contains('/') => {
            Ok((PathBuf::from(dir), Some(tag.to_string())))
        }
        _ if !rest.is_empty() => Ok((PathBuf::from(rest), None)),
        _ => Err(Error::usage(
            "`--output oci:` needs a folder".to_string(),
            Some("write `--output oci:DIR` or `--output oci:DIR:TAG`".to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_with_tag() {
        let (dir, tag) = parse_output("oci:/tmp/out:v1").unwrap();
        assert_eq!(dir, PathBuf::from("/tmp/out"));
        assert_eq!(tag.as_deref(), Some("v1"));
    }

    #[test]
    fn output_without_tag() {
        let (dir, tag) = parse_output("oci:out").unwrap();
        assert_eq!(dir, PathBuf::from("out"));
        assert_eq!(tag, None);
    }

    fn build_args(args: &[&str]) -> BuildArgs {
        use clap::Parser as _;
        let cli = super::super::Cli::try_parse_from(["envc", "build"].iter().chain(args)).unwrap();
        match cli.command {
            super::super::Command::Build(args) => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn buildkit_flags_need_engine() {
        let args = build_args(&["--buildkit-addr", "unix:///run/b.sock"]);
        let err = engine_choice(args.engine, &args.buildkit).unwrap_err();
        assert!(err.to_string().contains("--engine buildkit"), "{err}");
    }

    #[test]
    fn buildkit_address_from_flag() {
        let args = build_args(&[
            "--engine",
            "buildkit",
            "--buildkit-addr",
            "tcp://127.0.0.1:1234",
            "--buildkit-tls-ca",
            "ca.pem",
        ]);
        let choice = engine_choice(args.engine, &args.buildkit).unwrap();
        let EngineChoice::BuildKit { address, tls } = choice else {
            panic!("not the BuildKit engine");
        };
        assert_eq!(address.to_string(), "tcp://127.0.0.1:1234");
        assert_eq!(tls.unwrap().ca, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn engine_defaults_to_local() {
        let args = build_args(&[]);
        let choice = engine_choice(args.engine, &args.buildkit).unwrap();
        assert!(matches!(choice, EngineChoice::Local));
    }

    #[test]
    fn output_of_other_kind_is_rejected() {
        let error = parse_output("docker:x").unwrap_err();
        assert!(error.to_string().contains("unsupported output `docker:x`"));
    }
}

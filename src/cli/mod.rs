//! Command-line definitions. Each subcommand's behaviour lives in its own file.

mod build;
mod keygen;
mod lock;
mod password;
mod plan;
mod push;
pub mod render;
mod sign;
mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::Network;
use crate::image::Compression;
use crate::Result;

/// Compile devcontainer.json and its Dev Container Features into reproducible OCI images.
#[derive(Debug, Parser)]
#[command(name = "envc", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Show debug logs (`-v`) or wire detail (`-vv`) on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How to show progress on stderr.
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the image of the project at PATH.
    Build(Box<BuildArgs>),
    /// Print the resolved plan (install order, options, cache keys) without building.
    Plan(PlanArgs),
    /// Push an image from the local store to a registry.
    Push(PushArgs),
    /// Resolve the Features afresh and write `devcontainer-lock.json`, or check it with
    /// `--frozen`.
    Lock(LockArgs),
    /// Write a new ECDSA P-256 key pair for signing, in cosign's format.
    Keygen(KeygenArgs),
    /// Sign an image in a registry, by digest, in cosign's format.
    Sign(SignArgs),
    /// Check an image's signatures, and with `--attestations` its SBOM and provenance.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Plain lines, with the scripts' output only with `-v` (a failure always shows its tail).
    Auto,
    /// Plain lines, with every line the install scripts print.
    Plain,
    /// One JSON object per event.
    Json,
    /// Nothing but errors and warnings.
    Quiet,
}

/// How envc reaches registries; shared by every command that talks to one.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// A registry (`host[:port]`) to reach over plain HTTP. Loopback registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

impl RegistryArgs {
    /// Creates a registry client with these settings.
    pub fn client(&self) -> crate::registry::RegistryClient {
        crate::registry::RegistryClient::new(crate::registry::RegistryOptions {
            insecure: self.insecure_registries.clone(),
        })
    }
}

/// Options that choose and read the project.
#[derive(Debug, Clone, Args)]
pub struct ProjectArgs {
    /// The project folder: the one that contains `.devcontainer/` or `.devcontainer.json`.
    #[arg(default_value = ".")]
    pub path: PathBuf,

    /// The devcontainer.json to use, when not the one found under PATH.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// The local store folder [default: $XDG_CACHE_HOME/envc, else ~/.cache/envc].
    #[arg(long, env = "ENVC_STORE")]
    pub store: Option<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Network access of install scripts: `none` (loopback only) or `host`.
    #[arg(long, value_enum, default_value_t = Network::None)]
    pub network: Network,

    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,

    /// Neither read nor write `devcontainer-lock.json`.
    #[arg(long, conflicts_with = "frozen_lockfile")]
    pub no_lockfile: bool,

    /// Fail when `devcontainer-lock.json` is missing or resolving would change it.
    #[arg(long)]
    pub frozen_lockfile: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(value: CompressionArg) -> Self {
        match value {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// Tag the image in the local store (repeatable) [default: `<folder name>:latest`].
    #[arg(short, long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,

    /// Push the image to this registry reference after building (repeatable).
    #[arg(long, value_name = "REF")]
    pub push: Vec<String>,

    /// Also write the image as an OCI image layout: `oci:DIR` or `oci:DIR:TAG`.
    #[arg(long, value_name = "oci:DIR[:TAG]")]
    pub output: Option<String>,

    /// The engine that runs the install scripts.
    #[arg(long, value_enum, default_value_t = EngineArg::Local)]
    pub engine: EngineArg,

    #[command(flatten)]
    pub buildkit: BuildKitArgs,

    /// Run every install script even when its layer is cached.
    #[arg(long)]
    pub no_cache: bool,

    /// Store each step's layer in this registry repository, under its cache key; also
    /// written `type=registry,ref=REF[,mode=max|min]` (with BuildKit, `min` keeps only the
    /// image's own layers).
    #[arg(long, value_name = "REF")]
    pub cache_to: Option<String>,

    /// Reuse step layers stored in this registry repository (repeatable, tried in order);
    /// also written `type=registry,ref=REF`.
    #[arg(long, value_name = "REF")]
    pub cache_from: Vec<String>,

    /// Sign each pushed image with this private key and attach its SBOM and provenance.
    /// The password comes from `ENVC_PASSWORD` or a prompt.
    #[arg(long, value_name = "KEY", requires = "push")]
    pub sign_key: Option<PathBuf>,

    /// Write the image's SBOM (SPDX 2.3 JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The embedded engine: runc and overlayfs, as root.
    Local,
    /// A BuildKit daemon: buildkitd, or the one inside Docker 26 or newer with the
    /// containerd snapshotter.
    Buildkit,
}

/// The BuildKit daemon's address and TLS files.
#[derive(Debug, Clone, Args)]
pub struct BuildKitArgs {
    /// The BuildKit daemon: `unix:///PATH`, `tcp://HOST:PORT` or `docker://[/PATH]`
    /// [default: $BUILDKIT_HOST, else the Docker daemon of $DOCKER_HOST, else
    /// `/var/run/docker.sock`].
    #[arg(long, value_name = "ADDR")]
    pub buildkit_addr: Option<String>,

    /// The CA certificate that signed a `tcp://` daemon's certificate.
    #[arg(long, value_name = "FILE")]
    pub buildkit_tls_ca: Option<PathBuf>,

    /// A client certificate for a `tcp://` daemon that requires one.
    #[arg(long, value_name = "FILE", requires = "buildkit_tls_key")]
    pub buildkit_tls_cert: Option<PathBuf>,

    /// The key of `--buildkit-tls-cert`.
    #[arg(long, value_name = "FILE", requires = "buildkit_tls_cert")]
    pub buildkit_tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,

    /// Say why each Feature is where it is: its round, its override priority and the
    /// `dependsOn`, `installsAfter` or priority that placed it.
    #[arg(long)]
    pub explain: bool,

    /// Print the LLB graph the BuildKit engine would solve, one op a line, instead of the plan.
    #[arg(long, conflicts_with_all = ["json", "explain"])]
    pub llb: bool,

    /// The engine whose plan to show. A Dockerfile source needs `buildkit`: its stage is built
    /// to learn the base.
    #[arg(long, value_enum, default_value_t = EngineArg::Local)]
    pub engine: EngineArg,

    #[command(flatten)]
    pub buildkit: BuildKitArgs,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The project folder: the one that holds `.devcontainer/` or `.devcontainer.json`.
    #[arg(default_value = ".")]
    pub path: PathBuf,

    /// The devcontainer.json to use, when not the one found under PATH.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// The local store folder, which caches fetched Features.
    #[arg(long, env = "ENVC_STORE")]
    pub store: Option<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Check the lockfile instead of writing it: fail (exit 2) when it would change.
    #[arg(long)]
    pub frozen: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image's tag in the local store.
    pub source: String,

    /// The registry reference to push to [default: SOURCE itself, which must then name a registry].
    pub destination: Option<String>,

    /// The local store folder [default: $XDG_CACHE_HOME/envc, else ~/.cache/envc].
    #[arg(long, env = "ENVC_STORE")]
    pub store: Option<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the key pair to `PREFIX.key` (encrypted) and `PREFIX.pub`. The password comes
    /// from `ENVC_PASSWORD` or a prompt.
    #[arg(long, value_name = "PREFIX", default_value = "envc")]
    pub output_key_prefix: PathBuf,

    /// Print the paths and the key's fingerprint as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key: cosign's encrypted PEM, or an unencrypted PKCS#8 PEM.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,

    /// The image to sign, by digest: `REGISTRY/REPOSITORY@sha256:...`.
    #[arg(value_name = "REF@DIGEST")]
    pub reference: String,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The public key (`PUBLIC KEY` PEM).
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,

    /// The image: by tag (resolved to its digest first) or by digest.
    #[arg(value_name = "REF")]
    pub reference: String,

    /// Also check the SBOM and provenance attestations, and print what they say.
    #[arg(long)]
    pub attestations: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let reporter = render::reporter(cli.progress, cli.verbose);
    match cli.command {
        Command::Build(args) => build::run(*args, reporter).await,
        Command::Plan(args) => plan::run(args, reporter).await,
        Command::Push(args) => push::run(args, reporter).await,
        Command::Lock(args) => lock::run(args, reporter).await,
        Command::Keygen(args) => keygen::run(args),
        Command::Sign(args) => sign::run(args, reporter).await,
        Command::Verify(args) => verify::run(args, reporter).await,
    }
}

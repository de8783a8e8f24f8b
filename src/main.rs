use std::io::IsTerminal;

use clap::Parser;

use envc::cli::{Cli, ProgressMode};

fn main() {
    // Die quietly when stdout's reader goes away (`envc build | head -1`), as other tools do,
    // instead of panicking on the failed write.
    // SAFETY: called first in main, before any other thread exists.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = Cli::parse();

    let level = match cli.verbose {
        0 => "warn",
        1 => "envc=debug,warn",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENVC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // With `--progress json`, logs are JSON lines too, so stderr stays one object a line.
    let json = cli.progress == ProgressMode::Json;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.event_format(envc::cli::render::JsonLogs).init();
    } else {
        logs.with_ansi(color)
            .with_target(false)
            .without_time()
            .init();
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let result = runtime.block_on(envc::cli::run(cli));
    // Engine threads may still be cleaning up after an interrupt; give them a moment.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));

    if let Err(error) = result {
        if json {
            eprintln!("{}", envc::cli::render::error_line(&error));
        } else {
            eprint!("{}", error.render());
        }
        std::process::exit(error.exit_kind().code());
    }
}

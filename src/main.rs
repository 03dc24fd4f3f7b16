//! The `ferrocache` binary: flags, logging, and the server.
//!
//! Exit status: 2 for a bad flag, 78 (EX_CONFIG) when the host or its
//! configuration cannot run the server, 71 when the address is taken, 70
//! after a panic, 0 after SIGINT/SIGTERM.

use std::io::IsTerminal;

use clap::Parser;
use ferrocache::config::{Args, Config, LogFormat};
use ferrocache::host::EXIT_CONFIG;
use ferrocache::transport::server;
use tracing_subscriber::EnvFilter;

/// Exit status for a flag that does not parse or validate (as clap's own).
const EXIT_USAGE: i32 = 2;

fn main() {
    let args = Args::parse();
    if let Err(e) = init_logging(&args) {
        eprintln!("ferrocache: {e}");
        std::process::exit(EXIT_CONFIG);
    }
    ferrocache::install_panic_policy();

    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrocache: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    if let Err(e) = server::run(config) {
        eprintln!("ferrocache: {e}");
        std::process::exit(e.exit_code());
    }
}

/// Logs to stderr as text or JSON. RUST_LOG, where set, must parse: a typo
/// there would otherwise silently log something else than asked.
fn init_logging(args: &Args) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::builder()
            .parse(&spec)
            .map_err(|e| format!("RUST_LOG={spec:?} is not a log filter: {e}"))?,
        _ => {
            let level = match args.verbose {
                0 | 1 => "info",
                2 => "debug",
                _ => "trace",
            };
            // glommio logs a multi-line warning when it cannot register its
            // I/O buffers (a low locked-memory limit); those buffers serve its
            // file I/O, which ferrocache does not use.
            EnvFilter::new(format!("{level},glommio::sys::uring=error"))
        }
    };
    // Colour only for a person at a terminal, never when NO_COLOR is set
    // (https://no-color.org: any non-empty value).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    installed.map_err(|e| format!("cannot set up logging: {e}"))
}

//! The `ferrocache` binary: flags, logging, and the server.

use clap::Parser;
use ferrocache::config::{Args, Config};
use ferrocache::transport::server;
use tracing_subscriber::EnvFilter;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    ferrocache::install_panic_policy();

    let config = match Config::from_args(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrocache: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = server::run(config) {
        eprintln!("ferrocache: {e}");
        std::process::exit(1);
    }
}

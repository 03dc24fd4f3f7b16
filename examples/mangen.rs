//! Writes the ferrocache(1) man page, generated from the clap flags so it
//! cannot drift from `--help`: `cargo run --example mangen > ferrocache.1`
//! (`make install` does this).

use clap::CommandFactory;
use ferrocache::config::Args;

fn main() -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Args::command());
    man.render(&mut std::io::stdout().lock())
}

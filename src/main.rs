//! The `release` binary: parse the command line, run it, report, exit.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = release::cli::Cli::parse();
    release::run(cli).into()
}

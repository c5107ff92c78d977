//! The `release` binary: parse the command line, run it, report, exit.

fn main() -> std::process::ExitCode {
    match release::parse(std::env::args_os().collect()) {
        Ok(cli) => release::run(cli).into(),
        Err(status) => status.into(),
    }
}

//! `release`: build, promote and deploy service artifacts on AWS.
//!
//! `run` is the whole program: resolve settings, dispatch to a command, print its outcome or
//! its error, and map that to an exit status.

mod archive;
mod aws;
mod bucket;
pub mod cli;
mod commands;
mod config;
pub mod docs;
mod env_vars;
mod error;
mod extract;
mod git;
mod hooks;
mod host_report;
mod identity;
mod install_dir;
mod legacy;
mod links;
mod man;
mod manifest;
mod names;
mod output;
mod promotion;
mod redact;
mod rollout;
mod signals;
mod signing;
mod walk;

use anyhow::Result;
use clap::CommandFactory;

use cli::{Cli, Command, OutputFormat};
use commands::Context;
use config::Settings;
pub use error::ExitStatus;
use output::{Outcome, Printer};

/// Parses the command line. When there is nothing to run (a usage error, `--help`,
/// `--version`), clap's text is printed and the exit status returned; a usage error under
/// `--output json` (or `RELEASE_OUTPUT=json`) also prints one JSON error document on stdout, as
/// every other error does.
pub fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, ExitStatus> {
    use clap::Parser as _;
    Cli::try_parse_from(&args)
        .map_err(|err| output::command_line_error(&err, json_requested(&args)))
}

/// Whether the (unparsed) command line asks for JSON: the last `--output`, else the env twin.
fn json_requested(args: &[std::ffi::OsString]) -> bool {
    let mut format = std::env::var(env_vars::OUTPUT).ok();
    let mut args = args.iter().filter_map(|a| a.to_str());
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--output=") {
            format = Some(value.to_owned());
        } else if arg == "--output" {
            format = args.next().map(str::to_owned);
        }
    }
    format.as_deref() == Some("json")
}

/// Runs the parsed command line and reports; returns the exit status.
pub fn run(cli: Cli) -> ExitStatus {
    init_logging(cli.global.verbose);
    let settings = match Settings::resolve(&cli.global) {
        Ok(settings) => settings,
        Err(err) => {
            let printer = Printer::new(
                cli.global.output.unwrap_or(OutputFormat::Text),
                cli.global.quiet,
            );
            return report_error(&printer, &err.into());
        }
    };
    let printer = Printer::new(settings.output, cli.global.quiet);
    for warning in &settings.warnings {
        printer.warn(warning);
    }
    if cli.global.show_config {
        printer.outcome(&Outcome {
            text: serde_json::to_string_pretty(&settings.to_json()).unwrap_or_default(),
            json: settings.to_json(),
        });
        return ExitStatus::Success;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return report_error(&printer, &err.into()),
    };
    let result = runtime.block_on(async {
        let ctx = Context {
            settings,
            printer: std::sync::Arc::new(printer),
            cancel: signals::install(),
        };
        let result = until_signal(&ctx, cli.command).await;
        (ctx, result)
    });
    let (ctx, result) = result;
    // Tasks still talking to S3 (an abandoned upload's parts) must not delay the exit.
    runtime.shutdown_background();
    match result {
        Ok(outcome) => {
            ctx.printer.outcome(&outcome);
            ExitStatus::Success
        }
        Err(err) => report_error(&ctx.printer, &err),
    }
}

/// Runs the command until it ends or a signal stops it. After a signal, a step that cleans up
/// after itself gets the time `signals::Cleanup` says; any other is abandoned at once, so a
/// call to an endpoint that never answers cannot keep the process alive.
async fn until_signal(ctx: &Context, command: Command) -> Result<Outcome> {
    let default = default_step(&command);
    let work = dispatch(ctx, command);
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => return result,
        () = ctx.cancel.cancelled() => {}
    }
    let cleanup = signals::current_step().map_or(signals::Cleanup::None, |s| s.cleanup);
    match cleanup {
        signals::Cleanup::None => Err(signals::interrupted(&default, false)),
        signals::Cleanup::Finish => work.await,
        signals::Cleanup::Within => tokio::time::timeout(signals::CLEANUP_GRACE, work)
            .await
            .unwrap_or_else(|_| Err(signals::interrupted(&default, true))),
    }
}

/// What a command is doing before it names a step of its own: reading, for all but those that
/// write, which name their writing steps.
fn default_step(command: &Command) -> signals::Step {
    let name = match command {
        Command::Build(_) => "build",
        Command::Completions(_) | Command::Man(_) => "help",
        Command::Promote(_) => "promote",
        Command::Rollback(_) => "rollback",
        Command::List(_) => "list",
        Command::Show(_) => "show",
        Command::History(_) => "history",
        Command::Install(_) => "install",
        Command::Current(_) => "current",
        Command::Push(_) => "push",
        Command::Status(_) => "status",
        Command::Unlock(_) => "unlock",
        Command::Key(_) => "key",
    };
    signals::Step {
        doing: format!("`release {name}` was reading what it needs"),
        leaves: "nothing was changed".into(),
        cleanup: signals::Cleanup::None,
    }
}

async fn dispatch(ctx: &Context, command: Command) -> Result<Outcome> {
    check_store_exists(ctx, &command)?;
    match command {
        Command::Build(args) => commands::build::run(ctx, args).await,
        Command::Completions(args) => Ok(completions(args.shell)),
        Command::Man(args) => man_page(args),
        Command::Promote(args) => commands::promote::run(ctx, args).await,
        Command::Rollback(args) => commands::rollback::run(ctx, args).await,
        Command::List(args) => commands::list::run(ctx, args).await,
        Command::Show(args) => commands::show::run(ctx, args).await,
        Command::History(args) => commands::history::run(ctx, args).await,
        Command::Install(args) => commands::install::run(ctx, args).await,
        Command::Current(args) => commands::current::run(ctx, args).await,
        Command::Push(args) => commands::push::run(ctx, args).await,
        Command::Status(args) => commands::status::run(ctx, args).await,
        Command::Unlock(args) => commands::unlock::run(ctx, args).await,
        Command::Key(args) => commands::key::run(ctx, args).await,
    }
}

/// A `file://` store that does not exist is a typo or a store not made yet: reading it would
/// answer "no builds" and hide the mistake. Only `build` creates it (on its first write), and
/// the commands that do not read the store do not care.
fn check_store_exists(ctx: &Context, command: &Command) -> Result<()> {
    let reads = !matches!(
        command,
        Command::Build(_) | Command::Completions(_) | Command::Man(_) | Command::Current(_)
    );
    let bucket::store::StoreLocation::Dir { root } = &ctx.settings.store else {
        return Ok(());
    };
    if reads && !root.exists() {
        return Err(error::ExitError::Usage(format!(
            "no such store `file://{}`: check --bucket (BUCKET, release.toml); `release build` \
             creates a store on its first build",
            root.display()
        ))
        .into());
    }
    Ok(())
}

fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "release", &mut script);
    let text = String::from_utf8_lossy(&script).into_owned();
    let doc = Completions {
        shell: shell.to_string(),
        script: &text,
    };
    Outcome::new(text.clone(), &doc)
}

/// `completions`' document (docs/output.md).
#[derive(serde::Serialize)]
struct Completions<'a> {
    shell: String,
    script: &'a str,
}

/// `man --dir`'s document (docs/output.md).
#[derive(serde::Serialize)]
struct ManPagesWritten<'a> {
    dir: &'a std::path::Path,
    /// The file names written into `dir`.
    pages: &'a [String],
}

/// `man`'s document (docs/output.md).
#[derive(serde::Serialize)]
struct ManPage<'a> {
    /// The page, roff.
    man: &'a str,
}

/// The `error` object added to a report that failed (docs/output.md).
#[derive(serde::Serialize)]
struct ReportError<'a> {
    message: &'a str,
    exit_code: u8,
}

fn man_page(args: cli::ManArgs) -> Result<Outcome> {
    if let Some(dir) = args.dir {
        let pages = man::write_all(&dir)?;
        let text = format!("wrote {} man pages to {}", pages.len(), dir.display());
        let doc = ManPagesWritten {
            dir: &dir,
            pages: &pages,
        };
        return Ok(Outcome::new(text, &doc));
    }
    let text = man::page(args.command.as_deref())?;
    Ok(Outcome::new(text.clone(), &ManPage { man: &text }))
}

fn report_error(printer: &Printer, err: &anyhow::Error) -> ExitStatus {
    let status = error::exit_status(err);
    if let Some(reported) = err.downcast_ref::<error::FailedWithOutcome>() {
        let mut outcome = reported.outcome.clone();
        if let Some(doc) = outcome.json.as_object_mut() {
            doc.insert(
                "error".into(),
                serde_json::to_value(ReportError {
                    message: &reported.message,
                    exit_code: status as u8,
                })
                .unwrap_or_default(),
            );
        }
        printer.outcome(&outcome);
        printer.error_line(&reported.message);
        return status;
    }
    printer.error(&error::messages(err), status as u8);
    status
}

/// Logs go to stderr through `tracing`: warnings by default (the AWS SDK's too), more with
/// `-v`, or exactly what `RELEASE_LOG` says.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "release=info,warn",
        2 => "release=debug,info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::log_writer)
        // No colour off a terminal (a Jenkins console shows escape codes as text).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

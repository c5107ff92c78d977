//! `release man`: the main page and one page per command, from the CLI definition.
//!
//! The main page adds what clap cannot know: EXIT STATUS, ENVIRONMENT and EXAMPLES. Command
//! pages are named `release-COMMAND(1)`, as the main page's COMMANDS section refers to them.

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use crate::cli::Cli;
use crate::docs;
use crate::error::ExitError;

/// The exit codes, as every command uses them.
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Done (also: nothing to do, e.g. the build was already installed).",
    ),
    ("1", "Failed; what was changed is said in the message."),
    (
        "2",
        "Usage or input error (bad flag, missing setting, unreachable endpoint, empty build): nothing was changed.",
    ),
    (
        "3",
        "Conflict: another build, promote or push moved the same pointer or holds the lock; nothing was changed.",
    ),
    (
        "4",
        "Partial: some of the work was done (a push with failed hosts, a build stored but latest.txt not moved).",
    ),
];

/// Typical runs, one a line.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "release --artifact web build",
        "Archive the checkout (minus what git ignores) as the next build and move latest.",
    ),
    (
        "release --artifact web build --list",
        "Print the files a build would archive; writes nothing.",
    ),
    (
        "release --artifact web promote latest",
        "Make the newest build the stable one and tag its commit.",
    ),
    (
        "release --artifact web list",
        "Builds, newest first, latest and stable marked.",
    ),
    (
        "release --artifact web install --dir /opt/web",
        "On a host: install latest-stable (in instance user data).",
    ),
    (
        "release --artifact web push --asg web-asg --batch 25%",
        "Roll latest-stable onto an Auto Scaling Group's instances.",
    ),
    (
        "release man --dir /usr/local/share/man/man1",
        "Write this page and one page per command.",
    ),
];

/// The built command tree: subcommands know their `release-NAME` display names and carry the
/// global options.
fn built() -> clap::Command {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    cli
}

/// The main page (`command` None) or one command's page, as roff.
pub(crate) fn page(command: Option<&str>) -> Result<String> {
    let cli = built();
    let mut out = Vec::new();
    match command {
        None => main_page(&cli, &mut out)?,
        Some(name) => Man::new(find(&cli, name)?.clone()).render(&mut out)?,
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `release.1` and `release-COMMAND.1` for every command into `dir`; returns the names.
pub(crate) fn write_all(dir: &Path) -> Result<Vec<String>> {
    fs_err::create_dir_all(dir)?;
    let cli = built();
    let mut names = vec!["release.1".to_owned()];
    fs_err::write(dir.join("release.1"), page(None)?)?;
    for command in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
        let man = Man::new(command.clone());
        let name = man.get_filename();
        let mut out = Vec::new();
        man.render(&mut out)?;
        fs_err::write(dir.join(&name), out)
            .with_context(|| format!("cannot write the man page `{name}`"))?;
        names.push(name);
    }
    Ok(names)
}

fn find<'a>(cli: &'a clap::Command, name: &str) -> Result<&'a clap::Command> {
    cli.find_subcommand(name).ok_or_else(|| {
        let known: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        ExitError::Usage(format!(
            "no command `{name}`: the man pages are for {}",
            known.join(", ")
        ))
        .into()
    })
}

fn main_page(cli: &clap::Command, out: &mut Vec<u8>) -> Result<()> {
    let man = Man::new(cli.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    extra_sections(cli).to_writer(out)?;
    man.render_version_section(out)?;
    Ok(())
}

fn extra_sections(cli: &clap::Command) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", [])
            .text([bold(*code)])
            .text([roman(*meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Each flag's twin (a flag wins over its variable, which wins over release.toml):",
    )]);
    for (name, flags) in docs::env_twins(cli) {
        roff.control("TP", [])
            .text([bold(name)])
            .text([roman(plain(&flags))]);
    }
    for (name, meaning) in docs::OTHER_ENV {
        roff.control("TP", [])
            .text([bold(*name)])
            .text([roman(plain(meaning))]);
    }
    roff.control("SH", ["EXAMPLES"]);
    for (command, meaning) in EXAMPLES {
        roff.control("TP", [])
            .text([bold(*command)])
            .text([roman(*meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| format!("release-{}(1)", c.get_name()))
        .collect();
    roff.text([roman(pages.join(", "))]);
    roff
}

/// Markdown's backticks out of a description.
fn plain(text: &str) -> String {
    text.replace('`', "")
}

//! SSH to hosts through the system OpenSSH client (the openssh crate drives `ssh` with a
//! control master), so users' ~/.ssh/config, ProxyJump bastions, agents and known_hosts work as
//! they do by hand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::error::ExitError;

/// How to reach hosts.
#[derive(Debug, Clone)]
pub(crate) struct SshOptions {
    /// Login user, if one was given; otherwise the ssh config's `User` (or ssh's own default,
    /// the local user) decides, as it does by hand.
    pub(crate) user: Option<String>,
    /// Port, if not the config's.
    pub(crate) port: Option<u16>,
    /// An ssh config file in place of ~/.ssh/config.
    pub(crate) config: Option<PathBuf>,
    /// An identity file.
    pub(crate) identity: Option<PathBuf>,
    /// Host key policy.
    pub(crate) host_keys: KnownHosts,
    /// Give up connecting after this long.
    pub(crate) connect_timeout: Duration,
}

/// `yes`, `accept-new` or `no`.
pub(crate) fn host_key_policy(text: &str) -> Result<KnownHosts, ExitError> {
    match text {
        "yes" => Ok(KnownHosts::Strict),
        "accept-new" => Ok(KnownHosts::Add),
        "no" => Ok(KnownHosts::Accept),
        other => Err(ExitError::Usage(format!(
            "invalid --strict-host-keys `{other}`: use yes, accept-new or no"
        ))),
    }
}

/// Opens a control-master connection to `address`. `control_dir` must be a short path: Unix
/// sockets allow about 100 bytes.
pub(crate) async fn connect(
    options: &SshOptions,
    address: &str,
    control_dir: &Path,
) -> Result<Session> {
    let mut builder = SessionBuilder::default();
    if let Some(user) = &options.user {
        builder.user(user.clone());
    }
    builder
        .known_hosts_check(options.host_keys.clone())
        .connect_timeout(options.connect_timeout)
        .server_alive_interval(Duration::from_secs(15))
        .control_directory(control_dir);
    if let Some(port) = options.port {
        builder.port(port);
    }
    if let Some(config) = &options.config {
        builder.config_file(config);
    }
    if let Some(identity) = &options.identity {
        builder.keyfile(identity);
    }
    builder
        .connect_mux(address)
        .await
        .with_context(|| format!("cannot connect to {address} over ssh"))
}

/// A finished remote command: its exit code and stdout (stderr went to `on_line`).
#[derive(Debug)]
pub(crate) struct Finished {
    /// Exit code, or `None` if killed by a signal.
    pub(crate) code: Option<i32>,
    /// Everything it printed on stdout.
    pub(crate) stdout: String,
    /// The last lines it printed on stderr, for the error message.
    pub(crate) stderr_tail: Vec<String>,
}

/// Runs `words` (each escaped as one word) or `shell` (a command line given to the remote
/// shell as is), streaming stderr lines to `on_line` as they come.
pub(crate) async fn run(
    session: &Session,
    command: &RemoteCommand,
    mut on_line: impl FnMut(&str),
) -> Result<Finished> {
    let mut remote = match command {
        RemoteCommand::Words(words) => {
            let mut c = session.command(words[0].clone());
            c.args(&words[1..]);
            c
        }
        RemoteCommand::Shell(line) => session.raw_command(line),
    };
    let mut child = remote
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .context("cannot start the remote command")?;
    let stdout = child.stdout().take().context("no stdout pipe")?;
    let stderr = child.stderr().take().context("no stderr pipe")?;
    let collect_stdout = async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    };
    let mut stderr_tail: Vec<String> = Vec::new();
    let stream_stderr = async {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            on_line(&line);
            stderr_tail.push(line);
            if stderr_tail.len() > 5 {
                stderr_tail.remove(0);
            }
        }
    };
    let (stdout, ()) = tokio::join!(collect_stdout, stream_stderr);
    let status = child.wait().await.context("lost the remote command")?;
    Ok(Finished {
        code: status.code(),
        stdout,
        stderr_tail,
    })
}

/// What to run on a host.
#[derive(Debug, Clone)]
pub(crate) enum RemoteCommand {
    /// Program and arguments, each sent as one quoted word.
    Words(Vec<String>),
    /// A command line for the remote shell (a rendered `--command` template).
    Shell(String),
}

impl std::fmt::Display for RemoteCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Words(words) => {
                let quoted: Vec<String> = words.iter().map(|w| super::template::quote(w)).collect();
                f.write_str(&quoted.join(" "))
            }
            Self::Shell(line) => f.write_str(line),
        }
    }
}

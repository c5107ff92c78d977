//! The command line, as clap types only: no logic lives here.
//!
//! Doc comments are the help text. Options that Jenkins or a host sets get an `env` twin.
//! Values left unset here fall back to `release.toml` and then to defaults (see `config`).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::bucket::store::Sse;
use crate::env_vars;

/// Build, promote and deploy service artifacts on AWS.
#[derive(Debug, Parser)]
#[command(name = "release", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes. Under their own heading, so that a command's help lists its own
/// options first.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Artifact (service) name, e.g. `obelix-appengine`.
    #[arg(long, global = true, env = env_vars::ARTIFACT)]
    pub artifact: Option<String>,

    /// S3 bucket that holds the builds, or `file://DIR` for a local directory store
    /// [default: build].
    #[arg(long, global = true, env = env_vars::BUCKET)]
    pub bucket: Option<String>,

    /// Stage prefix inside the bucket [default: prod].
    #[arg(long, global = true, env = env_vars::STAGE)]
    pub stage: Option<String>,

    /// AWS region (otherwise the standard AWS chain: AWS_REGION, profile, instance).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// Server-side encryption of every object written [default: AES256].
    #[arg(long, global = true, env = env_vars::SSE)]
    pub sse: Option<Sse>,

    /// KMS key id for `--sse aws:kms`.
    #[arg(long, global = true, env = env_vars::SSE_KMS_KEY_ID)]
    pub sse_kms_key_id: Option<String>,

    /// Output format: `text` for people, `json` for scripts (one document on stdout)
    /// [default: text].
    #[arg(long, global = true, env = env_vars::OUTPUT)]
    pub output: Option<OutputFormat>,

    /// Resolve and print the plan, but write nothing (`--dry-run=false` to turn it off)
    /// [default: false].
    // `require_equals`: otherwise `--dry-run promote 1` would take `promote` as the value.
    #[arg(
        long,
        global = true,
        env = env_vars::DRY_RUN,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub dry_run: Option<bool>,

    /// Seconds to open a connection to AWS (or the S3-compatible endpoint) [default: 10].
    #[arg(long, global = true, env = env_vars::CONNECT_TIMEOUT, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    /// Seconds for an AWS answer to start once a request was sent [default: 60]. Streamed
    /// downloads and uploads are judged by their progress instead.
    #[arg(long, global = true, env = env_vars::READ_TIMEOUT, value_name = "SECS")]
    pub read_timeout: Option<u64>,

    /// Seconds for a whole AWS call, retries included [default: 300].
    #[arg(long, global = true, env = env_vars::OPERATION_TIMEOUT, value_name = "SECS")]
    pub operation_timeout: Option<u64>,

    /// Configuration file [default: ./release.toml].
    #[arg(long, global = true, env = env_vars::CONFIG)]
    pub config: Option<PathBuf>,

    /// More logs on stderr (repeat for more).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// No progress, only results, warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print the resolved settings and exit.
    #[arg(long, global = true, hide = true)]
    pub show_config: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Human-readable lines.
    Text,
    /// One JSON document.
    Json,
}

/// Archive compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    /// `.tar.gz`, readable everywhere.
    Gzip,
    /// `.tar.zst`, much faster; hosts need a zstd-aware `release install`.
    Zstd,
    /// `.tar`, the old jobs' format.
    None,
}

/// The commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing would only add noise
pub enum Command {
    /// Version the workspace, archive it and upload it as the next build.
    Build(BuildArgs),
    /// Make a build the stable one (latest-stable.txt) and tag its commit.
    Promote(PromoteArgs),
    /// Promote the build that was stable before the current one.
    Rollback(TagArgs),
    /// List builds, newest first, marking latest and stable.
    List(ListArgs),
    /// Print one build's manifest.
    Show(ShowArgs),
    /// List promotions and pushes, newest first.
    History(ListArgs),
    /// On a host: download, verify and switch to a build.
    Install(InstallArgs),
    /// On a host: print the installed build.
    Current(CurrentArgs),
    /// Roll a build onto Auto Scaling Groups or hosts over SSH (or SSM).
    Push(PushArgs),
    /// Show which build each host runs, against latest-stable.
    Status(StatusArgs),
    /// Remove a stale push lock.
    Unlock(UnlockArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or one command's, or write them all with --dir.
    Man(ManArgs),
    /// Signing keys: print the public key to give hosts as a trusted key.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `release key`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the public key of `kms:KEY` (PEM) or `key:FILE` (minisign), for trusted_keys.
    Export(KeyExportArgs),
}

/// `release key export`.
#[derive(Debug, Args)]
pub struct KeyExportArgs {
    /// The signing key: `kms:alias/NAME` or `key:FILE`.
    #[arg(value_name = "KEY")]
    pub key: String,
}

/// `release build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Files and directories to archive, relative to the working directory
    /// [default: everything in it].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Leave out paths matching this glob (relative to the working directory; `*` stays
    /// within a directory, `**` crosses them). Repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Archive compression [default: gzip].
    #[arg(long)]
    pub compression: Option<CompressionArg>,

    /// Compression level (gzip 0-9, zstd 1-19) [default: gzip 1, zstd 3].
    #[arg(long)]
    pub level: Option<u32>,

    /// Semantic version to record as SEMVER (X.Y.Z).
    #[arg(long)]
    pub semver: Option<String>,

    /// Also write the archive to this local file (e.g. for Jenkins' archiveArtifacts).
    #[arg(long, value_name = "FILE")]
    pub keep_local: Option<PathBuf>,

    /// S3 storage class of the archive [default: STANDARD].
    #[arg(long)]
    pub storage_class: Option<String>,

    /// Sign the manifest with this key: `kms:alias/NAME` (AWS KMS, ECC_NIST_P256) or
    /// `key:FILE` (a minisign secret key); see docs/signing.md.
    #[arg(long, env = env_vars::SIGN, value_name = "KEY")]
    pub sign: Option<String>,

    /// Also archive files that git ignores (.gitignore, .git/info/exclude) when building the
    /// whole working directory. Named PATHs are always taken whole (`--include-ignored=false`
    /// overrides release.toml) [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub include_ignored: Option<bool>,

    /// Build even when nothing but directories would be archived (`--allow-empty=false`
    /// overrides release.toml) [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_empty: Option<bool>,

    /// Refuse (exit 2) when files in the archive differ from GIT_COMMIT (modified or not
    /// committed, and not ignored), instead of warning: for CI (`--require-clean=false`
    /// overrides release.toml) [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub require_clean: Option<bool>,

    /// Print the paths that would be archived (directories end in `/`) and stop; needs no
    /// bucket.
    #[arg(long)]
    pub list: bool,
}

/// Options shared by promote and rollback.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Tag to move to the build's commit [default: GIT_TAG_NAME, else {artifact}-stable].
    #[arg(long, env = env_vars::GIT_TAG_NAME)]
    pub tag: Option<String>,

    /// Git remote to push the tag to [default: origin].
    #[arg(long)]
    pub remote: Option<String>,

    /// Repository to tag [default: the one containing the working directory].
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// Move the pointer only; do not touch git.
    #[arg(long)]
    pub no_tag: bool,

    /// Make stable a build in another archive format than the stable old job's `.tar`, which
    /// boot scripts that download `{artifact}-{N}.tar` cannot read.
    #[arg(long)]
    pub allow_format_change: bool,

    /// Make stable only a build signed by this public key (minisign or PEM). Repeatable; env:
    /// comma-separated.
    #[arg(long = "trusted-key", env = env_vars::TRUSTED_KEYS, value_delimiter = ',', value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
}

/// `release promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The build: `latest`, a number, or a semantic version.
    #[arg(env = env_vars::RELEASE_VERSION)]
    pub build: String,

    #[command(flatten)]
    pub tag: TagArgs,
}

/// `release list` and `release history`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// At most this many entries [default: 20].
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `release show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The build: `latest`, `latest-stable`, a number, or a semantic version.
    pub build: String,
}

/// `release install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The build [default: latest-stable].
    pub build: Option<String>,

    /// Install directory [default: RELEASE_INSTALL_DIR, else /opt/{artifact}].
    #[arg(long, env = env_vars::INSTALL_DIR)]
    pub dir: Option<PathBuf>,

    /// Keep this many releases on disk [default: 5].
    #[arg(long)]
    pub keep: Option<usize>,

    /// Command run in the new release before switching; failure means no switch.
    #[arg(long, value_name = "CMD")]
    pub check: Option<String>,

    /// Command run after switching; failure switches back.
    #[arg(long, value_name = "CMD")]
    pub run: Option<String>,

    /// Reinstall even if already installed; use another artifact's directory.
    #[arg(long)]
    pub force: bool,

    /// File written after a successful switch (e.g. what a load balancer health check reads).
    #[arg(long, value_name = "PATH")]
    pub health_file: Option<PathBuf>,

    /// Install only builds signed by this public key (minisign or PEM). Repeatable; env:
    /// comma-separated.
    #[arg(long = "trusted-key", env = env_vars::TRUSTED_KEYS, value_delimiter = ',', value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,

    /// This host's id in the bucket's host reports [default: the EC2 instance id from IMDSv2,
    /// else the hostname].
    #[arg(long, env = env_vars::HOST_ID, value_name = "ID")]
    pub host_id: Option<String>,

    /// How this install was started, for its host report [default: manual].
    #[arg(long, env = env_vars::STARTED_BY)]
    pub started_by: Option<StartedBy>,

    /// The push this install belongs to, for its host report [default: none].
    #[arg(long, env = env_vars::PUSH_ID, value_name = "ID")]
    pub push_id: Option<String>,

    /// Write no host report to the bucket (`hosts/`).
    #[arg(long)]
    pub no_report: bool,
}

/// How an install was started (`started_by` in its host report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartedBy {
    /// By the instance's boot script (user data).
    Boot,
    /// By `release push` over SSH.
    Ssh,
    /// By `release push --via ssm`.
    Ssm,
    /// By hand.
    Manual,
}

impl StartedBy {
    /// The word in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Ssh => "ssh",
            Self::Ssm => "ssm",
            Self::Manual => "manual",
        }
    }
}

/// `release current`.
#[derive(Debug, Args)]
pub struct CurrentArgs {
    /// Install directory [default: RELEASE_INSTALL_DIR, else /opt/{artifact}].
    #[arg(long, env = env_vars::INSTALL_DIR)]
    pub dir: Option<PathBuf>,
}

/// Which hosts a fleet command talks to, and how.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Auto Scaling Group whose instances to target. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub asg: Vec<String>,

    /// Hosts to target, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "H,H,...")]
    pub hosts: Vec<String>,

    /// SSH user [default: the ssh config's `User`, else ssh's own default].
    #[arg(long)]
    pub ssh_user: Option<String>,

    /// SSH port [default: 22].
    #[arg(long)]
    pub ssh_port: Option<u16>,

    /// SSH config file.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// SSH identity file.
    #[arg(short = 'i', value_name = "KEY")]
    pub identity: Option<PathBuf>,

    /// Host key policy [default: yes].
    #[arg(long, value_name = "yes|accept-new|no")]
    pub strict_host_keys: Option<String>,

    /// At most this many new SSH connections at once [default: 8].
    #[arg(long)]
    pub max_connections: Option<usize>,

    /// Which instance address to use [default: private].
    #[arg(long, value_name = "private|public|dns")]
    pub address: Option<String>,
}

/// `release push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The build [default: latest-stable].
    pub build: Option<String>,

    #[command(flatten)]
    pub target: TargetArgs,

    /// Hosts per batch: a number or a percentage [default: 25%].
    #[arg(long, value_name = "N|P%")]
    pub batch: Option<String>,

    /// Hosts in a first, separate batch [default: 0, none].
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,

    /// Failed hosts tolerated over the whole push [default: 0].
    #[arg(long)]
    pub max_failures: Option<usize>,

    /// Health check URL template, e.g. `http://{address}/health`.
    #[arg(long)]
    pub health_url: Option<String>,

    /// Health check command run on each host.
    #[arg(long, value_name = "CMD")]
    pub health_command: Option<String>,

    /// Seconds to wait for a host to become healthy [default: 60].
    #[arg(long, value_name = "SECS")]
    pub health_timeout: Option<u64>,

    /// Remote command template instead of `release install`.
    #[arg(long, value_name = "TEMPLATE")]
    pub command: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Directory for per-host logs.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// How to reach the hosts: OpenSSH from here, or Systems Manager Run Command by instance id
    /// (needs --asg) [default: ssh].
    #[arg(long, env = env_vars::PUSH_VIA, value_name = "ssh|ssm")]
    pub via: Option<String>,

    /// With --via ssm: S3 location where SSM writes each host's full output (the report says
    /// where), e.g. `s3://my-logs/release` [default: none, only what SSM returns inline].
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub ssm_output: Option<String>,
}

/// `release status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Where the hosts' state comes from: `bucket` (their reports; no connection to any host)
    /// or `ssh` (asks each host) [default: bucket with --asg, ssh with --hosts].
    #[arg(long, env = env_vars::STATUS_VIA)]
    pub via: Option<StatusVia>,

    /// A host whose last report is older than this is STALE, e.g. `30d`, `12h`, `90s`
    /// [default: 30d].
    #[arg(long, value_name = "DURATION")]
    pub stale_after: Option<String>,

    /// Keep the reports of terminated instances instead of removing them.
    #[arg(long)]
    pub keep_reports: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Where `status` learns the hosts' state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusVia {
    /// The host reports in the bucket.
    Bucket,
    /// Each host, over SSH.
    Ssh,
}

/// How `release` runs on the hosts (push and status).
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Run `release` on the hosts with `sudo -n`.
    #[arg(long)]
    pub sudo: bool,

    /// Path of `release` on the hosts [default: release; /usr/local/bin/release for push --via ssm].
    #[arg(long, value_name = "PATH")]
    pub remote_binary: Option<String>,

    /// Install directory on the hosts [default: theirs].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `release unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove the lock even if it has not expired.
    #[arg(long)]
    pub force: bool,
}

/// `release man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Print this command's page (`release-COMMAND(1)`) instead of the main page.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,

    /// Write the main page and every command's page (release.1, release-build.1, ...) into
    /// this directory instead of printing one.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

/// `release completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn dry_run_does_not_swallow_the_command() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from(["release", "--dry-run", "promote", "1"]).unwrap();
        assert_eq!(cli.global.dry_run, Some(true));
        assert!(matches!(cli.command, super::Command::Promote(_)));
        let cli = super::Cli::try_parse_from(["release", "--dry-run=false", "list"]).unwrap();
        assert_eq!(cli.global.dry_run, Some(false));
    }
}

//! Git repositories on disk: a working tree the binary builds from, and a bare `origin`.
//!
//! Made with the real `git` program, as a Jenkins workspace is, called with argv (no shell).
//! Commits are deterministic: fixed author, committer and dates, and no user or system git
//! configuration is read, so the same test always produces the same commit ids — which lets
//! tests compare archives and manifests byte for byte.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Unix time of the first commit; commit `n` (from 0) is dated `COMMIT_EPOCH + 60 * n`.
pub const COMMIT_EPOCH: i64 = 1_700_000_000;

/// Author and committer of every test commit (also the repository's local `user.*` config, which
/// the binary needs to write annotated tags).
pub const GIT_NAME: &str = "Release Tests";
/// See [`GIT_NAME`].
pub const GIT_EMAIL: &str = "tests@release.invalid";

/// A temporary git working tree on branch `main`.
pub struct Workspace {
    dir: TempDir,
    commits: i64,
}

impl Workspace {
    /// An empty repository (`git init -b main`) with local user config.
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("release-ws-")
            .tempdir()
            .expect("create a tempdir");
        git(dir.path(), ["init", "--quiet", "-b", "main"]);
        git(dir.path(), ["config", "user.name", GIT_NAME]);
        git(dir.path(), ["config", "user.email", GIT_EMAIL]);
        git(dir.path(), ["config", "commit.gpgsign", "false"]);
        git(dir.path(), ["config", "tag.gpgsign", "false"]);
        Workspace { dir, commits: 0 }
    }

    /// The working tree's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `relative` (creating parent directories); returns the full path.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        fs_err::write(&path, contents).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    /// Stages everything (`git add -A`) and commits it (empty commits allowed); returns the
    /// commit id. The commit is dated [`COMMIT_EPOCH`] plus a minute per earlier commit.
    pub fn commit(&mut self, message: &str) -> String {
        let date = format!("{} +0000", COMMIT_EPOCH + 60 * self.commits);
        self.commits += 1;
        git(self.path(), ["add", "-A"]);
        let status = base_command(self.path())
            .args([
                "commit",
                "--quiet",
                "--allow-empty",
                "--no-verify",
                "-m",
                message,
            ])
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .status()
            .expect("run git commit");
        assert!(
            status.success(),
            "git commit in {} failed: {status}",
            self.path().display()
        );
        self.git(["rev-parse", "HEAD"])
    }

    /// Runs `git ARGS` in the working tree and returns its trimmed stdout; panics on failure.
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        git(self.path(), args)
    }

    /// Adds `bare` as remote `origin`.
    pub fn add_origin(&self, bare: &BareRepo) {
        self.git([
            OsStr::new("remote"),
            OsStr::new("add"),
            OsStr::new("origin"),
            bare.path().as_os_str(),
        ]);
    }

    /// Pushes the current branch to `origin`.
    pub fn push(&self) {
        self.git(["push", "--quiet", "origin", "HEAD"]);
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

/// A temporary bare repository, the `origin` that tags are pushed to.
pub struct BareRepo {
    dir: TempDir,
}

impl BareRepo {
    /// An empty bare repository (`git init --bare`) whose HEAD is `main`.
    pub fn new() -> BareRepo {
        let dir = tempfile::Builder::new()
            .prefix("release-origin-")
            .tempdir()
            .expect("create a tempdir");
        git(dir.path(), ["init", "--quiet", "--bare", "-b", "main"]);
        BareRepo { dir }
    }

    /// The repository's directory (usable as a remote URL).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `git ARGS` in the bare repository and returns its trimmed stdout.
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        git(self.path(), args)
    }

    /// The commit that tag `name` points at (annotated tags peeled), or `None` if absent.
    pub fn tag_commit(&self, name: &str) -> Option<String> {
        let output = base_command(self.path())
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/tags/{name}^{{commit}}"),
            ])
            .output()
            .expect("run git rev-parse");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Every tag name, sorted.
    pub fn tags(&self) -> Vec<String> {
        let out = self.git(["tag", "--list"]);
        let mut tags: Vec<String> = out.lines().map(str::to_owned).collect();
        tags.sort();
        tags
    }
}

impl Default for BareRepo {
    fn default() -> Self {
        BareRepo::new()
    }
}

/// `git` in `dir`, isolated from the user's and the system's configuration.
fn base_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", GIT_NAME)
        .env("GIT_AUTHOR_EMAIL", GIT_EMAIL)
        .env("GIT_COMMITTER_NAME", GIT_NAME)
        .env("GIT_COMMITTER_EMAIL", GIT_EMAIL)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    command
}

/// Runs `git ARGS` in `dir`; returns trimmed stdout, panics with stderr on failure.
fn git<I, S>(dir: &Path, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = base_command(dir)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git ({e}): the tests need the git program on PATH"));
    assert!(
        output.status.success(),
        "git {args:?} in {} failed ({}):\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

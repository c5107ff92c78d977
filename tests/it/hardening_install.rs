//! Issue 10, on the host: `release install` killed after the switch, closed pipes, read-only
//! releases pruned by a non-root user, partial directories, the manifest written before the
//! files, SIGTERM during hooks, a relative `--dir`, a real directory named `current`, config
//! files other users can change, and releases reused from disk.
//!
//! Runs the builder cannot express (another user, a process group of its own, a shell pipeline)
//! use [`raw`], which gives the binary the harness's environment.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::common::host_dir::{current, install, releases};
use crate::common::interrupt::wait_for;
use crate::common::{Release, TestContext};

const ARTIFACT: &str = "web";
/// The user the non-root cases run as (`nobody` on Debian).
const NOBODY: u32 = 65534;

/// `n` small builds of a workspace with a nested directory.
fn builds(n: u64) -> TestContext {
    let mut ctx = TestContext::new();
    ctx.workspace.write("app/run.sh", "#!/bin/sh\necho run\n");
    ctx.workspace.write("app/sub/deep/file.txt", "deep\n");
    for i in 1..=n {
        ctx.workspace.write("app/version.txt", format!("{i}\n"));
        ctx.workspace.commit(&format!("build {i}"));
        ctx.release()
            .args(["--artifact", ARTIFACT, "-q", "build", "app"])
            .success();
    }
    ctx
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_nobody(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", path.display());
}

/// `program` with the environment the harness gives the binary, talking to `ctx`'s bucket.
fn raw(ctx: &TestContext, home: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("TZ", "UTC")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_ENDPOINT_URL", ctx.moto.endpoint())
        .env("RELEASE_BUCKET", &ctx.bucket)
        .env("ARTIFACT", ARTIFACT)
        .stdin(Stdio::null());
    command
}

/// Waits at most `limit` for `child`; kills it and fails the test past that.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Output of a finished command, with the test failing past `limit`.
fn output_bounded(mut command: Command, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes meanwhile, so a chatty child never blocks.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).unwrap();
        v
    });
    let status = wait_bounded(&mut child, limit);
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The binary where any user can run it (the build's copy is under root's 0700 home).
struct SharedBinary {
    _dir: TempDir,
    path: PathBuf,
}

fn shared_binary() -> SharedBinary {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let path = dir.path().join("release");
    let built = env!("CARGO_BIN_EXE_release");
    if std::fs::hard_link(built, &path).is_err() {
        std::fs::copy(built, &path).unwrap();
    }
    chmod(&path, 0o755);
    SharedBinary { _dir: dir, path }
}

/// A host directory owned by `nobody`, with `nobody`'s HOME in it.
struct NobodyHost {
    dir: TempDir,
    binary: SharedBinary,
}

impl NobodyHost {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        std::fs::create_dir(dir.path().join("home")).unwrap();
        std::fs::create_dir(dir.path().join("web")).unwrap();
        chown_nobody(dir.path());
        NobodyHost {
            dir,
            binary: shared_binary(),
        }
    }

    fn install_dir(&self) -> PathBuf {
        self.dir.path().join("web")
    }

    /// `release install ARGS --dir web` as `nobody`.
    fn install(&self, ctx: &TestContext, args: &[&str]) -> std::process::Output {
        let mut command = raw(ctx, &self.dir.path().join("home"), "setpriv");
        command
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .arg(&self.binary.path)
            .arg("install")
            .args(args)
            .arg("--dir")
            .arg(self.install_dir())
            .current_dir(self.dir.path());
        output_bounded(command, Duration::from_secs(120))
    }
}

fn expect(output: &std::process::Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}\n--- stdout:\n{}\n--- stderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// A tar of directories (name, mode) and files (name, mode, data), in order.
fn tar(members: &[(&str, u32, Option<&[u8]>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, mode, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        header.set_mtime(1);
        match data {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, *data).unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, name, &[][..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// Publishes `archive` as build `n`; the manifest's digest is that of `digest_of`.
fn publish(ctx: &TestContext, n: u64, archive: &[u8], digest_of: &[u8]) {
    let name = format!("web-{n}.tar");
    ctx.s3
        .put(&ctx.bucket, &format!("web/prod/{name}"), archive.to_vec());
    let manifest = format!(
        "MODULE=web\nVERSION={n}\nBUILD=manual\nGIT_COMMIT=0000\nTIMESTAMP=now\nARCHIVE={name}\n\
         SHA256={}\nSIZE={}\n",
        hex::encode(Sha256::digest(digest_of)),
        digest_of.len()
    );
    ctx.s3
        .put(&ctx.bucket, &format!("web/prod/web-{n}.release"), manifest);
}

/// Item 3: `kill -9` of the install's process group while its `--run` hook runs leaves
/// `current` switched but the install unfinished; the re-run finishes it (hooks, health file),
/// and a failing re-run switches back as a failing install does.
#[test]
fn killed_after_the_switch_the_rerun_finishes_the_install() {
    let ctx = builds(3);
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let dir = h.join("web");
    let hook = format!(
        "echo \"$RELEASE_BUILD\" >> {h}/started; \
         if [ -e {h}/block ]; then touch {h}/ready; sleep 30; fi; \
         if [ -e {h}/fail-$RELEASE_BUILD ]; then exit 3; fi; \
         echo \"$RELEASE_BUILD prev=$RELEASE_PREVIOUS_BUILD\" >> {h}/done",
        h = h.display()
    );
    let health = h.join("health");
    let health_arg = health.display().to_string();
    let args = |n: &str| -> Vec<String> {
        [n, "--run", &hook, "--health-file", &health_arg]
            .map(str::to_owned)
            .to_vec()
    };
    install(&ctx, &dir).args(args("1")).success();

    let kill_during_hook = |n: &str| {
        std::fs::write(h.join("block"), "").unwrap();
        let _ = std::fs::remove_file(h.join("ready"));
        let mut command = raw(&ctx, h, env!("CARGO_BIN_EXE_release"));
        command
            .args(["install", "--dir"])
            .arg(&dir)
            .args(args(n))
            .current_dir(h)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = command.spawn().unwrap();
        wait_for(&h.join("ready"), "the --run hook");
        let group = format!("-{}", child.id());
        let status = Command::new("kill")
            .args(["-KILL", "--", &group])
            .status()
            .unwrap();
        assert!(status.success());
        wait_bounded(&mut child, Duration::from_secs(30));
        std::fs::remove_file(h.join("block")).unwrap();
        assert_eq!(current(&dir), Some(format!("releases/{n}")), "switched");
    };

    kill_during_hook("2");
    let doc = install(&ctx, &dir)
        .args(args("2"))
        .args(["--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["status"], "finished", "{doc}");
    assert_eq!(
        std::fs::read_to_string(h.join("done")).unwrap(),
        "1 prev=\n2 prev=1\n",
        "the re-run ran build 2's hook, with the previous build of the interrupted install"
    );
    assert_eq!(std::fs::read_to_string(&health).unwrap(), "web 2\n");
    let doc = install(&ctx, &dir)
        .args(args("2"))
        .args(["--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["status"], "already-installed", "finished means done");

    // Killed again; this time the hook fails on the re-run: back to 2, whose hook runs again.
    kill_during_hook("3");
    std::fs::write(h.join("fail-3"), "").unwrap();
    install(&ctx, &dir)
        .args(args("3"))
        .code(1)
        .stderr_contains("build 3 failed after the switch")
        .stderr_contains("switched back to 2, whose hooks succeeded");
    assert_eq!(current(&dir).as_deref(), Some("releases/2"));
    assert!(
        std::fs::read_to_string(h.join("done"))
            .unwrap()
            .ends_with("2 prev=3\n")
    );
}

/// Item 4: a closed stdout (`| head`) is a quiet exit, for results and for logs.
#[test]
fn a_closed_stdout_or_stderr_never_panics() {
    let ctx = builds(1);
    let home = tempfile::tempdir().unwrap();
    for (what, pipeline) in [
        ("text result", r#""$0" show 1 | head -n 0"#),
        ("json result", r#""$0" --output json show 1 | head -n 0"#),
        ("list", r#""$0" list | head -n 0"#),
        ("logs and result", r#""$0" -vvv show 1 2>&1 | head -n 0"#),
        (
            "stdout and stderr",
            r#"{ "$0" -vvv show 1 3>&2 2>&1 >&3 | head -n 0; } 3>&1 | head -n 0"#,
        ),
    ] {
        let mut command = raw(&ctx, home.path(), "bash");
        command
            .arg("-c")
            .arg(format!(
                "{pipeline}; echo \"status=${{PIPESTATUS[0]}}\" >> {}/status",
                home.path().display()
            ))
            .arg(env!("CARGO_BIN_EXE_release"));
        let _ = std::fs::remove_file(home.path().join("status"));
        let out = output_bounded(command, Duration::from_secs(60));
        let status = std::fs::read_to_string(home.path().join("status")).unwrap();
        assert!(
            !text(&out.stderr).contains("panicked"),
            "{what}: {}",
            text(&out.stderr)
        );
        assert_eq!(status.trim(), "status=0", "{what}: {}", text(&out.stderr));
    }
}

/// Item 4: an install whose stderr reader went away (a dropped ssh session) still runs its
/// hook to the end, switches, and keeps the hook's output in the install dir's log.
#[test]
fn a_closed_stderr_does_not_kill_the_hook_or_the_install() {
    let ctx = builds(2);
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let dir = h.join("web");
    install(&ctx, &dir).arg("1").success();
    let hook = format!(
        "for i in $(seq 1 300); do echo \"hook out $i\"; echo \"hook err $i\" >&2; done; \
         touch {}/ran-$RELEASE_BUILD",
        h.display()
    );
    let mut command = raw(&ctx, h, env!("CARGO_BIN_EXE_release"));
    command
        .args(["install", "2", "--run", &hook, "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stderr.take()); // the reader is gone: every write to stderr fails with EPIPE
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "stdout: {stdout}");
    assert!(stdout.contains("installed web 2"), "{stdout}");
    assert!(h.join("ran-2").exists(), "the hook ran to its end");
    assert_eq!(current(&dir).as_deref(), Some("releases/2"));
    let log = std::fs::read_to_string(dir.join("hooks.log")).unwrap();
    assert!(
        log.contains("hook out 300") && log.contains("hook err 300"),
        "{log}"
    );
}

/// Item 6: as a non-root user, releases with read-only (0555, 0000) directories are pruned.
/// A release that still cannot be removed is a warning that says the switch happened.
#[test]
fn a_non_root_user_prunes_read_only_releases_and_warns_on_failure() {
    let ctx = builds(4);
    let host = NobodyHost::new();
    let dir = host.install_dir();
    expect(&host.install(&ctx, &["1", "--keep", "1"]), 0, "install 1");
    chmod(&dir.join("releases/1/app/sub/deep"), 0o000);
    chmod(&dir.join("releases/1/app/sub"), 0o555);
    chmod(&dir.join("releases/1/app"), 0o555);
    expect(&host.install(&ctx, &["2", "--keep", "1"]), 0, "install 2");
    expect(&host.install(&ctx, &["3", "--keep", "1"]), 0, "install 3");
    assert_eq!(releases(&dir), ["2", "2.release", "3", "3.release"]);

    // A root-owned read-only directory inside release 2: nobody cannot remove it.
    let stuck = dir.join("releases/2/app/stuck");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("file"), "root's\n").unwrap();
    chmod(&stuck, 0o555);
    let out = host.install(&ctx, &["4", "--keep", "1"]);
    expect(&out, 0, "install 4: a pruning failure is a warning");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("web 4 is current"),
        "{stderr}"
    );
    assert!(stderr.contains("releases/2"), "{stderr}");
    assert_eq!(current(&dir).as_deref(), Some("releases/4"));
    chmod(&stuck, 0o755);
}

/// Item 6: a digest mismatch really discards the partial directory, even one whose
/// directories are read-only, so the next install of that build works.
#[test]
fn a_failed_download_discards_its_partial_directory() {
    let ctx = TestContext::new();
    let host = NobodyHost::new();
    let dir = host.install_dir();
    let good = tar(&[
        ("ro", 0o555, None),
        ("ro/inner", 0o555, None),
        ("ro/inner/file", 0o444, Some(b"data\n")),
    ]);
    publish(&ctx, 1, &good, b"something else");
    let out = host.install(&ctx, &["1"]);
    expect(&out, 1, "a digest mismatch");
    assert!(text(&out.stderr).contains("does not match its manifest"));
    assert_eq!(releases(&dir), Vec::<String>::new(), "no partial is left");

    // A leftover partial of a killed install, read-only too: the next install removes it.
    std::fs::create_dir_all(dir.join("releases/1.partial/ro/x")).unwrap();
    std::fs::create_dir_all(dir.join("releases/7.partial/ro/x")).unwrap();
    chown_nobody(&dir.join("releases"));
    for partial in ["1.partial", "7.partial"] {
        chmod(&dir.join("releases").join(partial).join("ro/x"), 0o000);
        chmod(&dir.join("releases").join(partial).join("ro"), 0o555);
    }
    publish(&ctx, 1, &good, &good);
    expect(
        &host.install(&ctx, &["1"]),
        0,
        "install 1 after a failed one",
    );
    assert_eq!(releases(&dir), ["1", "1.release"]);
}

/// Removes the immutable attribute again when dropped (even when the test fails).
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Self {
        let status = Command::new("chattr").arg("+i").arg(path).status().unwrap();
        assert!(status.success(), "chattr +i {}", path.display());
        Immutable(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Item 7: the manifest kept beside a release is written only once its files are in place, so
/// an install stopped between the two never leaves a manifest that vouches for other files.
#[test]
fn the_kept_manifest_never_describes_files_that_are_not_there() {
    let ctx = TestContext::new();
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    let old = tar(&[("v.txt", 0o644, Some(b"old\n"))]);
    publish(&ctx, 1, &old, &old);
    install(&ctx, &dir).arg("1").success();
    // Build 1 is republished (say, repaired by hand); the exchange into place then fails.
    let new = tar(&[("v.txt", 0o644, Some(b"new\n"))]);
    publish(&ctx, 1, &new, &new);
    {
        let _stuck = Immutable::set(&dir.join("releases/1"));
        install(&ctx, &dir).arg("1").code(1);
    }
    install(&ctx, &dir)
        .args(["1", "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(
        std::fs::read_to_string(dir.join("current/v.txt")).unwrap(),
        "new\n",
        "the files are those the kept manifest describes"
    );
    let kept = std::fs::read_to_string(dir.join("releases/1.release")).unwrap();
    assert!(kept.contains(&hex::encode(Sha256::digest(&new))), "{kept}");
}

/// Item 8: SIGTERM during the before-switch hook stops it and nothing switches; during the
/// after-switch hook it stops it and the install switches back (the previous hook runs again).
#[test]
fn sigterm_reaches_a_running_hook() {
    let ctx = builds(2);
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let dir = h.join("web");
    install(&ctx, &dir).arg("1").success();

    let check = format!("touch {}/ready; sleep 20", h.display());
    let running = install(&ctx, &dir).args(["2", "--check", &check]).spawn();
    wait_for(&h.join("ready"), "the --check hook");
    running.signal("TERM");
    running
        .wait(Duration::from_secs(12))
        .code(1)
        .stderr_contains("SIGTERM")
        .stderr_contains("build 1 is still current");
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));

    std::fs::remove_file(h.join("ready")).unwrap();
    let run = format!(
        "if [ \"$RELEASE_BUILD\" = 2 ]; then touch {h}/ready; sleep 20; fi; \
         echo \"$RELEASE_BUILD\" >> {h}/done",
        h = h.display()
    );
    let running = install(&ctx, &dir).args(["2", "--run", &run]).spawn();
    wait_for(&h.join("ready"), "the --run hook");
    running.signal("TERM");
    running
        .wait(Duration::from_secs(12))
        .code(1)
        .stderr_contains("SIGTERM")
        .stderr_contains("switched back to 1, whose hooks succeeded");
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
    assert_eq!(std::fs::read_to_string(h.join("done")).unwrap(), "1\n");
}

/// Item 9: a relative `--dir` gives hooks an absolute RELEASE_DIR.
#[test]
fn a_relative_dir_gives_hooks_an_absolute_release_dir() {
    let ctx = builds(1);
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let run = format!("cd \"$RELEASE_DIR\" && pwd > {}/pwd", h.display());
    let doc = ctx
        .release()
        .current_dir(h)
        .args(["--artifact", ARTIFACT, "--output", "json", "install", "1"])
        .args(["--dir", "rel/web", "--run", &run])
        .success()
        .stdout_json();
    assert_eq!(doc["dir"], h.join("rel/web").display().to_string());
    assert_eq!(
        std::fs::read_to_string(h.join("pwd")).unwrap().trim(),
        h.join("rel/web/releases/1").display().to_string()
    );
}

/// Item 9: a real directory where `current` should be is refused before anything downloads.
#[test]
fn a_real_directory_named_current_is_refused_first() {
    let ctx = builds(1);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    std::fs::create_dir_all(dir.join("current")).unwrap();
    std::fs::write(dir.join("current/app.py"), "print(1)\n").unwrap();
    install(&ctx, &dir)
        .arg("1")
        .code(2)
        .stderr_contains("is a directory, not a link");
    assert_eq!(releases(&dir), Vec::<String>::new(), "nothing downloaded");
    assert!(dir.join("current/app.py").exists());
}

/// Item 10: a config file another user owns, or that group or others can write, is ignored
/// with a warning, whether found in the working directory or given with `--config`.
#[test]
fn config_files_others_can_change_are_ignored() {
    let ws = crate::common::Workspace::new();
    let show = || {
        Release::new()
            .current_dir(ws.path())
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .args(["--output", "json", "--show-config", "build"])
    };
    let file = ws.write("release.toml", "artifact = \"planted\"\n");
    chmod(&file, 0o644);
    assert_eq!(show().success().stdout_json()["artifact"], "planted");

    std::os::unix::fs::chown(&file, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = show()
        .success()
        .stderr_contains("ignoring config file `release.toml`")
        .stderr_contains("owned by user 65534");
    assert_eq!(out.stdout_json()["artifact"], serde_json::Value::Null);

    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
    chmod(&file, 0o666);
    let out = show()
        .success()
        .stderr_contains("ignoring config file `release.toml`")
        .stderr_contains("writable");
    assert_eq!(out.stdout_json()["artifact"], serde_json::Value::Null);
    chmod(&file, 0o664);
    assert_eq!(
        show().success().stdout_json()["artifact"],
        serde_json::Value::Null
    );

    let other = ws.write("other.toml", "artifact = \"given\"\n");
    chmod(&other, 0o644);
    std::os::unix::fs::chown(&other, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = show()
        .args(["--config", "other.toml"])
        .success()
        .stderr_contains("ignoring config file `other.toml`");
    assert_eq!(out.stdout_json()["artifact"], serde_json::Value::Null);
}

/// Item 5: a release reused from disk is checked first; one whose tree others could write
/// is downloaded again rather than trusted.
#[test]
fn a_release_on_disk_that_others_could_change_is_downloaded_again() {
    let ctx = builds(2);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    install(&ctx, &dir).arg("1").success();
    install(&ctx, &dir).arg("2").success();
    chmod(&dir.join("releases/1/app/sub"), 0o777);
    std::fs::write(dir.join("releases/1/app/sub/planted.sh"), "evil\n").unwrap();
    let out = install(&ctx, &dir)
        .args(["1", "--output", "json"])
        .success()
        .stderr_contains("downloading it again");
    let doc = out.stdout_json();
    assert_eq!(doc["downloaded"], true, "{doc}");
    assert!(!dir.join("releases/1/app/sub/planted.sh").exists());
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));

    // An untouched release is still reused without a download.
    let doc = install(&ctx, &dir)
        .args(["2", "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["downloaded"], false, "{doc}");
}

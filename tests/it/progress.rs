//! Progress of build's upload and install's download: bars on a terminal, nothing but plain
//! lines elsewhere, nothing at all with `-q`; stdout carries only the result.
//!
//! The terminal is a real pseudo-terminal from util-linux's `script`, which runs the binary
//! with its stdin, stdout and stderr on a pty and copies everything to a file.

use std::path::Path;

use crate::common::TestContext;

const ARTIFACT: &str = "progress";

/// A workspace with a few MiB of incompressible data, committed.
fn workspace(ctx: &mut TestContext) {
    let mut data = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 3 << 20 {
        // xorshift: deterministic bytes that gzip cannot shrink much.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    ctx.workspace.write("data.bin", data);
    ctx.workspace.commit("data");
}

/// The binary in the test world, with the AWS files the world points at present (empty), so the
/// SDK has nothing to warn about and stderr holds only what the tool itself prints.
fn release(ctx: &TestContext) -> crate::common::Release {
    let release = ctx.release();
    let aws = release.home().join(".aws");
    fs_err::create_dir_all(&aws).expect("create ~/.aws");
    fs_err::write(aws.join("config"), "").expect("write ~/.aws/config");
    fs_err::write(aws.join("credentials"), "").expect("write ~/.aws/credentials");
    release
}

/// The escape sequence every cursor movement and colour starts with.
const ESC: char = '\u{1b}';

#[test]
fn off_a_terminal_progress_is_plain_and_quiet_silences_it() {
    let mut ctx = TestContext::new();
    workspace(&mut ctx);
    let build = release(&ctx)
        .args(["--artifact", ARTIFACT, "build"])
        .success();
    assert!(
        !build.stderr().contains(ESC),
        "escape codes off a terminal: {:?}",
        build.stderr()
    );
    assert!(
        build.stdout().starts_with("built progress 1:"),
        "{}",
        build.stdout()
    );
    assert_eq!(
        build.stdout().lines().count(),
        1,
        "stdout carries the result only"
    );
    ctx.release()
        .args(["--artifact", ARTIFACT, "promote", "--no-tag", "1"])
        .success();

    let dir = tempfile::tempdir().expect("install dir");
    let install = release(&ctx)
        .args(["--artifact", ARTIFACT, "install"])
        .arg("--dir")
        .arg(dir.path().join("opt"))
        .success();
    assert!(!install.stderr().contains(ESC), "{:?}", install.stderr());
    assert!(
        install.stderr().contains("downloading "),
        "{}",
        install.stderr()
    );

    // -q: no status and no progress, only the result (and warnings, of which there are none).
    let quiet = release(&ctx)
        .args(["-q", "--artifact", ARTIFACT, "build"])
        .success();
    assert_eq!(quiet.stderr(), "", "-q printed progress");
    assert!(quiet.stdout().starts_with("built progress 2:"));
    let quiet = release(&ctx)
        .args(["-q", "--artifact", ARTIFACT, "install", "--force", "2"])
        .arg("--dir")
        .arg(dir.path().join("opt"))
        .success();
    assert_eq!(quiet.stderr(), "", "-q printed progress");
}

/// Runs `release ARGS` on a pseudo-terminal in `cwd` (the environment of the test world);
/// returns everything the terminal showed.
fn on_terminal(ctx: &TestContext, cwd: &Path, args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("HOME");
    let transcript = home.path().join("transcript");
    fs_err::write(home.path().join("aws-config"), "").expect("write the AWS config");
    fs_err::write(home.path().join("aws-credentials"), "").expect("write the AWS credentials");
    let mut words = vec![env!("CARGO_BIN_EXE_release").to_owned()];
    words.extend(args.iter().map(|a| (*a).to_owned()));
    let command = shlex::try_join(words.iter().map(String::as_str)).expect("quote the command");
    let endpoint = ctx.moto.endpoint();
    crate::common::assert_loopback_url("AWS_ENDPOINT_URL", &endpoint);
    let output = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command])
        .arg(&transcript)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .env("LANG", "C.UTF-8")
        .env("SHELL", "/bin/sh")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.path().join("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join("aws-credentials"),
        )
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("RELEASE_BUCKET", &ctx.bucket)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1) from util-linux");
    let shown = fs_err::read(&transcript).unwrap_or_default();
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert!(
        output.status.success(),
        "release on a terminal failed ({}):\n{shown}",
        output.status
    );
    shown
}

#[test]
fn on_a_terminal_upload_and_download_draw_bars() {
    let mut ctx = TestContext::new();
    workspace(&mut ctx);
    let cwd = ctx.workspace.path().to_owned();
    let shown = on_terminal(&ctx, &cwd, &["--artifact", ARTIFACT, "build"]);
    assert!(
        shown.contains("uploading s3://"),
        "no upload bar:\n{shown:?}"
    );
    assert!(shown.contains(ESC), "a bar is drawn in place:\n{shown:?}");
    assert!(shown.contains("built progress 1:"), "{shown:?}");

    ctx.release()
        .args(["--artifact", ARTIFACT, "promote", "--no-tag", "1"])
        .success();
    let dir = tempfile::tempdir().expect("install dir");
    let target = dir.path().join("opt").display().to_string();
    let shown = on_terminal(
        &ctx,
        &cwd,
        &["--artifact", ARTIFACT, "install", "--dir", &target],
    );
    assert!(
        shown.contains("downloading progress-1.tar.gz ["),
        "no download bar:\n{shown:?}"
    );
    assert!(
        shown.contains("MiB/"),
        "the bar shows the total size:\n{shown:?}"
    );
    assert!(
        shown.contains("\u{1b}[36m"),
        "a coloured bar on a terminal:\n{shown:?}"
    );
    assert!(shown.contains("installed progress 1"), "{shown:?}");

    // With --output json the bar is drawn without colour.
    let shown = on_terminal(
        &ctx,
        &cwd,
        &[
            "--artifact",
            ARTIFACT,
            "--output",
            "json",
            "install",
            "--force",
            "--dir",
            &target,
        ],
    );
    assert!(
        shown.contains("downloading progress-1.tar.gz ["),
        "{shown:?}"
    );
    assert!(
        !shown.contains("\u{1b}[36m"),
        "colour in JSON mode:\n{shown:?}"
    );
}

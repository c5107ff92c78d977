//! `release current` and `release status --via ssh` say when an install switched `current` but
//! did not finish (killed during its after-switch hook), until a re-run finishes it; and the
//! files install writes in the install directory (`hooks.log` and its rotation included) are
//! `0644` whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::host_dir::{current, install};
use crate::common::{Hosts, TestContext, interrupt};

/// A host of its own for this file (sshd picks a port free on it).
const ADDRESS: &str = "127.0.4.41";

/// A context whose bucket holds builds 1 and 2 of `web`, with 2 promoted to latest-stable.
fn two_builds() -> TestContext {
    let mut ctx = TestContext::new();
    for n in 1..=2 {
        ctx.workspace.write("app/version.txt", format!("{n}\n"));
        ctx.workspace.commit(&format!("build {n}"));
        ctx.release()
            .args(["--artifact", "web", "-q", "build", "app"])
            .success();
    }
    ctx.release()
        .args(["--artifact", "web", "-q", "promote", "2", "--no-tag"])
        .success();
    ctx
}

/// `install N --run HOOK` into `dir`, killed during its hook (see
/// [`interrupt::kill_during_hook`]): `current` is switched, the install unfinished.
fn kill_during_hook(ctx: &TestContext, dir: &Path, work: &Path, n: &str, hook: &str) {
    interrupt::kill_during_hook(install(ctx, dir).args([n, "--run", hook]), work);
    assert_eq!(current(dir), Some(format!("releases/{n}")), "switched");
}

/// `release current` (text and JSON) on the host's directory, exit 0 in both.
fn current_says(ctx: &TestContext, dir: &Path) -> (String, serde_json::Value) {
    let run = |json: bool| {
        let release = ctx.release().args(["--artifact", "web"]);
        let release = if json {
            release.args(["--output", "json"])
        } else {
            release
        };
        release.arg("current").arg("--dir").arg(dir).success()
    };
    (run(false).stdout(), run(true).stdout_json())
}

#[test]
fn an_interrupted_install_is_unfinished_in_current_and_status_until_the_rerun() {
    let ctx = two_builds();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let hosts = Hosts::start(&[ADDRESS], &[("AWS_ENDPOINT_URL", &ctx.moto.endpoint())]);
    let dir = hosts.install_dir(ADDRESS);
    let hook = format!(
        "if [ -e {w}/block ]; then touch {w}/ready; sleep 30; fi; echo \"$RELEASE_BUILD\" >> \
         {w}/done",
        w = w.display()
    );
    install(&ctx, &dir).args(["1", "--run", &hook]).success();
    let (text, doc) = current_says(&ctx, &dir);
    assert!(!text.contains("UNFINISHED"), "{text}");
    assert_eq!(doc["unfinished"], serde_json::Value::Null, "{doc}");

    kill_during_hook(&ctx, &dir, w, "2", &hook);
    let (text, doc) = current_says(&ctx, &dir);
    assert!(
        text.contains("web 2 UNFINISHED: the install of 2 was interrupted after the switch"),
        "{text}"
    );
    assert!(text.contains("run `release install 2` again"), "{text}");
    assert_eq!(doc["version"], 2, "{doc}");
    assert_eq!(
        doc["unfinished"],
        serde_json::json!({"build": 2, "previous": 1, "switched_back": false}),
        "{doc}"
    );

    // Over SSH: the host runs the stable build, but unfinished: not "on stable".
    let status = |json: bool| {
        let release = ctx.release().args(["--artifact", "web"]);
        let release = if json {
            release.args(["--output", "json"])
        } else {
            release
        };
        release
            .args(["status", "--hosts", ADDRESS])
            .args(hosts.release_args())
            .success()
    };
    let doc = status(true).stdout_json();
    let host = &doc["hosts"][0];
    assert_eq!(host["state"], "unfinished", "{doc}");
    assert_eq!(host["version"], 2, "{doc}");
    assert_eq!(host["drift"], true, "{doc}");
    assert_eq!(doc["drifted"], 1, "{doc}");
    let table = status(false).stdout();
    assert!(table.contains("UNFINISHED"), "{table}");
    assert!(table.contains("1 host(s) not on it"), "{table}");

    // The re-run finishes the install; nothing says unfinished any more.
    let doc = install(&ctx, &dir)
        .args(["2", "--run", &hook, "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["status"], "finished", "{doc}");
    let (text, doc) = current_says(&ctx, &dir);
    assert!(!text.contains("UNFINISHED"), "{text}");
    assert_eq!(doc["unfinished"], serde_json::Value::Null, "{doc}");
    assert_eq!(doc["version"], 2, "{doc}");
    let doc = status(true).stdout_json();
    assert_eq!(doc["hosts"][0]["state"], "stable", "{doc}");
    assert_eq!(doc["drifted"], 0, "{doc}");
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `hooks.log` (and `hooks.log.1`, once rotated), the lock, the artifact mark and the kept
/// manifests are `0644` under umask 000 and 077 alike.
#[test]
fn files_in_the_install_dir_are_0644_whatever_the_umask() {
    let ctx = two_builds();
    let host = tempfile::tempdir().unwrap();
    for umask in ["000", "077"] {
        let dir = host.path().join(format!("web-{umask}"));
        let with_umask = |n: &str, hook: &str| {
            install(&ctx, &dir)
                .args([n, "--run", hook])
                .wrapped(&["sh", "-c", &format!("umask {umask}; exec \"$0\" \"$@\"")])
                .success();
        };
        // Over 1 MiB of output: the next hook rotates the log to hooks.log.1.
        with_umask("1", "head -c 1100000 /dev/zero | tr '\\0' x");
        with_umask("2", "echo two");
        for name in [
            "hooks.log",
            "hooks.log.1",
            ".release.lock",
            ".release-artifact",
            "releases/1.release",
            "releases/2.release",
        ] {
            assert_eq!(
                format!("{:o}", mode(&dir.join(name))),
                "644",
                "{name} under umask {umask}"
            );
        }
    }
}

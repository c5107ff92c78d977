//! `release install` and `release current`: the real binary installing from moto into temp
//! directories, with hostile archives, corrupted objects, cut downloads and kills.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::host_dir::{self, Member, archive, current, install, releases};
use crate::common::{Action, FaultProxy, TestContext, noise, proxy};

const ARTIFACT: &str = "web";

/// A workspace with a service folder, and `n` builds of it in the bucket.
fn with_builds(n: u64) -> TestContext {
    let mut ctx = TestContext::new();
    let run = ctx.workspace.write("app/run.sh", "#!/bin/sh\necho run\n");
    let secret = ctx.workspace.write("app/secret.txt", "only the owner\n");
    for (path, mode) in [(run, 0o755), (secret, 0o600)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    ctx.workspace.write("app/data/big.bin", noise(3 << 20, 7));
    ctx.workspace.commit("sources");
    for i in 1..=n {
        ctx.workspace.write("app/version.txt", format!("{i}\n"));
        ctx.workspace.commit(&format!("build {i}"));
        ctx.release()
            .args(["--artifact", ARTIFACT, "-q", "build", "app"])
            .success();
    }
    ctx
}

#[test]
fn fresh_install_upgrade_switch_back_and_idempotent_rerun() {
    let ctx = with_builds(2);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");

    let doc = install(&ctx, &dir)
        .args(["1", "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["status"], "installed");
    assert_eq!(doc["version"], 1);
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
    assert_eq!(
        std::fs::read_to_string(dir.join("current/app/version.txt")).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read(dir.join("current/app/data/big.bin")).unwrap(),
        noise(3 << 20, 7)
    );
    let kept = std::fs::read_to_string(dir.join("releases/1.release")).unwrap();
    assert!(
        kept.contains("SHA256=") && kept.contains("VERSION=1\n"),
        "{kept}"
    );
    let mode = |name: &str| {
        let meta = std::fs::metadata(dir.join("current/app").join(name)).unwrap();
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
    };
    assert_eq!(
        (mode("run.sh"), mode("secret.txt"), mode("version.txt")),
        (0o755, 0o600, 0o644),
        "modes are kept"
    );

    let doc = install(&ctx, &dir)
        .args(["latest", "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(
        (
            doc["status"].as_str(),
            doc["version"].as_u64(),
            doc["previous"].as_u64()
        ),
        (Some("installed"), Some(2), Some(1))
    );
    assert_eq!(current(&dir).as_deref(), Some("releases/2"));

    // Back to 1: already on disk, so no download (counted at the proxy).
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let doc = install(&ctx, &dir)
        .endpoint(&proxy.endpoint())
        .args(["1", "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["status"], "switched");
    assert_eq!(doc["downloaded"], false);
    assert!(
        !proxy
            .log()
            .iter()
            .any(|e| e.request.target.contains(".tar.gz")),
        "no archive was read"
    );
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));

    let doc = install(&ctx, &dir)
        .args(["1", "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["status"], "already-installed");
    let doc = install(&ctx, &dir)
        .args(["1", "--force", "--output", "json"])
        .success()
        .stdout_json();
    assert_eq!(doc["status"], "installed", "--force reinstalls");
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));

    let doc = ctx
        .release()
        .args([
            "--artifact",
            ARTIFACT,
            "--output",
            "json",
            "current",
            "--dir",
        ])
        .arg(&dir)
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["releases"], serde_json::json!([1, 2]));
}

#[test]
fn install_dir_comes_from_the_environment() {
    let ctx = with_builds(1);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("from-env");
    ctx.release()
        .env("RELEASE_INSTALL_DIR", &dir)
        .args(["--artifact", ARTIFACT, "install", "latest"])
        .success()
        .stdout_contains("installed web 1");
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
}

#[test]
fn keeps_the_newest_k_and_always_current_and_previous() {
    let ctx = with_builds(4);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    for n in ["1", "2", "3", "4"] {
        install(&ctx, &dir).args([n, "--keep", "2"]).success();
    }
    assert_eq!(releases(&dir), ["3", "3.release", "4", "4.release"]);
    // Going back to 1 with --keep 1: 1 is current and 4 the previous, both stay.
    install(&ctx, &dir).args(["1", "--keep", "1"]).success();
    assert_eq!(releases(&dir), ["1", "1.release", "4", "4.release"]);
}

#[test]
fn a_failing_check_does_not_switch() {
    let ctx = with_builds(2);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    install(&ctx, &dir).arg("1").success();
    install(&ctx, &dir)
        .args(["2", "--check", "test -f app/missing"])
        .code(1)
        .stderr_contains("--check `test -f app/missing` failed for build 2")
        .stderr_contains("not switched: build 1 is still current");
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));

    // A check that passes only inside the new release, which is its working directory.
    install(&ctx, &dir)
        .args([
            "2",
            "--check",
            "test \"$PWD\" = \"$RELEASE_DIR\" && grep -qx 2 app/version.txt",
        ])
        .success();
    assert_eq!(current(&dir).as_deref(), Some("releases/2"));
}

#[test]
fn a_failing_run_switches_back_and_reruns_the_previous_hook() {
    let ctx = with_builds(2);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    let log = host.path().join("hooks.log");
    let hook = format!(
        "echo \"$RELEASE_BUILD prev=$RELEASE_PREVIOUS_BUILD\" >> {} && grep -q 1 app/version.txt",
        log.display()
    );
    install(&ctx, &dir).args(["1", "--run", &hook]).success();
    install(&ctx, &dir)
        .args(["2", "--run", &hook])
        .code(1)
        .stderr_contains("build 2 failed after the switch")
        .stderr_contains("switched back to 1, whose hooks succeeded");
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "1 prev=\n2 prev=1\n1 prev=2\n"
    );
}

#[test]
fn another_artifacts_directory_is_refused() {
    let ctx = with_builds(1);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".release-artifact"), "api\n").unwrap();
    install(&ctx, &dir)
        .arg("1")
        .code(2)
        .stderr_contains("holds artifact `api`, not `web`");
    assert_eq!(current(&dir), None);
    install(&ctx, &dir).args(["1", "--force"]).success();
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
}

#[test]
fn a_corrupted_archive_is_refused() {
    let ctx = with_builds(2);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    install(&ctx, &dir).arg("1").success();
    let key = "web/prod/web-2.tar.gz";
    let mut bytes = ctx.s3.get(&ctx.bucket, key).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01; // inside the deflate stream's tail, so it still unpacks
    ctx.s3.put(&ctx.bucket, key, bytes.clone());
    let actual = hex::encode(Sha256::digest(&bytes));
    install(&ctx, &dir)
        .arg("2")
        .code(1)
        .stderr_contains("does not match its manifest")
        .stderr_contains(&format!("got sha256 {actual}"));
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
    assert_eq!(
        releases(&dir),
        ["1", "1.release"],
        "no partial release is left"
    );
}

/// An install waits for the lock another holds (here the test), touching nothing meanwhile,
/// and goes on once it is released.
#[test]
fn two_concurrent_installs_serialise() {
    let ctx = with_builds(1);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".release.lock")).unwrap();
    lock.lock().unwrap();
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let running = install(&ctx, &dir)
        .endpoint(&proxy.endpoint())
        .args(["1", "--output", "json"])
        .spawn();
    // The kernel lists a process blocked on a lock in /proc/locks as `-> FLOCK ... PID ...`.
    let waiting = format!(" {} ", running.pid());
    let started = Instant::now();
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains("-> FLOCK") && l.contains(&waiting))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the install never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let archive_reads = || {
        proxy
            .log()
            .iter()
            .filter(|e| e.request.target.contains(".tar.gz"))
            .count()
    };
    assert_eq!(archive_reads(), 0, "no download while waiting");
    assert!(!dir.join("releases/1.partial").exists() && !dir.join("releases/1").exists());
    assert_eq!(current(&dir), None);
    drop(lock);
    let out = running.wait(Duration::from_secs(60));
    assert_eq!(out.status().code(), Some(0), "{}", out.stderr());
    assert!(
        out.stderr().contains("waiting for another install"),
        "{}",
        out.stderr()
    );
    assert_eq!(out.stdout_json()["status"], "installed");
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
    assert_eq!(archive_reads(), 1, "downloaded once the lock was free");
}

#[test]
fn cut_downloads_resume_and_server_errors_are_retried() {
    let ctx = with_builds(1);
    let host = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    // The archive's first two answers are cut mid-body, then a 500.
    let cuts = proxy::first_n(
        2,
        |r| r.method == "GET" && r.target.contains(".tar.gz"),
        Action::CutAfter(1 << 20),
    );
    let errors = proxy::first_n(
        1,
        |r| r.method == "GET" && r.target.contains(".tar.gz"),
        Action::internal_error(),
    );
    let seen = std::sync::atomic::AtomicUsize::new(0);
    proxy.set_rule(move |r| {
        match seen.fetch_add(
            usize::from(r.target.contains(".tar.gz")),
            std::sync::atomic::Ordering::SeqCst,
        ) {
            0 | 1 => cuts(r),
            _ => errors(r),
        }
    });
    let dir = host.path().join("web");
    let out = install(&ctx, &dir)
        .endpoint(&proxy.endpoint())
        .arg("1")
        .success();
    assert!(out.stderr().contains("resuming"), "{}", out.stderr());
    let ranged = proxy
        .log()
        .iter()
        .filter(|e| {
            e.request
                .header("range")
                .is_some_and(|r| r.starts_with("bytes=") && !r.starts_with("bytes=0-"))
        })
        .count();
    assert!(ranged >= 2, "resumed with ranged GETs: {ranged}");
    assert_eq!(
        std::fs::read(dir.join("current/app/data/big.bin")).unwrap(),
        noise(3 << 20, 7)
    );

    // Cut every time: it gives up cleanly, nothing switched, nothing partial left.
    proxy.set_rule(|r| {
        if r.target.contains(".tar.gz") {
            Action::CutAfter(1000)
        } else {
            Action::Forward
        }
    });
    let other = host.path().join("other");
    install(&ctx, &other)
        .endpoint(&proxy.endpoint())
        .arg("1")
        .code(1)
        .stderr_contains("downloading");
    assert_eq!(current(&other), None);
    assert_eq!(releases(&other), Vec::<String>::new());
}

#[test]
fn killed_mid_download_leaves_current_intact_and_a_rerun_works() {
    let ctx = with_builds(2);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    install(&ctx, &dir).arg("1").success();
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    proxy.set_rule(|r| {
        if r.target.contains("web-2.tar.gz") {
            std::thread::sleep(Duration::from_secs(3));
        }
        Action::Forward
    });
    let running = install(&ctx, &dir)
        .endpoint(&proxy.endpoint())
        .arg("2")
        .spawn();
    let start = Instant::now();
    while !dir.join("releases/2.partial").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the install never started unpacking"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    running.signal("KILL");
    let _ = running.wait(Duration::from_secs(30));
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
    assert_eq!(
        std::fs::read_to_string(dir.join("current/app/version.txt")).unwrap(),
        "1\n"
    );
    install(&ctx, &dir).arg("2").success();
    assert_eq!(current(&dir).as_deref(), Some("releases/2"));
    assert_eq!(
        releases(&dir),
        ["1", "1.release", "2", "2.release"],
        "the leftover partial is gone"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let ctx = with_builds(1);
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    install(&ctx, &dir)
        .args(["1", "--dry-run"])
        .success()
        .stdout_contains("would install web 1");
    assert!(!dir.exists());
}

/// Archives a test builds by hand, header by header, to say what a hostile one would.
mod hostile {
    use super::*;

    /// A build of `tar` (`web-{n}.tar`) with a correct manifest.
    fn publish(ctx: &TestContext, n: u64, tar: &[u8]) {
        host_dir::publish(ctx, n, ".tar", tar);
    }

    #[test]
    fn hostile_archives_are_refused_and_write_nothing_outside() {
        use tar::EntryType::{Block, Directory, Link, Regular, Symlink};
        let ctx = TestContext::new();
        let host = tempfile::tempdir().unwrap();
        let dir = host.path().join("web");
        publish(
            &ctx,
            1,
            &archive(&[Member("ok.txt", Regular, 0o644, "", b"fine")]),
        );
        install(&ctx, &dir).arg("1").success();
        let outside = host.path().join("escaped");
        let outside_name = outside.display().to_string();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                archive(&[Member("../escaped", Regular, 0o644, "", b"x")]),
                "the path contains `..`",
            ),
            (
                archive(&[Member("a/../../escaped", Regular, 0o644, "", b"x")]),
                "the path contains `..`",
            ),
            (
                archive(&[Member(&outside_name, Regular, 0o644, "", b"x")]),
                "the path is absolute",
            ),
            (
                archive(&[Member("etc", Symlink, 0o777, "/etc", b"")]),
                "a link to the absolute path `/etc`",
            ),
            (
                archive(&[Member("up", Symlink, 0o777, "../..", b"")]),
                "outside the release",
            ),
            (
                archive(&[
                    Member("d", Directory, 0o755, "", b""),
                    Member("d/self", Symlink, 0o777, "..", b""),
                    Member("d/self/x", Regular, 0o644, "", b"x"),
                ]),
                "is a link or a file",
            ),
            (
                archive(&[Member("hard", Link, 0o644, "../escaped", b"")]),
                "the path contains `..`",
            ),
            (
                archive(&[Member("hard", Link, 0o644, "/etc/passwd", b"")]),
                "the path is absolute",
            ),
            (
                archive(&[Member("disk", Block, 0o600, "", b"")]),
                "not allowed",
            ),
            (
                archive(&[Member("suid", Regular, 0o4755, "", b"x")]),
                "setuid",
            ),
            (
                archive(&[Member("sgid", Regular, 0o2755, "", b"x")]),
                "setgid",
            ),
            (
                archive(&[Member("sgid-dir", Directory, 0o2775, "", b"")]),
                "setgid",
            ),
            (
                archive(&[Member("tty", tar::EntryType::Char, 0o600, "", b"")]),
                "not allowed",
            ),
            (
                archive(&[Member("pipe", tar::EntryType::Fifo, 0o600, "", b"")]),
                "not allowed",
            ),
        ];
        for (n, (tar, message)) in cases.iter().enumerate() {
            let n = n as u64 + 2;
            publish(&ctx, n, tar);
            install(&ctx, &dir)
                .arg(n.to_string())
                .code(1)
                .stderr_contains("refusing archive entry")
                .stderr_contains(message);
            assert_eq!(current(&dir).as_deref(), Some("releases/1"), "case {n}");
            assert!(!outside.exists(), "case {n} wrote outside the release");
            assert_eq!(
                releases(&dir),
                ["1", "1.release"],
                "case {n} left a partial release"
            );
        }
        // Links that stay inside are fine.
        let good = archive(&[
            Member("bin", Directory, 0o755, "", b""),
            Member("bin/tool", Regular, 0o755, "", b"#!/bin/sh\n"),
            Member("tool", Symlink, 0o777, "bin/tool", b""),
            Member("bin/same", Link, 0o755, "bin/tool", b""),
        ]);
        publish(&ctx, 50, &good);
        install(&ctx, &dir).arg("50").success();
        assert_eq!(
            std::fs::read_link(dir.join("current/tool")).unwrap(),
            PathBuf::from("bin/tool")
        );
        assert_eq!(
            std::fs::read(dir.join("current/bin/same")).unwrap(),
            b"#!/bin/sh\n"
        );
    }

    /// Uploads `tar` as build `n` with a manifest whose SIZE is `size` (SHA256 still right).
    fn publish_sized(ctx: &TestContext, n: u64, tar: &[u8], size: usize) {
        publish(ctx, n, tar);
        let key = format!("web/prod/web-{n}.release");
        let manifest = String::from_utf8(ctx.s3.get(&ctx.bucket, &key).unwrap()).unwrap();
        let manifest =
            manifest.replace(&format!("SIZE={}\n", tar.len()), &format!("SIZE={size}\n"));
        ctx.s3.put(&ctx.bucket, &key, manifest);
    }

    /// An archive whose SHA-256 matches but whose length is not the manifest's SIZE (longer or
    /// shorter) is refused: nothing switched, nothing partial left.
    #[test]
    fn a_size_mismatch_is_refused() {
        use tar::EntryType::Regular;
        let ctx = TestContext::new();
        let host = tempfile::tempdir().unwrap();
        let dir = host.path().join("web");
        publish(
            &ctx,
            1,
            &archive(&[Member("ok.txt", Regular, 0o644, "", b"one")]),
        );
        install(&ctx, &dir).arg("1").success();
        let tar = archive(&[Member("ok.txt", Regular, 0o644, "", &[7u8; 4096])]);
        for (n, size) in [(2, tar.len() - 512), (3, tar.len() + 512)] {
            publish_sized(&ctx, n, &tar, size);
            let out = install(&ctx, &dir).arg(n.to_string()).code(1);
            // The error names the manifest's SIZE.
            assert!(
                out.stderr().contains(&size.to_string()),
                "SIZE {size} of {}: {}",
                tar.len(),
                out.stderr()
            );
            assert_eq!(current(&dir).as_deref(), Some("releases/1"), "build {n}");
            assert_eq!(releases(&dir), ["1", "1.release"], "build {n}");
        }
    }

    /// Owners in the archive are not restored: a member owned by uid/gid 1234 belongs to the
    /// installing user.
    #[test]
    fn owners_are_not_restored() {
        use std::os::unix::fs::MetadataExt;
        let ctx = TestContext::new();
        let host = tempfile::tempdir().unwrap();
        let dir = host.path().join("web");
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind) in [
            ("owned", tar::EntryType::Directory),
            ("owned/file", tar::EntryType::Regular),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_uid(1234);
            header.set_gid(1234);
            header.set_size(if kind.is_dir() { 0 } else { 2 });
            builder
                .append_data(
                    &mut header,
                    name,
                    if kind.is_dir() { &b""[..] } else { &b"x\n"[..] },
                )
                .unwrap();
        }
        let tar = builder.into_inner().unwrap();
        publish(&ctx, 1, &tar);
        install(&ctx, &dir).arg("1").success();
        let me = std::fs::metadata(host.path()).unwrap();
        for name in ["owned", "owned/file"] {
            let meta = std::fs::symlink_metadata(dir.join("current").join(name)).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (me.uid(), me.gid()),
                "{name} is the installing user's"
            );
        }
    }

    /// Hooks shipped in the archive run around the switch, in the release, with every
    /// documented variable, before `--check` and `--run`; a failing `deploy/before-switch`
    /// keeps `current` where it was.
    #[test]
    fn shipped_hooks_run_with_every_variable() {
        use tar::EntryType::{Directory, Regular};
        let ctx = TestContext::new();
        let host = tempfile::tempdir().unwrap();
        let dir = host.path().join("web");
        let log = host.path().join("hooks.log");
        let hook = |name: &str| {
            format!(
                "echo \"{name} artifact=$RELEASE_ARTIFACT build=$RELEASE_BUILD \
                 dir=$RELEASE_DIR previous=$RELEASE_PREVIOUS_BUILD pwd=$PWD \
                 current=$(readlink \"$RELEASE_DIR/../../current\")\" >> '{}'\n",
                log.display()
            )
        };
        let (before, after) = (hook("before-switch"), hook("after-switch"));
        let shipped = archive(&[
            Member("deploy", Directory, 0o755, "", b""),
            Member(
                "deploy/before-switch",
                Regular,
                0o755,
                "",
                before.as_bytes(),
            ),
            Member("deploy/after-switch", Regular, 0o755, "", after.as_bytes()),
        ]);
        publish(&ctx, 1, &shipped);
        publish(&ctx, 2, &shipped);
        install(&ctx, &dir).arg("1").success();
        let check = format!(
            "echo check $RELEASE_BUILD $RELEASE_PREVIOUS_BUILD >> '{}'",
            log.display()
        );
        let run = format!(
            "echo run $RELEASE_BUILD $RELEASE_PREVIOUS_BUILD >> '{}'",
            log.display()
        );
        install(&ctx, &dir)
            .args(["2", "--check", &check, "--run", &run])
            .success();
        let release = |n: u64| dir.join(format!("releases/{n}")).display().to_string();
        let line = |name: &str, n: u64, previous: &str, current: &str| {
            format!(
                "{name} artifact=web build={n} dir={r} previous={previous} pwd={r} current={current}",
                r = release(n)
            )
        };
        assert_eq!(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            [
                line("before-switch", 1, "", ""),
                line("after-switch", 1, "", "releases/1"),
                line("before-switch", 2, "1", "releases/1"),
                "check 2 1".to_owned(),
                line("after-switch", 2, "1", "releases/2"),
                "run 2 1".to_owned(),
            ]
        );

        // A shipped before-switch hook that fails: not switched.
        let failing = archive(&[
            Member("deploy", Directory, 0o755, "", b""),
            Member("deploy/before-switch", Regular, 0o755, "", b"exit 3\n"),
        ]);
        publish(&ctx, 3, &failing);
        install(&ctx, &dir)
            .arg("3")
            .code(1)
            .stderr_contains("deploy/before-switch");
        assert_eq!(current(&dir).as_deref(), Some("releases/2"));
    }

    /// Without `--keep`, the newest 5 releases are kept.
    #[test]
    fn the_default_keep_is_five() {
        use tar::EntryType::Regular;
        let ctx = TestContext::new();
        let host = tempfile::tempdir().unwrap();
        let dir = host.path().join("web");
        for n in 1..=7u64 {
            let body = n.to_string();
            publish(
                &ctx,
                n,
                &archive(&[Member("n.txt", Regular, 0o644, "", body.as_bytes())]),
            );
            install(&ctx, &dir).arg(n.to_string()).success();
        }
        let kept: Vec<String> = (3..=7)
            .flat_map(|n| [n.to_string(), format!("{n}.release")])
            .collect();
        let mut kept = kept;
        kept.sort();
        assert_eq!(releases(&dir), kept);
    }

    #[test]
    fn a_legacy_build_installs_with_a_warning() {
        let ctx = TestContext::new();
        let host = tempfile::tempdir().unwrap();
        let dir = host.path().join("web");
        let release = b"MODULE=web\nVERSION=17\nBUILD=12\nTIMESTAMP=Mon Jan 23 11:20:02 IST 2016\n";
        let tar = archive(&[
            Member(
                "obelix/app.py",
                tar::EntryType::Regular,
                0o644,
                "",
                b"print(1)\n",
            ),
            Member("RELEASE", tar::EntryType::Regular, 0o644, "", release),
        ]);
        ctx.s3.put(&ctx.bucket, "web/prod/web-17.tar", tar);
        install(&ctx, &dir)
            .arg("17")
            .success()
            .stderr_contains("has no SHA256 (made by the old jobs)");
        assert_eq!(std::fs::read(dir.join("current/RELEASE")).unwrap(), release);
        assert_eq!(
            std::fs::read(dir.join("releases/17.release")).unwrap(),
            release
        );
    }
}

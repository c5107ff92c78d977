//! What an operator meets when switching from the old jobs (issue 13 items 2, 3, 5, 7, 8, 10):
//! the real binary against the shared moto, sshd hosts on loopback and bare git repositories.

use serde_json::Value;

use crate::common::{Hosts, TestContext, Workspace};
use crate::promote::{ARTIFACT, World, seed_legacy};

/// Builds `app/` of the context's workspace once (a commit first); returns the build number.
fn build_once(ctx: &mut TestContext, content: &str) -> u64 {
    ctx.workspace.write("app/main.py", content);
    ctx.workspace.commit(content);
    let doc = ctx
        .release()
        .args(["--artifact", ARTIFACT, "--output", "json", "build", "app"])
        .success()
        .stdout_json();
    doc["version"].as_u64().expect("build number")
}

// Item 2: old boot scripts download `{artifact}-{N}.tar`; a gzip build made stable over an old
// job's `.tar` would break every instance that boots next.
#[test]
fn promote_guards_the_old_jobs_tar_format() {
    let mut w = World::new();
    seed_legacy(&w);
    w.release().args(["promote", "23", "--no-tag"]).success();
    let (gzip, _) = w.build("v24");
    let before = w.snapshot();
    w.release()
        .args(["promote", &gzip.to_string(), "--no-tag"])
        .stderr_contains("download `web-24.tar`")
        .stderr_contains("--compression none")
        .stderr_contains("--allow-format-change")
        .code(2);
    assert_eq!(w.snapshot(), before, "a refused promote writes nothing");

    // A `.tar` build of release is what the old scripts read: no flag needed.
    let doc = w
        .release()
        .args(["--output", "json", "build", "app", "--compression", "none"])
        .success()
        .stdout_json();
    let tar = doc["version"].as_u64().unwrap();
    w.release()
        .args(["promote", &tar.to_string(), "--no-tag"])
        .success();
    // Still a plain .tar stable: the gzip build needs the flag, then goes.
    w.release()
        .args(["promote", &gzip.to_string(), "--no-tag"])
        .code(2);
    w.release()
        .args([
            "promote",
            &gzip.to_string(),
            "--no-tag",
            "--allow-format-change",
        ])
        .success();
    assert_eq!(w.stable().unwrap(), w.manifest(gzip));
    // Once stable is gzip, the guard is silent.
    w.release()
        .args(["promote", "latest", "--no-tag"])
        .success();
}

// Item 3: the install directory knows its artifact; --artifact is only checked against it.
#[test]
fn current_names_the_artifact_of_its_directory() {
    let mut ctx = TestContext::new();
    let number = build_once(&mut ctx, "v1");
    let hosts_dir = tempfile::tempdir().unwrap();
    let dir = hosts_dir.path().join("install");
    let dir_text = dir.to_string_lossy().into_owned();
    ctx.release()
        .args(["--artifact", ARTIFACT, "-q", "install", &number.to_string()])
        .args(["--dir", &dir_text])
        .success();

    let out = ctx
        .release()
        .args(["current", "--dir", &dir_text])
        .success();
    assert!(
        out.stdout()
            .starts_with(&format!("{ARTIFACT} {number} in ")),
        "{}",
        out.stdout()
    );
    let doc = ctx
        .release()
        .args(["--output", "json", "current"])
        .env("RELEASE_INSTALL_DIR", &dir_text)
        .success()
        .stdout_json();
    assert_eq!(doc["artifact"], ARTIFACT);
    assert_eq!(doc["version"], number);

    ctx.release()
        .args(["--artifact", "demo", "current", "--dir", &dir_text])
        .stderr_contains("holds artifact `web`, not `demo`")
        .code(2);
    // install checks the directory's artifact first, before reading the bucket.
    ctx.release()
        .args([
            "--artifact",
            "demo",
            "--dry-run",
            "install",
            "--dir",
            &dir_text,
        ])
        .stderr_contains("holds artifact `web`, not `demo`")
        .code(2);
    ctx.release()
        .args(["current"])
        .stderr_contains("--dir")
        .stderr_contains("RELEASE_INSTALL_DIR")
        .code(2);
}

// Item 5: with no --ssh-user, the ssh config's `User` (here the only source of the right user)
// decides, as its `Port` does.
#[test]
fn the_ssh_configs_user_is_not_overridden() {
    let mut ctx = TestContext::new();
    let number = build_once(&mut ctx, "v1");
    let address = "127.0.1.211";
    let endpoint = ctx.moto.endpoint();
    let hosts = Hosts::start(&[address], &[("AWS_ENDPOINT_URL", &endpoint)]);
    let config = hosts.ssh_config_path().to_string_lossy().into_owned();
    ctx.release()
        .args(["--artifact", ARTIFACT, "push", &number.to_string()])
        .args(["--hosts", address, "--ssh-config", &config])
        .args(["--command", "echo reached-{host}-as-$(id -un)"])
        .stderr_contains(&format!(
            "[{address}] reached-{address}-as-{}",
            hosts.user()
        ))
        .success();
}

// Item 7: rollback goes to the build stable before the current one, whatever its number.
#[test]
fn rollback_follows_the_promotions_not_the_numbers() {
    let mut w = World::new();
    w.build("v1");
    w.build("v2");
    for n in ["1", "2", "1"] {
        w.release().args(["promote", n, "--no-tag"]).success();
    }
    let rollback = || {
        w.release()
            .args(["--output", "json", "rollback", "--no-tag"])
            .success()
            .stdout_json()["version"]
            .as_u64()
    };
    assert_eq!(rollback(), Some(2), "promote 1, 2, 1 then rollback: 2");
    assert_eq!(rollback(), Some(1), "a second rollback goes further back");
    let before = w.snapshot();
    w.release()
        .args(["rollback", "--no-tag"])
        .stderr_contains("no build that was stable before 1")
        .code(2);
    assert_eq!(w.snapshot(), before);
    let rollbacks: Vec<bool> = w
        .history()
        .iter()
        .map(|r| r["rollback"] == Value::Bool(true))
        .collect();
    assert_eq!(rollbacks, [false, false, false, true, true]);
}

// Item 8: a missing file:// store is an error for every reader; build creates it.
#[test]
fn a_missing_file_store_is_an_error_but_build_creates_it() {
    let mut ws = Workspace::new();
    ws.write("app/main.py", "v1");
    ws.commit("v1");
    let parent = tempfile::tempdir().unwrap();
    let store = format!("file://{}/target/builds", parent.path().display());
    let release = || {
        crate::common::Release::new().current_dir(ws.path()).args([
            "--artifact",
            ARTIFACT,
            "--bucket",
            &store,
        ])
    };
    for args in [
        &["list"][..],
        &["show", "latest"],
        &["history"],
        &["promote", "latest", "--no-tag"],
    ] {
        release()
            .args(args)
            .stderr_contains("no such store")
            .stderr_contains("/target/builds")
            .code(2);
    }
    // The README's first command, on a fresh clone where target/ does not exist yet.
    release().args(["build", "app"]).success();
    release().args(["list"]).stdout_contains("latest").success();
}

// Item 8: old scripts' bucket URLs, and an artifact typo answered with what the bucket holds.
#[test]
fn bucket_urls_are_accepted_and_artifact_typos_are_named() {
    let mut ctx = TestContext::new();
    build_once(&mut ctx, "v1");
    let url = format!("s3://{}", ctx.bucket);
    for bucket in [url.clone(), format!("{url}/")] {
        ctx.release()
            .args(["--artifact", ARTIFACT, "--bucket", &bucket, "list"])
            .stdout_contains("latest")
            .success();
    }
    ctx.release()
        .args([
            "--artifact",
            ARTIFACT,
            "--bucket",
            &format!("{url}/web/prod"),
        ])
        .arg("list")
        .stderr_contains("path inside a bucket")
        .code(2);
    ctx.release()
        .args(["--artifact", "wbe", "show", "latest"])
        .stderr_contains("holds no artifact `wbe`")
        .stderr_contains("it holds: web")
        .code(2);
    ctx.release()
        .args(["--artifact", "wbe", "list"])
        .stdout_contains("it holds: web")
        .success();
    // The right artifact with nothing built in it yet names no others.
    let out = ctx
        .release()
        .args(["--artifact", "web", "show", "9"])
        .code(2);
    assert!(!out.stderr().contains("it holds"), "{}", out.stderr());
}

// Item 10: --keep-local into a missing directory fails before a build number is claimed.
#[test]
fn keep_local_into_a_missing_directory_claims_nothing() {
    let mut ctx = TestContext::new();
    ctx.workspace.write("app/main.py", "v1");
    ctx.workspace.commit("v1");
    ctx.release()
        .args(["--artifact", ARTIFACT, "build", "app"])
        .args(["--keep-local", "no/such/dir/build.tar.gz"])
        .stderr_contains("does not exist")
        .code(2);
    assert_eq!(ctx.s3.keys(&ctx.bucket, ""), Vec::<String>::new());
}

// Item 10: a repository with no commits says so, not libgit2's code.
#[test]
fn a_repository_without_commits_says_so() {
    let ctx = TestContext::new();
    ctx.workspace.write("app/main.py", "v1");
    ctx.release()
        .args(["--artifact", ARTIFACT, "build", "app"])
        .stderr_contains("has no commits yet: commit first, or set GIT_COMMIT")
        .code(2);
}

// Item 10: a dry-run install of the installed build says it is installed.
#[test]
fn dry_run_install_of_the_current_build_says_so() {
    let mut ctx = TestContext::new();
    let number = build_once(&mut ctx, "v1").to_string();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("install").to_string_lossy().into_owned();
    let install = || {
        ctx.release()
            .args(["--artifact", ARTIFACT, "-q"])
            .env("RELEASE_INSTALL_DIR", &dir)
    };
    install()
        .args(["--dry-run", "install", &number])
        .stdout_contains("would install")
        .success();
    install().args(["install", &number]).success();
    let out = install().args(["--dry-run", "install", &number]).success();
    assert!(
        out.stdout().contains("is already installed"),
        "{}",
        out.stdout()
    );
    assert!(!out.stdout().contains("would install"), "{}", out.stdout());
}

// Item 10: without USER (cron, systemd), the history names the uid's user.
#[test]
fn history_names_the_uids_user_without_user() {
    let mut w = World::new();
    w.build("v1");
    w.release()
        .env_remove("BUILD_USER_ID")
        .env_remove("USER")
        .args(["promote", "1", "--no-tag"])
        .success();
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let me = String::from_utf8(me.stdout).unwrap().trim().to_owned();
    assert_eq!(w.history()[0]["user"], me.as_str());
    assert_ne!(me, "unknown");
}

// Item 10: a push whose only batch failed does not speak of batches left.
#[test]
fn a_failed_last_batch_is_not_said_to_stop_others() {
    let mut ctx = TestContext::new();
    let number = build_once(&mut ctx, "v1");
    let address = "127.0.1.212";
    let endpoint = ctx.moto.endpoint();
    let hosts = Hosts::start(&[address], &[("AWS_ENDPOINT_URL", &endpoint)]);
    let out = ctx
        .release()
        .args(["--artifact", ARTIFACT, "push", &number.to_string()])
        .args(["--hosts", address])
        .args(hosts.release_args())
        .args(["--command", "echo about-to-fail; false"])
        .stderr_contains(&format!("[{address}] about-to-fail"))
        .code(1);
    assert!(!out.stderr().contains("no new batch"), "{}", out.stderr());
}

// Item 10: the docs stand alone: no reference to a DESIGN.md users do not have.
#[test]
fn the_docs_stand_alone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in fs_err::read_dir(root.join("docs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let text = fs_err::read_to_string(&file).unwrap();
        // decisions.md is the project's own record; the user docs must not send users there.
        let internal = file.ends_with("decisions.md");
        assert!(
            !text.contains("shared/DESIGN.md") && (internal || !text.contains("DESIGN.md")),
            "{} refers to DESIGN.md, which users do not have",
            file.display()
        );
    }
    let design = fs_err::read_to_string(root.join("docs/design.md")).unwrap();
    for section in ["latest-stable.txt", "SHA256", "exit", "rollback"] {
        assert!(design.contains(section), "docs/design.md lacks {section}");
    }
}

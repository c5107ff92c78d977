//! `release build` end to end: the real binary against moto (and the directory store).

use std::collections::BTreeSet;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::common::{Action, FaultProxy, Release, Running, TestContext, Workspace, noise, proxy};

const ARTIFACT: &str = "obelix-appengine";

/// The old job's workspace: two service folders and the RELEASE file the old job left behind.
fn obelix_workspace(ws: &mut Workspace) -> String {
    ws.write("obelix/app.py", "print('obelix')\n");
    ws.write("obelix/static/logo.svg", "<svg/>\n");
    ws.write("commonix/lib.py", "VALUE = 1\n");
    ws.write("RELEASE", "MODULE=obelix-appengine\nVERSION=3\n");
    ws.write("notes.txt", "not part of the build\n");
    ws.commit("service sources")
}

/// SIGTERM, as Jenkins' Abort sends it, to a running build: it must stop with exit 1 and say
/// why.
fn terminate(running: Running) {
    interrupt(running, "TERM");
}

/// `signal` (TERM, or INT as Ctrl-C) to a running build: it must stop with exit 1 and say why.
fn interrupt(running: Running, signal: &str) {
    running.signal(signal);
    let out = running.wait(std::time::Duration::from_secs(60));
    assert_eq!(out.status().code(), Some(1), "{}", out.stderr());
    assert!(
        out.stderr()
            .contains(&format!("interrupted by SIG{signal}")),
        "{}",
        out.stderr()
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Members of a .tar.gz: (path, contents) in archive order.
fn members(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .expect("read tar")
        .map(|entry| {
            let mut entry = entry.expect("tar entry");
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            (path, body)
        })
        .collect()
}

fn key(name: &str) -> String {
    format!("{ARTIFACT}/prod/{name}")
}

/// Keys that a user would see as builds or pointers (claims are the tool's bookkeeping).
fn visible(ctx: &TestContext) -> Vec<String> {
    ctx.s3
        .keys(&ctx.bucket, "")
        .into_iter()
        .filter(|k| !k.contains("/claims/"))
        .collect()
}

#[test]
fn first_and_second_build_number_from_one() {
    let mut ctx = TestContext::new();
    let commit = obelix_workspace(&mut ctx.workspace);
    let out = ctx
        .release()
        .args([
            "--artifact",
            ARTIFACT,
            "--output",
            "json",
            "build",
            "obelix",
            "commonix",
        ])
        .env("BUILD_NUMBER", "33")
        .env("GIT_BRANCH", "origin/patch-1")
        .success();
    let doc = out.stdout_json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["latest_moved"], true);

    let archive = ctx
        .s3
        .get(&ctx.bucket, &key("obelix-appengine-1.tar.gz"))
        .unwrap();
    assert_eq!(doc["sha256"], sha256_hex(&archive));
    assert_eq!(doc["size"], archive.len());

    let manifest = String::from_utf8(
        ctx.s3
            .get(&ctx.bucket, &key("obelix-appengine-1.release"))
            .unwrap(),
    )
    .unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(lines[0], "MODULE=obelix-appengine");
    assert_eq!(lines[1], "VERSION=1");
    assert_eq!(lines[2], "BUILD=33");
    assert_eq!(lines[3], format!("GIT_COMMIT={commit}"));
    assert!(lines[4].starts_with("TIMESTAMP="));
    assert!(manifest.contains("GIT_BRANCH=patch-1\n"), "{manifest}");
    assert!(manifest.contains("ARCHIVE=obelix-appengine-1.tar.gz\n"));
    assert!(manifest.contains(&format!("SHA256={}\n", sha256_hex(&archive))));
    assert!(manifest.contains(&format!("SIZE={}\n", archive.len())));
    assert_eq!(
        ctx.s3.get(&ctx.bucket, &key("latest.txt")).unwrap(),
        manifest.as_bytes()
    );

    // RELEASE first, exactly once, without the archive's own keys; then the PATHs, sorted.
    let members = members(&archive);
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "RELEASE",
            "commonix",
            "commonix/lib.py",
            "obelix",
            "obelix/app.py",
            "obelix/static",
            "obelix/static/logo.svg"
        ]
    );
    let inner = String::from_utf8(members[0].1.clone()).unwrap();
    assert!(
        inner.starts_with("MODULE=obelix-appengine\nVERSION=1\n"),
        "{inner}"
    );
    assert!(!inner.contains("SHA256") && !inner.contains("ARCHIVE") && !inner.contains("SIZE"));

    let out = ctx
        .release()
        .args(["--artifact", ARTIFACT, "build", "obelix", "commonix"])
        .success();
    assert!(
        out.stdout().contains("built obelix-appengine 2:"),
        "{}",
        out.stdout()
    );
    let latest = String::from_utf8(ctx.s3.get(&ctx.bucket, &key("latest.txt")).unwrap()).unwrap();
    assert!(latest.contains("VERSION=2\n"));
    assert!(latest.contains("BUILD=manual\n"));
}

#[test]
fn legacy_bucket_continues_at_24() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    for n in 1..=23 {
        ctx.s3.put(
            &ctx.bucket,
            &key(&format!("obelix-appengine-{n}.tar")),
            format!("old {n}"),
        );
    }
    let old_latest =
        "MODULE=obelix-appengine\nVERSION=23\nBUILD=33\nTIMESTAMP=Mon Jan 23 11:20:02 IST 2016\n";
    ctx.s3.put(&ctx.bucket, &key("latest.txt"), old_latest);

    let doc = ctx
        .release()
        .args([
            "--artifact",
            ARTIFACT,
            "--output",
            "json",
            "build",
            "obelix",
        ])
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 24);
    assert!(
        ctx.s3
            .get(&ctx.bucket, &key("obelix-appengine-24.tar.gz"))
            .is_some()
    );
    // The old archives are untouched.
    assert_eq!(
        ctx.s3
            .get(&ctx.bucket, &key("obelix-appengine-23.tar"))
            .unwrap(),
        b"old 23"
    );
}

/// Every member's mtime in the archive (a .tar.gz).
fn mtimes(archive: &[u8]) -> Vec<(String, u64)> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            (path, e.header().mtime().unwrap())
        })
        .collect()
}

/// SOURCE_DATE_EPOCH sets every member's mtime (instead of the commit time).
#[test]
fn source_date_epoch_sets_every_mtime() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let commit_time: u64 = ctx
        .workspace
        .git(["log", "-1", "--format=%ct"])
        .trim()
        .parse()
        .unwrap();
    for (epoch, n) in [(None, 1), (Some("1000000000"), 2)] {
        let mut run = ctx.release().args(["--artifact", ARTIFACT, "-q", "build"]);
        if let Some(epoch) = epoch {
            run = run.env("SOURCE_DATE_EPOCH", epoch);
        }
        run.success();
        let archive = ctx
            .s3
            .get(&ctx.bucket, &key(&format!("obelix-appengine-{n}.tar.gz")))
            .unwrap();
        let expected = epoch.map_or(commit_time, |e| e.parse().unwrap());
        let times = mtimes(&archive);
        assert!(times.len() > 2, "{times:?}");
        for (path, mtime) in times {
            assert_eq!(mtime, expected, "{path} (SOURCE_DATE_EPOCH={epoch:?})");
        }
    }
    ctx.release()
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .args(["--artifact", ARTIFACT, "build"])
        .code(2)
        .stderr_contains("SOURCE_DATE_EPOCH=`yesterday`");
}

#[test]
fn same_tree_commit_and_jenkins_values_give_the_same_bytes() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let other = crate::common::unique_bucket("repro");
    ctx.s3.create_bucket(&other);
    let build = |bucket: &str| {
        ctx.release()
            .env("RELEASE_BUCKET", bucket)
            .env("BUILD_NUMBER", "7")
            .env("BUILD_TIMESTAMP", "2026-11-23 10:00:00 UTC")
            .args(["--artifact", ARTIFACT, "--output", "json", "build"])
            .success()
            .stdout_json()
    };
    let first = build(&ctx.bucket);
    // A touch changes mtimes on disk, but archive mtimes come from the commit.
    let file = ctx.workspace.path().join("obelix/app.py");
    std::fs::File::options()
        .append(true)
        .open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    let second = build(&other);
    assert_eq!(first["version"], 1);
    assert_eq!(second["version"], 1);
    assert_eq!(first["sha256"], second["sha256"]);
    assert_eq!(
        ctx.s3.get(&ctx.bucket, &key("obelix-appengine-1.tar.gz")),
        ctx.s3.get(&other, &key("obelix-appengine-1.tar.gz"))
    );
    // Without PATHs: everything but .git and the leftover RELEASE.
    let archive = ctx
        .s3
        .get(&ctx.bucket, &key("obelix-appengine-1.tar.gz"))
        .unwrap();
    let members = members(&archive);
    assert_eq!(members.iter().filter(|(n, _)| n == "RELEASE").count(), 1);
    assert!(members.iter().any(|(n, _)| n == "notes.txt"));
    assert!(!members.iter().any(|(n, _)| n.starts_with(".git")));
}

#[test]
fn sixteen_concurrent_builds_get_sixteen_numbers() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let docs: Vec<serde_json::Value> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..16)
            .map(|i| {
                let ctx = &ctx;
                scope.spawn(move || {
                    ctx.release()
                        .env("BUILD_NUMBER", i.to_string())
                        .args(["--artifact", ARTIFACT, "--output", "json", "-q", "build"])
                        .success()
                        .stdout_json()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let numbers: BTreeSet<u64> = docs
        .iter()
        .map(|d| d["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=16).collect::<BTreeSet<u64>>());
    for n in 1..=16 {
        let archive = ctx
            .s3
            .get(&ctx.bucket, &key(&format!("obelix-appengine-{n}.tar.gz")))
            .unwrap();
        let manifest = String::from_utf8(
            ctx.s3
                .get(&ctx.bucket, &key(&format!("obelix-appengine-{n}.release")))
                .unwrap(),
        )
        .unwrap();
        assert!(
            manifest.contains(&format!("SHA256={}\n", sha256_hex(&archive))),
            "build {n}"
        );
        assert!(
            members(&archive)[0]
                .1
                .starts_with(format!("MODULE=obelix-appengine\nVERSION={n}\n").as_bytes())
        );
    }
    let latest = String::from_utf8(ctx.s3.get(&ctx.bucket, &key("latest.txt")).unwrap()).unwrap();
    assert!(
        latest.contains("VERSION=16\n"),
        "latest.txt never moves backwards: {latest}"
    );
}

/// latest.txt never moves backwards: build 1's pointer write is held in the proxy until build
/// 2 has landed; when it arrives its condition fails, build 1 reads the pointer again, finds
/// a newer build and leaves it.
#[test]
fn a_late_pointer_write_does_not_move_latest_backwards() {
    use std::sync::{Mutex, mpsc};
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (held_tx, go_rx) = (Mutex::new(Some(held_tx)), Mutex::new(go_rx));
    proxy.set_rule(move |r| {
        if r.method == "PUT" && r.path().ends_with("/latest.txt") {
            // Only the first pointer write waits (the rule runs on the request's own thread).
            let first = held_tx.lock().unwrap().take();
            if let Some(held) = first {
                held.send(()).unwrap();
                let _ = go_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(60));
            }
        }
        Action::Forward
    });
    let build = || {
        ctx.release().endpoint(&proxy.endpoint()).args([
            "--artifact",
            ARTIFACT,
            "--output",
            "json",
            "build",
        ])
    };
    let first = build().spawn();
    held_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("build 1 wrote its pointer");
    let second = build().success().stdout_json();
    assert_eq!(second["version"], 2);
    let latest = || String::from_utf8(ctx.s3.get(&ctx.bucket, &key("latest.txt")).unwrap());
    assert!(latest().unwrap().contains("VERSION=2\n"));
    go_tx.send(()).unwrap();
    let first = first.wait(std::time::Duration::from_secs(60));
    assert_eq!(first.status().code(), Some(0), "{}", first.stderr());
    assert_eq!(first.stdout_json()["version"], 1);
    let latest = latest().unwrap();
    assert!(
        latest.contains("VERSION=2\n"),
        "latest.txt moved back: {latest}"
    );
    let writes = proxy
        .log()
        .iter()
        .filter(|e| e.request.method == "PUT" && e.request.path().ends_with("/latest.txt"))
        .map(|e| e.status)
        .collect::<Vec<_>>();
    assert!(
        writes.contains(&Some(412)),
        "build 1's late write met a condition: {writes:?}"
    );
}

/// A store whose conditional writes are not atomic (as some S3-compatible ones): two builds
/// list the bucket, both claim number 1, and the second claim arrives without its
/// `If-None-Match`, overwriting the first. Both read their claim back after that: the one
/// whose token is gone takes number 2. Two builds, two numbers.
#[test]
fn a_claim_overwritten_on_a_non_atomic_store_is_noticed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let puts = AtomicUsize::new(0);
    let log = proxy.log_handle();
    let claim_one = key("claims/1");
    // Bounded waits inside the rule (it runs on the request's own thread).
    let wait_until = |condition: &dyn Fn() -> bool, what: &str| {
        let started = std::time::Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    proxy.set_rule(move |r| {
        if !r.path().ends_with(&claim_one) {
            return Action::Forward;
        }
        match r.method.as_str() {
            "PUT" => {
                // Both builds chose 1 (moto answered both listings) before either claimed it.
                let listed = || {
                    let log = log.log();
                    let answered = log.iter().filter(|e| {
                        e.request.query().contains("list-type") && e.upstream_status.is_some()
                    });
                    answered.count() >= 2
                };
                wait_until(&listed, "two listings");
                if puts.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Action::Forward;
                }
                Action::ForwardWithout("If-None-Match".into())
            }
            "GET" => {
                // Read back only once moto has answered the overwrite.
                let overwritten = || {
                    log.log().iter().any(|e| {
                        matches!(e.action, Action::ForwardWithout(_)) && e.upstream_status.is_some()
                    })
                };
                wait_until(&overwritten, "the racing claim");
                Action::Forward
            }
            _ => Action::Forward,
        }
    });
    let build = || {
        ctx.release()
            .endpoint(&proxy.endpoint())
            .args(["--artifact", ARTIFACT, "--output", "json", "build"])
            .spawn()
    };
    let runs = [build(), build()];
    let mut numbers: Vec<u64> = runs
        .into_iter()
        .map(|run| {
            let out = run.wait(std::time::Duration::from_secs(90));
            assert_eq!(out.status().code(), Some(0), "{}", out.stderr());
            out.stdout_json()["version"].as_u64().unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2]);
    let overwrites = proxy
        .log()
        .iter()
        .filter(|e| matches!(e.action, Action::ForwardWithout(_)) && e.status == Some(200))
        .count();
    assert_eq!(overwrites, 1, "the racing claim did overwrite");
}

/// Every stored object is encrypted (AES256 by default, aws:kms with its key when asked); only
/// the archive takes `--storage-class`, the small objects stay STANDARD.
#[test]
fn objects_are_encrypted_and_only_archives_take_the_storage_class() {
    use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    ctx.release()
        .args(["--artifact", ARTIFACT, "-q", "build"])
        .success();
    ctx.release()
        .args([
            "--artifact",
            ARTIFACT,
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
        ])
        .args([
            "alias/release-test",
            "-q",
            "build",
            "--storage-class",
            "STANDARD_IA",
        ])
        .success();
    let keys = ctx.s3.keys(&ctx.bucket, "");
    let claims: Vec<&String> = keys.iter().filter(|k| k.contains("/claims/")).collect();
    assert_eq!(claims.len(), 2, "{keys:?}");
    let kms = (ServerSideEncryption::AwsKms, Some("alias/release-test"));
    let aes = (ServerSideEncryption::Aes256, None);
    let expected = [
        (
            key("obelix-appengine-1.tar.gz"),
            &aes,
            StorageClass::Standard,
        ),
        (
            key("obelix-appengine-1.release"),
            &aes,
            StorageClass::Standard,
        ),
        (claims[0].clone(), &aes, StorageClass::Standard),
        (
            key("obelix-appengine-2.tar.gz"),
            &kms,
            StorageClass::StandardIa,
        ),
        (
            key("obelix-appengine-2.release"),
            &kms,
            StorageClass::Standard,
        ),
        (claims[1].clone(), &kms, StorageClass::Standard),
        // Last written by build 2.
        (key("latest.txt"), &kms, StorageClass::Standard),
    ];
    assert_eq!(keys.len(), expected.len(), "{keys:?}");
    for (object, (sse, kms_key), class) in expected {
        let head = ctx.s3.head(&ctx.bucket, &object).unwrap();
        assert_eq!(head.server_side_encryption(), Some(sse), "{object}");
        assert_eq!(head.ssekms_key_id(), *kms_key, "{object}");
        let stored = head
            .storage_class()
            .cloned()
            .unwrap_or(StorageClass::Standard);
        assert_eq!(stored, class, "{object}");
    }
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let cases: Vec<(Release, i32, &str)> = vec![
        (
            ctx.release()
                .env("RELEASE_BUCKET", "no-such-bucket-here")
                .args(["--artifact", ARTIFACT, "build"]),
            2,
            "bucket `no-such-bucket-here` does not exist",
        ),
        (
            ctx.release()
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .args(["--artifact", ARTIFACT, "build"]),
            2,
            "no AWS credentials",
        ),
        (
            ctx.release()
                .args(["--artifact", ARTIFACT, "build", "obelix", "missing-dir"]),
            2,
            "path `missing-dir` does not exist",
        ),
        (
            ctx.release()
                .args(["--artifact", ARTIFACT, "build", "../outside"]),
            2,
            "must be relative to the working directory",
        ),
        (
            ctx.release().args(["--artifact", "web/app", "build"]),
            2,
            "invalid artifact `web/app`",
        ),
        (
            ctx.release().args(["--artifact", "web app", "build"]),
            2,
            "invalid artifact `web app`",
        ),
        (
            ctx.release().args(["--artifact", "web;rm -rf /", "build"]),
            2,
            "invalid artifact",
        ),
        (
            ctx.release().args(["--artifact", "$(id)", "build"]),
            2,
            "invalid artifact",
        ),
        (
            ctx.release().args(["build"]),
            2,
            "no artifact: pass --artifact",
        ),
        (
            ctx.release()
                .args(["--artifact", ARTIFACT, "build", "--level", "12"]),
            2,
            "invalid --level",
        ),
        (
            ctx.release()
                .args(["--artifact", ARTIFACT, "build", "--semver", "1.2"]),
            2,
            "invalid --semver `1.2`",
        ),
    ];
    for (run, code, message) in cases {
        run.code(code).stderr_contains(message);
    }
    assert_eq!(ctx.s3.keys(&ctx.bucket, ""), Vec::<String>::new());

    // A garbage latest.txt stops the build: the number is never guessed.
    ctx.s3.put(
        &ctx.bucket,
        &key("latest.txt"),
        "<html>Service Unavailable</html>",
    );
    let out = ctx
        .release()
        .args(["--artifact", ARTIFACT, "--output", "json", "build"])
        .code(2)
        .stderr_contains("latest.txt` is not a RELEASE manifest");
    assert_eq!(out.stdout_json()["error"]["exit_code"], 2);
    assert_eq!(ctx.s3.keys(&ctx.bucket, ""), [key("latest.txt")]);
}

#[test]
fn release_toml_is_read_and_flags_and_env_win() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    ctx.workspace.write(
        "release.toml",
        "artifact = \"from-toml\"\n[build]\npaths = [\"obelix\"]\nexclude = [\"obelix/static\"]\ncompression = \"none\"\n",
    );
    let doc = ctx
        .release()
        .args(["--output", "json", "build"])
        .success()
        .stdout_json();
    assert_eq!(doc["artifact"], "from-toml");
    let archive = ctx
        .s3
        .get(&ctx.bucket, "from-toml/prod/from-toml-1.tar")
        .unwrap();
    let mut tar = tar::Archive::new(archive.as_slice());
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["RELEASE", "obelix", "obelix/app.py"]);

    // env beats the file, a flag beats env.
    ctx.release()
        .env("ARTIFACT", "from-env")
        .args(["build"])
        .success();
    assert!(
        ctx.s3
            .get(&ctx.bucket, "from-env/prod/from-env-1.tar")
            .is_some()
    );
    ctx.release()
        .env("ARTIFACT", "from-env")
        .args(["--artifact", "from-flag", "build", "--compression", "zstd"])
        .success();
    assert!(
        ctx.s3
            .get(&ctx.bucket, "from-flag/prod/from-flag-1.tar.zst")
            .is_some()
    );

    ctx.workspace
        .write("release.toml", "artifact = \"x\"\n[build]\nexclued = []\n");
    ctx.release()
        .args(["build"])
        .code(2)
        .stderr_contains("exclued");
}

#[test]
fn dry_run_writes_nothing() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let doc = ctx
        .release()
        .endpoint(&proxy.endpoint())
        .env("RELEASE_DRY_RUN", "1")
        .args(["--artifact", ARTIFACT, "--output", "json", "build"])
        .success()
        .stdout_json();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["version"], 1);
    assert_eq!(ctx.s3.keys(&ctx.bucket, ""), Vec::<String>::new());
    // Not even a write that failed or was undone (a claim, an aborted upload).
    let writes: Vec<String> = proxy
        .log()
        .iter()
        .filter(|e| !matches!(e.request.method.as_str(), "GET" | "HEAD"))
        .map(|e| format!("{} {}", e.request.method, e.request.target))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
    assert!(proxy.count() > 0, "the plan read through the proxy");
}

/// Throttling and 5xx answers on every kind of request are retried by the SDK; the build ends
/// intact.
#[test]
fn throttling_and_server_errors_are_retried() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let counter = std::sync::atomic::AtomicUsize::new(0);
    // Every third request fails, alternating throttling and an internal error.
    proxy.set_rule(
        move |_| match counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 6 {
            0 => Action::slow_down(),
            3 => Action::internal_error(),
            _ => Action::Forward,
        },
    );
    let doc = ctx
        .release()
        .endpoint(&proxy.endpoint())
        .args(["--artifact", ARTIFACT, "--output", "json", "build"])
        .success()
        .stdout_json();
    let failed = proxy
        .log()
        .iter()
        .filter(|e| matches!(e.action, Action::Reply(..)))
        .count();
    assert!(failed >= 2, "faults were injected: {failed}");
    let archive = ctx
        .s3
        .get(&ctx.bucket, &key("obelix-appengine-1.tar.gz"))
        .unwrap();
    assert_eq!(doc["sha256"], sha256_hex(&archive));
    assert!(ctx.s3.open_multipart_uploads(&ctx.bucket).is_empty());
}

/// Small reads cut mid-body (latest.txt, the claim read back) are read again.
#[test]
fn small_reads_cut_mid_body_are_read_again() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    ctx.s3.put(
        &ctx.bucket,
        &key("latest.txt"),
        "MODULE=obelix-appengine\nVERSION=23\nBUILD=33\n",
    );
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    // The first read of each is cut, each on its own rule: latest.txt, then the claim.
    let latest = proxy::first_n(
        1,
        |r| r.method == "GET" && r.target.contains("latest.txt"),
        Action::CutAfter(10),
    );
    let claim = proxy::first_n(
        1,
        |r| r.method == "GET" && r.target.contains("claims/"),
        Action::CutAfter(10),
    );
    proxy.set_rule(move |r| match latest(r) {
        Action::Forward => claim(r),
        cut => cut,
    });
    let doc = ctx
        .release()
        .endpoint(&proxy.endpoint())
        .args(["--artifact", ARTIFACT, "--output", "json", "build"])
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 24);
    let log = proxy.log();
    let cut = |target: &str| {
        log.iter()
            .filter(|e| e.cut && e.request.target.contains(target))
            .count()
    };
    assert_eq!(
        (cut("latest.txt"), cut("claims/")),
        (1, 1),
        "each read was cut once"
    );
}

/// Answers lost after the server acted (the claim, the completion, the manifest, the pointer):
/// the build recognises its own writes and ends intact.
#[test]
fn lost_answers_are_checked_before_failing() {
    // The completion has its own test (a_lost_completion_is_checked_with_a_head): moto answers
    // its retry with 200, so the check would never run here.
    for target in ["claims/", ".release", "latest.txt"] {
        let mut ctx = TestContext::new();
        obelix_workspace(&mut ctx.workspace);
        let proxy = FaultProxy::new(&ctx.moto.endpoint());
        let target_owned = target.to_owned();
        proxy.set_rule(proxy::first_n(
            1,
            move |r| {
                (r.method == "PUT" || r.method == "POST")
                    && r.target.contains(&target_owned)
                    && !r.target.contains("partNumber")
            },
            Action::ForwardThenCut,
        ));
        let out = ctx
            .release()
            .endpoint(&proxy.endpoint())
            .args(["--artifact", ARTIFACT, "--output", "json", "build"])
            .run();
        assert!(
            out.status().success(),
            "lost answer on {target}: {}",
            out.stderr()
        );
        let doc = out.stdout_json();
        assert_eq!(doc["version"], 1, "lost answer on {target}");
        let archive = ctx
            .s3
            .get(&ctx.bucket, &key("obelix-appengine-1.tar.gz"))
            .unwrap();
        assert_eq!(doc["sha256"], sha256_hex(&archive));
        assert!(
            String::from_utf8(ctx.s3.get(&ctx.bucket, &key("latest.txt")).unwrap())
                .unwrap()
                .contains("VERSION=1\n")
        );
    }
}

/// A lost answer to CompleteMultipartUpload, as S3 then behaves: the upload is complete, so
/// the SDK's retry gets 404 NoSuchUpload (moto would answer 200). The build checks with a
/// HEAD that its archive is there before calling the write failed.
#[test]
fn a_lost_completion_is_checked_with_a_head() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let completes = std::sync::atomic::AtomicUsize::new(0);
    proxy.set_rule(move |r| {
        let complete = r.method == "POST"
            && r.query().starts_with("uploadId=")
            && r.path().ends_with(".tar.gz");
        if !complete {
            return Action::Forward;
        }
        match completes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Action::ForwardThenCut,
            _ => Action::error(
                404,
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the \
                 upload may have been aborted or completed.",
            ),
        }
    });
    let doc = ctx
        .release()
        .endpoint(&proxy.endpoint())
        .args(["--artifact", ARTIFACT, "--output", "json", "build"])
        .success()
        .stdout_json();
    assert_eq!(doc["version"], 1);
    let log = proxy.log();
    let refused = log
        .iter()
        .position(|e| e.status == Some(404) && e.request.method == "POST")
        .expect("the retried completion was refused");
    let archive = key("obelix-appengine-1.tar.gz");
    assert!(
        log[refused..]
            .iter()
            .any(|e| e.request.method == "HEAD" && e.request.path().ends_with(&archive)),
        "a HEAD of the archive followed the refusal: {:?}",
        log.iter()
            .map(|e| (&e.request.method, &e.request.target, e.status))
            .collect::<Vec<_>>()
    );
    let stored = ctx.s3.get(&ctx.bucket, &archive).unwrap();
    assert_eq!(doc["sha256"], sha256_hex(&stored));
}

/// An upload that keeps failing aborts: no archive, no manifest, no open upload, no pointer.
#[test]
fn a_failed_upload_leaves_nothing_visible() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    proxy.set_rule(|r| {
        if r.target.contains("partNumber") {
            Action::error(500, "InternalError", "disk on fire")
        } else {
            Action::Forward
        }
    });
    ctx.release()
        .endpoint(&proxy.endpoint())
        .args(["--artifact", ARTIFACT, "build"])
        .code(1)
        .stderr_contains(&format!(
            "uploading `s3://{}/{}`",
            ctx.bucket,
            key("obelix-appengine-1.tar.gz")
        ));
    assert_eq!(visible(&ctx), Vec::<String>::new());
    assert!(ctx.s3.open_multipart_uploads(&ctx.bucket).is_empty());
}

mod directory_store {
    use super::*;

    fn dir_release(ws: &Workspace, store: &std::path::Path) -> Release {
        Release::new()
            .current_dir(ws.path())
            // Nothing listens here: the directory store must not touch the network.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("RELEASE_BUCKET", format!("file://{}", store.display()))
    }

    #[test]
    fn builds_number_on_and_continue_a_legacy_store() {
        let mut ws = Workspace::new();
        obelix_workspace(&mut ws);
        let store = tempfile::tempdir().unwrap();
        let prefix = store.path().join(ARTIFACT).join("prod");
        std::fs::create_dir_all(&prefix).unwrap();
        std::fs::write(prefix.join("obelix-appengine-23.tar"), "old").unwrap();
        std::fs::write(
            prefix.join("latest.txt"),
            "MODULE=obelix-appengine\nVERSION=23\n",
        )
        .unwrap();
        for expected in [24, 25] {
            let doc = dir_release(&ws, store.path())
                .args([
                    "--artifact",
                    ARTIFACT,
                    "--output",
                    "json",
                    "build",
                    "obelix",
                ])
                .success()
                .stdout_json();
            assert_eq!(doc["version"], expected);
            let archive =
                std::fs::read(prefix.join(format!("obelix-appengine-{expected}.tar.gz"))).unwrap();
            assert_eq!(doc["sha256"], sha256_hex(&archive));
        }
        let latest = std::fs::read_to_string(prefix.join("latest.txt")).unwrap();
        assert!(latest.contains("VERSION=25\n"));
    }

    /// Every regular file below `dir`, relative, sorted.
    fn files_below(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    /// SIGTERM while the archive is being written into the directory store: the temporary
    /// file goes, nothing but the claim is left, and the next build takes the next number.
    #[test]
    fn an_interrupted_build_leaves_nothing_visible() {
        let mut ws = Workspace::new();
        obelix_workspace(&mut ws);
        ws.write("obelix/model.bin", noise(40 << 20, 7));
        ws.commit("a large file");
        let store = tempfile::tempdir().unwrap();
        // Level 9 on incompressible bytes is slow enough for the signal to land mid-write.
        let running = dir_release(&ws, store.path())
            .args(["--artifact", ARTIFACT, "build", "--level", "9"])
            .spawn();
        let writing = || {
            files_below(store.path()).iter().any(|f| {
                f.starts_with(".release-tmp/")
                    && store.path().join(f).metadata().is_ok_and(|m| m.len() > 0)
            })
        };
        let start = std::time::Instant::now();
        while !writing() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the archive never started: {:?}",
                files_below(store.path())
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        terminate(running);
        assert_eq!(
            files_below(store.path()),
            [format!("{ARTIFACT}/prod/claims/1")],
            "only the claim of the interrupted build is left"
        );

        let doc = dir_release(&ws, store.path())
            .args([
                "--artifact",
                ARTIFACT,
                "--output",
                "json",
                "-q",
                "build",
                "commonix",
            ])
            .success()
            .stdout_json();
        assert_eq!(
            doc["version"], 2,
            "the interrupted build's number is not reused"
        );
    }

    /// What `kill -9` leaves in the store's temporary directory goes with the next build once a
    /// day old; a younger file (another build still writing) stays.
    #[test]
    fn stale_temporary_files_are_removed_by_the_next_build() {
        let mut ws = Workspace::new();
        obelix_workspace(&mut ws);
        let store = tempfile::tempdir().unwrap();
        let temporary = store.path().join(".release-tmp");
        std::fs::create_dir_all(&temporary).unwrap();
        let old = temporary.join("left-by-kill-9");
        let young = temporary.join("still-writing");
        std::fs::write(&young, "part").unwrap();
        let file = std::fs::File::create(&old).unwrap();
        let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
        file.set_modified(std::time::SystemTime::now() - two_days)
            .unwrap();
        drop(file);

        dir_release(&ws, store.path())
            .args(["--artifact", ARTIFACT, "-q", "build", "obelix"])
            .success();
        assert!(!old.exists(), "the stale temporary file is still there");
        assert!(young.exists(), "a young temporary file was removed");
        assert_eq!(
            files_below(store.path())
                .into_iter()
                .filter(|f| !f.contains("/claims/"))
                .collect::<Vec<_>>(),
            [
                ".release-tmp/still-writing".to_string(),
                format!("{ARTIFACT}/prod/latest.txt"),
                format!("{ARTIFACT}/prod/obelix-appengine-1.release"),
                format!("{ARTIFACT}/prod/obelix-appengine-1.tar.gz"),
            ]
        );
    }

    #[test]
    fn sixteen_concurrent_builds_get_sixteen_numbers() {
        let mut ws = Workspace::new();
        obelix_workspace(&mut ws);
        let store = tempfile::tempdir().unwrap();
        let numbers: BTreeSet<u64> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..16)
                .map(|_| {
                    let (ws, store) = (&ws, store.path());
                    scope.spawn(move || {
                        dir_release(ws, store)
                            .args(["--artifact", ARTIFACT, "--output", "json", "-q", "build"])
                            .success()
                            .stdout_json()["version"]
                            .as_u64()
                            .unwrap()
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(numbers, (1..=16).collect::<BTreeSet<u64>>());
        let prefix = store.path().join(ARTIFACT).join("prod");
        for n in 1..=16 {
            let archive =
                std::fs::read(prefix.join(format!("obelix-appengine-{n}.tar.gz"))).unwrap();
            let manifest =
                std::fs::read_to_string(prefix.join(format!("obelix-appengine-{n}.release")))
                    .unwrap();
            assert!(manifest.contains(&format!("SHA256={}\n", sha256_hex(&archive))));
        }
        assert!(
            std::fs::read_to_string(prefix.join("latest.txt"))
                .unwrap()
                .contains("VERSION=16\n")
        );
    }

    #[test]
    fn keep_local_writes_the_same_bytes() {
        let mut ws = Workspace::new();
        obelix_workspace(&mut ws);
        let store = tempfile::tempdir().unwrap();
        let local = store.path().join("copy.tar.gz");
        let doc = dir_release(&ws, store.path())
            .args([
                "--artifact",
                ARTIFACT,
                "--output",
                "json",
                "build",
                "--keep-local",
            ])
            .arg(&local)
            .success()
            .stdout_json();
        let kept = std::fs::read(&local).unwrap();
        let stored = std::fs::read(
            store
                .path()
                .join(ARTIFACT)
                .join("prod/obelix-appengine-1.tar.gz"),
        )
        .unwrap();
        assert!(
            kept == stored,
            "the local copy differs from the stored archive"
        );
        assert_eq!(doc["sha256"], sha256_hex(&kept));
    }
}

/// Jenkins' Abort sends SIGTERM mid-upload, Ctrl-C SIGINT: each time the multipart upload is
/// aborted and nothing is visible; the next build works.
#[test]
fn an_interrupted_build_leaves_nothing() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    ctx.workspace.write("obelix/model.bin", noise(40 << 20, 42));
    ctx.workspace.commit("a large file");
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    for signal in ["TERM", "INT"] {
        proxy.reset();
        // Part 1 lands, the others are held until the build gives up on them, so the signal
        // surely lands mid-upload however loaded the machine is.
        proxy.set_rule(|r| {
            let part = r
                .query()
                .split('&')
                .find_map(|pair| pair.strip_prefix("partNumber="));
            match part {
                None | Some("1") => Action::Forward,
                Some(_) => Action::Stall(std::time::Duration::from_secs(60)),
            }
        });
        let running = ctx
            .release()
            .endpoint(&proxy.endpoint())
            .args(["--artifact", ARTIFACT, "build"])
            .spawn();
        let start = std::time::Instant::now();
        while !proxy
            .log()
            .iter()
            .any(|e| e.request.target.contains("partNumber"))
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "no part was uploaded"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        interrupt(running, signal);
        assert_eq!(visible(&ctx), Vec::<String>::new(), "SIG{signal}");
        assert!(
            ctx.s3.open_multipart_uploads(&ctx.bucket).is_empty(),
            "SIG{signal}"
        );
        let aborted = proxy
            .log()
            .iter()
            .any(|e| e.request.method == "DELETE" && e.request.query().contains("uploadId="));
        assert!(aborted, "SIG{signal}: the upload was aborted");
    }

    proxy.clear_rule();
    let doc = ctx
        .release()
        .args(["--artifact", ARTIFACT, "--output", "json", "build"])
        .success()
        .stdout_json();
    assert_eq!(
        doc["version"], 3,
        "the interrupted builds' numbers are not reused"
    );
}

/// Links are archived as links, never followed: a dangling one is fine.
#[test]
fn links_are_archived_not_followed() {
    let mut ctx = TestContext::new();
    obelix_workspace(&mut ctx.workspace);
    let secret = ctx.workspace.path().join("obelix/secret.key");
    std::os::unix::fs::symlink("../nonexistent/target", &secret).unwrap();
    ctx.workspace.commit("a dangling link");
    // A dangling link (inside the tree: install's rule refuses links that leave it) is archived
    // as a link (links are never followed), so this build succeeds.
    let doc = ctx
        .release()
        .args([
            "--artifact",
            ARTIFACT,
            "--output",
            "json",
            "build",
            "obelix",
        ])
        .success()
        .stdout_json();
    let archive = ctx
        .s3
        .get(&ctx.bucket, &key("obelix-appengine-1.tar.gz"))
        .unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()));
    let link = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().ends_with("secret.key"))
        .expect("the link is archived");
    assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
    assert_eq!(doc["version"], 1);
}

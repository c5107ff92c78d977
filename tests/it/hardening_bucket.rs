//! Issue 10, the bucket's part: a manifest proves it is the build it is read as (item 11), a
//! pointer that cannot be read is an error and never "none" (item 14), and credentials inside a
//! URL never reach output, logs or history records (item 17).

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::common::{Action, FaultProxy, Release, TestContext};

const ARTIFACT: &str = "web";

fn key(name: &str) -> String {
    format!("{ARTIFACT}/prod/{name}")
}

/// The binary for this artifact, through `endpoint`.
fn release(ctx: &TestContext, endpoint: &str) -> Release {
    ctx.release()
        .endpoint(endpoint)
        .args(["--artifact", ARTIFACT])
}

/// An uncompressed tar holding `app/version.txt` with `content`.
fn small_tar(content: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "app/version.txt", content.as_bytes())
        .unwrap();
    builder.into_inner().unwrap()
}

/// A manifest as `build` writes it, with `archive` and the digest and size of `tar`.
fn manifest_of(version: u64, archive: &str, tar: &[u8]) -> String {
    format!(
        "MODULE={ARTIFACT}\nVERSION={version}\nBUILD=manual\nTIMESTAMP=now\nARCHIVE={archive}\n\
         SHA256={}\nSIZE={}\n",
        hex::encode(Sha256::digest(tar)),
        tar.len()
    )
}

/// Stores build `n` as this tool would: `web-{n}.tar` and its manifest; returns the manifest.
fn put_build(ctx: &TestContext, n: u64) -> String {
    let tar = small_tar(&format!("{n}\n"));
    let name = format!("{ARTIFACT}-{n}.tar");
    let manifest = manifest_of(n, &name, &tar);
    ctx.s3.put(&ctx.bucket, &key(&name), tar);
    ctx.s3.put(
        &ctx.bucket,
        &key(&format!("{ARTIFACT}-{n}.release")),
        manifest.clone(),
    );
    manifest
}

fn stable(ctx: &TestContext) -> Option<String> {
    ctx.s3
        .get(&ctx.bucket, &key("latest-stable.txt"))
        .map(|b| String::from_utf8(b).unwrap())
}

fn install_dir_is_empty(dir: &Path) -> bool {
    !dir.join("current").exists()
        && std::fs::read_dir(dir.join("releases"))
            .map(|entries| entries.count() == 0)
            .unwrap_or(true)
}

#[test]
fn a_manifest_stored_under_another_number_is_refused_everywhere() {
    let ctx = TestContext::new();
    let endpoint = ctx.moto.endpoint();
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    let six = put_build(&ctx, 6);
    // Build 6's manifest copied as build 5's: it would promote as 5 and install build 6.
    ctx.s3.put(&ctx.bucket, &key("web-5.release"), six.clone());

    release(&ctx, &endpoint)
        .args(["promote", "5", "--no-tag"])
        .stderr_contains("web/prod/web-5.release")
        .stderr_contains("VERSION")
        .code(2);
    assert_eq!(stable(&ctx), None, "nothing was promoted");
    release(&ctx, &endpoint)
        .args(["install", "5", "--dir"])
        .arg(&dir)
        .stderr_contains("web/prod/web-5.release")
        .stderr_contains("VERSION")
        .code(2);
    assert!(install_dir_is_empty(&dir));
    release(&ctx, &endpoint)
        .args(["show", "5"])
        .stderr_contains("web/prod/web-5.release")
        .stderr_contains("VERSION")
        .code(2);
    let doc = release(&ctx, &endpoint)
        .args(["--output", "json", "show", "5"])
        .code(2)
        .stdout_json();
    assert_eq!(doc["error"]["exit_code"], 2);

    // MODULE of another artifact: not this artifact's build 6.
    ctx.s3.put(
        &ctx.bucket,
        &key("web-7.release"),
        six.replace("VERSION=6", "VERSION=7")
            .replace("web-6.tar", "web-7.tar")
            .replace("MODULE=web", "MODULE=api"),
    );
    release(&ctx, &endpoint)
        .args(["show", "7"])
        .stderr_contains("MODULE")
        .code(2);

    // A pointer that names build 6 but build 5's archive: install of latest-stable refuses it,
    // list says so instead of showing it as true, and promoting 6 rewrites it.
    let lying = six.replace("ARCHIVE=web-6.tar", "ARCHIVE=web-5.tar");
    ctx.s3
        .put(&ctx.bucket, &key("latest-stable.txt"), lying.clone());
    release(&ctx, &endpoint)
        .args(["install", "--dir"])
        .arg(&dir)
        .stderr_contains("web/prod/latest-stable.txt")
        .stderr_contains("ARCHIVE")
        .code(2);
    assert!(install_dir_is_empty(&dir));
    let listed = release(&ctx, &endpoint)
        .args(["--output", "json", "list"])
        .stderr_contains("web/prod/latest-stable.txt")
        .stderr_contains("web/prod/web-5.release")
        .success();
    let doc = listed.stdout_json();
    assert_eq!(doc["stable"], serde_json::Value::Null, "{doc}");
    let five = doc["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["version"] == 5)
        .expect("build 5 listed");
    assert_eq!(five["source"], "listing", "{five}");
    assert_ne!(five["archive"], "web-6.tar", "{five}");

    release(&ctx, &endpoint)
        .args(["promote", "6", "--no-tag"])
        .stderr_contains("will be replaced")
        .success();
    assert_eq!(stable(&ctx).as_deref(), Some(six.as_str()));
    release(&ctx, &endpoint)
        .args(["install", "--dir"])
        .arg(&dir)
        .success();
    assert_eq!(
        std::fs::read_to_string(dir.join("current/app/version.txt")).unwrap(),
        "6\n"
    );
}

#[test]
fn an_archive_outside_the_build_is_never_read() {
    let ctx = TestContext::new();
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    let outside = small_tar("not this artifact's\n");
    ctx.s3.put(&ctx.bucket, "outside.tar.gz", outside.clone());
    ctx.s3.put(&ctx.bucket, &key("web-5.tar"), small_tar("5\n"));
    ctx.s3.put(
        &ctx.bucket,
        &key("web-5.release"),
        manifest_of(5, "../../outside.tar.gz", &outside),
    );

    let runs: Vec<_> = [
        &["promote", "5", "--no-tag"][..],
        &["install", "5", "--dir", dir.to_str().unwrap()],
        &["show", "5"],
    ]
    .into_iter()
    .map(|args| release(&ctx, &proxy.endpoint()).args(args).run())
    .collect();
    let log = proxy.log();
    assert!(!log.is_empty());
    let prefix = format!("/{}/{}", ctx.bucket, key(""));
    let strays: Vec<&str> = log
        .iter()
        .map(|e| e.request.target.as_str())
        .filter(|target| !target.starts_with(&prefix) || target.contains("outside"))
        .filter(|target| !target.contains("list-type=2"))
        .collect();
    assert_eq!(strays, Vec::<&str>::new(), "requests outside {prefix}");
    for run in runs {
        run.stderr_contains("web/prod/web-5.release")
            .stderr_contains("ARCHIVE")
            .code(2);
    }
    assert_eq!(stable(&ctx), None);
    assert!(install_dir_is_empty(&dir));
}

#[test]
fn archive_keys_without_a_digest_are_not_a_legacy_build() {
    let ctx = TestContext::new();
    let endpoint = ctx.moto.endpoint();
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("web");
    for n in [7, 8] {
        put_build(&ctx, n);
    }
    let seven = String::from_utf8(ctx.s3.get(&ctx.bucket, &key("web-7.release")).unwrap()).unwrap();
    let without = |text: &str, name: &str| -> String {
        text.lines()
            .filter(|line| !line.starts_with(&format!("{name}=")))
            .map(|line| format!("{line}\n"))
            .collect()
    };
    ctx.s3.put(
        &ctx.bucket,
        &key("web-7.release"),
        without(&seven, "SHA256"),
    );
    let eight = String::from_utf8(ctx.s3.get(&ctx.bucket, &key("web-8.release")).unwrap()).unwrap();
    ctx.s3
        .put(&ctx.bucket, &key("web-8.release"), without(&eight, "SIZE"));

    release(&ctx, &endpoint)
        .args(["install", "7", "--dir"])
        .arg(&dir)
        .stderr_contains("web/prod/web-7.release")
        .stderr_contains("SHA256")
        .code(2);
    assert!(install_dir_is_empty(&dir), "installed unverified");
    release(&ctx, &endpoint)
        .args(["promote", "8", "--no-tag"])
        .stderr_contains("web/prod/web-8.release")
        .stderr_contains("SIZE")
        .code(2);
    assert_eq!(stable(&ctx), None);
}

/// A port on 127.0.0.1 that nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_unreadable_latest_stable_is_an_error_not_none() {
    let ctx = TestContext::new();
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    let manifest = put_build(&ctx, 3);
    ctx.s3
        .put(&ctx.bucket, &key("latest-stable.txt"), manifest.clone());
    proxy.set_rule(|request| {
        if request.method == "GET" && request.path().ends_with("/latest-stable.txt") {
            Action::error(403, "AccessDenied", "Access Denied")
        } else {
            Action::Forward
        }
    });
    let port = closed_port().to_string();
    let status = ["status", "--hosts", "127.0.0.1", "--ssh-port", &port];

    let out = release(&ctx, &proxy.endpoint())
        .args(status)
        .stderr_contains("web/prod/latest-stable.txt")
        .stderr_contains("access denied")
        .code(1);
    assert!(!out.stdout().contains("DRIFT"), "{}", out.stdout());
    let doc = release(&ctx, &proxy.endpoint())
        .args(["--output", "json"])
        .args(status)
        .code(1)
        .stdout_json();
    assert_eq!(doc["error"]["exit_code"], 1, "{doc}");
    assert!(doc.get("hosts").is_none(), "{doc}");
    for args in [
        &["list"][..],
        &["show", "latest-stable"],
        &["install", "--dry-run"],
    ] {
        release(&ctx, &proxy.endpoint())
            .args(args)
            .stderr_contains("latest-stable.txt")
            .code(1);
    }

    // Garbage where the pointer should be is no "none" either.
    proxy.clear_rule();
    ctx.s3
        .put(&ctx.bucket, &key("latest-stable.txt"), "<html>oops</html>");
    release(&ctx, &proxy.endpoint())
        .args(status)
        .stderr_contains("web/prod/latest-stable.txt")
        .code(2);
    release(&ctx, &proxy.endpoint())
        .arg("list")
        .stderr_contains("web/prod/latest-stable.txt")
        .success();
}

#[test]
fn credentials_in_a_remote_url_are_never_shown_or_kept() {
    const TOKEN: &str = "TOKEN-s3cr3t-9f8e";
    let mut ctx = TestContext::new();
    let endpoint = ctx.moto.endpoint();
    ctx.workspace.write("app/main.py", "print(1)\n");
    ctx.workspace.commit("app");
    release(&ctx, &endpoint)
        .args(["-q", "build", "app"])
        .success();
    // Nothing listens there: git fails at once, quoting the URL it was given.
    let port = closed_port();
    let remote = format!("http://user:{TOKEN}@127.0.0.1:{port}/x.git");
    let masked = format!("http://***@127.0.0.1:{port}/x.git");
    let promote = ["promote", "1", "--remote", &remote];

    let runs = [
        release(&ctx, &endpoint)
            .args(["--dry-run", "--output", "json"])
            .args(promote)
            .run(),
        release(&ctx, &endpoint).args(["-v"]).args(promote).run(),
        // The pointer moved: the re-run retries only the tag, and fails the same way.
        release(&ctx, &endpoint)
            .args(["--output", "json", "-v"])
            .args(promote)
            .run(),
    ];
    for run in &runs {
        for (name, text) in [("stdout", run.stdout()), ("stderr", run.stderr())] {
            assert!(!text.contains(TOKEN), "the token is in {name}:\n{text}");
        }
    }
    let [plan, text, json] = runs;
    assert_eq!(
        plan.code(0).stdout_json()["remote"].as_str(),
        Some(masked.as_str())
    );
    text.stderr_contains(&masked).code(4);
    let doc = json.code(4).stdout_json();
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains(&masked), "{doc}");
    let records = ctx.s3.keys(&ctx.bucket, &key("history/"));
    assert_eq!(records.len(), 1, "one promotion recorded");
    for record in records {
        let text = String::from_utf8(ctx.s3.get(&ctx.bucket, &record).unwrap()).unwrap();
        assert!(!text.contains(TOKEN), "{record}: {text}");
    }
}

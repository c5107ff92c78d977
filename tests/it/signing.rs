//! Issue 14: signed builds. The build job signs each manifest (minisign Ed25519 or AWS KMS
//! ECDSA P-256); hosts with trusted keys install only builds signed by one of them, and the
//! signatures are checked by tools nobody here wrote (`minisign -V`, `openssl dgst -verify`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::common::{FaultProxy, Hosts, TestContext};

const ARTIFACT: &str = "web";

/// A minisign key pair without a password, made by the `minisign` tool: (secret, public).
fn minisign_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let out = Command::new("minisign")
        .args(["-G", "-W", "-f", "-s"])
        .arg(&secret)
        .arg("-p")
        .arg(&public)
        .output()
        .expect("the `minisign` tool is required (apt-get install minisign)");
    assert!(out.status.success(), "minisign -G: {out:?}");
    (secret, public)
}

/// `n` builds of a small workspace, each signed with `sign` (`key:FILE` or `kms:KEY`).
fn signed_builds(ctx: &mut TestContext, n: u64, sign: &str) {
    ctx.workspace.write("app/run.sh", "#!/bin/sh\necho run\n");
    for i in 1..=n {
        ctx.workspace.write("app/version.txt", format!("{i}\n"));
        ctx.workspace.commit(&format!("build {i}"));
        ctx.release()
            .args(["--artifact", ARTIFACT, "-q", "build", "app", "--sign", sign])
            .success();
    }
}

fn key(n: u64, suffix: &str) -> String {
    format!("{ARTIFACT}/prod/{ARTIFACT}-{n}{suffix}")
}

fn current(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("current"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Writes the object `key` of the bucket to `dir/name`.
fn fetch(ctx: &TestContext, key: &str, dir: &Path, name: &str) -> PathBuf {
    let body = ctx
        .s3
        .get(&ctx.bucket, key)
        .unwrap_or_else(|| panic!("{key}"));
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn ed25519_signed_build_installs_and_minisign_accepts_the_signature() {
    let keys = TempDir::new().unwrap();
    let (secret, public) = minisign_keys(keys.path(), "build");
    let mut ctx = TestContext::new();
    signed_builds(&mut ctx, 1, &format!("key:{}", secret.display()));

    let manifest = fetch(&ctx, &key(1, ".release"), keys.path(), "manifest");
    let signature = fetch(&ctx, &key(1, ".release.sig"), keys.path(), "manifest.sig");
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&public)
        .arg("-m")
        .arg(&manifest)
        .arg("-x")
        .arg(&signature)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -V refused our signature: {out:?}"
    );

    // `release key export key:FILE` prints the same public key minisign wrote.
    let exported = ctx
        .release()
        .args(["key", "export"])
        .arg(format!("key:{}", secret.display()))
        .success()
        .stdout();
    let written = std::fs::read_to_string(&public).unwrap();
    assert_eq!(
        exported.lines().last(),
        written.lines().last(),
        "{exported}"
    );

    let host = TempDir::new().unwrap();
    let dir = host.path().join("web");
    let installed = ctx
        .release()
        .args(["--artifact", ARTIFACT, "install", "1", "--dir"])
        .arg(&dir)
        .arg("--trusted-key")
        .arg(&public)
        .success();
    assert!(
        installed.stderr().contains("signed by trusted key"),
        "{}",
        installed.stderr()
    );
    assert!(!installed.stderr().contains("not verified"));
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
}

#[test]
fn without_trusted_keys_install_works_and_warns_once() {
    let mut ctx = TestContext::new();
    ctx.workspace.write("app/a.txt", "a\n");
    ctx.workspace.commit("one");
    ctx.release()
        .args(["--artifact", ARTIFACT, "-q", "build", "app"])
        .success();
    let host = TempDir::new().unwrap();
    let dir = host.path().join("web");
    let out = ctx
        .release()
        .args(["--artifact", ARTIFACT, "install", "latest", "--dir"])
        .arg(&dir)
        .success();
    assert_eq!(
        out.stderr().matches("builds are not verified").count(),
        1,
        "{}",
        out.stderr()
    );
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));
}

/// One way the bucket is changed after build 2 was signed.
enum Tamper {
    NoSignature,
    UntrustedKey,
    OneByte,
    NewSha256Line,
    ArchiveSwapped,
    SignatureOfAnotherBuild,
    TruncatedSignature,
}

#[test]
fn every_tampered_or_unsigned_build_is_refused_before_its_archive_is_read() {
    let keys = TempDir::new().unwrap();
    let (secret, public) = minisign_keys(keys.path(), "build");
    let (_, other_public) = minisign_keys(keys.path(), "other");
    let mut ctx = TestContext::new();
    signed_builds(&mut ctx, 2, &format!("key:{}", secret.display()));
    let host = TempDir::new().unwrap();
    let dir = host.path().join("web");
    let install = |build: &str, trusted: &Path, endpoint: &str| {
        ctx.release()
            .endpoint(endpoint)
            .args(["--artifact", ARTIFACT, "install", build, "--dir"])
            .arg(&dir)
            .arg("--trusted-key")
            .arg(trusted)
            .run()
    };
    install("1", &public, &ctx.moto.endpoint()).success();

    let manifest = ctx.s3.get(&ctx.bucket, &key(2, ".release")).unwrap();
    let signature = ctx.s3.get(&ctx.bucket, &key(2, ".release.sig")).unwrap();
    let archive = ctx.s3.get(&ctx.bucket, &key(2, ".tar.gz")).unwrap();
    let cases = [
        (Tamper::NoSignature, "has no signature"),
        (Tamper::UntrustedKey, "not among the trusted keys"),
        (Tamper::OneByte, "does not match"),
        (Tamper::NewSha256Line, "does not match"),
        (Tamper::ArchiveSwapped, "does not match"),
        (Tamper::SignatureOfAnotherBuild, "does not match"),
        (Tamper::TruncatedSignature, "not readable"),
    ];
    for (tamper, said) in cases {
        // Build 2 as it was signed, then this case's change.
        ctx.s3
            .put(&ctx.bucket, &key(2, ".release"), manifest.clone());
        ctx.s3
            .put(&ctx.bucket, &key(2, ".release.sig"), signature.clone());
        ctx.s3.put(&ctx.bucket, &key(2, ".tar.gz"), archive.clone());
        let mut trusted = public.as_path();
        apply(
            &ctx,
            &tamper,
            &manifest,
            &signature,
            &mut trusted,
            &other_public,
        );

        let proxy = FaultProxy::new(&ctx.moto.endpoint());
        let out = install("2", trusted, &proxy.endpoint()).code(2);
        let stderr = out.stderr();
        assert!(stderr.contains(said), "{said}: {stderr}");
        assert!(stderr.contains("build 2 of web is not trusted"), "{stderr}");
        assert!(
            stderr.contains("nothing was downloaded, switched or promoted"),
            "{stderr}"
        );
        assert_eq!(current(&dir).as_deref(), Some("releases/1"), "{said}");
        assert!(!dir.join("releases/2").exists(), "{said}");
        // The host report of the refused install (issue 12) is written, not read: left out.
        let read: Vec<String> = proxy
            .log()
            .iter()
            .filter(|e| !e.request.target.contains("hosts"))
            .map(|e| e.request.path().to_owned())
            .collect();
        assert!(
            read.iter()
                .all(|p| p.ends_with(".release") || p.ends_with(".release.sig")),
            "{said}: only the manifest and its signature may be read: {read:?}"
        );
    }
}

fn apply<'a>(
    ctx: &TestContext,
    tamper: &Tamper,
    manifest: &[u8],
    signature: &[u8],
    trusted: &mut &'a Path,
    other: &'a Path,
) {
    let text = String::from_utf8(manifest.to_vec()).unwrap();
    let put_manifest = |body: String| ctx.s3.put(&ctx.bucket, &key(2, ".release"), body);
    match tamper {
        Tamper::NoSignature => ctx.s3.delete(&ctx.bucket, &key(2, ".release.sig")),
        Tamper::UntrustedKey => *trusted = other,
        Tamper::OneByte => {
            // BUILD's value or the commit: any one byte the manifest checks do not catch.
            let at = text.find("TIMESTAMP=").unwrap() + "TIMESTAMP=".len();
            let mut bytes = manifest.to_vec();
            bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
            ctx.s3.put(&ctx.bucket, &key(2, ".release"), bytes);
        }
        Tamper::NewSha256Line => {
            let changed: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("SHA256=") {
                        format!("SHA256={}\n", "0".repeat(64))
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            put_manifest(changed);
        }
        Tamper::ArchiveSwapped => {
            let evil = ctx.s3.get(&ctx.bucket, &key(1, ".tar.gz")).unwrap();
            let sha = format!("{:x}", Sha256::digest(&evil));
            let changed: String = text
                .lines()
                .map(|l| match l.split_once('=') {
                    Some(("SHA256", _)) => format!("SHA256={sha}\n"),
                    Some(("SIZE", _)) => format!("SIZE={}\n", evil.len()),
                    _ => format!("{l}\n"),
                })
                .collect();
            ctx.s3.put(&ctx.bucket, &key(2, ".tar.gz"), evil);
            put_manifest(changed);
        }
        Tamper::SignatureOfAnotherBuild => {
            let first = ctx.s3.get(&ctx.bucket, &key(1, ".release.sig")).unwrap();
            ctx.s3.put(&ctx.bucket, &key(2, ".release.sig"), first);
        }
        Tamper::TruncatedSignature => {
            let half = signature[..signature.len() / 2].to_vec();
            ctx.s3.put(&ctx.bucket, &key(2, ".release.sig"), half);
        }
    }
}

/// Runs python (moto's, which has boto3) with `script`; its stdout.
fn python(script: &str, endpoint: &str) -> String {
    let (program, args) = crate::common::asg::python();
    let out = Command::new(program)
        .args(args)
        .arg("-c")
        .arg(script)
        .env("ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A KMS ECC_NIST_P256 signing key in moto with the alias `alias/NAME`.
fn kms_key(endpoint: &str, name: &str) -> String {
    let script = format!(
        "import boto3, os\n\
         k = boto3.client('kms', endpoint_url=os.environ['ENDPOINT'])\n\
         m = k.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']\n\
         k.create_alias(AliasName='alias/{name}', TargetKeyId=m['KeyId'])\n\
         print(m['Arn'])\n"
    );
    python(&script, endpoint).trim().to_owned()
}

#[test]
fn kms_signed_build_installs_with_the_exported_key_and_openssl_accepts_it() {
    let mut ctx = TestContext::new();
    let alias = format!("release-{}", ctx.bucket);
    let arn = kms_key(&ctx.moto.endpoint(), &alias);
    signed_builds(&mut ctx, 1, &format!("kms:alias/{alias}"));

    let files = TempDir::new().unwrap();
    let exported = ctx
        .release()
        .args(["key", "export"])
        .arg(format!("kms:alias/{alias}"))
        .success()
        .stdout();
    assert!(
        exported.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{exported}"
    );
    let public = files.path().join("release.pub");
    std::fs::write(&public, &exported).unwrap();

    // By hand: the envelope's DER signature, checked by openssl over the manifest as stored.
    let manifest = fetch(&ctx, &key(1, ".release"), files.path(), "manifest");
    let envelope = ctx.s3.get(&ctx.bucket, &key(1, ".release.sig")).unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(envelope["key_id"], arn.as_str(), "{envelope}");
    assert_eq!(envelope["format"], "release-kms-ecdsa-p256-sha256");
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(envelope["signature"].as_str().unwrap())
        .unwrap();
    let sig = files.path().join("sig.der");
    std::fs::write(&sig, der).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&public)
        .arg("-signature")
        .arg(&sig)
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl refused our signature: {out:?}"
    );

    let host = TempDir::new().unwrap();
    let dir = host.path().join("web");
    let installed = ctx
        .release()
        .args(["--artifact", ARTIFACT, "install", "latest", "--dir"])
        .arg(&dir)
        .env("RELEASE_TRUSTED_KEYS", &public)
        .success();
    assert!(installed.stderr().contains(&arn), "{}", installed.stderr());
    assert_eq!(current(&dir).as_deref(), Some("releases/1"));

    // Another KMS key's public key is not trusted for it.
    let other = format!("other-{}", ctx.bucket);
    kms_key(&ctx.moto.endpoint(), &other);
    let other_pub = files.path().join("other.pub");
    let text = ctx
        .release()
        .args(["key", "export"])
        .arg(format!("kms:alias/{other}"))
        .success()
        .stdout();
    std::fs::write(&other_pub, text).unwrap();
    let refused = ctx
        .release()
        .args([
            "--artifact",
            ARTIFACT,
            "install",
            "latest",
            "--force",
            "--dir",
        ])
        .arg(host.path().join("other"))
        .arg("--trusted-key")
        .arg(&other_pub)
        .code(2);
    assert!(
        refused.stderr().contains("not trusted"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn push_installs_on_hosts_that_trust_the_key_and_names_the_one_that_does_not() {
    let keys = TempDir::new().unwrap();
    let (secret, public) = minisign_keys(keys.path(), "build");
    let (_, other_public) = minisign_keys(keys.path(), "other");
    let mut ctx = TestContext::new();
    signed_builds(&mut ctx, 1, &format!("key:{}", secret.display()));
    let (good, wrong) = ("127.0.14.1", "127.0.14.2");
    let hosts = Hosts::start(
        &[good, wrong],
        &[
            ("AWS_ENDPOINT_URL", &ctx.moto.endpoint()),
            ("RELEASE_TRUSTED_KEYS", &public.display().to_string()),
        ],
    );
    hosts.set_env_of(
        wrong,
        "RELEASE_TRUSTED_KEYS",
        &other_public.display().to_string(),
    );

    let out = ctx
        .release()
        .args([
            "--artifact",
            ARTIFACT,
            "--output",
            "json",
            "push",
            "1",
            "--hosts",
        ])
        .arg(format!("{good},{wrong}"))
        .args(hosts.release_args())
        .code(4);
    let doc = out.stdout_json();
    let report: Vec<&serde_json::Value> = doc["hosts"].as_array().unwrap().iter().collect();
    let of = |host: &str| {
        report
            .iter()
            .find(|h| h["host"] == host)
            .unwrap_or_else(|| panic!("{host} in {doc}"))
            .to_string()
    };
    assert!(
        of(good).contains("\"ok\"") || of(good).contains("installed"),
        "{doc}"
    );
    assert!(of(wrong).contains("not trusted"), "{doc}");
    assert!(of(wrong).contains("not among the trusted keys"), "{doc}");
    let installed =
        |address: &str| std::fs::read_link(hosts.install_dir(address).join("current")).ok();
    assert!(installed(good).is_some());
    assert!(installed(wrong).is_none());
}

#[test]
fn promote_with_trusted_keys_refuses_an_unsigned_build_and_show_names_the_signer() {
    let keys = TempDir::new().unwrap();
    let (secret, public) = minisign_keys(keys.path(), "build");
    let mut ctx = TestContext::new();
    signed_builds(&mut ctx, 1, &format!("key:{}", secret.display()));
    ctx.workspace.write("app/version.txt", "unsigned\n");
    ctx.workspace.commit("unsigned");
    ctx.release()
        .args(["--artifact", ARTIFACT, "-q", "build", "app"])
        .success();
    let stable = format!("{ARTIFACT}/prod/latest-stable.txt");

    let refused = ctx
        .release()
        .args(["--artifact", ARTIFACT, "promote", "2", "--no-tag"])
        .env("RELEASE_TRUSTED_KEYS", &public)
        .code(2);
    assert!(
        refused.stderr().contains("has no signature"),
        "{}",
        refused.stderr()
    );
    assert!(
        ctx.s3.get(&ctx.bucket, &stable).is_none(),
        "latest-stable moved"
    );

    ctx.release()
        .args([
            "--artifact",
            ARTIFACT,
            "promote",
            "1",
            "--no-tag",
            "--trusted-key",
        ])
        .arg(&public)
        .success()
        .stderr_contains("signed by trusted key");
    assert!(ctx.s3.get(&ctx.bucket, &stable).is_some());

    let shown = ctx
        .release()
        .args(["--artifact", ARTIFACT, "--output", "json", "show", "1"])
        .success()
        .stdout_json();
    let id = shown["signed_by"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "{shown}");
    let pub_line = std::fs::read_to_string(&public).unwrap();
    // minisign writes the id without leading zeros; ours always has 16 digits.
    let minisign_id = pub_line.lines().next().unwrap().rsplit(' ').next().unwrap();
    assert_eq!(
        u64::from_str_radix(minisign_id, 16).unwrap(),
        u64::from_str_radix(&id, 16).unwrap(),
        "minisign names the key id in the comment: {pub_line}"
    );
    let unsigned = ctx
        .release()
        .args(["--artifact", ARTIFACT, "--output", "json", "show", "2"])
        .success()
        .stdout_json();
    assert!(unsigned["signed_by"].is_null(), "{unsigned}");
    // list says who signed each build, from the signature objects.
    let listed = ctx
        .release()
        .args(["--artifact", ARTIFACT, "--output", "json", "list"])
        .success()
        .stdout_json();
    let signers: Vec<(u64, Option<&str>)> = listed["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["version"].as_u64().unwrap(), b["signed_by"].as_str()))
        .collect();
    assert_eq!(signers, [(2, None), (1, Some(id.as_str()))], "{listed}");
    ctx.release()
        .args(["--artifact", ARTIFACT, "list"])
        .success()
        .stdout_contains("SIGNED BY")
        .stdout_contains(&id);

    // The promotion's history record names the key.
    let history = ctx
        .release()
        .args(["--artifact", ARTIFACT, "--output", "json", "history"])
        .success()
        .stdout();
    assert!(
        history.contains(&format!("\"signed_by\":\"{id}\""))
            || history.contains(&format!("\"signed_by\": \"{id}\"")),
        "{history}"
    );

    // Rollback moves latest-stable too: with trusted keys it refuses an unsigned target.
    ctx.release()
        .args(["--artifact", ARTIFACT, "promote", "2", "--no-tag"])
        .success();
    ctx.release()
        .args(["--artifact", ARTIFACT, "promote", "1", "--no-tag"])
        .env("RELEASE_TRUSTED_KEYS", &public)
        .success();
    let refused = ctx
        .release()
        .args(["--artifact", ARTIFACT, "rollback", "--no-tag"])
        .env("RELEASE_TRUSTED_KEYS", &public)
        .code(2);
    assert!(
        refused.stderr().contains("has no signature"),
        "{}",
        refused.stderr()
    );
    let pointer = ctx.s3.get(&ctx.bucket, &stable).expect("latest-stable");
    assert!(
        String::from_utf8_lossy(&pointer).contains("VERSION=1\n"),
        "latest-stable moved to the unsigned build"
    );
}

#[test]
fn a_bad_signing_key_stops_the_build_before_anything_is_written() {
    let keys = TempDir::new().unwrap();
    let garbage = keys.path().join("garbage.key");
    std::fs::write(&garbage, "untrusted comment: not a key\nAAAA\n").unwrap();
    let mut ctx = TestContext::new();
    ctx.workspace.write("app/a.txt", "a\n");
    ctx.workspace.commit("one");
    for sign in [
        format!("key:{}", garbage.display()),
        format!("key:{}", keys.path().join("missing.key").display()),
        "gpg:whatever".to_owned(),
    ] {
        ctx.release()
            .args(["--artifact", ARTIFACT, "build", "app", "--sign", &sign])
            .code(2);
    }
    assert_eq!(ctx.s3.keys(&ctx.bucket, ""), Vec::<String>::new());
}

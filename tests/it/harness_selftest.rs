//! Self-tests of the test harness (`common/`): the servers, clients and fakes the real tests
//! stand on must themselves be shown to work, or a failing test could be the harness's fault.

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use common::proxy::first_n;
use common::{Action, BareRepo, FaultProxy, Moto, S3, Workspace, unique_bucket};

/// Whether anything accepts connections on `127.0.0.1:port`.
fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// Polls `condition` for up to `limit`.
fn eventually(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// A fresh bucket on the shared server and a client for it.
fn shared_bucket() -> (S3, String) {
    let s3 = S3::new(&Moto::shared().endpoint());
    let bucket = unique_bucket("harness");
    s3.create_bucket(&bucket);
    (s3, bucket)
}

#[test]
fn harness_bucket_operations_work_on_shared_moto() {
    let (s3, bucket) = shared_bucket();
    assert_eq!(s3.keys(&bucket, ""), Vec::<String>::new());
    s3.put(&bucket, "web/prod/b.txt", "bee");
    s3.put(&bucket, "web/prod/a.txt", b"a".to_vec());
    s3.put(&bucket, "other/x", "x");
    assert_eq!(
        s3.keys(&bucket, "web/"),
        ["web/prod/a.txt", "web/prod/b.txt"]
    );
    assert_eq!(
        s3.get(&bucket, "web/prod/b.txt").as_deref(),
        Some(&b"bee"[..])
    );
    assert_eq!(s3.get(&bucket, "web/prod/missing"), None);
    assert_eq!(s3.head_size(&bucket, "web/prod/b.txt"), Some(3));
    assert_eq!(s3.head_size(&bucket, "web/prod/missing"), None);
    s3.delete(&bucket, "web/prod/b.txt");
    assert_eq!(s3.keys(&bucket, "web/"), ["web/prod/a.txt"]);

    let upload = s3
        .block_on(
            s3.client()
                .create_multipart_upload()
                .bucket(&bucket)
                .key("open")
                .send(),
        )
        .expect("create multipart upload");
    assert_eq!(s3.open_multipart_uploads(&bucket), ["open"]);
    let abort = s3
        .client()
        .abort_multipart_upload()
        .bucket(&bucket)
        .key("open");
    s3.block_on(abort.upload_id(upload.upload_id().unwrap()).send())
        .expect("abort");
    assert!(s3.open_multipart_uploads(&bucket).is_empty());
}

#[test]
fn harness_unique_buckets_are_valid_and_distinct() {
    let a = unique_bucket("web");
    let b = unique_bucket("web");
    assert_ne!(a, b);
    assert!(a.len() <= 63 && a.starts_with("web-"));
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    );
}

#[test]
fn harness_private_moto_is_killed_on_drop() {
    let moto = Moto::start();
    let port = moto.port();
    assert!(port_open(port));
    assert_ne!(port, Moto::shared().port());
    drop(moto);
    assert!(
        eventually(Duration::from_secs(5), || !port_open(port)),
        "moto still up after drop"
    );
}

/// The shared server is a static, never dropped: its watchdog must kill it when the process
/// ends. This test runs itself in a child process (that is the child's role when
/// `HARNESS_SHARED_MOTO_CHILD` is set), which starts the shared server and exits.
#[test]
fn harness_shared_moto_dies_with_the_test_process() {
    const CHILD: &str = "HARNESS_SHARED_MOTO_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let port = Moto::shared().port();
        writeln!(std::io::stdout(), "MOTO_PORT={port}").unwrap();
        std::io::stdout().flush().unwrap();
        std::process::exit(0);
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "harness_selftest::harness_shared_moto_dies_with_the_test_process",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test binary as a child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let port: u16 = stdout
        .lines()
        .find_map(|line| line.split_once("MOTO_PORT=").map(|(_, port)| port.trim()))
        .unwrap_or_else(|| {
            panic!(
                "the child printed no port:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .parse()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !port_open(port)),
        "the child's shared moto on port {port} outlived the child"
    );
}

#[test]
fn harness_moto_enforces_conditional_put() {
    let (s3, bucket) = shared_bucket();
    let c = s3.client();
    let put = |body: &'static str| {
        c.put_object()
            .bucket(&bucket)
            .key("k")
            .body(ByteStream::from_static(body.as_bytes()))
    };

    let first = s3
        .block_on(put("one").if_none_match("*").send())
        .expect("If-None-Match on a new key");
    let err = s3
        .block_on(put("two").if_none_match("*").send())
        .expect_err("If-None-Match on an existing key");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 412);
    assert_eq!(err.code(), Some("PreconditionFailed"));
    assert_eq!(s3.get(&bucket, "k").as_deref(), Some(&b"one"[..]));

    let err = s3
        .block_on(put("three").if_match("\"0000\"").send())
        .expect_err("If-Match, wrong ETag");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 412);
    s3.block_on(put("four").if_match(first.e_tag().unwrap()).send())
        .expect("If-Match, right ETag");
    assert_eq!(s3.get(&bucket, "k").as_deref(), Some(&b"four"[..]));

    let missing = c
        .put_object()
        .bucket(&bucket)
        .key("missing")
        .if_match(first.e_tag().unwrap());
    let err = s3
        .block_on(missing.send())
        .expect_err("If-Match on a missing key");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 404);
    assert_eq!(err.code(), Some("NoSuchKey"));
}

/// Starts a one-part multipart upload of `body` to `key`; returns (upload id, parts).
fn start_upload(
    s3: &S3,
    bucket: &str,
    key: &str,
    body: &[u8],
) -> (String, CompletedMultipartUpload) {
    let c = s3.client();
    let created = s3
        .block_on(c.create_multipart_upload().bucket(bucket).key(key).send())
        .unwrap();
    let id = created.upload_id().unwrap().to_owned();
    let part = c
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .part_number(1);
    let part = s3
        .block_on(part.body(ByteStream::from(body.to_vec())).send())
        .unwrap();
    let done = CompletedPart::builder()
        .part_number(1)
        .e_tag(part.e_tag().unwrap())
        .build();
    (id, CompletedMultipartUpload::builder().parts(done).build())
}

#[test]
fn harness_moto_enforces_conditional_complete_multipart_upload() {
    let (s3, bucket) = shared_bucket();
    let c = s3.client();
    // Ok, or the error's HTTP status and S3 code.
    let complete = |id: &str, parts: &CompletedMultipartUpload| -> Result<(), (u16, String)> {
        let request = c
            .complete_multipart_upload()
            .bucket(&bucket)
            .key("archive")
            .upload_id(id)
            .multipart_upload(parts.clone())
            .if_none_match("*");
        match s3.block_on(request.send()) {
            Ok(_) => Ok(()),
            Err(e) => Err((
                e.raw_response().map_or(0, |r| r.status().as_u16()),
                e.code().unwrap_or_default().to_owned(),
            )),
        }
    };

    let (first, parts) = start_upload(&s3, &bucket, "archive", b"first");
    complete(&first, &parts).expect("If-None-Match on a new key");
    // A retried Complete of the same upload is idempotent (as on S3): 200, not 412.
    complete(&first, &parts).expect("a retried Complete of the upload that wrote the key");

    let (second, parts) = start_upload(&s3, &bucket, "archive", b"second");
    let err = complete(&second, &parts).expect_err("If-None-Match on an existing key");
    assert_eq!(err, (412, "PreconditionFailed".to_owned()));
    assert_eq!(s3.get(&bucket, "archive").as_deref(), Some(&b"first"[..]));
    // The refused upload stays open: the caller must abort it.
    assert_eq!(s3.open_multipart_uploads(&bucket), ["archive"]);
}

/// The shared server behind a fresh proxy, and a client through the proxy.
fn proxied_bucket() -> (FaultProxy, S3, String) {
    let (_, bucket) = shared_bucket();
    let proxy = FaultProxy::new(&Moto::shared().endpoint());
    let s3 = S3::new(&proxy.endpoint());
    (proxy, s3, bucket)
}

#[test]
fn harness_proxy_forwards_and_counts() {
    let (proxy, s3, bucket) = proxied_bucket();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    s3.put(&bucket, "obj", body.clone());
    assert_eq!(s3.get(&bucket, "obj"), Some(body.clone()));
    assert_eq!(proxy.count(), 2);
    assert_eq!(
        (proxy.count_method("PUT"), proxy.count_method("GET")),
        (1, 1)
    );
    let log = proxy.log();
    let get = log.iter().find(|e| e.request.method == "GET").unwrap();
    assert_eq!((get.status, get.body_bytes), (Some(200), body.len()));
    assert_eq!(get.request.path(), format!("/{bucket}/obj"));

    proxy.reset();
    let ranged = s3
        .client()
        .get_object()
        .bucket(&bucket)
        .key("obj")
        .range("bytes=-10");
    let tail = s3.block_on(async { ranged.send().await.unwrap().body.collect().await.unwrap() });
    assert_eq!(tail.to_vec(), body[body.len() - 10..]);
    let log = proxy.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].request.header("range"), Some("bytes=-10"));
    assert_eq!(
        (log[0].status, log[0].body_bytes, proxy.bytes_down()),
        (Some(206), 10, 10)
    );
}

#[test]
fn harness_proxy_injects_throttling_and_the_sdk_retries() {
    let (proxy, s3, bucket) = proxied_bucket();
    s3.put(&bucket, "obj", "payload");
    proxy.reset();
    proxy.set_rule(first_n(1, |r| r.method == "GET", Action::slow_down()));
    assert_eq!(s3.get(&bucket, "obj").as_deref(), Some(&b"payload"[..]));
    let statuses: Vec<_> = proxy.log().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Some(503), Some(200)]);
    assert_eq!(
        proxy.log()[0].upstream_status,
        None,
        "a Reply never reaches moto"
    );

    proxy.reset();
    proxy.set_rule(|_| Action::internal_error());
    let err = s3
        .block_on(s3.client().head_object().bucket(&bucket).key("obj").send())
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 500);
    assert_eq!(
        proxy.count(),
        3,
        "the SDK's standard retry makes 3 attempts"
    );
}

#[test]
fn harness_proxy_cuts_a_body_and_the_sdk_sees_a_streaming_error() {
    let (proxy, s3, bucket) = proxied_bucket();
    s3.put(&bucket, "obj", vec![7u8; 50_000]);
    proxy.reset();
    proxy.set_rule(first_n(1, |r| r.method == "GET", Action::CutAfter(1_000)));
    let result = s3.block_on(async {
        let output = s3
            .client()
            .get_object()
            .bucket(&bucket)
            .key("obj")
            .send()
            .await;
        let output = output.expect("the head arrives intact, so send() succeeds");
        assert_eq!(output.content_length(), Some(50_000));
        output.body.collect().await
    });
    let err = result.expect_err("the body was cut");
    let message = format!("{}", DisplayErrorContext(&err));
    assert_eq!(
        proxy.count(),
        1,
        "a streaming error is not retried by the SDK: {message}"
    );
    assert_eq!(
        (proxy.log()[0].status, proxy.bytes_down()),
        (Some(200), 1_000)
    );
}

#[test]
fn harness_proxy_loses_an_answer_after_the_write_happened() {
    let (proxy, s3, bucket) = proxied_bucket();
    proxy.set_rule(first_n(1, |r| r.method == "PUT", Action::ForwardThenCut));
    let put = s3
        .client()
        .put_object()
        .bucket(&bucket)
        .key("claim")
        .if_none_match("*");
    let err = s3
        .block_on(put.body(ByteStream::from_static(b"token")).send())
        .unwrap_err();
    // The first attempt wrote the key; the SDK's retry then loses to it: the design's
    // "a write whose answer was lost is checked (HEAD) before it is called failed".
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    let log = proxy.log();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].upstream_status, log[0].status), (Some(200), None));
    assert_eq!(s3.get(&bucket, "claim").as_deref(), Some(&b"token"[..]));

    proxy.reset();
    proxy.set_rule(first_n(1, |r| r.method == "PUT", Action::DropBeforeForward));
    s3.put(&bucket, "dropped", "x");
    let log = proxy.log();
    assert_eq!(log.len(), 2, "the SDK retried the dropped request");
    assert_eq!((log[0].upstream_status, log[1].status), (None, Some(200)));
}

#[test]
fn harness_workspace_commits_are_deterministic() {
    let make = || {
        let mut ws = Workspace::new();
        ws.write("app/main.py", "print('hi')\n");
        let first = ws.commit("first");
        ws.write("app/lib/util.py", b"x = 1\n");
        let second = ws.commit("second");
        (ws, first, second)
    };
    let (ws, first, second) = make();
    let (_, first_again, second_again) = make();
    assert_eq!((&first, &second), (&first_again, &second_again));
    assert_eq!(first.len(), 40);
    assert_eq!(
        ws.git(["show", "-s", "--format=%ct %an", &first]),
        "1700000000 Release Tests"
    );
    assert_eq!(
        ws.git(["show", "-s", "--format=%ct", &second]),
        "1700000060"
    );
    assert_eq!(ws.git(["branch", "--show-current"]), "main");

    let origin = BareRepo::new();
    ws.add_origin(&origin);
    ws.push();
    assert_eq!(origin.git(["rev-parse", "main"]), second);
    ws.git(["tag", "-a", "-m", "stable", "web-stable", &first]);
    ws.git(["push", "--quiet", "origin", "web-stable"]);
    assert_eq!(origin.tag_commit("web-stable"), Some(first));
    assert_eq!(origin.tag_commit("nope"), None);
    assert_eq!(origin.tags(), ["web-stable"]);
}

/// The message `f` panics with; fails the test if it does not panic.
fn panics_with<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> String {
    match std::panic::catch_unwind(f) {
        Ok(_) => panic!("expected a panic"),
        Err(payload) => match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(payload) => payload
                .downcast::<&str>()
                .map_or_else(|_| "a panic without a message".into(), |m| (*m).to_owned()),
        },
    }
}

/// A listener that accepts connections (the kernel's backlog) and never answers.
fn black_hole() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    (listener, endpoint)
}

#[test]
fn harness_refuses_every_endpoint_outside_loopback() {
    let run = |key: &'static str, value: &'static str| {
        panics_with(move || common::Release::new().env(key, value).args(["list"]).run())
    };
    for (key, value) in [
        ("AWS_ENDPOINT_URL", "http://127.example.com:4566"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1@example.com"),
        ("AWS_ENDPOINT_URL", "https://s3.amazonaws.com"),
        ("AWS_ENDPOINT_URL_S3", "http://10.0.0.1:9000"),
        ("AWS_ENDPOINT_URL_EC2", "http://127.example.com"),
        (
            "AWS_ENDPOINT_URL_AUTO_SCALING",
            "https://autoscaling.amazonaws.com",
        ),
    ] {
        let message = run(key, value);
        assert!(
            message.contains("tests only reach loopback") && message.contains(key),
            "{key}={value}: {message}"
        );
    }
    let message = run("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true");
    assert!(message.contains("tests only reach loopback"), "{message}");
    let message = panics_with(|| {
        common::Release::new()
            .env_remove("AWS_ENDPOINT_URL")
            .args(["list"])
            .run()
    });
    assert!(
        message.contains("AWS_ENDPOINT_URL must be set"),
        "{message}"
    );
    // Loopback in every form a test uses passes.
    common::check_endpoints([
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_ENDPOINT_URL_S3", "http://127.0.1.4:9000/"),
    ]);
}

/// A run killed at its timeout fails the test even if its output satisfies the assertions.
#[test]
fn harness_run_fails_on_timeout() {
    let (_listener, endpoint) = black_hole();
    let started = Instant::now();
    let message = panics_with(|| {
        common::Release::new()
            .endpoint(&endpoint)
            .env("RELEASE_BUCKET", "black-hole")
            .args(["--artifact", "web", "show", "1"])
            .timeout(Duration::from_millis(1500))
            .run()
    });
    assert!(message.contains("was killed"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Every run has a working directory of its own, outside the repository.
#[test]
fn harness_runs_the_binary_outside_the_repository() {
    let (_listener, endpoint) = black_hole();
    let running = common::Release::new()
        .endpoint(&endpoint)
        .env("RELEASE_BUCKET", "black-hole")
        .args(["--artifact", "web", "show", "1"])
        .spawn();
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", running.pid())).expect("its cwd");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!cwd.starts_with(repo), "{}", cwd.display());
    assert_eq!(std::fs::read_dir(&cwd).expect("list it").count(), 0);
}

/// A cut point beyond the body's end cuts nothing, and the log says so.
#[test]
fn harness_proxy_records_only_real_cuts() {
    let (proxy, s3, bucket) = proxied_bucket();
    s3.put(&bucket, "small", vec![1u8; 100]);
    s3.put(&bucket, "large", vec![2u8; 5_000]);
    proxy.reset();
    proxy.set_rule(|r| {
        if r.method == "GET" {
            Action::CutAfter(1_000)
        } else {
            Action::Forward
        }
    });
    assert_eq!(s3.get(&bucket, "small"), Some(vec![1u8; 100]));
    let log = proxy.log();
    assert_eq!((log.len(), log[0].cut, log[0].body_bytes), (1, false, 100));
    proxy.reset();
    let body = s3.block_on(async {
        let output = s3.client().get_object().bucket(&bucket).key("large").send();
        output.await.expect("the head arrives").body.collect().await
    });
    assert!(body.is_err(), "the body was cut");
    let log = proxy.log();
    assert_eq!((log[0].cut, log[0].body_bytes), (true, 1_000));
}

/// `ForwardWithout` removes a request header before the upstream sees it: a conditional write
/// then succeeds over an existing key.
#[test]
fn harness_proxy_drops_a_request_header() {
    let (proxy, s3, bucket) = proxied_bucket();
    s3.put(&bucket, "claim", "first");
    let put = |body: &'static str| {
        s3.block_on(
            s3.client()
                .put_object()
                .bucket(&bucket)
                .key("claim")
                .if_none_match("*")
                .body(ByteStream::from_static(body.as_bytes()))
                .send(),
        )
        .is_ok()
    };
    assert!(!put("second"), "moto checks If-None-Match");
    proxy.set_rule(|r| {
        if r.method == "PUT" {
            Action::ForwardWithout("If-None-Match".into())
        } else {
            Action::Forward
        }
    });
    assert!(put("third"), "the condition never reached moto");
    assert_eq!(s3.get(&bucket, "claim").as_deref(), Some(&b"third"[..]));
}

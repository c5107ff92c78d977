//! An S3 endpoint that accepts connections and never answers (issue 13, item 1): every call
//! gives up within its timeouts, and SIGINT/SIGTERM end every command whatever it waits for,
//! naming the step and what it leaves behind; a second signal ends a clean-up at once.

use std::time::{Duration, Instant};

use crate::common::{Action, FaultProxy, RequestInfo, Running, TestContext};

/// Longer than any wait below: a stalled request is never answered while a test looks.
const STALL: Duration = Duration::from_secs(90);

/// A context with `n` builds made through moto directly, and a proxy in front of it.
fn world(builds: usize) -> (TestContext, FaultProxy) {
    let mut ctx = TestContext::new();
    ctx.workspace.write("app/main.py", "print('hi')\n");
    ctx.workspace.commit("app");
    for _ in 0..builds {
        ctx.release()
            .args(["--artifact", "web", "build", "app"])
            .success();
    }
    let proxy = FaultProxy::new(&ctx.moto.endpoint());
    (ctx, proxy)
}

/// Waits until the proxy holds a stalled request, so the signal lands while the binary waits.
fn wait_for_stall(proxy: &FaultProxy, running: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proxy
        .log()
        .iter()
        .any(|e| matches!(e.action, Action::Stall(_)))
    {
        assert!(
            Instant::now() < deadline,
            "no request reached the stalled endpoint within 20 s"
        );
        assert!(running.is_running(), "release ended before it stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stall_all(_: &RequestInfo) -> Action {
    Action::Stall(STALL)
}

#[test]
fn a_stalled_endpoint_gives_up_within_the_timeouts() {
    let (ctx, proxy) = world(0);
    proxy.set_rule(stall_all);

    let started = Instant::now();
    ctx.release()
        .endpoint(&proxy.endpoint())
        .args(["--artifact", "web", "list", "--read-timeout", "1"])
        .code(1)
        .stderr_contains("no answer listing `web/prod/`")
        .stderr_contains("HTTP read timeout occurred after 1s")
        .stderr_contains("--read-timeout");
    // Three attempts of 1 s each, with the SDK's backoff between them.
    assert!(started.elapsed() < Duration::from_secs(20), "{started:?}");

    // The whole-operation limit bounds a call and its retries, whatever the read limit.
    let started = Instant::now();
    ctx.release()
        .endpoint(&proxy.endpoint())
        .env("RELEASE_OPERATION_TIMEOUT", "2")
        .args(["--artifact", "web", "show", "1"])
        .code(1)
        .stderr_contains("no answer reading")
        .stderr_contains("--operation-timeout");
    assert!(started.elapsed() < Duration::from_secs(15), "{started:?}");

    ctx.release()
        .args(["--artifact", "web", "--read-timeout", "0", "list"])
        .code(2)
        .stderr_contains("--read-timeout");
}

#[test]
fn sigint_and_sigterm_end_every_command_waiting_on_a_stalled_endpoint() {
    let (ctx, proxy) = world(0);
    proxy.set_rule(stall_all);
    let dir = tempfile::tempdir().unwrap();
    let install_dir = dir.path().join("web");
    let install_dir = install_dir.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("TERM", &["list"]),
        ("INT", &["show", "1"]),
        ("TERM", &["history"]),
        ("INT", &["promote", "1", "--no-tag"]),
        ("TERM", &["rollback", "--no-tag"]),
        ("INT", &["install", "1", "--dir", install_dir]),
        ("TERM", &["build", "app"]),
        ("INT", &["unlock", "--force"]),
        ("TERM", &["status", "--hosts", "127.0.0.1"]),
        ("INT", &["push", "1", "--hosts", "127.0.0.1"]),
    ];
    for (signal, args) in cases {
        proxy.reset();
        let mut running = ctx
            .release()
            .endpoint(&proxy.endpoint())
            .args(["--artifact", "web"])
            .args(*args)
            .spawn();
        wait_for_stall(&proxy, &mut running);
        let signalled = Instant::now();
        running.signal(signal);
        let out = running.wait(Duration::from_secs(10));
        let stderr = out.stderr();
        assert_eq!(out.status().code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted by SIG{signal} while"))
                && stderr.contains("nothing was changed"),
            "{args:?}: {stderr}"
        );
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?} to stop",
            signalled.elapsed()
        );
    }
    assert!(
        !std::path::Path::new(install_dir).join("current").exists(),
        "install switched nothing"
    );
}

#[test]
fn an_interrupted_promote_names_the_step_it_was_in() {
    let (ctx, proxy) = world(1);
    proxy.set_rule(|request| {
        if request.method == "PUT" && request.path().ends_with("/latest-stable.txt") {
            Action::Stall(STALL)
        } else {
            Action::Forward
        }
    });
    let mut running = ctx
        .release()
        .endpoint(&proxy.endpoint())
        .args(["--artifact", "web", "promote", "1", "--no-tag"])
        .spawn();
    wait_for_stall(&proxy, &mut running);
    running.signal("TERM");
    let out = running.wait(Duration::from_secs(10));
    assert_eq!(out.status().code(), Some(1), "{}", out.stderr());
    out.stderr_contains("interrupted by SIGTERM while moving latest-stable to build 1")
        .stderr_contains("may or may not have moved");
}

#[test]
fn a_second_signal_cuts_a_clean_up_short() {
    let (mut ctx, proxy) = world(0);
    ctx.workspace
        .write("app/blob.bin", crate::common::noise(1 << 20, 7));
    ctx.workspace.commit("blob");
    // The part never lands, and neither does the abort that the first signal starts.
    proxy.set_rule(|request| {
        let multipart = request.query().contains("uploadId=");
        if multipart && (request.method == "PUT" || request.method == "DELETE") {
            Action::Stall(STALL)
        } else {
            Action::Forward
        }
    });
    let mut running = ctx
        .release()
        .endpoint(&proxy.endpoint())
        .args(["--artifact", "web", "build", "app"])
        .spawn();
    wait_for_stall(&proxy, &mut running);
    running.signal("TERM");
    // The abort is under way (and stalled): the build is cleaning up, within its grace.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proxy
        .log()
        .iter()
        .any(|e| e.request.method == "DELETE" && matches!(e.action, Action::Stall(_)))
    {
        assert!(Instant::now() < deadline, "the upload was never aborted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        running.is_running(),
        "release did not wait for its clean-up"
    );
    let signalled = Instant::now();
    running.signal("INT");
    let out = running.wait(Duration::from_secs(10));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert_eq!(out.status().code(), Some(1), "{}", out.stderr());
    out.stderr_contains("SIGINT received again: exiting at once while uploading build 1")
        .stderr_contains("cut short");
    assert!(
        ctx.s3.keys(&ctx.bucket, "web/prod/web-1").is_empty(),
        "no archive or manifest is visible"
    );
}

#[test]
fn an_unreachable_endpoint_or_no_region_is_a_usage_error_in_one_sentence() {
    let ctx = TestContext::new();
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let out = ctx
        .release()
        .endpoint("http://127.0.0.1:1")
        .args(["--artifact", "web", "list"])
        .code(2)
        .stderr_contains("cannot reach the S3 service for s3://")
        .stderr_contains("Connection refused");
    assert!(
        !out.stderr().contains("DispatchFailure"),
        "{}",
        out.stderr()
    );

    let out = ctx
        .release()
        .env_remove("AWS_REGION")
        .args(["--artifact", "web", "list"])
        .code(2)
        .stderr_contains("no AWS region: pass --region, set AWS_REGION");
    assert!(
        !out.stderr().contains("DispatchFailure"),
        "{}",
        out.stderr()
    );
}

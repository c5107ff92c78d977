//! Self-tests of the push world: sshd hosts ([`Hosts`]). `release push` tests stand on these, so
//! each promise they make is shown here with the real `ssh` client, not with the helpers' own
//! view.

use crate::common;

use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::Hosts;

/// An endpoint for hosts whose commands never call AWS (nothing listens on port 9, discard).
const NO_AWS: (&str, &str) = ("AWS_ENDPOINT_URL", "http://127.0.0.1:9");

/// `ssh -F CONFIG ARGS...` with an empty environment, as the binary under test would run it.
fn ssh(hosts: &Hosts, args: &[&str]) -> Output {
    let mut command = assert_cmd::Command::new("ssh");
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("-F")
        .arg(hosts.ssh_config_path())
        .args(args)
        .timeout(Duration::from_secs(30));
    command.output().expect("run ssh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts `ssh` succeeded and returns its stdout lines.
fn lines(output: &Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "ssh failed ({}): {}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn hosts_run_commands_with_their_own_environment() {
    let hosts = Hosts::start(
        &["127.0.1.4", "127.0.1.5"],
        &[NO_AWS, ("RELEASE_TEST_EXTRA", "two words")],
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_release"));
    let mut dirs = Vec::new();
    for address in ["127.0.1.4", "127.0.1.5"] {
        let command = "echo \"$RELEASE_INSTALL_DIR\"; which release; echo \"$HOME\"; \
                       echo \"$AWS_ENDPOINT_URL\"; echo \"$RELEASE_TEST_EXTRA\"; \
                       echo \"$AWS_EC2_METADATA_DISABLED\"; echo \"$SSH_CONNECTION\"";
        let out = lines(&ssh(&hosts, &[&format!("root@{address}"), command]));
        let install_dir = hosts.install_dir(address);
        assert_eq!(out[0], install_dir.to_string_lossy(), "{address}");
        assert!(install_dir.is_dir(), "{address}'s install dir exists");
        assert_eq!(
            Path::new(&out[1]),
            binary,
            "{address} runs the binary under test"
        );
        assert_eq!(out[2], hosts.home_dir(address).to_string_lossy());
        assert_eq!(out[3], NO_AWS.1);
        assert_eq!(out[4], "two words");
        assert_eq!(out[5], "true");
        // The connection really reached that address, on this test's port.
        assert!(
            out[6].ends_with(&format!(" {address} {}", hosts.port())),
            "{out:?}"
        );
        dirs.push(out[0].clone());
    }
    assert_ne!(dirs[0], dirs[1], "each host has its own install dir");

    // The binary runs remotely, and `release_args` are what the tool needs.
    let version = hosts.ssh("127.0.1.5", "release --version");
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert!(text(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let args = hosts.release_args();
    assert_eq!(
        args[..2],
        [
            "--ssh-config".to_owned(),
            hosts.ssh_config_path().to_string_lossy().into_owned()
        ]
    );
    assert_eq!(
        args[2..],
        [
            "--ssh-port".to_owned(),
            hosts.port().to_string(),
            "--ssh-user".to_owned(),
            "root".to_owned()
        ]
    );
}

#[test]
fn stopped_host_refuses_connections_until_restarted() {
    let hosts = Hosts::start(&["127.0.1.6", "127.0.1.7"], &[NO_AWS]);
    hosts.stop("127.0.1.6");
    assert!(!hosts.is_running("127.0.1.6"));
    assert!(hosts.is_running("127.0.1.7"));
    let refused = TcpStream::connect(("127.0.1.6", hosts.port())).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused));
    let started = Instant::now();
    let down = ssh(&hosts, &["127.0.1.6", "true"]);
    assert_eq!(down.status.code(), Some(255));
    assert!(
        text(&down.stderr).contains("Connection refused"),
        "{}",
        text(&down.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    assert_eq!(lines(&ssh(&hosts, &["127.0.1.7", "echo up"])), ["up"]);

    hosts.restart("127.0.1.6");
    assert!(hosts.is_running("127.0.1.6"));
    assert_eq!(lines(&ssh(&hosts, &["127.0.1.6", "echo back"])), ["back"]);
}

#[test]
fn host_added_later_is_trusted_and_reachable() {
    let hosts = Hosts::start(&["127.0.1.8"], &[NO_AWS]);
    hosts.add("127.0.1.9");
    assert_eq!(hosts.addresses(), ["127.0.1.8", "127.0.1.9"]);
    let known = fs_err::read_to_string(hosts.known_hosts_path()).unwrap();
    assert!(known.contains(&format!("[127.0.1.9]:{} ssh-ed25519 ", hosts.port())));
    assert_eq!(
        lines(&ssh(&hosts, &["127.0.1.9", "echo joined"])),
        ["joined"]
    );
}

#[test]
fn ssh_config_never_leaves_loopback() {
    let hosts = Hosts::start(&["127.0.1.10"], &[NO_AWS]);
    // `ssh -G` prints the configuration ssh would use, without connecting.
    let effective = |host: &str| {
        let out = ssh(&hosts, &["-G", host]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    for outside in [
        "10.1.2.3",
        "172.31.0.5",
        "127.example.com",
        "localhost",
        "example.com",
    ] {
        assert!(
            effective(outside).contains("\nproxycommand /bin/false\n"),
            "{outside} must go to /bin/false"
        );
        let started = Instant::now();
        let out = ssh(&hosts, &[outside, "true"]);
        assert_eq!(
            out.status.code(),
            Some(255),
            "{outside}: {}",
            text(&out.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{outside} failed at once"
        );
    }
    assert!(!effective("127.0.1.10").contains("proxycommand"));
    assert!(
        effective("127.0.1.10").contains("\nstricthostkeychecking true\n"),
        "host keys are checked"
    );

    let message = panic_message(|| Hosts::start(&["10.1.2.3"], &[NO_AWS]));
    assert!(message.contains("outside 127.0.0.0/8"), "{message}");
    let message = panic_message(|| {
        Hosts::start(
            &["127.0.1.10"],
            &[("AWS_ENDPOINT_URL", "https://s3.amazonaws.com")],
        )
    });
    assert!(message.contains("only reach loopback"), "{message}");
}

/// The message `start` panics with; fails the test if it does not panic.
fn panic_message(start: impl FnOnce() -> Hosts + std::panic::UnwindSafe) -> String {
    match std::panic::catch_unwind(start) {
        Ok(_) => panic!("expected a panic, got running hosts"),
        Err(payload) => match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(_) => panic!("a panic without a formatted message"),
        },
    }
}

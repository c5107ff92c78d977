//! Self-tests of the push world: sshd hosts ([`Hosts`]) and Auto Scaling groups in moto
//! ([`Asg`]). `release push` tests stand on these, so each promise they make is shown here with
//! the real `ssh` client and raw AWS answers, not with the helpers' own view.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::asg::{addresses, parse_instances};
use common::{Asg, Hosts, Market, Release, S3, Workspace};

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

#[test]
fn asg_instances_have_loopback_addresses_and_states() {
    let asg = Asg::start();
    let group = asg.create_group("web-ondemand-asg", 3, Market::OnDemand);
    assert_eq!(group.len(), 3);
    for instance in &group {
        assert!(instance.private_ip.starts_with("127.0.1."), "{instance:?}");
        assert_eq!(instance.lifecycle_state, "InService");
        assert_eq!(instance.health_status, "Healthy");
        assert_eq!(instance.lifecycle, None);
        assert_eq!(instance.zone, "us-east-1a");
    }
    let mut ips: Vec<&str> = addresses(&group);
    ips.sort_unstable();
    ips.dedup();
    assert_eq!(ips.len(), 3, "distinct addresses");

    let grown = asg.set_desired("web-ondemand-asg", 4);
    assert_eq!(grown.len(), 4);
    assert!(
        group.iter().all(|i| grown.contains(i)),
        "the first three stay"
    );

    let (sick, idle) = (&group[0].id, &group[1].id);
    asg.set_unhealthy(sick);
    asg.enter_standby(idle);
    let groups = query(
        &asg.endpoint(),
        "autoscaling",
        "Action=DescribeAutoScalingGroups&Version=2011-01-01\
         &AutoScalingGroupNames.member.1=web-ondemand-asg",
    );
    let member = |id: &str| member_of(&groups, &format!("<InstanceId>{id}</InstanceId>"));
    assert!(
        member(sick).contains("<HealthStatus>Unhealthy</HealthStatus>"),
        "{groups}"
    );
    assert!(member(sick).contains("<LifecycleState>InService</LifecycleState>"));
    assert!(
        member(idle).contains("<LifecycleState>Standby</LifecycleState>"),
        "{groups}"
    );
    assert!(member(idle).contains("<HealthStatus>Healthy</HealthStatus>"));
    // Standby decremented the desired capacity: moto launched no replacement.
    assert!(
        groups.contains("<DesiredCapacity>3</DesiredCapacity>"),
        "{groups}"
    );
    assert_eq!(asg.instances("web-ondemand-asg").len(), 4);

    let spot = asg.create_group("web-spot-asg", 2, Market::Spot);
    let spot = asg
        .set_desired("web-spot-asg", 3)
        .into_iter()
        .chain(spot)
        .collect::<Vec<_>>();
    for instance in &spot {
        assert_eq!(instance.lifecycle.as_deref(), Some("spot"), "{instance:?}");
        assert_eq!(instance.lifecycle_state, "InService");
        assert!(instance.private_ip.starts_with("127.0.1."), "{instance:?}");
    }
    // On the wire, as the tool's SDK will read it: spot instances say so, on-demand ones do not.
    let lifecycle = |id: &str| {
        let body = format!("Action=DescribeInstances&Version=2016-11-15&InstanceId.1={id}");
        let described = query(&asg.endpoint(), "ec2", &body);
        assert!(
            described.contains(&format!("<instanceId>{id}</instanceId>")),
            "{described}"
        );
        described.contains("<instanceLifecycle>spot</instanceLifecycle>")
    };
    assert!(lifecycle(&spot[0].id));
    assert!(!lifecycle(&group[0].id));
}

#[test]
fn asg_addresses_outside_loopback_fail_the_test() {
    let answer = |ip: serde_json::Value| {
        serde_json::json!([{
            "id": "i-0123", "private_ip": ip, "zone": "us-east-1a", "lifecycle": null,
            "lifecycle_state": "InService", "health_status": "Healthy", "state": "running",
        }])
    };
    let ok = parse_instances(answer("127.0.1.4".into()));
    assert_eq!(ok[0].private_ip, "127.0.1.4");
    // moto's default VPC, and an instance without a private address.
    for ip in ["172.31.3.4".into(), serde_json::Value::Null] {
        let caught = std::panic::catch_unwind(|| parse_instances(answer(ip.clone())));
        let message = caught.expect_err("an address outside loopback");
        let message = message.downcast::<String>().expect("a formatted message");
        assert!(message.contains("outside 127.0.0.0/8"), "{message}");
    }
}

#[test]
fn asg_instances_are_reachable_hosts() {
    let asg = Asg::start();
    let group = asg.create_group("api-asg", 2, Market::OnDemand);
    let endpoint = asg.endpoint();
    let hosts = Hosts::start(&addresses(&group), &[("AWS_ENDPOINT_URL", &endpoint)]);
    for instance in &group {
        let out = lines(&ssh(
            &hosts,
            &[&instance.private_ip, "echo \"$AWS_ENDPOINT_URL\""],
        ));
        assert_eq!(out, [endpoint.as_str()]);
    }
    // A build made on the controller installs on a host through the host's own settings:
    // its PATH finds the binary, its AWS settings reach this moto, its install dir is its own.
    let bucket = "hosts-selftest";
    S3::new(&endpoint).create_bucket(bucket);
    let mut workspace = Workspace::new();
    workspace.write("app/run.sh", "#!/bin/sh\necho run\n");
    workspace.commit("sources");
    Release::new()
        .current_dir(workspace.path())
        .endpoint(&endpoint)
        .args([
            "--artifact",
            "web",
            "--bucket",
            bucket,
            "-q",
            "build",
            "app",
        ])
        .success();
    let (target, other) = (&group[1].private_ip, &group[0].private_ip);
    let installed = hosts.ssh(
        target,
        "release --artifact web --bucket hosts-selftest install latest",
    );
    assert!(
        installed.status.success(),
        "{}\n{}",
        text(&installed.stdout),
        text(&installed.stderr)
    );
    let current = fs_err::read_link(hosts.install_dir(target).join("current")).unwrap();
    assert!(current.ends_with("releases/1"), "{}", current.display());
    assert!(
        hosts
            .install_dir(target)
            .join("current/app/run.sh")
            .is_file()
    );
    assert!(!hosts.install_dir(other).join("current").exists());
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

/// One AWS Query API call straight to moto (which checks no signature), for the raw XML answer.
fn query(endpoint: &str, service: &str, body: &str) -> String {
    let address = endpoint.strip_prefix("http://").expect("an http endpoint");
    let mut stream = TcpStream::connect(address).expect("connect to moto");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// The innermost `<member>` element of `xml` that contains `needle` (AutoScaling answers; an
/// instance's member holds no nested members).
fn member_of<'a>(xml: &'a str, needle: &str) -> &'a str {
    let at = xml
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {xml}"));
    let start = xml[..at].rfind("<member>").expect("an enclosing <member>");
    let end = at + xml[at..].find("</member>").expect("an enclosing </member>");
    &xml[start..end]
}

/// The sudo stand-in resets the environment as Debian's sudo does (secure_path, the target's
/// HOME, the host's etc/environment, nothing else of the session) and logs every call.
#[test]
fn sudo_stand_in_resets_the_environment_and_logs_every_call() {
    use crate::common::hosts::{sudo_calls, sudo_stand_in_with_path};
    let stand_in = sudo_stand_in_with_path("/usr/bin:/bin");
    let path = format!("{}:/usr/bin:/bin", stand_in.path().display());
    let address = "127.0.1.6";
    let hosts = Hosts::start(
        &[address],
        &[NO_AWS, ("PATH", &path), ("RELEASE_TEST_EXTRA", "x y")],
    );
    let script = "sudo -n sh -c 'echo \"$PATH|$HOME|$RELEASE_INSTALL_DIR|$RELEASE_TEST_EXTRA|\
                  $AWS_ENDPOINT_URL|${SSH_CONNECTION:-none}|$SUDO_USER\"'; \
                  sudo -n sh -c 'echo second'";
    let out = lines(&ssh(&hosts, &[address, script]));
    let root_home = hosts.home_dir(address).parent().unwrap().join("root");
    assert_eq!(
        out,
        [
            format!(
                "/usr/bin:/bin|{}|{}|x y|{}|none|root",
                root_home.display(),
                hosts.install_dir(address).display(),
                NO_AWS.1
            ),
            "second".to_owned()
        ]
    );
    let calls = sudo_calls(&hosts.home_dir(address));
    assert_eq!(calls.len(), 2, "every call is logged: {calls:?}");
    assert_eq!(calls[1], ["-n", "sh", "-c", "echo second"]);
    // Without -n, or without a rule, it refuses as sudo does.
    let refused = hosts.ssh(address, "sudo true");
    assert!(!refused.status.success());
    fs_err::write(hosts.home_dir(address).join("no-sudo-rule"), "").unwrap();
    let refused = hosts.ssh(address, "sudo -n true");
    assert!(text(&refused.stderr).contains("a password is required"));
    assert_eq!(sudo_calls(&hosts.home_dir(address)).len(), 4);
}

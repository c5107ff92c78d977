//! The tag pushed to an `ssh://` origin whose key is only in an ssh-agent, as Jenkins' sshagent
//! step provides it: the real `ssh-agent`, `git` and an OpenSSH sshd on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::World;
use crate::common::Hosts;

/// `ssh-agent -D` on a socket of its own; stopped by PID when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent (Debian: apt-get install openssh-client)");
        let agent = Agent {
            child,
            socket,
            _dir: dir,
        };
        let start = Instant::now();
        while !agent.socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ssh-agent made no socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn add(&self, key: &Path) {
        let status = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .status()
            .expect("run ssh-add");
        assert!(status.success(), "ssh-add {}: {status}", key.display());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_tag_goes_over_ssh_with_the_key_only_in_an_agent() {
    let mut w = World::new();
    let (one, commit) = w.build("v1");
    let address = "127.0.1.96";
    // Nothing of the hosts' own `release` is used here; the endpoint only has to be loopback.
    let hosts = Hosts::start(&[address], &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]);
    // The tests' client config less its key file: the key is offered by the agent or not at all.
    let config: String = std::fs::read_to_string(hosts.ssh_config_path())
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("IdentityFile"))
        .map(|line| line.replace("IdentitiesOnly yes", "IdentitiesOnly no") + "\n")
        .collect();
    let config_path = hosts.ssh_config_path().with_file_name("ssh_config_agent");
    std::fs::write(&config_path, config).unwrap();
    let url = format!(
        "ssh://{}@{address}:{}{}",
        hosts.user(),
        hosts.port(),
        w.origin.path().display()
    );
    w.ctx.workspace.git(["remote", "set-url", "origin", &url]);
    let agent = Agent::start();
    let promote = || {
        w.release()
            .env(
                "GIT_SSH_COMMAND",
                format!("ssh -F {}", config_path.display()),
            )
            .env("SSH_AUTH_SOCK", &agent.socket)
            .args(["promote", &one.to_string()])
    };

    // An empty agent: the pointer moves, the tag does not, and the error says so.
    promote()
        .code(4)
        .stderr_contains("tag web-stable not pushed to origin");
    assert!(w.origin.tags().is_empty());
    assert!(!hosts.log(address).contains("Accepted publickey"));

    // With the key in the agent, the same promote moves nothing in S3 and pushes the tag.
    agent.add(&hosts.identity_path());
    promote().success();
    assert_eq!(
        w.origin.tag_commit("web-stable").as_deref(),
        Some(commit.as_str())
    );
    assert!(
        hosts.log(address).contains("Accepted publickey"),
        "{}",
        hosts.log(address)
    );
}

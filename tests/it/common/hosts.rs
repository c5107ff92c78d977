//! `Hosts`: one OpenSSH `sshd` per instance address, the machines `release push` deploys to.
//!
//! moto gives ASG instances loopback addresses (127.0.1.4, 127.0.1.5, ...; see [`super::asg`]),
//! and Linux routes all of 127.0.0.0/8 to `lo`, so an `sshd` listening on each such address makes
//! every instance a real SSH host with no network setup. All hosts of one test share one port,
//! chosen per test, so tests running at once (whose moto servers hand out the same addresses)
//! never meet; `--ssh-port` tells the tool which.
//!
//! Each host has its own sshd configuration, whose `SetEnv` gives the remote command that host's
//! own install directory (`RELEASE_INSTALL_DIR`), a `HOME`, a `PATH` that finds the `release`
//! binary under test, and loopback-only AWS settings. All but `PATH` and `HOME` are also the
//! host's `etc/environment`, which the sudo stand-in ([`sudo_stand_in`]) gives the commands it
//! runs after resetting the environment, as Debian's sudo and `pam_env` do. A `HOME` of its own also keeps the login
//! shell from reading root's real `~/.bashrc`. Keys are generated per test (one ed25519 host key
//! for all hosts, one user key without passphrase), and [`Hosts::ssh_config_path`] is a client
//! configuration that trusts exactly those host keys and sends every destination outside
//! `127.*` to `ProxyCommand /bin/false` (DESIGN.md: tests never leave loopback).
//!
//! Processes die with the test: `Drop` kills each `sshd` by its own pid, and each has a watchdog
//! `sh` (as moto's) that kills it if the test process ends without running destructors.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long an `sshd` may take to listen. It starts in milliseconds; the margin is for a loaded
/// CI runner.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(10);
/// Ports tried before giving up: another process may hold the one we picked.
const PORT_ATTEMPTS: usize = 10;
/// Ports are picked from here: below Linux's ephemeral range (32768-60999), so neither outgoing
/// connections nor servers bound to port 0 (moto, the fault proxy) can hold them.
const PORTS: std::ops::Range<u16> = 20_000..32_000;
/// Longest a [`Hosts::ssh`] command may run.
const SSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Where Debian's `openssh-server` installs the daemon. It must be run by absolute path (it
/// re-executes itself for each connection).
const SSHD: &str = "/usr/sbin/sshd";
/// Privilege separation directory that a root `sshd` chroots into; Debian's init script or
/// systemd unit normally creates it, and neither runs in a container.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How to get the programs, for panic messages.
const INSTALL: &str = "apt-get install openssh-server openssh-client (OpenSSH >= 8.7, for SetEnv)";

/// Running `sshd`s, one per address, on one port; each killed when dropped or [`Hosts::stop`]ped.
pub struct Hosts {
    /// Keys, client configuration, and one directory per host.
    dir: TempDir,
    port: u16,
    user: String,
    /// The environment every host gets, the caller's values already merged in.
    env: Vec<(String, String)>,
    hosts: Mutex<Vec<Host>>,
    /// Variables of one host only, `(address, key, value)`, set by [`Hosts::set_env_of`].
    own_env: Mutex<Vec<(String, String, String)>>,
}

/// One address's `sshd`.
struct Host {
    address: String,
    /// `None` once stopped.
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl Hosts {
    /// Starts one `sshd` per address (each in 127.0.0.0/8, e.g. `127.0.1.4`), all on one port
    /// free on every address, and waits until each listens.
    ///
    /// `env` is added to each host's environment, replacing defaults of the same name. It must
    /// name `AWS_ENDPOINT_URL`: the loopback server (moto or a proxy) that the hosts' `release
    /// install` downloads from. Panics, with the fix, if OpenSSH is missing or will not start.
    pub fn start(addresses: &[&str], env: &[(&str, &str)]) -> Hosts {
        Hosts::start_in(&std::env::temp_dir(), addresses, env)
    }

    /// [`Hosts::start`] with the hosts' directories (install dirs included) under `parent`: e.g.
    /// a tmpfs such as `/dev/shm` for benchmarks, where many hosts writing to one disk would
    /// serialize.
    pub fn start_in(parent: &Path, addresses: &[&str], env: &[(&str, &str)]) -> Hosts {
        check_addresses(addresses);
        let dir = tempfile::Builder::new()
            .prefix("release-hosts-")
            .tempdir_in(parent)
            .unwrap_or_else(|e| panic!("create a tempdir in {}: {e}", parent.display()));
        let user = current_user();
        if user == "root" {
            ensure_privsep_dir();
        }
        let keys = dir.path().join("keys");
        fs_err::create_dir(&keys).expect("create the keys dir");
        keygen(&keys.join("host_ed25519"), "release-tests host key");
        keygen(&keys.join("id_ed25519"), "release-tests user key");
        fs_err::copy(
            keys.join("id_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("write authorized_keys");
        let mut hosts = Hosts {
            port: 0,
            user,
            env: host_env(env),
            hosts: Mutex::new(Vec::new()),
            own_env: Mutex::new(Vec::new()),
            dir,
        };
        hosts.listen_all(addresses);
        fs_err::write(hosts.ssh_config_path(), hosts.ssh_config()).expect("write ssh_config");
        hosts
    }

    /// The one port every host listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the hosts let in: the one running the tests (root, as the old playbook's user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The addresses of all hosts, running or stopped, in the order they were started.
    pub fn addresses(&self) -> Vec<String> {
        self.lock().iter().map(|h| h.address.clone()).collect()
    }

    /// The host's `RELEASE_INSTALL_DIR` (created empty at start).
    pub fn install_dir(&self, address: &str) -> PathBuf {
        self.host_dir(address).join("install")
    }

    /// The host's `HOME` (created empty at start).
    pub fn home_dir(&self, address: &str) -> PathBuf {
        self.host_dir(address).join("home")
    }

    /// The client configuration for the tool under test (`--ssh-config`, or `ssh -F`).
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The private key the hosts accept (`-i`).
    pub fn identity_path(&self) -> PathBuf {
        self.dir.path().join("keys/id_ed25519")
    }

    /// The known_hosts file listing every host as `[ADDRESS]:PORT` with its key.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `--ssh-config FILE --ssh-port PORT --ssh-user USER`: what `release push` and `release
    /// status` need to reach these hosts.
    pub fn release_args(&self) -> Vec<String> {
        vec![
            "--ssh-config".into(),
            self.ssh_config_path().to_string_lossy().into_owned(),
            "--ssh-port".into(),
            self.port.to_string(),
            "--ssh-user".into(),
            self.user.clone(),
        ]
    }

    /// Starts one more host on the same port, e.g. for an instance that joined an ASG mid-test.
    /// Panics if the port is taken on that address (the others cannot move).
    pub fn add(&self, address: &str) {
        check_addresses(&[address]);
        assert!(
            !self.addresses().iter().any(|a| a == address),
            "host {address} is already part of this test"
        );
        let host = self.spawn(address);
        let mut hosts = self.lock();
        hosts.push(host);
        if let Err(log) = self.wait_ready(hosts.last_mut().expect("just pushed")) {
            panic!(
                "sshd for {address} on port {} failed to start:\n{log}",
                self.port
            );
        }
        drop(hosts);
        fs_err::write(self.known_hosts_path(), self.known_hosts()).expect("write known_hosts");
    }

    /// Kills the host's `sshd`: from now on connections to it are refused, as to a host that is
    /// down. Sessions already open go on.
    pub fn stop(&self, address: &str) {
        let mut hosts = self.lock();
        let host = named(&mut hosts, address);
        host.kill();
    }

    /// Starts the host's `sshd` again (after [`Hosts::stop`], or to replace a running one) on
    /// the same port, address and keys: a host that came back. Its log starts afresh.
    pub fn restart(&self, address: &str) {
        let mut hosts = self.lock();
        let host = named(&mut hosts, address);
        host.kill();
        *host = self.spawn(address);
        if let Err(log) = self.wait_ready(host) {
            panic!(
                "sshd for {address} on port {} did not restart:\n{log}",
                self.port
            );
        }
    }

    /// Gives one host's remote commands `key=value` (over the shared values), restarting its
    /// `sshd` so that new sessions see it.
    pub fn set_env_of(&self, address: &str, key: &str, value: &str) {
        check_env_value(key, value);
        self.own_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((address.to_owned(), key.to_owned(), value.to_owned()));
        self.restart(address);
    }

    /// Whether the host's `sshd` is running (not stopped, and has not died).
    pub fn is_running(&self, address: &str) -> bool {
        let mut hosts = self.lock();
        let host = named(&mut hosts, address);
        host.server
            .as_mut()
            .is_some_and(|s| s.try_wait().expect("wait for sshd").is_none())
    }

    /// What the host's `sshd` logged (connections, authentication, sessions): for failure
    /// messages.
    pub fn log(&self, address: &str) -> String {
        fs_err::read_to_string(self.host_dir(address).join("sshd.log")).unwrap_or_default()
    }

    /// Runs `command` on the host with the system `ssh` and this test's client configuration;
    /// waits at most a minute.
    pub fn ssh(&self, address: &str, command: &str) -> std::process::Output {
        let mut ssh = assert_cmd::Command::new("ssh");
        ssh.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .arg("-F")
            .arg(self.ssh_config_path())
            .args([address, command])
            .timeout(SSH_TIMEOUT);
        ssh.output()
            .unwrap_or_else(|e| panic!("run ssh ({e}): {INSTALL}"))
    }

    /// Picks ports until one is free on every address and every `sshd` listens on it.
    fn listen_all(&mut self, addresses: &[&str]) {
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = random_port();
            // A cheap first check; an `sshd` can still lose a race for the port, handled below.
            if !addresses
                .iter()
                .all(|a| TcpListener::bind((*a, port)).is_ok())
            {
                continue;
            }
            self.port = port;
            let mut hosts: Vec<Host> = addresses.iter().map(|a| self.spawn(a)).collect();
            let failed: Vec<String> = hosts
                .iter_mut()
                .filter_map(|h| self.wait_ready(h).err())
                .collect();
            if failed.is_empty() {
                *self.hosts.get_mut().expect("hosts lock") = hosts;
                fs_err::write(self.known_hosts_path(), self.known_hosts())
                    .expect("write known_hosts");
                return;
            }
            hosts.iter_mut().for_each(Host::kill);
            last_error = failed.join("\n");
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start on {addresses:?}; it said:\n{last_error}");
    }

    /// Writes the host's directories and `sshd_config`, and starts its `sshd` (not yet ready).
    fn spawn(&self, address: &str) -> Host {
        let dir = self.host_dir(address);
        for sub in ["home", "install", "root", "etc"] {
            fs_err::create_dir_all(dir.join(sub)).expect("create a host dir");
        }
        let system: String = self
            .system_env(address)
            .iter()
            .map(|(key, value)| format!("{key}='{}'\n", value.replace('\'', "'\\''")))
            .collect();
        fs_err::write(dir.join("etc/environment"), system).expect("write etc/environment");
        let config = dir.join("sshd_config");
        fs_err::write(&config, self.sshd_config(address)).expect("write sshd_config");
        let log = fs_err::File::create(dir.join("sshd.log"))
            .expect("create sshd.log")
            .into_file();
        let server = Command::new(SSHD)
            .arg("-D") // stay in the foreground: the pid we hold is the listener
            .arg("-e") // log to stderr, i.e. sshd.log
            .arg("-f")
            .arg(&config)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SSHD} ({e}): the tests need it; {INSTALL}"));
        let watchdog = spawn_watchdog(server.id());
        Host {
            address: address.to_owned(),
            server: Some(server),
            watchdog: Some(watchdog),
        }
    }

    /// Waits until the host's own `sshd` logs that it listens (it does so after `listen()`).
    ///
    /// `Err(log)` if it exits first (e.g. the port is taken). Its own log line proves the port is
    /// ours, where a test connection could reach a stranger holding it; and a test connection
    /// would leave a failed handshake in the log that tests read.
    fn wait_ready(&self, host: &mut Host) -> Result<(), String> {
        let started = Instant::now();
        let listening = format!("Server listening on {} port {}.", host.address, self.port);
        let server = host.server.as_mut().expect("a started host");
        loop {
            if let Some(status) = server.try_wait().expect("wait for sshd") {
                return Err(format!(
                    "sshd for {} exited ({status}):\n{}",
                    host.address,
                    self.log(&host.address)
                ));
            }
            if self.log(&host.address).contains(&listening) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let log = self.log(&host.address);
                host.kill();
                panic!(
                    "sshd for {} on port {} did not listen within {READY_TIMEOUT:?}; its log:\n{log}",
                    host.address, self.port
                );
            }
            thread::sleep(POLL);
        }
    }

    /// One host's daemon configuration: key-only login, its own environment.
    fn sshd_config(&self, address: &str) -> String {
        let dir = self.dir.path();
        let mut set_env = String::new();
        // Only the first SetEnv line counts, so every variable goes on this one.
        for (key, value) in self.env_for(address) {
            write!(set_env, " \"{key}={value}\"").expect("write to a String");
        }
        format!(
            "# One test host; written by tests/it/common/hosts.rs.\n\
             ListenAddress {address}:{port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized_keys}\n\
             PidFile none\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             # The keys live in a world-readable tempdir.\n\
             StrictModes no\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             # Many tests' connections at once must not be dropped as a flood.\n\
             MaxStartups 200\n\
             MaxSessions 100\n\
             LogLevel VERBOSE\n\
             Subsystem sftp internal-sftp\n\
             SetEnv{set_env}\n",
            port = self.port,
            host_key = quoted(&dir.join("keys/host_ed25519")),
            authorized_keys = quoted(&dir.join("authorized_keys")),
        )
    }

    /// The host's system-wide environment (its `etc/environment`, which PAM gives every
    /// session, sudo's included): the login environment without the session's own `PATH` and
    /// `HOME`. It holds the host's configuration: its install dir and AWS settings, standing in
    /// for what a real instance has in `/etc/environment` and its instance profile.
    pub fn system_env(&self, address: &str) -> Vec<(String, String)> {
        self.env_for(address)
            .into_iter()
            .filter(|(key, _)| key != "PATH" && key != "HOME")
            .collect()
    }

    /// The environment of one host: its own dirs, then the shared values.
    fn env_for(&self, address: &str) -> Vec<(String, String)> {
        let own = [
            ("RELEASE_INSTALL_DIR", self.install_dir(address)),
            ("HOME", self.home_dir(address)),
        ];
        let mut env: Vec<(String, String)> = own
            .into_iter()
            .filter(|(key, _)| !self.env.iter().any(|(k, _)| k == key))
            .map(|(key, path)| (key.to_owned(), path.to_string_lossy().into_owned()))
            .collect();
        env.extend(self.env.iter().cloned());
        let own = self.own_env.lock().unwrap_or_else(|e| e.into_inner());
        for (_, key, value) in own.iter().filter(|(a, _, _)| a == address) {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        drop(own);
        for (key, value) in &env {
            check_env_value(key, value);
        }
        env
    }

    /// The client configuration: these hosts by key, nothing outside loopback at all.
    fn ssh_config(&self) -> String {
        // `Host 127.*` alone would also match a DNS name such as `127.example.com`; a name with
        // any letter, `-` or `_` is not an address (ssh lowercases names before matching).
        let names: String = ('a'..='z')
            .chain(['-', '_'])
            .map(|c| format!(" !*{c}*"))
            .collect();
        format!(
            "# The test hosts; written by tests/it/common/hosts.rs.\n\
             # Loopback only: any other destination goes to ProxyCommand /bin/false (DESIGN.md).\n\
             Host 127.*{names}\n\
             \x20 User {user}\n\
             \x20 Port {port}\n\
             \x20 IdentityFile {identity}\n\
             \x20 IdentitiesOnly yes\n\
             \x20 UserKnownHostsFile {known_hosts}\n\
             \x20 GlobalKnownHostsFile /dev/null\n\
             \x20 StrictHostKeyChecking yes\n\
             \x20 UpdateHostKeys no\n\
             \x20 BatchMode yes\n\
             \x20 ConnectTimeout 5\n\
             \x20 # The first value found wins, so loopback must opt out of the block below.\n\
             \x20 ProxyCommand none\n\
             \n\
             Host *\n\
             \x20 ProxyCommand /bin/false\n",
            user = self.user,
            port = self.port,
            identity = quoted(&self.identity_path()),
            known_hosts = quoted(&self.known_hosts_path()),
        )
    }

    /// `[ADDRESS]:PORT ssh-ed25519 KEY` for every host.
    fn known_hosts(&self) -> String {
        let public = fs_err::read_to_string(self.dir.path().join("keys/host_ed25519.pub"))
            .expect("read the host key");
        // Drop the comment: `ssh-ed25519 AAAA... comment`.
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        self.addresses()
            .iter()
            .map(|a| format!("[{a}]:{} {}\n", self.port, key.join(" ")))
            .collect()
    }

    fn host_dir(&self, address: &str) -> PathBuf {
        self.dir.path().join("hosts").join(address)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Host>> {
        // A panic while holding the lock leaves the hosts as they were: still usable.
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The host at `address`; panics if the test has none.
fn named<'a>(hosts: &'a mut [Host], address: &str) -> &'a mut Host {
    hosts
        .iter_mut()
        .find(|h| h.address == address)
        .unwrap_or_else(|| panic!("no host {address} in this test"))
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.lock().iter_mut().for_each(Host::kill);
    }
}

impl Host {
    /// Kills the watchdog first, so it cannot signal a recycled pid once `sshd` is reaped.
    fn kill(&mut self) {
        for child in [self.watchdog.take(), self.server.take()]
            .iter_mut()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Debian's `secure_path`, which sudo gives the commands it runs.
pub const DEBIAN_SECURE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A directory holding a stand-in `sudo` for the hosts' PATH (sudo is not installed on test
/// hosts), with the defaults of Debian's sudo: see [`sudo_stand_in_with_path`]. Its
/// `secure_path` finds the `release` under test first, as a host where it is installed in
/// `/usr/local/bin`.
pub fn sudo_stand_in() -> TempDir {
    sudo_stand_in_with_path(&format!(
        "{}:{DEBIAN_SECURE_PATH}",
        release_bin_dir().display()
    ))
}

/// A stand-in `sudo` whose `secure_path` is `secure_path`. It behaves as Debian's `sudo -n`
/// with its default sudoers (`env_reset`, `secure_path`) and PAM (`pam_env` reads
/// `/etc/environment`): it appends its words to `$HOME/sudo.log` (read them with
/// [`sudo_calls`]); refuses like sudo without a password rule when `$HOME/no-sudo-rule` exists
/// or its first word is not `-n`; else runs the rest with only PATH=`secure_path`, HOME (the
/// target user's home), LOGNAME, USER, SHELL, MAIL, TERM, the `SUDO_*` variables and the host's
/// `etc/environment` (see [`Hosts::system_env`]). The host's files sit beside the login's HOME.
/// Nothing else of the ssh session's environment reaches the command, as with the real sudo.
pub fn sudo_stand_in_with_path(secure_path: &str) -> TempDir {
    assert!(
        !secure_path.contains(['\'', '\\']),
        "secure_path {secure_path:?} cannot be quoted"
    );
    let dir = tempfile::Builder::new()
        .prefix("release-sudo-")
        .tempdir()
        .expect("create the sudo stand-in's dir");
    let sudo = dir.path().join("sudo");
    let script = format!(
        r#"#!/bin/sh
# A stand-in for Debian's sudo -n (tests/it/common/hosts.rs).
host=$(dirname "$HOME")
printf '%s\0' "$#" "$@" >>"$HOME/sudo.log"
[ "$1" = -n ] || {{ echo 'sudo: -n expected' >&2; exit 1; }}
if [ -e "$HOME/no-sudo-rule" ]; then echo 'sudo: a password is required' >&2; exit 1; fi
shift
[ "$#" -gt 0 ] || {{ echo 'usage: sudo -n COMMAND' >&2; exit 1; }}
exec env -i PATH='{secure_path}' HOME="$host/root" LOGNAME=root USER=root SHELL=/bin/sh \
  MAIL=/var/mail/root ${{TERM+"TERM=$TERM"}} SUDO_USER="${{USER:-root}}" SUDO_UID="$(id -u)" \
  SUDO_GID="$(id -g)" SUDO_COMMAND="$*" \
  /bin/sh -c 'set -a; . "$1"; set +a; shift; exec "$@"' sudo "$host/etc/environment" "$@"
"#
    );
    fs_err::write(&sudo, script).expect("write the sudo stand-in");
    fs_err::set_permissions(&sudo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the sudo stand-in executable");
    dir
}

/// Every call the sudo stand-in logged in `home` (a host's [`Hosts::home_dir`]), each as its
/// words, in order; empty if it was never called.
pub fn sudo_calls(home: &Path) -> Vec<Vec<String>> {
    let log = fs_err::read(home.join("sudo.log")).unwrap_or_default();
    let mut fields = log
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut calls = Vec::new();
    while let Some(count) = fields.next().filter(|f| !f.is_empty()) {
        let count: usize = count.parse().expect("a word count in sudo.log");
        let words: Vec<String> = fields.by_ref().take(count).collect();
        assert_eq!(words.len(), count, "sudo.log ends inside a call");
        calls.push(words);
    }
    calls
}

/// The directory of the `release` binary under test (on every host's default PATH).
pub fn release_bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_release"))
        .parent()
        .expect("the binary's directory")
}

/// Every host's environment: the defaults, then the caller's values (which replace defaults of
/// the same name). Panics unless `AWS_ENDPOINT_URL` is given, and on any AWS endpoint outside
/// loopback.
fn host_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let path = format!("{}:/usr/bin:/bin", release_bin_dir().display());
    let mut env: Vec<(String, String)> = [
        ("PATH", path.as_str()),
        ("LANG", "C.UTF-8"),
        ("TZ", "UTC"),
        ("RUST_BACKTRACE", "1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (key, value) in extra {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = (*value).to_owned(),
            None => env.push(((*key).to_owned(), (*value).to_owned())),
        }
    }
    assert!(
        env.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL"),
        "Hosts::start needs (\"AWS_ENDPOINT_URL\", endpoint) in its env: the loopback server the \
         hosts' `release install` downloads from, e.g. moto.endpoint()"
    );
    super::check_endpoints(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env
}

/// Panics unless every address is a distinct IPv4 address in 127.0.0.0/8.
fn check_addresses(addresses: &[&str]) {
    assert!(!addresses.is_empty(), "Hosts need at least one address");
    let mut seen = HashSet::new();
    for address in addresses {
        let ip: Ipv4Addr = address.parse().unwrap_or_else(|_| {
            panic!("host address `{address}` is not an IPv4 address like 127.0.1.4")
        });
        assert!(
            ip.is_loopback(),
            "host address {address} is outside 127.0.0.0/8: tests never leave loopback \
             (DESIGN.md); did moto launch the instance outside the 127.0.1.0/24 subnet?"
        );
        assert!(seen.insert(ip), "host address {address} is given twice");
    }
}

/// Panics on a variable that `SetEnv "KEY=VALUE"` could not carry unchanged.
fn check_env_value(key: &str, value: &str) {
    let key_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    assert!(
        key_ok,
        "host environment name `{key}` is not a shell variable name"
    );
    assert!(
        !value.contains(['"', '\\']) && !value.chars().any(char::is_control),
        "host environment value {key}={value:?} has a quote, backslash or control character, \
         which sshd_config's SetEnv cannot carry"
    );
}

/// A path as one double-quoted sshd/ssh configuration word.
fn quoted(path: &Path) -> String {
    let text = path.to_string_lossy();
    assert!(
        !text.contains(['"', '\\']) && !text.chars().any(char::is_control),
        "path {text:?} cannot be written to an ssh configuration file; use another TMPDIR"
    );
    format!("\"{text}\"")
}

/// Writes an ed25519 key pair without passphrase at `path` and `path.pub`.
fn keygen(path: &Path, comment: &str) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}): {INSTALL}"));
    assert!(
        output.status.success(),
        "ssh-keygen for {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The name of the user running the tests, whom the hosts let in.
fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(output.status.success(), "id -un failed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Creates `/run/sshd`, which a root `sshd` refuses to start without ("Missing privilege
/// separation directory"). Must be root-owned and not group- or world-writable.
fn ensure_privsep_dir() {
    use std::os::unix::fs::PermissionsExt;
    if Path::new(PRIVSEP_DIR).is_dir() {
        return;
    }
    if let Err(e) = fs_err::create_dir_all(PRIVSEP_DIR) {
        panic!("sshd needs {PRIVSEP_DIR}: {e}; create it: mkdir -m 0755 {PRIVSEP_DIR}");
    }
    fs_err::set_permissions(PRIVSEP_DIR, std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 /run/sshd");
}

/// A random port in [`PORTS`].
fn random_port() -> u16 {
    let span = u128::from(PORTS.end - PORTS.start);
    let offset = u16::try_from(uuid::Uuid::new_v4().as_u128() % span).expect("fits in u16");
    PORTS.start + offset
}

/// Starts `sh` that kills `pid` once its stdin reaches end of file, i.e. once the test process
/// is gone however it ended (its pipe end is the only writer; std opens pipes close-on-exec).
fn spawn_watchdog(pid: u32) -> Child {
    Command::new("sh")
        .args([
            "-c",
            "read -r line; kill \"$1\" 2>/dev/null",
            "sshd-watchdog",
        ])
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the sshd watchdog (sh)")
}

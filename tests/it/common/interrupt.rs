//! Interrupting a running `release` at a known point: a hook that blocks (and says so) while a
//! file exists, a bounded wait for such a sign, and `kill -9` of the whole process group.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::Release;

/// How long a sign may take to appear before the test fails.
const SIGN_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits (bounded) until `path` exists; `what` names the awaited event in the failure.
pub fn wait_for(path: &Path, what: &str) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < SIGN_TIMEOUT, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hook command that, while `{work}/block` exists, touches `{work}/ready` and sleeps; else
/// does nothing and succeeds.
pub fn blocking_hook(work: &Path) -> String {
    format!(
        "if [ -e {w}/block ]; then touch {w}/ready; sleep 30; fi; true",
        w = work.display()
    )
}

/// Runs `install` (prepared by the caller, its `--run` hook blocking on `{work}/block`, as
/// [`blocking_hook`] does) in a process group of its own (`setsid`), and kills that group with
/// `kill -9` while the hook runs: `current` is switched, the install never ended.
pub fn kill_during_hook(install: Release, work: &Path) {
    fs_err::write(work.join("block"), "").unwrap();
    let running = install.wrapped(&["setsid"]).spawn();
    wait_for(&work.join("ready"), "the --run hook");
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", running.pid())])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 of the install's process group");
    let _ = running.wait(Duration::from_secs(30));
    fs_err::remove_file(work.join("block")).unwrap();
}

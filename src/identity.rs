//! Who and where the tool runs: the names written into history records, build manifests and
//! the push lock.

use crate::env_vars;

/// Who runs the tool: Jenkins' BUILD_USER_ID, else USER, else the name of the process's uid
/// (cron jobs and systemd units often have no USER), else `unknown`.
pub(crate) fn user() -> String {
    [env_vars::BUILD_USER_ID, env_vars::USER]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
        .or_else(|| {
            let passwd = fs_err::read_to_string("/etc/passwd").ok()?;
            name_of_uid(&passwd, rustix::process::getuid().as_raw())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The user name of `uid` in a passwd file (`name:password:uid:...` lines).
fn name_of_uid(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?.trim();
        let listed: u32 = fields.nth(1)?.trim().parse().ok()?;
        (listed == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// This machine's host name.
pub(crate) fn hostname() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// `value` trimmed, or `None` when nothing is left.
pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The environment variable `name` trimmed, or `None` when unset or blank.
pub(crate) fn non_empty_env(name: &str) -> Option<String> {
    non_empty(std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_names_come_from_passwd() {
        let passwd = "# comment\nroot:x:0:0:root:/root:/bin/bash\njenkins:x:1001:1001::/var/lib/jenkins:/bin/sh\n";
        assert_eq!(name_of_uid(passwd, 1001).as_deref(), Some("jenkins"));
        assert_eq!(name_of_uid(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_of_uid(passwd, 7), None);
    }
}

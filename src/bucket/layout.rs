//! Where things live in the bucket: the one place that spells object keys.
//!
//! The layout is the old Jenkins jobs' (`{artifact}/{stage}/{artifact}-{N}.tar`,
//! `latest.txt`, `latest-stable.txt`) plus the tool's own objects beside them.

use crate::archive::Compression;

/// Key builder for one artifact in one stage.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    artifact: String,
    stage: String,
}

impl Layout {
    /// A layout for already-validated artifact and stage names.
    pub(crate) fn new(artifact: &str, stage: &str) -> Self {
        Self {
            artifact: artifact.to_owned(),
            stage: stage.to_owned(),
        }
    }

    pub(crate) fn artifact(&self) -> &str {
        &self.artifact
    }

    pub(crate) fn stage(&self) -> &str {
        &self.stage
    }

    /// `{artifact}/{stage}/`: every key of this artifact and stage starts with it.
    pub(crate) fn prefix(&self) -> String {
        format!("{}/{}/", self.artifact, self.stage)
    }

    /// Object name (no prefix) of build `n`'s archive.
    pub(crate) fn archive_name(&self, n: u64, compression: Compression) -> String {
        format!("{}-{n}{}", self.artifact, compression.extension())
    }

    /// Key of build `n`'s archive.
    pub(crate) fn archive(&self, n: u64, compression: Compression) -> String {
        format!("{}{}", self.prefix(), self.archive_name(n, compression))
    }

    /// Key of build `n`'s manifest.
    pub(crate) fn manifest(&self, n: u64) -> String {
        format!("{}{}-{n}.release", self.prefix(), self.artifact)
    }

    /// Key of build `n`'s manifest signature (docs/signing.md).
    pub(crate) fn signature(&self, n: u64) -> String {
        format!("{}.sig", self.manifest(n))
    }

    /// Key of the pointer to the newest build.
    pub(crate) fn latest(&self) -> String {
        format!("{}latest.txt", self.prefix())
    }

    /// Key of the pointer to the promoted build.
    pub(crate) fn latest_stable(&self) -> String {
        format!("{}latest-stable.txt", self.prefix())
    }

    /// Key of the claim on build number `n` (see `commands::build` for the protocol).
    pub(crate) fn claim(&self, n: u64) -> String {
        format!("{}claims/{n}", self.prefix())
    }

    /// Key of the push lock.
    pub(crate) fn push_lock(&self) -> String {
        format!("{}push.lock", self.prefix())
    }

    /// Prefix of the claims, to list them.
    pub(crate) fn claims_prefix(&self) -> String {
        format!("{}claims/", self.prefix())
    }

    /// Prefix of the history records (promotions, pushes), one object per event; their names
    /// sort in time order (see `history`).
    pub(crate) fn history_prefix(&self) -> String {
        format!("{}history/", self.prefix())
    }

    /// Key of the history record named `name`.
    pub(crate) fn history(&self, name: &str) -> String {
        format!("{}{name}", self.history_prefix())
    }

    /// Prefix of the host reports and their state markers (`hosts/`), listed by `status`.
    pub(crate) fn hosts_prefix(&self) -> String {
        format!("{}hosts/", self.prefix())
    }

    /// Key of host `host`'s report, `hosts/{host}.json`.
    pub(crate) fn host_report(&self, host: &str) -> String {
        format!("{}{host}.json", self.hosts_prefix())
    }

    /// Prefix of host `host`'s state markers, `hosts/{host}/`.
    pub(crate) fn host_markers(&self, host: &str) -> String {
        format!("{}{host}/", self.hosts_prefix())
    }

    /// Key of the empty marker saying host `host` ended its last install on build `after`
    /// (`none`: nothing is current) with `result` (`ok` or `failed`): `status` learns build,
    /// result and age from one LIST, with no GET per host.
    pub(crate) fn host_marker(&self, host: &str, after: Option<u64>, result: &str) -> String {
        let build = after.map_or_else(|| "none".to_owned(), |n| n.to_string());
        format!("{}{build}.{result}", self.host_markers(host))
    }

    /// The build number a key under `prefix()` names, if it is a claim, manifest or archive.
    ///
    /// Old buckets hold only `{artifact}-{N}.tar`; newer ones `.tar.gz`, `.tar.zst`, `.release`.
    pub(crate) fn build_number_of(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(&self.prefix())?;
        if let Some(n) = rest.strip_prefix("claims/") {
            return n.parse().ok();
        }
        let rest = rest.strip_prefix(&self.artifact)?.strip_prefix('-')?;
        let digits = [".release", ".tar.gz", ".tar.zst", ".tar"]
            .iter()
            .find_map(|ext| rest.strip_suffix(ext))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_jobs_layout() {
        let l = Layout::new("obelix-appengine", "prod");
        assert_eq!(
            l.archive(24, Compression::Gzip),
            "obelix-appengine/prod/obelix-appengine-24.tar.gz"
        );
        assert_eq!(
            l.manifest(24),
            "obelix-appengine/prod/obelix-appengine-24.release"
        );
        assert_eq!(l.latest(), "obelix-appengine/prod/latest.txt");
        assert_eq!(l.latest_stable(), "obelix-appengine/prod/latest-stable.txt");
        assert_eq!(l.history_prefix(), "obelix-appengine/prod/history/");
        assert_eq!(l.history("x.json"), "obelix-appengine/prod/history/x.json");
        assert_eq!(
            l.host_report("i-0abc"),
            "obelix-appengine/prod/hosts/i-0abc.json"
        );
        assert_eq!(
            l.host_marker("i-0abc", Some(24), "ok"),
            "obelix-appengine/prod/hosts/i-0abc/24.ok"
        );
        assert_eq!(
            l.host_marker("web1", None, "failed"),
            "obelix-appengine/prod/hosts/web1/none.failed"
        );
    }

    #[test]
    fn build_numbers_from_keys() {
        let l = Layout::new("web", "prod");
        assert_eq!(l.build_number_of("web/prod/web-23.tar"), Some(23));
        assert_eq!(l.build_number_of("web/prod/web-7.tar.gz"), Some(7));
        assert_eq!(l.build_number_of("web/prod/web-7.tar.zst"), Some(7));
        assert_eq!(l.build_number_of("web/prod/web-9.release"), Some(9));
        assert_eq!(l.build_number_of("web/prod/claims/12"), Some(12));
        assert_eq!(l.build_number_of("web/prod/latest.txt"), None);
        assert_eq!(
            l.build_number_of("web/prod/history/20261123T101500.123Z-promote-0a1b2c3d.json"),
            None
        );
        assert_eq!(l.build_number_of("web/prod/web-api-3.tar"), None);
        assert_eq!(l.build_number_of("web/prod/web-.tar"), None);
        assert_eq!(l.build_number_of("web/prod/web-+3.tar"), None);
        assert_eq!(l.build_number_of("web/test/web-3.tar"), None);
    }
}

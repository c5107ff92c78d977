//! Host reports: what each host's last `release install` did, kept in the bucket so that
//! `status` can tell the fleet's state without reaching any host.
//!
//! Per host, `hosts/{host}.json` (the report, read by people and by `status` only when the
//! marker is missing) and one empty marker `hosts/{host}/{build|none}.{ok|failed}` whose key
//! carries build and result and whose LastModified is the report's age: one LIST of `hosts/`
//! tells the state of every host, with no GET per host. Right before it switches, an install
//! also writes `hosts/{host}/{build}.started`, which its end (the report's marker write)
//! deletes: a host whose newest marker is `.started` has not reported the end of an install.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::layout::Layout;
use super::store::{Listed, Precondition, Store};

/// Longest host id (and push id) accepted.
const MAX_ID: usize = 128;

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`: one safe path segment (no `/`, no `..` alone, no
/// leading `-` or `.`), for host ids and push ids.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    first_ok
        && id.len() <= MAX_ID
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `i-` and 8 or 17 lowercase hex digits: an EC2 instance id, which `status` may ask EC2
/// about (hostname-named reports never are).
pub(crate) fn looks_like_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// How a host's last install ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InstallResult {
    Ok,
    Failed,
}

impl InstallResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "ok" => Some(Self::Ok),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// What a marker says: how an install ended, or that one started (and has not said its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Ended(InstallResult),
    Started,
}

/// The last word of a start marker, `hosts/{host}/{build}.started`.
const STARTED: &str = "started";

/// The report object, `hosts/{host}.json` (docs/output.md, "host report").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostReport {
    pub(crate) schema: u32,
    pub(crate) artifact: String,
    pub(crate) stage: String,
    pub(crate) host: String,
    pub(crate) hostname: String,
    pub(crate) before: Option<u64>,
    /// What `current` points to once the install ended (on a failure, the build before).
    pub(crate) after: Option<u64>,
    pub(crate) sha256: Option<String>,
    pub(crate) result: InstallResult,
    /// The step that failed.
    pub(crate) step: Option<String>,
    pub(crate) error: Option<String>,
    /// boot, ssh, ssm or manual.
    pub(crate) started_by: String,
    pub(crate) push_id: Option<String>,
    /// RFC 3339, UTC.
    pub(crate) time: String,
    pub(crate) release_version: String,
}

/// What one host's last install left, as far as the listing (or its report) tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The build current once the install ended; for a start marker, the build it installs.
    pub(crate) build: Option<u64>,
    pub(crate) mark: Mark,
    /// When it was written.
    pub(crate) time: Option<jiff::Timestamp>,
}

/// One host's objects under `hosts/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The report's key, if there is one.
    pub(crate) report: Option<String>,
    /// The markers, newest last.
    pub(crate) markers: Vec<(String, Seen)>,
}

impl Entry {
    /// The newest marker's state.
    pub(crate) fn seen(&self) -> Option<&Seen> {
        self.markers.last().map(|(_, seen)| seen)
    }

    /// Every key of this host (report and markers), to delete them.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.report
            .iter()
            .cloned()
            .chain(self.markers.iter().map(|(k, _)| k.clone()))
            .collect()
    }
}

/// The hosts found in a listing of `hosts/`, by host id; keys that are neither a report nor
/// a marker are ignored.
pub(crate) fn parse(layout: &Layout, listed: &[Listed]) -> BTreeMap<String, Entry> {
    let prefix = layout.hosts_prefix();
    let mut hosts: BTreeMap<String, Entry> = BTreeMap::new();
    for object in listed {
        let Some(rest) = object.key.strip_prefix(&prefix) else {
            continue;
        };
        if let Some((host, marker)) = rest.split_once('/') {
            if let (true, Some(mut seen)) = (valid_id(host), parse_marker(marker)) {
                seen.time = object.modified;
                hosts
                    .entry(host.to_owned())
                    .or_default()
                    .markers
                    .push((object.key.clone(), seen));
            }
        } else if let Some(host) = rest.strip_suffix(".json").filter(|h| valid_id(h)) {
            hosts.entry(host.to_owned()).or_default().report = Some(object.key.clone());
        }
    }
    for entry in hosts.values_mut() {
        // On the same LastModified (one-second resolution on some stores), a start wins: an
        // install killed within a second of the previous one's end leaves exactly these two,
        // while an end beside its own start means that end's cleanup failed (rare); saying
        // half-way wrongly is the safe mistake.
        entry
            .markers
            .sort_by_key(|(_, seen)| (seen.time, seen.mark == Mark::Started));
    }
    hosts
}

/// `{build|none}.{ok|failed}` or `{build}.started`.
fn parse_marker(name: &str) -> Option<Seen> {
    let (build, word) = name.split_once('.')?;
    let build = match build {
        "none" => None,
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        _ => return None,
    };
    let mark = match word {
        // An install always starts a build: `none.started` is nobody's marker.
        STARTED if build.is_some() => Mark::Started,
        _ => Mark::Ended(InstallResult::parse(word)?),
    };
    Some(Seen {
        build,
        mark,
        time: None,
    })
}

/// Reads a report that has no marker (written by hand, or its marker write failed): one GET.
pub(crate) async fn read_report(store: &Store, key: &str) -> anyhow::Result<Option<Seen>> {
    let Some(object) = store.get(key).await? else {
        return Ok(None);
    };
    let report: HostReport = serde_json::from_slice(&object.body)
        .map_err(|e| anyhow::anyhow!("{} is not a host report: {e}", store.url(key)))?;
    Ok(Some(Seen {
        build: report.after,
        mark: Mark::Ended(report.result),
        time: report.time.parse().ok(),
    }))
}

/// Writes `hosts/{host}/{build}.started`: an install of `build` is about to switch. The end of
/// the install ([`write`]) deletes it. A failure is one message naming the object.
pub(crate) async fn write_started(
    store: &Store,
    layout: &Layout,
    host: &str,
    build: u64,
) -> Result<(), String> {
    let marker = layout.host_marker(host, Some(build), STARTED);
    store
        .put(&marker, bytes::Bytes::new(), Precondition::None)
        .await
        .map_err(|e| {
            format!(
                "could not write the start marker {}: {e}",
                store.url(&marker)
            )
        })
}

/// Writes the report, then its marker, then deletes the host's other markers (a start
/// marker included). Each failure is
/// one message naming the object; the caller warns.
pub(crate) async fn write(store: &Store, layout: &Layout, report: &HostReport) -> Vec<String> {
    let mut failures = Vec::new();
    let key = layout.host_report(&report.host);
    let body = serde_json::to_vec_pretty(report).unwrap_or_default();
    if let Err(e) = store.put(&key, body.into(), Precondition::None).await {
        failures.push(format!(
            "could not write the host report {}: {e}",
            store.url(&key)
        ));
    }
    let marker = layout.host_marker(&report.host, report.after, report.result.as_str());
    if let Err(e) = store
        .put(&marker, bytes::Bytes::new(), Precondition::None)
        .await
    {
        failures.push(format!(
            "could not write the state marker {}: {e}",
            store.url(&marker)
        ));
        return failures;
    }
    let prefix = layout.host_markers(&report.host);
    match store.list(&prefix).await {
        Ok(listed) => {
            for old in listed.iter().filter(|l| l.key != marker) {
                if let Err(e) = store.delete(&old.key).await {
                    failures.push(format!(
                        "could not delete the old state marker {}: {e}",
                        store.url(&old.key)
                    ));
                }
            }
        }
        Err(e) => failures.push(format!(
            "could not list the old state markers {}: {e}",
            store.url(&prefix)
        )),
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str, secs: i64) -> Listed {
        Listed {
            key: key.into(),
            size: 0,
            modified: Some(jiff::Timestamp::from_second(secs).unwrap()),
        }
    }

    #[test]
    fn ids_are_one_safe_word() {
        assert!(valid_id("i-0123456789abcdef0"));
        assert!(valid_id("web-1.example.com"));
        assert!(valid_id(&"a".repeat(128)));
        for bad in [
            "",
            "../x",
            "a/b",
            "-x",
            ".x",
            "a b",
            "a\n",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn instance_ids_are_told_from_hostnames() {
        assert!(looks_like_instance_id("i-0123abcd"));
        assert!(looks_like_instance_id("i-0123456789abcdef0"));
        assert!(!looks_like_instance_id("i-0123ABCD"));
        assert!(!looks_like_instance_id("i-0123abc"));
        assert!(!looks_like_instance_id("web-1"));
    }

    #[test]
    fn listings_give_reports_and_markers_newest_last() {
        let l = Layout::new("web", "prod");
        let found = parse(
            &l,
            &[
                listed("web/prod/hosts/i-0123abcd.json", 10),
                listed("web/prod/hosts/i-0123abcd/7.ok", 20),
                listed("web/prod/hosts/i-0123abcd/6.failed", 5),
                listed("web/prod/hosts/web1.json", 10),
                listed("web/prod/hosts/web2/none.failed", 10),
                listed("web/prod/hosts/web3/x.ok", 10),
                listed("web/prod/hosts/web3/7.maybe", 10),
                listed("web/prod/hosts/-x.json", 10),
                listed("web/prod/hosts/a/b/7.ok", 10),
            ],
        );
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            ["i-0123abcd", "web1", "web2"]
        );
        let seen = found["i-0123abcd"].seen().unwrap();
        assert_eq!(
            (seen.build, seen.mark),
            (Some(7), Mark::Ended(InstallResult::Ok))
        );
        assert_eq!(found["i-0123abcd"].keys().len(), 3);
        assert!(found["web1"].seen().is_none());
        let seen = found["web2"].seen().unwrap();
        assert_eq!(
            (seen.build, seen.mark),
            (None, Mark::Ended(InstallResult::Failed))
        );
    }

    #[test]
    fn start_markers_are_read_and_junk_around_them_ignored() {
        let l = Layout::new("web", "prod");
        let found = parse(
            &l,
            &[
                listed("web/prod/hosts/i-0123abcd/7.ok", 10),
                listed("web/prod/hosts/i-0123abcd/8.started", 20),
                listed("web/prod/hosts/web1/8.started", 10),
                listed("web/prod/hosts/web1/7.ok", 30),
                listed("web/prod/hosts/web2/9.ok", 10),
                listed("web/prod/hosts/web2/10.started", 10),
                listed("web/prod/hosts/x/1.started.ok", 10),
                listed("web/prod/hosts/x/../1.ok", 10),
                listed("web/prod/hosts/x/none.started", 10),
                listed("web/prod/hosts/x/.started", 10),
                listed("web/prod/hosts/x/1.Started", 10),
                listed("web/prod/hosts/x/1.started/2.ok", 10),
                listed("web/prod/hosts/../1.started", 10),
            ],
        );
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            ["i-0123abcd", "web1", "web2"],
            "only well-formed markers name a host"
        );
        let seen = found["i-0123abcd"].seen().unwrap();
        assert_eq!((seen.build, seen.mark), (Some(8), Mark::Started));
        let seen = found["web1"].seen().unwrap();
        assert_eq!(
            (seen.build, seen.mark),
            (Some(7), Mark::Ended(InstallResult::Ok)),
            "a newer end wins over an older start"
        );
        let seen = found["web2"].seen().unwrap();
        assert_eq!(
            (seen.build, seen.mark),
            (Some(10), Mark::Started),
            "on the same time, the start wins"
        );
        assert_eq!(
            l.host_marker("web1", Some(8), STARTED),
            "web/prod/hosts/web1/8.started"
        );
    }
}

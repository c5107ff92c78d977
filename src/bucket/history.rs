//! The history kept in the bucket: one JSON object per event (a promotion, later a push) under
//! `{artifact}/{stage}/history/`.
//!
//! Each record is written with `If-None-Match: *` under a name of its own, so concurrent writers
//! never overwrite or lose one another's records. Names start with the event's UTC time to the
//! millisecond (`20261123T101500.123Z-promote-0a1b2c3d.json`), so a listing, which S3 returns in
//! key order, is in time order; the random suffix keeps two events of one millisecond apart.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::bucket::fetch_all;
use crate::bucket::layout::Layout;
use crate::bucket::store::{Precondition, Store, StoreError};
use crate::identity;
use crate::redact;

/// What a record tells of. Serialized as its name (`promote`, `push`); a name this version does
/// not know (written by a newer one) is kept as read, so `history` still lists the record and a
/// rewrite does not lose it, while the rollback walk passes over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub(crate) enum Kind {
    /// A promotion (rollbacks included, marked in `Record::extra`).
    Promote,
    /// A push to hosts.
    Push,
    /// A kind this version does not know, as read.
    Unknown(String),
}

impl Kind {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Promote => "promote",
            Self::Push => "push",
            Self::Unknown(name) => name,
        }
    }
}

impl From<String> for Kind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "promote" => Self::Promote,
            "push" => Self::Push,
            _ => Self::Unknown(name),
        }
    }
}

impl From<Kind> for String {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Unknown(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// What happened.
    pub(crate) kind: Kind,
    /// When, RFC 3339 in UTC to the millisecond.
    pub(crate) time: String,
    /// Who: Jenkins' BUILD_USER_ID, else USER, else `unknown`.
    pub(crate) user: String,
    /// The machine the tool ran on.
    pub(crate) host: String,
    pub(crate) artifact: String,
    pub(crate) stage: String,
    /// The build that was stable before (`null` if none was).
    pub(crate) from_version: Option<u64>,
    /// The build that became stable (or was pushed).
    pub(crate) to_version: Option<u64>,
    /// The git tag moved, if any.
    pub(crate) tag: Option<String>,
    /// The commit tagged (the build's GIT_COMMIT), if any.
    pub(crate) commit: Option<String>,
    /// Fields of other kinds of event, kept as read.
    #[serde(flatten)]
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    /// A record of `kind` happening now, by this user on this host.
    pub(crate) fn now(kind: Kind, layout: &Layout) -> Self {
        let time = jiff::Timestamp::now();
        let time = time.round(jiff::Unit::Millisecond).unwrap_or(time);
        Self {
            kind,
            time: rfc3339_millis(time),
            user: identity::user(),
            host: identity::hostname(),
            artifact: layout.artifact().to_owned(),
            stage: layout.stage().to_owned(),
            from_version: None,
            to_version: None,
            tag: None,
            commit: None,
            extra: serde_json::Map::new(),
        }
    }
}

/// Writes `record` as a new object; returns its key.
pub(crate) async fn append(store: &Store, layout: &Layout, record: &Record) -> Result<String> {
    // Records outlive the run and are read by anyone with the bucket: no credentials in them.
    let mut value = serde_json::to_value(record)?;
    redact::json(&mut value);
    let body = Bytes::from(serde_json::to_vec_pretty(&value)?);
    let stamp = key_stamp(&record.time)?;
    for _ in 0..3 {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let key = layout.history(&format!("{stamp}-{}-{suffix}.json", record.kind));
        match store.put(&key, body.clone(), Precondition::IfAbsent).await {
            Ok(()) => return Ok(key),
            // Another event took this very name: draw another suffix.
            Err(StoreError::PreconditionFailed { .. }) => continue,
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("writing the history record `{}`", store.url(&key)));
            }
        }
    }
    bail!(
        "could not find a free history record name under `{}`",
        store.url(&layout.history_prefix())
    )
}

/// Every record key, newest first.
pub(crate) async fn keys_newest_first(store: &Store, layout: &Layout) -> Result<Vec<String>> {
    let prefix = layout.history_prefix();
    let mut keys: Vec<String> = store
        .list(&prefix)
        .await
        .with_context(|| format!("listing the history `{}`", store.url(&prefix)))?
        .into_iter()
        .map(|listed| listed.key)
        .filter(|key| key.ends_with(".json"))
        .collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    Ok(keys)
}

/// The records at `keys`, in that order. A record that is gone or unreadable is left out with
/// a warning in the log: one bad object must not hide the rest of the history.
pub(crate) async fn read(store: &Arc<Store>, keys: &[String]) -> Result<Vec<Record>> {
    let objects = fetch_all::get_all(store, keys.to_vec()).await?;
    let mut events = Vec::with_capacity(keys.len());
    for (key, object) in keys.iter().zip(objects) {
        let Some(object) = object else { continue };
        match serde_json::from_slice::<Record>(&object.body) {
            Ok(record) => events.push(record),
            Err(err) => tracing::warn!("skipping history record `{}`: {err}", store.url(key)),
        }
    }
    Ok(events)
}

/// The newest `limit` events, newest first.
pub(crate) async fn newest(
    store: &Arc<Store>,
    layout: &Layout,
    limit: usize,
) -> Result<Vec<Record>> {
    let keys = keys_newest_first(store, layout).await?;
    read(store, &keys[..keys.len().min(limit)]).await
}

/// Marks the record of a rollback (in `Record::extra`): it undoes the promotion before it.
pub(crate) const ROLLBACK: &str = "rollback";

/// What the history says about the build to roll back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Previous {
    /// No promotion was ever recorded.
    NoHistory,
    /// Promotions were recorded, but none says which build was stable before the current one.
    NoneBefore,
    /// The build that was stable before the current one became stable.
    Build(u64),
}

/// Where a walk back through the promotions stands.
#[derive(Debug, Default)]
struct Walk {
    /// Rollbacks seen whose undone promotion has not been passed yet.
    undone: usize,
    /// A promotion was seen at all.
    seen: bool,
}

impl Walk {
    /// Takes the next older record; returns the answer once it is known.
    ///
    /// The promotions form a stack: a promotion pushes its build, a rollback pops one. Walking
    /// newest first, each rollback cancels the next older promotion still standing; the newest
    /// promotion that stands is the one that made `current` stable, and the build stable before
    /// it (its `from_version`) is the answer. Promotions of the build that was already stable
    /// change nothing and are skipped, so after promote 1, 2, 1 the answer is 2, and after a
    /// rollback to 2 the next one goes to 1.
    fn take(&mut self, record: &Record, current: u64) -> Option<Previous> {
        if record.kind != Kind::Promote {
            return None;
        }
        self.seen = true;
        if record.extra.get(ROLLBACK) == Some(&serde_json::Value::Bool(true)) {
            self.undone += 1;
            return None;
        }
        let to = record.to_version?;
        if record.from_version == Some(to) {
            return None;
        }
        if self.undone > 0 {
            self.undone -= 1;
            return None;
        }
        if to != current {
            // latest-stable moved without a record (the old jobs, or a record that failed to
            // be written): the newest recorded stable build is the one before it.
            return Some(Previous::Build(to));
        }
        match record.from_version {
            Some(from) if from != current => Some(Previous::Build(from)),
            Some(_) => None,
            None => Some(Previous::NoneBefore),
        }
    }
}

/// The build that was stable before `current` became stable, walking the promotions back
/// (see `Walk::take`), so repeated rollbacks keep going back.
pub(crate) async fn previous_stable(
    store: &Arc<Store>,
    layout: &Layout,
    current: u64,
) -> Result<Previous> {
    let keys = keys_newest_first(store, layout).await?;
    let mut walk = Walk::default();
    for page in keys.chunks(fetch_all::MAX_IN_FLIGHT) {
        for event in read(store, page).await? {
            if let Some(answer) = walk.take(&event, current) {
                return Ok(answer);
            }
        }
    }
    Ok(if walk.seen {
        Previous::NoneBefore
    } else {
        Previous::NoHistory
    })
}

/// `2026-11-23T10:15:00.123Z`.
fn rfc3339_millis(time: jiff::Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `20261123T101500.123Z` from an RFC 3339 time: the part of a record's name that sorts.
fn key_stamp(time: &str) -> Result<String> {
    let time: jiff::Timestamp = time
        .parse()
        .with_context(|| format!("history time `{time}` is not RFC 3339"))?;
    Ok(time.strftime("%Y%m%dT%H%M%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promotion(from: Option<u64>, to: u64, rollback: bool) -> Record {
        let mut record = Record::now(Kind::Promote, &Layout::new("web", "prod"));
        record.from_version = from;
        record.to_version = Some(to);
        if rollback {
            record.extra.insert(ROLLBACK.into(), true.into());
        }
        record
    }

    /// `records` oldest first, as they were written.
    fn walk_back(records: &[Record], current: u64) -> Previous {
        let mut walk = Walk::default();
        records
            .iter()
            .rev()
            .find_map(|record| walk.take(record, current))
            .unwrap_or(if walk.seen {
                Previous::NoneBefore
            } else {
                Previous::NoHistory
            })
    }

    #[test]
    fn rollback_walks_the_promotions_back() {
        let p = |from, to| promotion(from, to, false);
        let r = |from, to| promotion(Some(from), to, true);
        // promote 1, 2, 1: the build stable before 1 became stable again is 2.
        let history = [p(None, 1), p(Some(1), 2), p(Some(2), 1)];
        assert_eq!(walk_back(&history, 1), Previous::Build(2));
        // ... and after that rollback, the next one goes on to 1.
        let history = [p(None, 1), p(Some(1), 2), p(Some(2), 1), r(1, 2)];
        assert_eq!(walk_back(&history, 2), Previous::Build(1));
        // promote 1, 2, 3, rollback, rollback: 1 is left, with nothing before it.
        let history = [p(None, 1), p(Some(1), 2), p(Some(2), 3), r(3, 2), r(2, 1)];
        assert_eq!(walk_back(&history, 1), Previous::NoneBefore);
        // A promotion after a rollback stands; the build stable before it is the answer.
        let history = [
            p(None, 1),
            p(Some(1), 2),
            p(Some(2), 3),
            r(3, 2),
            p(Some(2), 4),
        ];
        assert_eq!(walk_back(&history, 4), Previous::Build(2));
        // The old jobs moved latest-stable without a record: the newest recorded one is next.
        assert_eq!(walk_back(&[p(Some(5), 6)], 9), Previous::Build(6));
        assert_eq!(walk_back(&[p(Some(5), 6)], 6), Previous::Build(5));
        assert_eq!(walk_back(&[], 6), Previous::NoHistory);
    }

    #[test]
    fn names_sort_in_time_order() {
        let early = key_stamp("2026-11-23T10:15:00.123Z").unwrap();
        let later = key_stamp("2026-11-23T10:15:00.9Z").unwrap();
        let next_day = key_stamp("2026-11-24T00:00:00Z").unwrap();
        assert_eq!(early, "20261123T101500.123Z");
        assert_eq!(later, "20261123T101500.900Z");
        assert_eq!(next_day, "20261124T000000.000Z");
        assert!(early < later && later < next_day);
    }

    #[test]
    fn times_are_utc_millis() {
        let time: jiff::Timestamp = "2026-11-23T10:15:00.123456Z".parse().unwrap();
        let rounded = time.round(jiff::Unit::Millisecond).unwrap();
        assert_eq!(rfc3339_millis(rounded), "2026-11-23T10:15:00.123Z");
    }

    #[test]
    fn records_keep_no_credentials() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::Dir(crate::bucket::store::DirStore::new(root.path().to_owned()));
        let layout = Layout::new("web", "prod");
        let mut record = Record::now(Kind::Promote, &layout);
        record.tag = Some("web-stable".into());
        record.extra.insert(
            "hosts".into(),
            serde_json::json!([{"result": "GET http://u:TOKEN@127.0.0.1:9/health failed"}]),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let key = runtime.block_on(append(&store, &layout, &record)).unwrap();
        let stored = runtime.block_on(store.get(&key)).unwrap().unwrap();
        let text = String::from_utf8(stored.body.to_vec()).unwrap();
        assert!(!text.contains("TOKEN"), "{text}");
        assert!(text.contains("http://***@127.0.0.1:9/health"), "{text}");
    }

    #[test]
    fn records_keep_fields_of_other_kinds() {
        let text = r#"{"kind":"push","time":"2026-11-23T10:15:00.123Z","user":"a","host":"h",
            "artifact":"web","stage":"prod","from_version":null,"to_version":4,"tag":null,
            "commit":null,"hosts":["h1"]}"#;
        let record: Record = serde_json::from_str(text).unwrap();
        assert_eq!(record.to_version, Some(4));
        assert_eq!(record.extra["hosts"], serde_json::json!(["h1"]));
        let back = serde_json::to_value(&record).unwrap();
        assert_eq!(back["hosts"], serde_json::json!(["h1"]));
    }

    #[test]
    fn unknown_kinds_are_kept_as_read_and_skipped_by_the_walk() {
        let text = r#"{"kind":"scale","time":"2026-11-23T10:15:00.123Z","user":"a","host":"h",
            "artifact":"web","stage":"prod","from_version":1,"to_version":9,"tag":null,
            "commit":null}"#;
        let record: Record = serde_json::from_str(text).unwrap();
        assert_eq!(record.kind, Kind::Unknown("scale".into()));
        assert_eq!(serde_json::to_value(&record).unwrap()["kind"], "scale");
        let push: Record = serde_json::from_str(&text.replace("scale", "push")).unwrap();
        assert_eq!(push.kind, Kind::Push);
        // Oldest first: a promotion 1 -> 2, then the unknown event naming 9.
        let records = [promotion(Some(1), 2, false), record];
        assert_eq!(walk_back(&records, 2), Previous::Build(1));
    }
}

//! `status` from the bucket: the groups' members (DescribeAutoScalingGroups) joined with one
//! LIST of `hosts/` (the state markers carry build, result and age), with no connection to
//! any host and no GET per host. Then the reports of terminated instances are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use release_fleet::{Fleet, Member};

use super::{Context, HostStatus, State, StatusVia, outcome};
use crate::bucket::hosts::{self, Entry, InstallResult, Mark, Seen};
use crate::bucket::layout::Layout;
use crate::bucket::store::Store;
use crate::error::ExitError;
use crate::output::Outcome;

/// What bucket mode is told.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    /// Older reports are STALE.
    pub(super) stale_after: Duration,
    /// Keep the reports of terminated instances.
    pub(super) keep_reports: bool,
}

/// Runs bucket mode for `groups`.
pub(super) async fn run(
    ctx: &Context,
    store: &Store,
    layout: &Layout,
    stable: Option<u64>,
    groups: &[String],
    options: Options,
) -> Result<Outcome> {
    let fleet = Fleet::new(&ctx.aws_config().await);
    let members = fleet.members(groups).await?;
    let listed = store.list(&layout.hosts_prefix()).await?;
    let entries = hosts::parse(layout, &listed);
    let now = jiff::Timestamp::now();
    let mut rows = Vec::with_capacity(members.len());
    for member in &members {
        let (seen, error) = seen_of(store, entries.get(&member.instance_id)).await;
        rows.push(row(member, seen, error, stable, now, options.stale_after));
    }
    let removed = if options.keep_reports {
        Vec::new()
    } else {
        remove_terminated(ctx, store, &fleet, &members, &entries).await
    };
    Ok(outcome(
        layout.artifact(),
        stable,
        StatusVia::Bucket,
        rows,
        removed,
    ))
}

/// The host's last state: from its newest marker, else (a report without a marker) from the
/// report itself, one GET.
async fn seen_of(store: &Store, entry: Option<&Entry>) -> (Option<Seen>, Option<String>) {
    let Some(entry) = entry else {
        return (None, None);
    };
    if let Some(seen) = entry.seen() {
        return (Some(seen.clone()), None);
    }
    let Some(key) = &entry.report else {
        return (None, None);
    };
    match hosts::read_report(store, key).await {
        Ok(seen) => (seen, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    }
}

/// Where a host stands, from what it last reported.
pub(super) fn decide(
    stable: Option<u64>,
    seen: Option<&Seen>,
    now: jiff::Timestamp,
    stale_after: Duration,
) -> State {
    let Some(seen) = seen else {
        return State::NoReport;
    };
    let result = match seen.mark {
        // Started and never ended: half-way however long ago (an old one is no less so), so
        // this wins over stale; the row's age and error say how long.
        Mark::Started => return State::Unfinished,
        Mark::Ended(result) => result,
    };
    // A report too old to trust says nothing sure about today, whatever it says.
    let age = seen.time.map(|t| now.duration_since(t));
    if age.is_some_and(|age| age.as_secs_f64() > stale_after.as_secs_f64()) {
        return State::Stale;
    }
    match result {
        InstallResult::Failed => State::Failed,
        InstallResult::Ok if seen.build.is_some() && seen.build == stable => State::Stable,
        InstallResult::Ok => State::Drift,
    }
}

/// What an unfinished row says: the install of `build` that started `age_seconds` ago and
/// what to do.
fn unfinished_hint(build: Option<u64>, age_seconds: Option<u64>) -> String {
    let build = build.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let when = age_seconds.map_or_else(String::new, |s| format!(" {} ago", age(s)));
    format!(
        "an install of {build} started{when} and did not report its end: still running, or \
         interrupted (run `release install {build}` on it again)"
    )
}

fn row(
    member: &Member,
    seen: Option<Seen>,
    error: Option<String>,
    stable: Option<u64>,
    now: jiff::Timestamp,
    stale_after: Duration,
) -> HostStatus {
    let state = decide(stable, seen.as_ref(), now, stale_after);
    let time = seen.as_ref().and_then(|s| s.time);
    let age_seconds = time.map(|t| now.duration_since(t).as_secs().max(0).unsigned_abs());
    let version = seen.as_ref().and_then(|s| s.build);
    let error = match state {
        State::Unfinished => Some(unfinished_hint(version, age_seconds)),
        _ => error,
    };
    HostStatus {
        host: member.instance_id.clone(),
        instance: Some(member.instance_id.clone()),
        group: Some(member.group.clone()),
        lifecycle_state: Some(member.lifecycle_state.clone()),
        zone: Some(member.zone.clone()),
        version,
        // A started install has no result yet.
        result: seen.as_ref().and_then(|s| match s.mark {
            Mark::Ended(result) => Some(result),
            Mark::Started => None,
        }),
        reported: time.map(|t| t.to_string()),
        age_seconds,
        drift: state != State::Stable,
        state,
        error,
    }
}

/// Removes the reports and markers of instances that are not in the groups read and that EC2
/// says are terminated (or no longer knows); every failure is a warning; a dry run only says
/// which. Returns the ids whose objects are all gone.
async fn remove_terminated(
    ctx: &Context,
    store: &Store,
    fleet: &Fleet,
    members: &[Member],
    entries: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let gone = terminated(ctx, fleet, members, entries).await;
    if ctx.settings.dry_run {
        if !gone.is_empty() {
            ctx.printer.status(&format!(
                "dry run: would remove the reports of {} terminated instance(s): {}",
                gone.len(),
                gone.join(", ")
            ));
        }
        return Vec::new();
    }
    let mut removed = Vec::new();
    for id in gone {
        let mut all = true;
        for key in entries[&id].keys() {
            if let Err(e) = store.delete(&key).await {
                all = false;
                ctx.printer.warn(&format!(
                    "could not remove {} of terminated instance {id}: {e}",
                    store.url(&key)
                ));
            }
        }
        if all {
            removed.push(id);
        }
    }
    if !removed.is_empty() {
        ctx.printer.status(&format!(
            "removed the reports of {} terminated instance(s): {}",
            removed.len(),
            removed.join(", ")
        ));
    }
    removed
}

/// The reporting hosts that are gone: named like instance ids (hostname-named ones are never
/// asked about), not members of the groups read, and `terminated` or unknown to EC2.
async fn terminated(
    ctx: &Context,
    fleet: &Fleet,
    members: &[Member],
    entries: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let members: BTreeSet<&str> = members.iter().map(|m| m.instance_id.as_str()).collect();
    let candidates: Vec<String> = entries
        .keys()
        .filter(|id| hosts::looks_like_instance_id(id) && !members.contains(id.as_str()))
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    match fleet.instance_states(&candidates).await {
        Ok(states) => {
            let states: BTreeMap<String, String> = states.into_iter().collect();
            candidates
                .into_iter()
                .filter(|id| states.get(id).is_none_or(|state| state == "terminated"))
                .collect()
        }
        Err(e) => {
            ctx.printer.warn(&format!(
                "could not ask EC2 which reporting instances are terminated ({e}); no report \
                 was removed"
            ));
            Vec::new()
        }
    }
}

/// `30d`, `12h`, `15m`, `90s` (a bare number is seconds).
pub(super) fn parse_duration(text: &str) -> Result<Duration, ExitError> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let seconds = match unit {
        "" | "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        _ => None,
    };
    match (digits.parse::<u64>(), seconds) {
        (Ok(n), Some(unit)) if n > 0 => n
            .checked_mul(unit)
            .map(Duration::from_secs)
            .ok_or_else(|| bad_duration(text)),
        _ => Err(bad_duration(text)),
    }
}

fn bad_duration(text: &str) -> ExitError {
    ExitError::Usage(format!(
        "invalid --stale-after `{}`: give a positive number of seconds, minutes, hours or \
         days, e.g. 90s, 15m, 12h, 30d",
        text.escape_debug()
    ))
}

/// `42s`, `5m`, `3h`, `12d`: an age at a glance.
pub(super) fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(build: Option<u64>, result: InstallResult, secs: i64) -> Seen {
        Seen {
            build,
            mark: Mark::Ended(result),
            time: Some(jiff::Timestamp::from_second(secs).unwrap()),
        }
    }

    #[test]
    fn states_follow_the_last_report() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let day = Duration::from_secs(86_400);
        let decide = |s: Option<&Seen>| decide(Some(7), s, now, day);
        assert_eq!(decide(None), State::NoReport);
        let recent = 1_000_000 - 60;
        assert_eq!(
            decide(Some(&seen(Some(7), InstallResult::Ok, recent))),
            State::Stable
        );
        assert_eq!(
            decide(Some(&seen(Some(6), InstallResult::Ok, recent))),
            State::Drift
        );
        assert_eq!(
            decide(Some(&seen(None, InstallResult::Ok, recent))),
            State::Drift
        );
        assert_eq!(
            decide(Some(&seen(Some(7), InstallResult::Failed, recent))),
            State::Failed,
            "a failed install of the stable build left the host on another"
        );
        let old = 1_000_000 - 86_401;
        assert_eq!(
            decide(Some(&seen(Some(7), InstallResult::Ok, old))),
            State::Stale
        );
        assert_eq!(
            super::decide(None, Some(&seen(None, InstallResult::Ok, recent)), now, day),
            State::Drift,
            "no stable build: nothing is on it"
        );
        let started = |secs| Seen {
            mark: Mark::Started,
            ..seen(Some(7), InstallResult::Ok, secs)
        };
        assert_eq!(
            decide(Some(&started(recent))),
            State::Unfinished,
            "half-way onto the stable build is not on it"
        );
        assert_eq!(
            decide(Some(&started(old))),
            State::Unfinished,
            "an old interrupted install is still one: unfinished wins over stale"
        );
    }

    #[test]
    fn unfinished_rows_say_what_started_when_and_what_to_do() {
        assert_eq!(
            unfinished_hint(Some(42), Some(300)),
            "an install of 42 started 5m ago and did not report its end: still running, or \
             interrupted (run `release install 42` on it again)"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        for bad in ["", "0s", "d", "3w", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(5 * 3600), "5h");
        assert_eq!(age(3 * 86_400), "3d");
    }
}

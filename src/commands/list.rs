//! `release list`: the builds, newest first, marking which is latest and which is stable.
//!
//! One listing of the stage names every build; the newest `--limit` manifests are then read a
//! few at a time. Builds of the old jobs have no manifest beside them: they show what the
//! listing knows (number, archive, size), plus what latest.txt or latest-stable.txt says if one
//! of them names the build. A signed build's signature object is read in the same batch, for
//! the key id it names. No archive is read.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::bucket::fetch_all;
use crate::bucket::layout::Layout;
use crate::bucket::resolve::{self, Listing};
use crate::bucket::store::{Object, Store};
use crate::cli::ListArgs;
use crate::config;
use crate::manifest::{self, Manifest};
use crate::output::{Outcome, human_bytes, short_commit, table};
use crate::signing;

/// One build as listed (field names are documented in docs/output.md).
#[derive(Debug, Serialize)]
struct Row {
    version: u64,
    build: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
    timestamp: Option<String>,
    size: Option<u64>,
    archive: Option<String>,
    semver: Option<String>,
    latest: bool,
    stable: bool,
    /// Where the details come from: `manifest`, `pointer` (an old build named by latest.txt
    /// or latest-stable.txt) or `listing` (only the key and size are known).
    source: &'static str,
    /// The key id the build's signature object names (not verified here: `install` and
    /// `promote` check it against their trusted keys); `null` for an unsigned build.
    signed_by: Option<String>,
}

/// Runs `release list`.
pub(crate) async fn run(ctx: &Context, args: ListArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let limit = args.limit.unwrap_or(config::DEFAULT_LIST_LIMIT);
    let store = Arc::new(ctx.store(None).await);
    let builds = resolve::catalog(&store, &layout).await?;
    let shown: Vec<(u64, &Listing)> = builds
        .iter()
        .rev()
        .take(limit)
        .map(|(n, l)| (*n, l))
        .collect();
    let (keys, signed) = keys_to_read(&layout, &shown);
    let mut objects = fetch_all::get_all(&store, keys).await?.into_iter();
    let warn = |message: String| ctx.printer.warn(&message);
    let latest = pointer(
        &store,
        &layout,
        &layout.latest(),
        objects.next().flatten(),
        warn,
    );
    let stable = pointer(
        &store,
        &layout,
        &layout.latest_stable(),
        objects.next().flatten(),
        warn,
    );
    let manifests = checked_manifests(&store, &layout, &shown, objects.by_ref(), warn);
    let signers: BTreeMap<u64, String> = signed
        .into_iter()
        .zip(objects)
        .filter_map(|(n, object)| Some((n, signing::named_signer(&object?.body)?)))
        .collect();
    let marks = (version_of(&latest), version_of(&stable));
    let rows: Vec<Row> = shown
        .iter()
        .map(|(number, listing)| {
            let known = manifests.get(number).map(|m| (m, "manifest")).or_else(|| {
                [&latest, &stable]
                    .into_iter()
                    .flatten()
                    .find(|m| m.version() == Some(*number))
                    .map(|m| (m, "pointer"))
            });
            let mut row = row(&layout, *number, listing, known, marks);
            row.signed_by = signers.get(number).cloned();
            row
        })
        .collect();
    let mut outcome = outcome(&layout, rows, marks);
    if builds.is_empty() {
        outcome
            .text
            .push_str(&resolve::other_artifacts(&store, &layout).await);
    }
    Ok(outcome)
}

/// What to read in one batch, in this order: latest.txt, latest-stable.txt, the manifests of
/// the shown builds that have one, then the signatures of those that have one (their numbers
/// returned beside).
fn keys_to_read(layout: &Layout, shown: &[(u64, &Listing)]) -> (Vec<String>, Vec<u64>) {
    let mut keys = vec![layout.latest(), layout.latest_stable()];
    keys.extend(
        shown
            .iter()
            .filter(|(_, listing)| listing.manifest.is_some())
            .map(|(n, _)| layout.manifest(*n)),
    );
    let signed: Vec<u64> = shown
        .iter()
        .filter(|(_, listing)| listing.signature.is_some())
        .map(|(n, _)| *n)
        .collect();
    keys.extend(signed.iter().map(|n| layout.signature(*n)));
    (keys, signed)
}

/// The manifests of the shown builds that have one, in `objects` (the same order), each
/// checked to be its build's; a bad one is a warning and left out.
fn checked_manifests(
    store: &Store,
    layout: &Layout,
    shown: &[(u64, &Listing)],
    mut objects: impl Iterator<Item = Option<Object>>,
    warn: impl Fn(String),
) -> BTreeMap<u64, Manifest> {
    let mut manifests: BTreeMap<u64, Manifest> = BTreeMap::new();
    for (number, _) in shown.iter().filter(|(_, l)| l.manifest.is_some()) {
        let url = store.url(&layout.manifest(*number));
        let checked = objects.next().flatten().map(|o| {
            let manifest = Manifest::parse(&o.body).map_err(|e| e.to_string())?;
            manifest
                .check_is(layout.artifact(), *number)
                .map_err(|mismatch| format!("it is not build {number}'s: {mismatch}"))?;
            Ok::<_, String>(manifest)
        });
        match checked {
            Some(Ok(manifest)) => {
                manifests.insert(*number, manifest);
            }
            // One bad manifest must not hide the other builds, nor be shown as if it were true.
            Some(Err(why)) => warn(format!(
                "`{url}` is not a valid manifest ({why}); showing what the listing knows"
            )),
            None => {}
        }
    }
    manifests
}

/// A pointer's manifest if it exists and proves to be the build it names. A garbled or lying
/// one is not shown as "none" silently: it is named in a warning.
fn pointer(
    store: &Store,
    layout: &Layout,
    key: &str,
    object: Option<Object>,
    warn: impl Fn(String),
) -> Option<Manifest> {
    let checked = Manifest::parse_build(&object?.body)
        .map_err(|e| e.to_string())
        .and_then(|manifest| {
            let number = manifest.version().unwrap_or(0);
            match manifest.check_is(layout.artifact(), number) {
                Ok(_) => Ok(manifest),
                Err(mismatch) => Err(format!("it is not build {number}'s: {mismatch}")),
            }
        });
    checked
        .map_err(|why| {
            warn(format!(
                "`{}` is not a valid pointer ({why}); the build it names is not marked",
                store.url(key)
            ));
        })
        .ok()
}

fn version_of(manifest: &Option<Manifest>) -> Option<u64> {
    manifest.as_ref().and_then(Manifest::version)
}

fn row(
    layout: &Layout,
    number: u64,
    listing: &Listing,
    known: Option<(&Manifest, &'static str)>,
    (latest, stable): (Option<u64>, Option<u64>),
) -> Row {
    let get = |key: &str| {
        known
            .and_then(|(m, _)| m.get(key))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let listed = listing.archives.first();
    let listed_name = listed.map(|o| o.key.trim_start_matches(&layout.prefix()).to_owned());
    Row {
        version: number,
        build: get(manifest::BUILD),
        branch: get(manifest::GIT_BRANCH),
        commit: get(manifest::GIT_COMMIT),
        timestamp: get(manifest::TIMESTAMP),
        size: known.and_then(|(m, _)| m.size()).or(listed.map(|o| o.size)),
        archive: get(manifest::ARCHIVE).or(listed_name),
        semver: get(manifest::SEMVER),
        latest: latest == Some(number),
        stable: stable == Some(number),
        source: known.map_or("listing", |(_, source)| source),
        signed_by: None,
    }
}

fn outcome(
    layout: &Layout,
    rows: Vec<Row>,
    (latest, stable): (Option<u64>, Option<u64>),
) -> Outcome {
    let text = if rows.is_empty() {
        format!(
            "no builds of {} in stage {}",
            layout.artifact(),
            layout.stage()
        )
    } else {
        let mut lines = vec![
            [
                "VERSION",
                "BUILD",
                "BRANCH",
                "COMMIT",
                "TIMESTAMP",
                "SIZE",
                "SIGNED BY",
                "",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for r in &rows {
            let marks: Vec<&str> = [(r.latest, "latest"), (r.stable, "stable")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
            lines.push(vec![
                r.version.to_string(),
                dash(r.build.as_deref()),
                dash(r.branch.as_deref()),
                dash(r.commit.as_deref().map(short_commit)),
                dash(r.timestamp.as_deref()),
                r.size.map_or_else(|| "-".to_owned(), human_bytes),
                dash(r.signed_by.as_deref().map(short_key_id)),
                marks.join(" "),
            ]);
        }
        table(&lines)
    };
    Outcome::new(
        text,
        &List {
            latest,
            stable,
            builds: rows,
        },
    )
}

/// `list`'s document (docs/output.md).
#[derive(Serialize)]
struct List {
    /// The build latest.txt names, `null` if none.
    latest: Option<u64>,
    /// The build latest-stable.txt names, `null` if none.
    stable: Option<u64>,
    /// Newest first.
    builds: Vec<Row>,
}

/// A key id short enough for a table: a minisign id as it is, a KMS key ARN as its last part.
fn short_key_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

//! Build references (`latest`, `latest-stable`, `42`, `2.3.1`, `^2.3`) and what the bucket
//! holds for each build.
//!
//! A build is read from the least data that answers: a pointer, its `.release` manifest, or for
//! builds of the old jobs the tail of the archive (see `legacy`). Nothing here downloads an
//! archive.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context as _, Result};

use crate::bucket::layout::Layout;
use crate::bucket::pointers;
use crate::bucket::store::{ByteRange, Listed, Store};
use crate::error::ExitError;
use crate::legacy;
use crate::manifest::{self, Manifest, Shape};

/// What a command was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BuildRef {
    /// `latest`: latest.txt.
    Latest,
    /// `latest-stable`: latest-stable.txt.
    LatestStable,
    /// A build number.
    Number(u64),
    /// Exactly this SEMVER.
    Version(semver::Version),
    /// The highest build whose SEMVER matches.
    Requirement(semver::VersionReq),
}

impl FromStr for BuildRef {
    type Err = ExitError;

    fn from_str(text: &str) -> Result<Self, ExitError> {
        let text = text.trim();
        match text {
            "latest" => return Ok(Self::Latest),
            "latest-stable" | "stable" => return Ok(Self::LatestStable),
            _ => {}
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(Self::Number).map_err(|_| bad_ref(text));
        }
        if let Ok(version) = semver::Version::parse(text) {
            return Ok(Self::Version(version));
        }
        let has_operator = text.starts_with(['^', '~', '=', '>', '<', '*']);
        match semver::VersionReq::parse(text) {
            Ok(requirement) if has_operator => Ok(Self::Requirement(requirement)),
            _ => Err(bad_ref(text)),
        }
    }
}

fn bad_ref(text: &str) -> ExitError {
    ExitError::Usage(format!(
        "`{text}` is not a build: use `latest`, `latest-stable`, a build number (42), a \
         semantic version (2.3.1) or a requirement (^2.3)"
    ))
}

impl std::fmt::Display for BuildRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::LatestStable => f.write_str("latest-stable"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Version(v) => write!(f, "{v}"),
            Self::Requirement(r) => write!(f, "{r}"),
        }
    }
}

/// Where a build's manifest was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Origin {
    /// `{artifact}-{N}.release`.
    Manifest,
    /// latest.txt or latest-stable.txt.
    Pointer,
    /// RELEASE inside an old job's `.tar`.
    LegacyArchive,
}

/// A resolved build, whose manifest was checked to describe exactly this build (see
/// `Manifest::check_is`): only `Build::checked` makes one.
#[derive(Debug, Clone)]
pub(crate) struct Build {
    pub(crate) number: u64,
    pub(crate) manifest: Manifest,
    /// Where the manifest came from.
    pub(crate) origin: Origin,
    shape: Shape,
}

impl Build {
    /// Build `number` of the layout's artifact, if `manifest`, read from `object` (a URL),
    /// proves to be it; otherwise an input error (exit 2) naming the object and the offending
    /// key.
    pub(crate) fn checked(
        layout: &Layout,
        number: u64,
        manifest: Manifest,
        origin: Origin,
        object: &str,
    ) -> Result<Self, ExitError> {
        let mismatch = match manifest.check_is(layout.artifact(), number) {
            Ok(shape) => {
                return Ok(Self {
                    number,
                    manifest,
                    origin,
                    shape,
                });
            }
            Err(mismatch) => mismatch,
        };
        let (what, fix) = match origin {
            Origin::Manifest => (
                format!("`{object}`"),
                "delete or replace the object, or use another build",
            ),
            Origin::Pointer => (
                format!("`{object}`"),
                "promote (or build) again to rewrite the pointer, or delete it",
            ),
            Origin::LegacyArchive => (
                format!("the RELEASE inside `{object}`"),
                "delete or replace the archive, or use another build",
            ),
        };
        Err(ExitError::Usage(format!(
            "{what} is not a manifest of build {number} of {}: {mismatch}; it is not trusted and \
             nothing was changed: {fix}",
            layout.artifact()
        )))
    }

    /// The archive's object name: `ARCHIVE` (checked to be this build's), or the old jobs'
    /// `{artifact}-{N}.tar`.
    pub(crate) fn archive_name(&self, layout: &Layout) -> String {
        match (self.shape, self.manifest.get(manifest::ARCHIVE)) {
            (Shape::Verified, Some(name)) => name.trim().to_owned(),
            _ => format!("{}-{}.tar", layout.artifact(), self.number),
        }
    }

    /// The archive's key.
    pub(crate) fn archive_key(&self, layout: &Layout) -> String {
        format!("{}{}", layout.prefix(), self.archive_name(layout))
    }
}

/// What the stage's listing says about one build number.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    /// `{artifact}-{N}.release`, if present.
    pub(crate) manifest: Option<Listed>,
    /// The archive object(s) named `{artifact}-{N}.tar*`.
    pub(crate) archives: Vec<Listed>,
    /// `{artifact}-{N}.release.sig`, if the build was signed.
    pub(crate) signature: Option<Listed>,
}

/// Every build the stage names, by number (claims are not builds).
pub(crate) async fn catalog(store: &Store, layout: &Layout) -> Result<BTreeMap<u64, Listing>> {
    let mut builds: BTreeMap<u64, Listing> = BTreeMap::new();
    for object in store.list(&layout.prefix()).await? {
        if object.key.starts_with(&layout.claims_prefix()) {
            continue;
        }
        if let Some(manifest_key) = object.key.strip_suffix(".sig")
            && let Some(number) = layout.build_number_of(manifest_key)
            && manifest_key == layout.manifest(number)
        {
            builds.entry(number).or_default().signature = Some(object);
            continue;
        }
        let Some(number) = layout.build_number_of(&object.key) else {
            continue;
        };
        let entry = builds.entry(number).or_default();
        if object.key.ends_with(".release") {
            entry.manifest = Some(object);
        } else {
            entry.archives.push(object);
        }
    }
    Ok(builds)
}

/// Resolves a reference to a build, or says (exit 2) that there is none.
pub(crate) async fn resolve(store: &Store, layout: &Layout, reference: &BuildRef) -> Result<Build> {
    match reference {
        BuildRef::Latest => {
            from_pointer(
                store,
                layout,
                &layout.latest(),
                "no build has been made yet",
            )
            .await
        }
        BuildRef::LatestStable => from_pointer(
            store,
            layout,
            &layout.latest_stable(),
            "nothing has been promoted yet: run `release promote latest` or `release promote N`",
        )
        .await,
        BuildRef::Number(number) => match read_build(store, layout, *number).await? {
            Some(build) => Ok(build),
            None => Err(not_found(store, layout, *number).await),
        },
        BuildRef::Version(_) | BuildRef::Requirement(_) => {
            by_semver(store, layout, reference).await
        }
    }
}

/// Build `number` from its `.release`, or from the tail of an old job's `.tar`.
pub(crate) async fn read_build(
    store: &Store,
    layout: &Layout,
    number: u64,
) -> Result<Option<Build>> {
    let key = layout.manifest(number);
    if let Some(object) = store.get(&key).await? {
        let url = store.url(&key);
        let manifest = Manifest::parse_build(&object.body)
            .with_context(|| format!("`{url}` is not a valid manifest"))?;
        return Ok(Some(Build::checked(
            layout,
            number,
            manifest,
            Origin::Manifest,
            &url,
        )?));
    }
    let archive = format!("{}{}-{number}.tar", layout.prefix(), layout.artifact());
    let url = store.url(&archive);
    for tail in legacy::TAIL_READS {
        let Some(bytes) = store.get_range(&archive, ByteRange::Tail(tail)).await? else {
            return Ok(None);
        };
        if let Some(release) = legacy::find_release(&bytes) {
            let manifest = Manifest::parse_build(&release)
                .with_context(|| format!("the RELEASE inside `{url}` is not a valid manifest"))?;
            return Ok(Some(Build::checked(
                layout,
                number,
                manifest,
                Origin::LegacyArchive,
                &url,
            )?));
        }
        if (bytes.len() as u64) < tail {
            break; // The whole archive was read.
        }
    }
    Err(ExitError::Usage(format!(
        "`{url}` has no manifest beside it and no RELEASE as its last member"
    ))
    .into())
}

async fn from_pointer(store: &Store, layout: &Layout, key: &str, none_yet: &str) -> Result<Build> {
    match pointer_build(store, layout, key).await? {
        Some(build) => Ok(build),
        None => Err(ExitError::Usage(format!(
            "`{}` does not exist: {none_yet}{}",
            store.url(key),
            other_artifacts(store, layout).await
        ))
        .into()),
    }
}

/// When the bucket holds nothing of this artifact but holds others, the artifact is likely
/// misspelled: name the ones it holds. Empty when that is not the case (or unknown).
pub(crate) async fn other_artifacts(store: &Store, layout: &Layout) -> String {
    let Ok(names) = store.top_level().await else {
        return String::new();
    };
    if names.is_empty() || names.iter().any(|name| name == layout.artifact()) {
        return String::new();
    }
    const SHOWN: usize = 20;
    let mut shown = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        shown.push_str(", ...");
    }
    format!(
        "; the bucket holds no artifact `{}` at all, but it holds: {shown} (check --artifact, \
         ARTIFACT or release.toml)",
        layout.artifact()
    )
}

/// The build a pointer (latest.txt, latest-stable.txt) names, checked like any manifest, or
/// `None` only if the pointer does not exist: any other failure to read it is an error, never
/// "no build".
pub(crate) async fn pointer_build(
    store: &Store,
    layout: &Layout,
    key: &str,
) -> Result<Option<Build>> {
    // Both kinds of failure already name the object: the store's errors and a garbled pointer.
    let Some(pointer) = pointers::read(store, key).await? else {
        return Ok(None);
    };
    let number = pointer.manifest.version().unwrap_or(0);
    let build = Build::checked(
        layout,
        number,
        pointer.manifest,
        Origin::Pointer,
        &store.url(key),
    )?;
    Ok(Some(build))
}

/// The highest-numbered build whose SEMVER matches; only builds with a `.release` have one.
async fn by_semver(store: &Store, layout: &Layout, reference: &BuildRef) -> Result<Build> {
    let builds = catalog(store, layout).await?;
    for (&number, listing) in builds.iter().rev() {
        if listing.manifest.is_none() {
            continue;
        }
        let Some(build) = read_build(store, layout, number).await? else {
            continue;
        };
        let Some(version) = build
            .manifest
            .get(manifest::SEMVER)
            .and_then(|v| semver::Version::parse(v.trim()).ok())
        else {
            continue;
        };
        let matches = match reference {
            BuildRef::Version(wanted) => &version == wanted,
            BuildRef::Requirement(requirement) => requirement.matches(&version),
            _ => false,
        };
        if matches {
            return Ok(build);
        }
    }
    Err(ExitError::Usage(format!(
        "no build of {} in {} has a SEMVER matching `{reference}`",
        layout.artifact(),
        store.url(&layout.prefix())
    ))
    .into())
}

/// "Build N does not exist", naming the key looked for and the nearest builds that do.
async fn not_found(store: &Store, layout: &Layout, number: u64) -> anyhow::Error {
    let nearest = match catalog(store, layout).await {
        Ok(builds) => {
            let below = builds.range(..number).next_back().map(|(n, _)| *n);
            let above = builds.range(number..).next().map(|(n, _)| *n);
            match (below, above) {
                (None, None) => "there are no builds".to_owned(),
                (b, a) => {
                    let list: Vec<String> = [b, a]
                        .into_iter()
                        .flatten()
                        .map(|n| n.to_string())
                        .collect();
                    format!("nearest builds: {}", list.join(", "))
                }
            }
        }
        // Said, not hidden: the build is reported missing, and why its neighbours are unknown.
        Err(err) => format!("the nearest builds are unknown (listing failed: {err:#})"),
    };
    ExitError::Usage(format!(
        "build {number} of {} does not exist (no `{}`); {nearest}{}",
        layout.artifact(),
        store.url(&layout.manifest(number)),
        other_artifacts(store, layout).await
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!("latest".parse::<BuildRef>().unwrap(), BuildRef::Latest);
        assert_eq!(
            "latest-stable".parse::<BuildRef>().unwrap(),
            BuildRef::LatestStable
        );
        assert_eq!("42".parse::<BuildRef>().unwrap(), BuildRef::Number(42));
        assert_eq!(
            "2.3.1".parse::<BuildRef>().unwrap(),
            BuildRef::Version(semver::Version::new(2, 3, 1))
        );
        assert!(matches!(
            "^2.3".parse::<BuildRef>().unwrap(),
            BuildRef::Requirement(_)
        ));
        assert!(matches!(
            ">=2".parse::<BuildRef>().unwrap(),
            BuildRef::Requirement(_)
        ));
        for bad in ["abc", "", "-1", "2.x.y", "latest stable", "1.2"] {
            assert!(bad.parse::<BuildRef>().is_err(), "{bad}");
        }
    }
}

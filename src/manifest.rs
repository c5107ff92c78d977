//! The RELEASE manifest: the protocol between the build, promote and deploy jobs.
//!
//! Format (kept compatible with the old shell jobs and the boot scripts that grep it):
//! `KEY=VALUE` lines, LF, UTF-8, split at the first `=`, one line per value. The old keys come
//! first in the old order; the tool's keys follow; unknown keys are kept in the order read.
//! Boot scripts run `grep VERSION … | cut -d= -f2` and `grep GIT_COMMIT …`, so no other line may
//! contain those words: `set` lower-cases them and reports a warning.

use thiserror::Error;

/// Keys in the order they are written. The first five are the old jobs'.
pub(crate) const KEY_ORDER: &[&str] = &[
    MODULE, VERSION, BUILD, GIT_COMMIT, TIMESTAMP, GIT_BRANCH, ARCHIVE, SHA256, SIZE, SEMVER,
];

/// The artifact name.
pub(crate) const MODULE: &str = "MODULE";
/// The build number.
pub(crate) const VERSION: &str = "VERSION";
/// The CI build number (`BUILD_NUMBER`) or `manual`.
pub(crate) const BUILD: &str = "BUILD";
/// The commit the build was made from.
pub(crate) const GIT_COMMIT: &str = "GIT_COMMIT";
/// When the build ran (free text from Jenkins, or RFC 3339).
pub(crate) const TIMESTAMP: &str = "TIMESTAMP";
/// The branch built.
pub(crate) const GIT_BRANCH: &str = "GIT_BRANCH";
/// Object name of the archive, without the stage prefix.
pub(crate) const ARCHIVE: &str = "ARCHIVE";
/// Hex SHA-256 of the archive bytes.
pub(crate) const SHA256: &str = "SHA256";
/// Size of the archive in bytes.
pub(crate) const SIZE: &str = "SIZE";
/// Optional semantic version given to `build --semver`.
pub(crate) const SEMVER: &str = "SEMVER";

/// Keys describing the archive object; the copy inside the archive leaves them out.
const ARCHIVE_KEYS: &[&str] = &[ARCHIVE, SHA256, SIZE];

/// A manifest that could not be read.
#[derive(Debug, Error)]
pub(crate) enum ParseError {
    /// The bytes are not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotText,
    /// A line has no `=`.
    #[error("line {line} is not KEY=VALUE: `{text}`")]
    NotKeyValue {
        /// 1-based line number.
        line: usize,
        /// The line, shortened.
        text: String,
    },
    /// A key appears twice.
    #[error("key `{0}` appears twice")]
    Duplicate(String),
    /// No usable VERSION.
    #[error("it has no VERSION line with a whole number")]
    NoVersion,
}

/// Archive names a build may carry, after `{artifact}-{N}`: one per compression.
const ARCHIVE_SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tar.zst"];

/// What a manifest proves about its build's archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Made by the old jobs: no ARCHIVE, SHA256 or SIZE key at all; the archive is
    /// `{artifact}-{N}.tar` and cannot be verified.
    Legacy,
    /// Made by this tool: ARCHIVE names this build's archive, SHA256 and SIZE verify it.
    Verified,
}

/// A manifest that does not describe the build it is read as: one key lies or is missing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("its {key} {problem}")]
pub(crate) struct Mismatch {
    /// The offending key.
    pub(crate) key: &'static str,
    /// What is wrong with it, in words.
    pub(crate) problem: String,
}

/// An ordered set of `KEY=VALUE` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    entries: Vec<(String, String)>,
}

impl Manifest {
    /// An empty manifest.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Reads manifest text. Blank lines are skipped and a trailing CR is dropped (files edited
    /// on Windows); anything else that is not `KEY=VALUE` is an error, so a garbage pointer is
    /// never mistaken for an empty one.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotText)?;
        let mut manifest = Self::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=').filter(|(k, _)| is_key(k)) else {
                return Err(ParseError::NotKeyValue {
                    line: index + 1,
                    text: line.chars().take(60).collect(),
                });
            };
            if manifest.get(key).is_some() {
                return Err(ParseError::Duplicate(key.to_owned()));
            }
            manifest.entries.push((key.to_owned(), value.to_owned()));
        }
        Ok(manifest)
    }

    /// Reads a manifest that must name a build number (pointers and `.release` files).
    pub(crate) fn parse_build(bytes: &[u8]) -> Result<Self, ParseError> {
        let manifest = Self::parse(bytes)?;
        manifest.version().ok_or(ParseError::NoVersion)?;
        Ok(manifest)
    }

    /// Checks that this manifest describes build `number` of `artifact`, and nothing else:
    /// VERSION is `number`, MODULE is `artifact`, and either it has the old jobs' shape (none of
    /// ARCHIVE, SHA256, SIZE) or all three, with ARCHIVE exactly `{artifact}-{number}.tar`,
    /// `.tar.gz` or `.tar.zst`, SHA256 a hex digest and SIZE a byte count.
    ///
    /// Nothing read from the bucket is trusted beyond what it proves: a manifest copied under
    /// another build's name, or naming an object outside its build, is refused here, once, for
    /// every reader.
    pub(crate) fn check_is(&self, artifact: &str, number: u64) -> Result<Shape, Mismatch> {
        let value = |key: &'static str| self.get(key).map(str::trim);
        let wrong = |key: &'static str, problem: String| Err(Mismatch { key, problem });
        match value(VERSION) {
            Some(v) if v.parse::<u64>().ok() == Some(number) => {}
            Some(v) => return wrong(VERSION, format!("is `{v}`, not {number}")),
            None => return wrong(VERSION, format!("is missing (expected {number})")),
        }
        match value(MODULE) {
            Some(m) if m == artifact => {}
            Some(m) => return wrong(MODULE, format!("is `{m}`, not `{artifact}`")),
            None => return wrong(MODULE, format!("is missing (expected `{artifact}`)")),
        }
        let present: Vec<&str> = ARCHIVE_KEYS
            .iter()
            .copied()
            .filter(|k| self.get(k).is_some())
            .collect();
        if present.is_empty() {
            return Ok(Shape::Legacy);
        }
        if let Some(missing) = ARCHIVE_KEYS.iter().find(|k| !present.contains(k)) {
            return wrong(
                missing,
                format!(
                    "is missing although {} is there: a build with any of ARCHIVE, SHA256, SIZE \
                     must have all three (only the old jobs' builds have none)",
                    present.join(" and ")
                ),
            );
        }
        let archive = value(ARCHIVE).unwrap_or_default();
        let allowed: Vec<String> = ARCHIVE_SUFFIXES
            .iter()
            .map(|suffix| format!("{artifact}-{number}{suffix}"))
            .collect();
        if !allowed.iter().any(|name| name == archive) {
            return wrong(
                ARCHIVE,
                format!("is `{archive}`, not one of {}", allowed.join(", ")),
            );
        }
        let sha = value(SHA256).unwrap_or_default();
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return wrong(SHA256, format!("`{sha}` is not 64 lower-case hex digits"));
        }
        if self.size().is_none() {
            let size = value(SIZE).unwrap_or_default();
            return wrong(SIZE, format!("`{size}` is not a number of bytes"));
        }
        Ok(Shape::Verified)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The build number (`VERSION`), if it is a whole number.
    pub(crate) fn version(&self) -> Option<u64> {
        self.get(VERSION)?.trim().parse().ok()
    }

    /// The archive size (`SIZE`), if recorded.
    pub(crate) fn size(&self) -> Option<u64> {
        self.get(SIZE)?.trim().parse().ok()
    }

    /// Sets `key` to `value`, keeping the position of an existing key.
    ///
    /// Returns a warning when the value had to change to stay one grep-safe line: newlines
    /// become spaces, and `VERSION`/`GIT_COMMIT` inside another key's line are lower-cased.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Option<String> {
        let (key, key_changed) = grep_safe(key, key);
        let one_line = value.replace(['\r', '\n'], " ");
        let (clean, value_changed) = grep_safe(&key, &one_line);
        let warning = (key_changed || value_changed || one_line != value).then(|| {
            format!(
                "manifest key `{key}`: value `{}` written as `{clean}` so the boot scripts' \
                 `grep VERSION` and `grep GIT_COMMIT` still find one line each",
                value.escape_debug()
            )
        });
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = clean,
            None => self.entries.push((key, clean)),
        }
        warning
    }

    #[cfg(test)]
    fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// The text: known keys in `KEY_ORDER`, then the others in the order they came.
    pub(crate) fn to_text(&self) -> String {
        let known = KEY_ORDER.iter().filter_map(|k| self.entry(k));
        let unknown = self
            .entries
            .iter()
            .filter(|(k, _)| !KEY_ORDER.contains(&k.as_str()));
        known
            .chain(unknown)
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// All pairs in written order, for JSON output.
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        let text = self.to_text();
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn entry(&self, key: &str) -> Option<&(String, String)> {
        self.entries.iter().find(|(k, _)| k == key)
    }
}

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Lower-cases `VERSION` and `GIT_COMMIT` in `text` unless `key` is the line that owns it.
fn grep_safe(key: &str, text: &str) -> (String, bool) {
    let mut out = text.to_owned();
    for word in [VERSION, GIT_COMMIT] {
        if key != word && out.contains(word) {
            out = out.replace(word, &word.to_lowercase());
        }
    }
    let changed = out != text;
    (out, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old scripts' own sample RELEASE (no GIT_COMMIT).
    const SEED_SAMPLE: &str = "MODULE=obelix-appengine\nVERSION=23\nBUILD=33\n\
                               TIMESTAMP=Mon Jan 23 11:20:02 IST 2016\n";

    #[test]
    fn reads_the_scripts_sample() {
        let m = Manifest::parse_build(SEED_SAMPLE.as_bytes()).unwrap();
        assert_eq!(m.get(MODULE), Some("obelix-appengine"));
        assert_eq!(m.version(), Some(23));
        assert_eq!(m.get(BUILD), Some("33"));
        assert_eq!(m.get(GIT_COMMIT), None);
        assert_eq!(m.get(TIMESTAMP), Some("Mon Jan 23 11:20:02 IST 2016"));
        assert_eq!(m.to_text(), SEED_SAMPLE);
    }

    #[test]
    fn writes_old_keys_first_and_keeps_unknown_keys() {
        let text = "SHA256=ab\nOWNER=team-x\nVERSION=4\nMODULE=web\nZONE=a=b\n";
        let mut m = Manifest::parse(text.as_bytes()).unwrap();
        m.set(GIT_COMMIT, "abc123");
        assert_eq!(
            m.to_text(),
            "MODULE=web\nVERSION=4\nGIT_COMMIT=abc123\nSHA256=ab\nOWNER=team-x\nZONE=a=b\n"
        );
    }

    #[test]
    fn splits_at_the_first_equals_sign() {
        let m = Manifest::parse(b"TIMESTAMP=a=b=c\nVERSION=1\n").unwrap();
        assert_eq!(m.get(TIMESTAMP), Some("a=b=c"));
    }

    #[test]
    fn keeps_version_and_git_commit_greppable() {
        let mut m = Manifest::new();
        assert!(m.set(VERSION, "7").is_none());
        assert!(m.set(GIT_COMMIT, "abc").is_none());
        let warning = m.set(GIT_BRANCH, "fix-VERSION-bump-GIT_COMMIT").unwrap();
        assert!(warning.contains("GIT_BRANCH"), "{warning}");
        m.set("APP_VERSION", "x");
        let text = m.to_text();
        assert_eq!(text.lines().filter(|l| l.contains("VERSION")).count(), 1);
        assert_eq!(text.lines().filter(|l| l.contains("GIT_COMMIT")).count(), 1);
        assert!(text.contains("GIT_BRANCH=fix-version-bump-git_commit\n"));
        assert!(text.contains("APP_version=x\n"));
    }

    #[test]
    fn values_stay_on_one_line() {
        let mut m = Manifest::new();
        assert!(m.set(TIMESTAMP, "a\nb\r\nc").is_some());
        assert_eq!(m.to_text(), "TIMESTAMP=a b  c\n");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            Manifest::parse(b"<html>oops</html>"),
            Err(ParseError::NotKeyValue { line: 1, .. })
        ));
        assert!(matches!(
            Manifest::parse(&[0xff, 0xfe]),
            Err(ParseError::NotText)
        ));
        assert!(matches!(
            Manifest::parse_build(b"MODULE=x\nVERSION=abc\n"),
            Err(ParseError::NoVersion)
        ));
        assert!(matches!(
            Manifest::parse(b"VERSION=1\nVERSION=2\n"),
            Err(ParseError::Duplicate(_))
        ));
    }

    #[test]
    fn tolerates_crlf_and_blank_lines() {
        let m = Manifest::parse_build(b"MODULE=x\r\n\r\nVERSION=5\r\n").unwrap();
        assert_eq!(m.version(), Some(5));
        assert_eq!(m.get(MODULE), Some("x"));
    }

    fn verified(n: u64) -> Manifest {
        Manifest::parse(
            format!(
                "MODULE=web\nVERSION={n}\nARCHIVE=web-{n}.tar.gz\nSHA256={}\nSIZE=10\n",
                "0a".repeat(32)
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn key_refused(m: &Manifest, n: u64) -> &'static str {
        m.check_is("web", n).unwrap_err().key
    }

    #[test]
    fn a_manifest_must_be_the_build_it_is_read_as() {
        assert_eq!(verified(5).check_is("web", 5), Ok(Shape::Verified));
        for suffix in [".tar", ".tar.zst"] {
            let mut m = verified(5);
            m.set(ARCHIVE, &format!("web-5{suffix}"));
            assert_eq!(m.check_is("web", 5), Ok(Shape::Verified), "{suffix}");
        }
        // Build 6's manifest stored as build 5's.
        assert_eq!(key_refused(&verified(6), 5), VERSION);
        assert_eq!(key_refused(&verified(5), 6), VERSION);
        assert_eq!(verified(5).check_is("api", 5).unwrap_err().key, MODULE);
        for archive in [
            "../../outside.tar.gz",
            "web-6.tar.gz",
            "web-5.tar.bz2",
            "other/web-5.tar.gz",
            "web-05.tar.gz",
            "",
        ] {
            let mut m = verified(5);
            m.set(ARCHIVE, archive);
            assert_eq!(key_refused(&m, 5), ARCHIVE, "{archive}");
        }
    }

    #[test]
    fn only_the_old_shape_is_legacy() {
        let old = Manifest::parse(SEED_SAMPLE.as_bytes()).unwrap();
        assert_eq!(old.check_is("obelix-appengine", 23), Ok(Shape::Legacy));
        for key in [SHA256, SIZE, ARCHIVE] {
            let mut m = verified(5);
            m.remove(key);
            assert_eq!(key_refused(&m, 5), key, "without {key}");
        }
        let mut m = verified(5);
        m.set(SHA256, "not-hex");
        assert_eq!(key_refused(&m, 5), SHA256);
        let mut m = verified(5);
        m.set(SIZE, "ten");
        assert_eq!(key_refused(&m, 5), SIZE);
        let mut m = verified(5);
        m.remove(MODULE);
        assert_eq!(key_refused(&m, 5), MODULE);
    }
}

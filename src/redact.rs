//! Credentials inside URLs never reach a message, a JSON document, a history record or a log.
//!
//! Jenkins hands out git credentials as `https://user:TOKEN@host/repo.git` (and GitHub tokens
//! often stand alone as the user: `https://TOKEN@github.com/...`, `x-access-token:TOKEN@`), so
//! the whole user-info part of every URL is replaced, not only a password:
//! `https://user:TOKEN@host/x.git` is shown as `https://***@host/x.git`. The host and path stay
//! so the message still says where. Text is scanned for every `scheme://` in it, so one call
//! covers a single URL, a sentence quoting one, and git's own stderr.

use std::borrow::Cow;

/// What the user-info of a URL is replaced with.
pub(crate) const MASK: &str = "***";

/// `text` with the user-info of every `scheme://user-info@host` in it replaced by [`MASK`].
pub(crate) fn urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(found) = rest.find("://") {
        let authority_start = found + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        // The authority ends where the path, query or fragment starts, or where the URL ends in
        // running text. An `@` in a password must be percent-encoded, but git accepts a raw one:
        // the LAST `@` of the authority ends the user-info.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '\'' | '"' | '`' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(at) if at > 0 && after[..at] != *MASK => {
                out.push_str(MASK);
                out.push_str(&after[at..end]);
                changed = true;
            }
            _ => out.push_str(&after[..end]),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Every string in `value` (keys stay as they are: they are field names) with [`urls`] applied.
pub(crate) fn json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Cow::Owned(clean) = urls(text) {
                *text = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(json),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(json),
        _ => {}
    }
}

/// A writer that redacts what is written through it; for logs, which `tracing` writes one
/// whole formatted event at a time.
#[derive(Debug)]
pub(crate) struct Writer<W>(pub W);

impl<W: std::io::Write> std::io::Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(urls(text).as_bytes()),
            Err(_) => self
                .0
                .write_all(urls(&String::from_utf8_lossy(buf)).as_bytes()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_the_whole_user_info() {
        for (given, shown) in [
            ("https://user:TOKEN@host/x.git", "https://***@host/x.git"),
            ("https://TOKEN@github.com/a/b", "https://***@github.com/a/b"),
            (
                "http://user:TOKEN@127.0.0.1:9/x.git",
                "http://***@127.0.0.1:9/x.git",
            ),
            ("ssh://git@host:22/x", "ssh://***@host:22/x"),
            ("https://u:p@ss@host", "https://***@host"),
            ("https://u:TOKEN@host?q=1", "https://***@host?q=1"),
        ] {
            assert_eq!(urls(given), shown, "{given}");
        }
    }

    #[test]
    fn finds_urls_in_running_text() {
        let text = "tag not pushed to https://u:T1@a/x.git: fatal: unable to access \
                    'http://u:T2@127.0.0.1:1/x.git/': Failed; see \"ftp://T3@b\"";
        let clean = urls(text);
        for token in ["T1", "T2", "T3"] {
            assert!(!clean.contains(token), "{clean}");
        }
        assert!(clean.contains("'http://***@127.0.0.1:1/x.git/'"), "{clean}");
        assert!(clean.contains("https://***@a/x.git:"), "{clean}");
    }

    #[test]
    fn leaves_the_rest_alone() {
        for text in [
            "s3://build/web/prod/latest-stable.txt",
            "file:///tmp/store/web",
            "git@github.com:org/repo.git",
            "origin",
            "mail me at a@b.c",
            "https://host/path@v1",
            "https://***@host/x.git",
            "://@",
        ] {
            assert!(matches!(urls(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn the_log_writer_redacts_whole_events() {
        use std::io::Write as _;
        let mut writer = Writer(Vec::new());
        writer
            .write_all(b"WARN fetching http://u:TOKEN@h/x.git\n")
            .unwrap();
        assert_eq!(writer.write(b"https://TOKEN@h").unwrap(), 15);
        let written = String::from_utf8(writer.0).unwrap();
        assert_eq!(written, "WARN fetching http://***@h/x.git\nhttps://***@h");
    }

    #[test]
    fn redacts_json_strings() {
        let mut doc = serde_json::json!({
            "remote": "https://u:TOKEN@h/x.git",
            "error": {"causes": ["push to http://TOKEN@h failed"]},
            "n": 4
        });
        json(&mut doc);
        assert!(!doc.to_string().contains("TOKEN"), "{doc}");
        assert_eq!(doc["remote"], "https://***@h/x.git");
        assert_eq!(doc["n"], 4);
    }
}

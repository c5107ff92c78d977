//! Names the tool accepts from users, checked before any request is made.

use thiserror::Error;

/// A name that failed validation.
#[derive(Debug, Error)]
#[error(
    "invalid {what} `{value}`: it must start with a letter or digit and contain only letters, \
     digits, `.`, `_` and `-` (at most 128 characters)"
)]
pub(crate) struct InvalidName {
    /// What kind of name it was (`artifact`, `stage`).
    pub(crate) what: &'static str,
    /// The rejected value.
    pub(crate) value: String,
}

/// Checks an artifact or stage name against `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
///
/// These names become S3 key segments, file names on hosts and words in remote commands, so
/// anything outside this set (slashes, spaces, shell metacharacters) is refused up front.
pub(crate) fn check(what: &'static str, value: &str) -> Result<(), InvalidName> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && value.len() <= 128 {
        Ok(())
    } else {
        Err(InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_service_names() {
        for ok in ["obelix-appengine", "a", "web_1.2", "A-b.c_d"] {
            assert!(check("artifact", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_paths_spaces_and_shell() {
        let long = "a".repeat(129);
        for bad in [
            "", "a/b", "a b", "-x", ".hidden", "a;rm", "$(x)", "a`b`", &long,
        ] {
            assert!(check("artifact", bad).is_err(), "{bad}");
        }
    }
}

//! `--command` templates: placeholders become single shell-quoted words, so no value (an ASG
//! name, a tag, an address) can ever be read by the remote shell as code.

use std::collections::BTreeMap;

use crate::error::ExitError;

/// The placeholders a template may use.
pub(crate) const PLACEHOLDERS: &[&str] = &[
    "artifact", "version", "bucket", "stage", "host", "address", "instance", "push_id",
];

/// Checks a template before anything connects: balanced braces, known placeholders only.
pub(crate) fn check(template: &str) -> Result<(), ExitError> {
    let values: BTreeMap<&str, String> = PLACEHOLDERS.iter().map(|p| (*p, String::new())).collect();
    render(template, &values).map(|_| ())
}

/// Substitutes `{name}` with the shell-quoted value; `{{` and `}}` are literal braces.
pub(crate) fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, ExitError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| bad(template, "a `{` is not closed"))?;
            let name = &after[..end];
            let value = values
                .get(name)
                .ok_or_else(|| bad(template, &format!("unknown placeholder `{{{name}}}`")))?;
            out.push_str(&quote(value));
            rest = &after[end + 1..];
        } else {
            return Err(bad(template, "a `}` has no `{` (write `}}` for a brace)"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One word for `sh`: left bare when it is plainly safe, else single-quoted.
pub(crate) fn quote(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if safe {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn bad(template: &str, why: &str) -> ExitError {
    ExitError::Usage(format!(
        "invalid --command template `{template}`: {why}; placeholders are {}",
        PLACEHOLDERS
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::new();
        v.insert("artifact", "web".to_owned());
        v.insert("version", "42".to_owned());
        v.insert("host", "x; rm -rf / #".to_owned());
        v.insert("instance", "it's $(id)".to_owned());
        v
    }

    #[test]
    fn values_are_single_words() {
        let out = render(
            "deploy.sh {artifact} {version} {host} {instance}",
            &values(),
        )
        .unwrap();
        assert_eq!(out, r"deploy.sh web 42 'x; rm -rf / #' 'it'\''s $(id)'");
    }

    #[test]
    fn braces_and_errors() {
        assert_eq!(
            render("awk '{{print}}' {version}", &values()).unwrap(),
            "awk '{print}' 42"
        );
        assert!(render("{nope}", &values()).is_err());
        assert!(render("{version", &values()).is_err());
        assert!(render("x}", &values()).is_err());
        assert!(
            check("sudo /opt/deploy.sh {artifact} {version} {bucket} {stage} {address}").is_ok()
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain-1.2/x"), "plain-1.2/x");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("`x`"), "'`x`'");
    }
}

//! The layout STYLE.md promises, checked on the source (issue 11): a command never imports
//! another command, so what two commands share lives below them (config/, rollout/, output.rs...).

use std::path::Path;

/// `use crate::commands::...` or `super::<other command>` inside src/commands/ is an import of
/// another command; `super::Context` (the shared context in commands/mod.rs) is not.
#[test]
fn no_command_imports_another() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    let commands: Vec<String> = fs_err::read_dir(&dir)
        .expect("read src/commands")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .filter(|stem| stem != "mod")
        .collect();
    assert!(commands.len() >= 10, "found too few commands: {commands:?}");
    let mut offences = Vec::new();
    for command in &commands {
        let source = fs_err::read_to_string(dir.join(format!("{command}.rs"))).expect("read");
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let other = commands.iter().find(|other| {
                code.contains(&format!("super::{other}"))
                    || code.contains(&format!("super::{{{other}"))
            });
            if code.contains("crate::commands::") || other.is_some() {
                offences.push(format!(
                    "src/commands/{command}.rs:{}: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "commands import other commands (move the shared piece below them):\n{}",
        offences.join("\n")
    );
}

/// Every function in src/commands/ is under 60 lines, signature and closing brace included:
/// a command reads like its steps, the steps live in functions (STYLE.md, issue 11). Counted
/// from a line starting with `fn` (after `pub`/`pub(crate)`/`async`) to the `}` at its indentation.
#[test]
fn command_functions_stay_under_sixty_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    let mut long = Vec::new();
    // A command's own submodules (src/commands/status/bucket.rs) are held to the same rule.
    for entry in walkdir::WalkDir::new(&dir) {
        let path = entry.expect("dir entry").into_path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = fs_err::read_to_string(&path).expect("read");
        let lines: Vec<&str> = source.lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let rest = ["pub(crate) ", "pub "]
                .iter()
                .find_map(|vis| trimmed.strip_prefix(vis))
                .unwrap_or(trimmed);
            let rest = rest.strip_prefix("async ").unwrap_or(rest);
            if !rest.starts_with("fn ") || line.trim_end().ends_with('}') {
                continue;
            }
            let close = format!("{indent}}}");
            let end = (start..lines.len()).find(|&i| lines[i] == close);
            let length = end.map_or(lines.len() - start, |end| end - start + 1);
            if length >= 60 {
                long.push(format!("{}:{}: {length} lines", path.display(), start + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions of 60 lines or more:\n{}",
        long.join("\n")
    );
}

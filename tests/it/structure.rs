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

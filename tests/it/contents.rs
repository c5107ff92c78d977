//! What goes into a build (issue 13 item 6): no empty builds by accident, git-ignored files stay
//! out of a whole-checkout build, `--list` shows the members, a dirty tree is named.

use std::path::Path;

use crate::common::{Release, Workspace, dir_store};

const ARTIFACT: &str = "contents";

/// The binary in `ws`, building into the directory store `store` (no network).
fn release(ws: &Workspace, store: &Path) -> Release {
    dir_store::release(ws, store, ARTIFACT)
}

/// Member names of build `n` in the directory store.
fn members(store: &Path, n: u64) -> Vec<String> {
    dir_store::members(store, ARTIFACT, n)
}

/// A service checkout with the usual untracked secrets and dependencies, ignored by git.
fn checkout_with_ignored_files(ws: &mut Workspace) {
    // `*.min.js` also matches inside a named `dist`, where it must not apply.
    ws.write(".gitignore", ".env\nnode_modules/\ndist/\n*.min.js\n");
    ws.write("src/app.js", "console.log('app')\n");
    ws.write(".config/app.json", "{}\n");
    ws.commit("sources");
    ws.write(".env", "AWS_SECRET_ACCESS_KEY=do-not-ship\n");
    ws.write("node_modules/left-pad/index.js", "module.exports = 1\n");
    ws.write("dist/app.min.js", "app\n");
}

#[test]
fn an_empty_directory_is_refused_unless_allowed() {
    let mut ws = Workspace::new();
    ws.commit("nothing yet");
    fs_err::create_dir_all(ws.path().join("empty/inner")).unwrap();
    let store = tempfile::tempdir().unwrap();
    release(&ws, store.path())
        .arg("build")
        .code(2)
        .stderr_contains("nothing to archive")
        .stderr_contains("--allow-empty");
    assert!(
        !store.path().join(ARTIFACT).join("prod/latest.txt").exists(),
        "a refused empty build must not move latest"
    );
    release(&ws, store.path())
        .args(["build", "--allow-empty"])
        .success();
    assert!(store.path().join(ARTIFACT).join("prod/latest.txt").exists());
}

#[test]
fn a_whole_checkout_build_leaves_git_ignored_files_out() {
    let mut ws = Workspace::new();
    checkout_with_ignored_files(&mut ws);
    let store = tempfile::tempdir().unwrap();
    release(&ws, store.path()).arg("build").success();
    let names = members(store.path(), 1);
    for wanted in [".gitignore", ".config/app.json", "src/app.js"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
    for unwanted in [".env", "node_modules", "dist"] {
        assert!(
            !names.iter().any(|n| n.starts_with(unwanted)),
            "{unwanted} must stay out: {names:?}"
        );
    }

    release(&ws, store.path())
        .args(["build", "--include-ignored"])
        .success();
    let names = members(store.path(), 2);
    for wanted in [".env", "node_modules/left-pad/index.js", "dist/app.min.js"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
}

#[test]
fn a_named_path_is_taken_whole_even_when_git_ignores_it() {
    let mut ws = Workspace::new();
    checkout_with_ignored_files(&mut ws);
    let store = tempfile::tempdir().unwrap();
    release(&ws, store.path()).args(["build", "dist"]).success();
    assert!(
        members(store.path(), 1).contains(&"dist/app.min.js".to_owned()),
        "{:?}",
        members(store.path(), 1)
    );
}

#[test]
fn list_prints_the_members_and_writes_nothing() {
    let mut ws = Workspace::new();
    checkout_with_ignored_files(&mut ws);
    // No bucket at all, and nothing listens at the endpoint: listing needs neither. The user's
    // global excludes file is not read (the same commit builds the same archive anywhere).
    let run = Release::new()
        .current_dir(ws.path())
        .endpoint("http://127.0.0.1:9")
        .args(["--artifact", ARTIFACT, "build", "--list"]);
    let global = run.home().join(".config/git/ignore");
    fs_err::create_dir_all(global.parent().unwrap()).unwrap();
    fs_err::write(&global, "*.json\n").unwrap();
    let out = run.success();
    assert_eq!(
        out.stdout().lines().collect::<Vec<_>>(),
        [
            ".config/",
            ".config/app.json",
            ".gitignore",
            "src/",
            "src/app.js"
        ]
    );
    let out = Release::new()
        .current_dir(ws.path())
        .endpoint("http://127.0.0.1:9")
        .args(["--artifact", ARTIFACT, "--output", "json", "build"])
        .args(["--list", "--include-ignored", "src"])
        .success();
    assert_eq!(out.stdout_json(), serde_json::json!(["src/", "src/app.js"]));
}

#[test]
fn a_dirty_tree_is_named_and_refused_with_require_clean() {
    let mut ws = Workspace::new();
    checkout_with_ignored_files(&mut ws);
    ws.write("src/app.js", "console.log('edited')\n");
    ws.write("src/new.js", "not committed\n");
    let store = tempfile::tempdir().unwrap();
    let out = release(&ws, store.path()).arg("build").success();
    let stderr = out.stderr();
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(
        stderr.contains("2 file(s)")
            && stderr.contains("src/app.js")
            && stderr.contains("src/new.js"),
        "{stderr}"
    );
    // Ignored files are not dirt: the .env is not in the archive, and named ignored output is
    // deliberate.
    assert!(!stderr.contains(".env"), "{stderr}");

    release(&ws, store.path())
        .args(["build", "--require-clean"])
        .code(2)
        .stderr_contains("src/app.js")
        .stderr_contains("--require-clean");
    assert!(
        !store
            .path()
            .join(ARTIFACT)
            .join("prod")
            .join(format!("{ARTIFACT}-2.tar.gz"))
            .exists(),
        "a refused build writes nothing"
    );

    ws.commit("the edits");
    let out = release(&ws, store.path())
        .args(["build", "--require-clean"])
        .success();
    // A commit the checkout lacks cannot be compared with: --require-clean refuses.
    release(&ws, store.path())
        .env("GIT_COMMIT", "1111111111111111111111111111111111111111")
        .args(["build", "--require-clean"])
        .code(2)
        .stderr_contains("cannot check the tree");
    assert!(
        !out.stderr().contains("differ from commit"),
        "{}",
        out.stderr()
    );
}

//! Every `release build` option that changes what is built, or whether, has its `[build]` key
//! in release.toml: set once for the repository, it acts as the flag does, and the flag (also
//! `--flag=false` for a boolean) wins over it.

use std::path::{Path, PathBuf};

use crate::common::{Release, Workspace, dir_store};

const ARTIFACT: &str = "keys";

/// The binary in `ws`, building into the directory store `store` (no network).
fn release(ws: &Workspace, store: &Path) -> Release {
    dir_store::release(ws, store, ARTIFACT)
}

/// `text` as a config file outside the checkout (so that it is neither archived nor dirt).
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("team.toml");
    fs_err::write(&path, text).unwrap();
    path
}

/// Member names of build `n` in the directory store.
fn members(store: &Path, n: u64) -> Vec<String> {
    dir_store::members(store, ARTIFACT, n)
}

/// A checkout whose `.env` git ignores.
fn checkout_with_an_ignored_file(ws: &mut Workspace) {
    ws.write(".gitignore", ".env\n");
    ws.write("src/app.js", "console.log('app')\n");
    ws.commit("sources");
    ws.write(".env", "SECRET=not-for-the-archive\n");
}

/// The SEMVER build `n`'s manifest records, if any.
fn semver_of(ws: &Workspace, store: &Path, n: u64) -> serde_json::Value {
    let out = release(ws, store)
        .args(["--output", "json", "show", &n.to_string()])
        .success();
    out.stdout_json()["manifest"]["SEMVER"].clone()
}

#[test]
fn include_ignored_in_the_repository_file_archives_ignored_files() {
    let mut ws = Workspace::new();
    checkout_with_an_ignored_file(&mut ws);
    let store = tempfile::tempdir().unwrap();
    release(&ws, store.path()).arg("build").success();
    assert!(!members(store.path(), 1).contains(&".env".to_owned()));

    // The team's ./release.toml, committed with the code.
    ws.write("release.toml", "[build]\ninclude_ignored = true\n");
    ws.commit("release settings");
    release(&ws, store.path()).arg("build").success();
    let names = members(store.path(), 2);
    assert!(names.contains(&".env".to_owned()), "{names:?}");

    release(&ws, store.path())
        .args(["build", "--include-ignored=false"])
        .success();
    let names = members(store.path(), 3);
    assert!(!names.contains(&".env".to_owned()), "{names:?}");
    assert!(names.contains(&"src/app.js".to_owned()), "{names:?}");
}

#[test]
fn allow_empty_in_the_file_builds_an_empty_tree_unless_the_flag_says_false() {
    let mut ws = Workspace::new();
    ws.commit("nothing yet");
    fs_err::create_dir_all(ws.path().join("empty/inner")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = config_file(etc.path(), "[build]\nallow_empty = true\n");
    release(&ws, store.path())
        .arg("--config")
        .arg(&config)
        .args(["build", "--allow-empty=false"])
        .code(2)
        .stderr_contains("nothing to archive");
    assert!(!store.path().join(ARTIFACT).join("prod/latest.txt").exists());
    release(&ws, store.path())
        .arg("--config")
        .arg(&config)
        .arg("build")
        .success();
    assert!(store.path().join(ARTIFACT).join("prod/latest.txt").exists());
}

#[test]
fn require_clean_in_the_file_refuses_a_dirty_tree_unless_the_flag_says_false() {
    let mut ws = Workspace::new();
    checkout_with_an_ignored_file(&mut ws);
    ws.write("src/app.js", "console.log('edited')\n");
    let store = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = config_file(etc.path(), "[build]\nrequire_clean = true\n");
    release(&ws, store.path())
        .arg("--config")
        .arg(&config)
        .arg("build")
        .code(2)
        .stderr_contains("src/app.js");
    assert!(!store.path().join(ARTIFACT).join("prod/latest.txt").exists());
    release(&ws, store.path())
        .arg("--config")
        .arg(&config)
        .args(["build", "--require-clean=false"])
        .success()
        .stderr_contains("src/app.js");
    assert!(store.path().join(ARTIFACT).join("prod/latest.txt").exists());
}

#[test]
fn semver_in_the_file_is_recorded_and_the_flag_wins() {
    let mut ws = Workspace::new();
    checkout_with_an_ignored_file(&mut ws);
    let store = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = config_file(etc.path(), "[build]\nsemver = \"2.3.1\"\n");
    let with_file = || release(&ws, store.path()).arg("--config").arg(&config);
    with_file().arg("build").success();
    assert_eq!(semver_of(&ws, store.path(), 1), "2.3.1");
    with_file().args(["build", "--semver", "2.4.0"]).success();
    assert_eq!(semver_of(&ws, store.path(), 2), "2.4.0");

    let bad = config_file(etc.path(), "[build]\nsemver = \"2.3\"\n");
    release(&ws, store.path())
        .arg("--config")
        .arg(&bad)
        .arg("build")
        .code(2)
        .stderr_contains("semver")
        .stderr_contains("2.3");
    assert!(
        !store
            .path()
            .join(ARTIFACT)
            .join("prod/keys-3.tar.gz")
            .exists()
    );
}

#[test]
fn a_wrongly_typed_key_is_a_usage_error_naming_the_file_and_the_key() {
    let mut ws = Workspace::new();
    checkout_with_an_ignored_file(&mut ws);
    let store = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[build]\ninclude_ignored = \"yes\"\n", "include_ignored"),
        ("[build]\nallow_empty = 1\n", "allow_empty"),
        ("[build]\nrequire_clean = \"true\"\n", "require_clean"),
        ("[build]\nsemver = 2\n", "semver"),
    ] {
        let config = config_file(etc.path(), text);
        release(&ws, store.path())
            .arg("--config")
            .arg(&config)
            .arg("build")
            .code(2)
            .stderr_contains(&config.display().to_string())
            .stderr_contains(key)
            .stderr_contains("invalid type");
    }
    // `--list` is a one-off mode, not a setting: `list` stays an unknown key.
    let config = config_file(etc.path(), "[build]\nlist = true\n");
    release(&ws, store.path())
        .arg("--config")
        .arg(&config)
        .arg("build")
        .code(2)
        .stderr_contains("unknown field `list`");
    assert!(!store.path().join(ARTIFACT).join("prod/latest.txt").exists());
}

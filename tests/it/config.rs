//! Settings precedence, seen through the hidden `--show-config` (given with any command, it
//! prints the settings that command would use and stops): flag > env > release.toml >
//! default.

use crate::common::{Release, Workspace};

fn show(ws: &Workspace) -> Release {
    Release::new()
        .current_dir(ws.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["--output", "json", "--show-config", "build"])
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let ws = Workspace::new();
    let doc = show(&ws).success().stdout_json();
    assert_eq!(doc["store"], "s3://build");
    assert_eq!(doc["stage"], "prod");
    assert_eq!(doc["artifact"], serde_json::Value::Null);
    assert_eq!(doc["dry_run"], false);

    ws.write(
        "release.toml",
        "artifact = \"file-art\"\nbucket = \"file-bucket\"\nstage = \"qa\"\ndry_run = true\n",
    );
    let doc = show(&ws).success().stdout_json();
    assert_eq!(
        (
            &doc["artifact"],
            &doc["store"],
            &doc["stage"],
            &doc["dry_run"]
        ),
        (
            &"file-art".into(),
            &"s3://file-bucket".into(),
            &"qa".into(),
            &true.into()
        )
    );

    let doc = show(&ws)
        .env("ARTIFACT", "env-art")
        .env("RELEASE_BUCKET", "file:///srv/builds")
        .env("RELEASE_DRY_RUN", "0")
        .success()
        .stdout_json();
    assert_eq!(doc["artifact"], "env-art");
    assert_eq!(doc["store"], "file:///srv/builds");
    assert_eq!(doc["dry_run"], false);

    let doc = show(&ws)
        .env("ARTIFACT", "env-art")
        .args(["--artifact", "flag-art", "--stage", "prod"])
        .success()
        .stdout_json();
    assert_eq!(doc["artifact"], "flag-art");
    assert_eq!(doc["stage"], "prod");
}

#[test]
fn bad_settings_are_usage_errors() {
    let ws = Workspace::new();
    show(&ws)
        .args(["--stage", "a b"])
        .code(2)
        .stderr_contains("invalid stage `a b`");
    show(&ws)
        .args(["--bucket", "Not_A_Bucket"])
        .code(2)
        .stderr_contains("is not an S3 bucket name");
    show(&ws)
        .args(["--config", "missing.toml"])
        .code(2)
        .stderr_contains("cannot read config file `missing.toml`");
    ws.write("release.toml", "artifact = 3\n");
    show(&ws)
        .code(2)
        .stderr_contains("invalid config file `release.toml`");
}

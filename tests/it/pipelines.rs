//! The Jenkins pipelines' contract: their `sh` steps, run as Jenkins would run them.
//!
//! Each Jenkinsfile in jenkins/ is read, its `sh` steps are extracted (the forms the pipelines
//! use: `sh '…'`, `sh '''…'''`, `sh(label: '…', script: '''…''')`) and run with `/bin/sh -xe -c`
//! (Jenkins' `sh` step runs `/bin/sh -xe`: dash on Debian agents) in a job workspace, with the environment Jenkins sets (WORKSPACE, BUILD_NUMBER, GIT_COMMIT,
//! GIT_BRANCH, BUILD_TIMESTAMP and the job's parameters), the binary under test first on PATH,
//! and AWS pointing at moto. Groovy steps (checkout, archiveArtifacts) are what the test does
//! around them: the service's repository is cloned into `service/` of the workspace, and the
//! archived files must exist afterwards.
//!
//! The extractor refuses what it does not understand (double-quoted, interpolated Groovy strings
//! and backslash escapes other than `\\` and `\'`), so the pipelines stay in a checkable shape.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::hosts::{release_bin_dir, sudo_calls, sudo_stand_in};
use crate::common::{BareRepo, Hosts, TestContext, Workspace};

const ARTIFACT: &str = "web";
/// Jenkins' build-timestamp plugin value, free text.
const TIMESTAMP: &str = "2026-11-23 10:15:00 UTC";
/// Longest one `sh` step may run.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// One pipeline, reduced to what the test runs and checks.
struct Jenkinsfile {
    name: &'static str,
    steps: Vec<String>,
    parameters: Vec<String>,
    archived: Vec<String>,
}

impl Jenkinsfile {
    /// Reads `jenkins/{name}.Jenkinsfile`.
    fn load(name: &'static str) -> Jenkinsfile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("jenkins")
            .join(format!("{name}.Jenkinsfile"));
        let text = fs_err::read_to_string(&path).expect("read the Jenkinsfile");
        let steps = sh_steps(&text);
        assert!(!steps.is_empty(), "{name}: no sh steps found");
        Jenkinsfile {
            name,
            steps,
            parameters: parameters(&text),
            archived: archived(&text),
        }
    }
}

/// The scripts of every `sh` step, in file order.
fn sh_steps(text: &str) -> Vec<String> {
    let mut steps = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("sh") {
        let start = at + found;
        at = start + 2;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(start + 2).copied();
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            continue;
        }
        let rest = text[at..].trim_start();
        let offset = text.len() - rest.len();
        match rest.as_bytes().first() {
            Some(b'\'') => {
                let (script, used) = literal(rest, line_of(text, offset));
                steps.push(script);
                at = offset + used;
            }
            Some(b'(') => {
                let (script, used) = named_script(&rest[1..], line_of(text, offset));
                steps.push(script);
                at = offset + 1 + used;
            }
            Some(b'"') => panic!(
                "line {}: a double-quoted sh step: Groovy would interpolate into the shell",
                line_of(text, offset)
            ),
            _ => {}
        }
    }
    steps
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// `label: '…', script: '''…''')`: returns the script and the bytes used up to `)`.
fn named_script(text: &str, line: usize) -> (String, usize) {
    let mut at = 0;
    let mut script = None;
    loop {
        let rest = text[at..].trim_start();
        if let Some(stripped) = rest.strip_prefix(')') {
            at = text.len() - stripped.len();
            break;
        }
        let (name, value) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("line {line}: expected `name: value` in sh(…)"));
        let name = name.trim();
        assert!(
            name.bytes().all(is_ident),
            "line {line}: sh(…) takes only named arguments, got `{name}`"
        );
        let value = value.trim_start();
        at = text.len() - value.len();
        match value.as_bytes().first() {
            Some(b'\'') => {
                let (parsed, used) = literal(value, line);
                if name == "script" {
                    script = Some(parsed);
                }
                at += used;
            }
            Some(b'"') => panic!("line {line}: `{name}:` is a double-quoted (interpolated) string"),
            _ => {
                let end = value.find([',', ')']).expect("end of argument");
                at += end;
            }
        }
        let rest = text[at..].trim_start();
        at = text.len() - rest.len();
        if let Some(stripped) = rest.strip_prefix(',') {
            at = text.len() - stripped.len();
        }
    }
    (
        script.unwrap_or_else(|| panic!("line {line}: sh(…) without script:")),
        at,
    )
}

/// A single- or triple-single-quoted Groovy string at the start of `text`: its value and the
/// bytes it takes.
fn literal(text: &str, line: usize) -> (String, usize) {
    let (quote, body) = match text.strip_prefix("'''") {
        Some(body) => ("'''", body),
        None => ("'", &text[1..]),
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if body[i..].starts_with(quote) {
            return (value, quote.len() + i + quote.len());
        }
        match c {
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '\'')) => value.push('\''),
                other => panic!(
                    "line {line}: the escape `\\{}` is not one the test understands: keep \
                     backslashes out of sh steps",
                    other.map_or(' ', |(_, c)| c)
                ),
            },
            '\n' if quote == "'" => panic!("line {line}: unterminated '…' string"),
            c => value.push(c),
        }
    }
    panic!("line {line}: unterminated {quote} string");
}

/// The `name:` of every parameter in `parameters { … }`.
fn parameters(text: &str) -> Vec<String> {
    let start = text.find("parameters {").expect("a parameters block");
    let end = start
        + text[start..]
            .find("stages {")
            .expect("stages after parameters");
    let block = &text[start..end];
    block
        .match_indices("name: '")
        .map(|(i, _)| literal(&block[i + "name: ".len()..], 0).0)
        .collect()
}

/// The files `archiveArtifacts(artifacts: '…')` keeps (comma-separated patterns).
fn archived(text: &str) -> Vec<String> {
    text.match_indices("archiveArtifacts(artifacts: ")
        .flat_map(|(i, m)| {
            let (list, _) = literal(&text[i + m.len()..], line_of(text, i));
            list.split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `$NAME` and `${NAME}` (upper case: the environment) used by a script.
fn variables(script: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in script.match_indices('$') {
        let rest = script[i + 1..].trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

/// What a job run did: the exit code of the step that ended it, and everything printed.
struct JobRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl JobRun {
    fn report(&self) -> String {
        format!(
            "\n--- exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "the job failed{}", self.report());
        self
    }
}

/// A Jenkins agent: the environment every job gets, pointing at this test's bucket on moto.
struct Agent {
    endpoint: String,
    bucket: String,
    home: tempfile::TempDir,
}

impl Agent {
    fn new(ctx: &TestContext) -> Agent {
        Agent {
            endpoint: ctx.moto.endpoint(),
            bucket: ctx.bucket.clone(),
            home: tempfile::Builder::new()
                .prefix("release-jenkins-")
                .tempdir()
                .expect("agent HOME"),
        }
    }

    /// Runs `job`'s steps in `workspace` until one fails, as Jenkins does.
    fn run(&self, job: &Jenkinsfile, workspace: &Path, vars: &[(&str, &str)]) -> JobRun {
        let bin = Path::new(env!("CARGO_BIN_EXE_release"))
            .parent()
            .expect("the binary's directory");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let home = self.home.path();
        let endpoint = &self.endpoint;
        crate::common::assert_loopback_url("AWS_ENDPOINT_URL", endpoint);
        let mut env: BTreeMap<String, String> = [
            ("PATH", path.as_str()),
            ("HOME", &home.display().to_string()),
            ("USER", "jenkins"),
            ("LANG", "C.UTF-8"),
            ("TZ", "UTC"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_TERMINAL_PROMPT", "0"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            (
                "AWS_CONFIG_FILE",
                &home.join(".aws/config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                &home.join(".aws/credentials").display().to_string(),
            ),
            ("AWS_ENDPOINT_URL", endpoint),
            ("RELEASE_BUCKET", &self.bucket),
            ("WORKSPACE", &workspace.display().to_string()),
            ("JOB_NAME", job.name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (key, value) in vars {
            env.insert((*key).to_owned(), (*value).to_owned());
        }
        crate::common::check_endpoints(env.iter());
        for parameter in &job.parameters {
            assert!(
                env.contains_key(parameter),
                "{}: the test must give parameter {parameter} (Jenkins always sets every one)",
                job.name
            );
        }
        let mut run = JobRun {
            code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
        };
        for script in &job.steps {
            // Jenkins' `sh` step runs `/bin/sh -xe SCRIPT`: dash on Debian agents, not bash.
            let output = assert_cmd::Command::new("/bin/sh")
                .args(["-xe", "-c", script])
                .env_clear()
                .envs(&env)
                .current_dir(workspace)
                .timeout(STEP_TIMEOUT)
                .output()
                .expect("run /bin/sh");
            run.stdout
                .push_str(&String::from_utf8_lossy(&output.stdout));
            run.stderr
                .push_str(&String::from_utf8_lossy(&output.stderr));
            run.code = output.status.code();
            if run.code != Some(0) {
                break;
            }
        }
        run
    }
}

/// A job's workspace: the pipeline's own repository (a git working tree holding the
/// Jenkinsfiles, as "Pipeline script from SCM" leaves it) with the service cloned into
/// `service/` at `branch`, as the Checkout stage does. Returns it and the service's commit.
fn job_workspace(origin: &BareRepo, branch: &str) -> (Workspace, String) {
    let mut pipeline = Workspace::new();
    for name in ["build", "promote", "push"] {
        let file = format!("{name}.Jenkinsfile");
        let text = fs_err::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("jenkins")
                .join(&file),
        )
        .expect("read the Jenkinsfile");
        pipeline.write(format!("jenkins/{file}"), text);
    }
    pipeline.commit("pipelines");
    let origin = origin.path().display().to_string();
    pipeline.git(["clone", "--quiet", "--branch", branch, &origin, "service"]);
    let commit = git_in(&pipeline.path().join("service"), &["rev-parse", "HEAD"]);
    (pipeline, commit)
}

/// `git ARGS` in `dir`, isolated from any user configuration; returns trimmed stdout.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The service's repository: sources, a debug log its release.toml excludes, pushed to `origin`.
fn service(ctx: &mut TestContext, origin: &BareRepo) -> String {
    let ws = &mut ctx.workspace;
    ws.write("app/main.py", "print('web 1')\n");
    ws.write("app/debug.log", "not shipped\n");
    ws.write("release.toml", "[build]\nexclude = [\"**/*.log\"]\n");
    let commit = ws.commit("web 1");
    ws.add_origin(origin);
    ws.push();
    commit
}

fn manifest(bytes: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn object(ctx: &TestContext, name: &str) -> Option<Vec<u8>> {
    ctx.s3.get(&ctx.bucket, &format!("{ARTIFACT}/prod/{name}"))
}

fn json_file(path: PathBuf) -> serde_json::Value {
    let text = fs_err::read_to_string(&path).expect("read the archived result");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", path.display()))
}

/// Every file the job archives exists (patterns with `*` are directories of logs: skipped).
fn assert_archived(job: &Jenkinsfile, workspace: &Path) {
    for pattern in job.archived.iter().filter(|p| !p.contains('*')) {
        assert!(
            workspace.join(pattern).is_file(),
            "{}: archiveArtifacts expects `{pattern}`, which no step wrote",
            job.name
        );
    }
}

fn members(archive: &[u8]) -> Vec<String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .expect("read tar")
        .map(|entry| {
            let mut entry = entry.expect("tar entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            std::io::copy(&mut entry.by_ref(), &mut std::io::sink()).expect("read member");
            path
        })
        .collect()
}

/// The pipelines are in the shape the contract asks for: the old jobs' parameters, only
/// `release` called, parameters used only through the environment, results archived.
#[test]
fn pipelines_have_the_old_jobs_parameters_and_call_only_release() {
    let expected: [(&str, &[&str]); 3] = [
        ("build", &["ARTIFACT", "SERVICE_REPO", "BRANCH", "DRY_RUN"]),
        (
            "promote",
            &[
                "ARTIFACT",
                "RELEASE_VERSION",
                "GIT_TAG_NAME",
                "SERVICE_REPO",
                "SERVICE_BRANCH",
                "DRY_RUN",
            ],
        ),
        (
            "push",
            &[
                "SERVICE",
                "VERSION",
                "HOSTS",
                "ASG_NAMES",
                "FORKS",
                "MAX_FAILURES",
                "CUSTOM_SCRIPT",
                "TRANSPORT",
                "SSM_OUTPUT",
                "SSH_USER",
                "SUDO",
                "SSH_CONFIG",
                "DRY_RUN",
            ],
        ),
    ];
    let jenkins = [
        "WORKSPACE",
        "BUILD_NUMBER",
        "GIT_COMMIT",
        "GIT_BRANCH",
        "BUILD_TIMESTAMP",
    ];
    for (name, parameters) in expected {
        let job = Jenkinsfile::load(name);
        assert_eq!(job.parameters, parameters, "{name}: parameters");
        assert!(
            job.archived.iter().any(|a| a == &format!("{name}.json")),
            "{name}: its --output json result is not archived"
        );
        for script in &job.steps {
            assert!(
                script.contains("release --output json "),
                "{name}: a step that does not call release with --output json:\n{script}"
            );
            for forbidden in ["aws ", "tar ", "ansible", "git tag", "git push"] {
                assert!(
                    !script.contains(forbidden),
                    "{name}: a step calls `{forbidden}` instead of release"
                );
            }
            for variable in variables(script) {
                assert!(
                    parameters.contains(&variable.as_str()) || jenkins.contains(&variable.as_str()),
                    "{name}: a step reads ${variable}, which is neither a parameter nor set by Jenkins"
                );
            }
        }
    }
}

/// The build job's variables for Jenkins build `number` of `commit` on `main`.
fn build_vars(number: &str, commit: &str, origin: &str, dry_run: &str) -> Vec<(String, String)> {
    owned(&[
        ("ARTIFACT", ARTIFACT),
        ("SERVICE_REPO", origin),
        ("BRANCH", "main"),
        ("DRY_RUN", dry_run),
        ("BUILD_NUMBER", number),
        ("BUILD_TIMESTAMP", TIMESTAMP),
        // Set by the Checkout stage from the service's checkout (not the pipeline's).
        ("GIT_COMMIT", commit),
        ("GIT_BRANCH", "origin/main"),
    ])
}

fn promote_vars(version: &str, tag: &str, origin: &str, commit: &str) -> Vec<(String, String)> {
    owned(&[
        ("ARTIFACT", ARTIFACT),
        ("RELEASE_VERSION", version),
        ("GIT_TAG_NAME", tag),
        ("SERVICE_REPO", origin),
        ("SERVICE_BRANCH", "main"),
        ("DRY_RUN", "false"),
        ("BUILD_NUMBER", "5"),
        ("BUILD_TIMESTAMP", TIMESTAMP),
        ("GIT_COMMIT", commit),
        ("GIT_BRANCH", "origin/main"),
    ])
}

fn borrowed(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// build → build → promote N → promote latest, as Jenkins runs them; DRY_RUN writes nothing.
#[test]
fn build_then_promote_then_push_pipelines() {
    let mut ctx = TestContext::new();
    let origin = BareRepo::new();
    let origin_url = origin.path().display().to_string();
    let first = service(&mut ctx, &origin);
    let agent = Agent::new(&ctx);
    let build = Jenkinsfile::load("build");
    let promote = Jenkinsfile::load("promote");

    // Build 1, by Jenkins build 11 of the build job.
    let (ws, checked_out) = job_workspace(&origin, "main");
    assert_eq!(checked_out, first);
    let vars = build_vars("11", &first, &origin_url, "false");
    agent.run(&build, ws.path(), &borrowed(&vars)).success();
    assert_archived(&build, ws.path());
    let result = json_file(ws.path().join("build.json"));
    assert_eq!(result["version"], 1, "{result}");
    assert_eq!(result["git_commit"], first.as_str());

    let release = manifest(&object(&ctx, "web-1.release").expect("web-1.release"));
    assert_eq!(release["MODULE"], ARTIFACT);
    assert_eq!(release["VERSION"], "1");
    assert_eq!(release["BUILD"], "11");
    assert_eq!(release["GIT_COMMIT"], first);
    assert_eq!(release["GIT_BRANCH"], "main");
    assert_eq!(release["TIMESTAMP"], TIMESTAMP);
    let names = members(&object(&ctx, "web-1.tar.gz").expect("web-1.tar.gz"));
    assert_eq!(names.first().map(String::as_str), Some("RELEASE"));
    assert!(names.iter().any(|n| n == "app/main.py"), "{names:?}");
    for absent in ["app/debug.log", ".git", "build.json", "jenkins", "service"] {
        assert!(
            !names.iter().any(|n| n.starts_with(absent)),
            "the archive holds `{absent}` (the service's release.toml or the job's cwd was \
             ignored): {names:?}"
        );
    }

    // Build 2 of a newer commit.
    ctx.workspace.write("app/main.py", "print('web 2')\n");
    let second = ctx.workspace.commit("web 2");
    ctx.workspace.push();
    let (ws, _) = job_workspace(&origin, "main");
    let vars = build_vars("12", &second, &origin_url, "false");
    agent.run(&build, ws.path(), &borrowed(&vars)).success();
    let latest = manifest(&object(&ctx, "latest.txt").expect("latest.txt"));
    assert_eq!(latest["VERSION"], "2");
    assert_eq!(latest["GIT_COMMIT"], second);

    // Promote RELEASE_VERSION=1: the tag goes to the service's origin, not the pipeline's repo.
    let (ws, head) = job_workspace(&origin, "main");
    let vars = promote_vars("1", "web-stable", &origin_url, &head);
    let run = agent.run(&promote, ws.path(), &borrowed(&vars)).success();
    assert_archived(&promote, ws.path());
    let result = json_file(ws.path().join("promote.json"));
    assert_eq!(result["version"], 1, "{result}");
    assert_eq!(result["tag_pushed"], true, "{result}{}", run.report());
    let stable = manifest(&object(&ctx, "latest-stable.txt").expect("latest-stable.txt"));
    assert_eq!(stable["VERSION"], "1");
    assert_eq!(
        origin.tag_commit("web-stable").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        ws.git(["tag", "--list"]),
        "",
        "the pipeline's own repository was tagged"
    );

    // Promote RELEASE_VERSION=latest moves both to build 2; GIT_TAG_NAME left empty (the
    // parameter's default) means the default tag, {artifact}-stable.
    let (ws, head) = job_workspace(&origin, "main");
    let vars = promote_vars("latest", "", &origin_url, &head);
    agent.run(&promote, ws.path(), &borrowed(&vars)).success();
    let stable = manifest(&object(&ctx, "latest-stable.txt").expect("latest-stable.txt"));
    assert_eq!(stable["VERSION"], "2");
    assert_eq!(
        origin.tag_commit("web-stable").as_deref(),
        Some(second.as_str())
    );
    let history = ctx
        .s3
        .keys(&ctx.bucket, &format!("{ARTIFACT}/prod/history/"));
    assert_eq!(
        history.len(),
        2,
        "one history record per promotion: {history:?}"
    );

    // DRY_RUN=true: the plan is archived, nothing is written.
    let (ws, _) = job_workspace(&origin, "main");
    let vars = build_vars("13", &second, &origin_url, "true");
    agent.run(&build, ws.path(), &borrowed(&vars)).success();
    let result = json_file(ws.path().join("build.json"));
    assert_eq!(result["dry_run"], true, "{result}");
    assert_eq!(result["version"], 3, "{result}");
    assert!(
        object(&ctx, "web-3.release").is_none(),
        "a dry run wrote a build"
    );
    let latest = manifest(&object(&ctx, "latest.txt").expect("latest.txt"));
    assert_eq!(latest["VERSION"], "2", "a dry run moved latest.txt");

    // Push latest-stable (2) to two hosts over ssh with the job's default SUDO=true (the hosts
    // have the sudo stand-in, which resets the environment as sudo does: the install dir and
    // the loopback endpoint come from each host's etc/environment, `release` from secure_path).
    let addresses = ["127.0.1.91", "127.0.1.92"];
    let stand_in = sudo_stand_in();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        stand_in.path().display(),
        release_bin_dir().display()
    );
    let hosts = Hosts::start(
        &addresses,
        &[("AWS_ENDPOINT_URL", &ctx.moto.endpoint()), ("PATH", &path)],
    );
    let ws = tempfile::tempdir().expect("workspace");
    let mut vars = push_vars("127.0.1.91 127.0.1.92", "", "");
    for (key, value) in &mut vars {
        match key.as_str() {
            "SSH_USER" => *value = "root".into(),
            "DRY_RUN" => *value = "false".into(),
            "SSH_CONFIG" => *value = hosts.ssh_config_path().display().to_string(),
            _ => {}
        }
    }
    let push = Jenkinsfile::load("push");
    let run = agent.run(&push, ws.path(), &borrowed(&vars)).success();
    let result = json_file(ws.path().join("push.json"));
    assert_eq!(
        (&result["version"], &result["ok"]),
        (&2.into(), &2.into()),
        "{result}{}",
        run.report()
    );
    for address in addresses {
        let current = fs_err::read_link(hosts.install_dir(address).join("current")).unwrap();
        assert_eq!(current, Path::new("releases/2"), "{address}");
        assert!(ws.path().join(format!("push-logs/{address}.log")).is_file());
        let calls = sudo_calls(&hosts.home_dir(address));
        assert_eq!(calls.len(), 1, "{address}: one sudo call: {calls:?}");
        assert_eq!(
            calls[0][..4],
            ["-n", "release", "install", "2"],
            "{address}: SUDO=true runs `sudo -n release install 2 …`"
        );
    }
}

/// A wrong RELEASE_VERSION fails the promote step with exit 2 and a message naming it;
/// the bucket and the tags are untouched, and the archived result is the error document.
#[test]
fn promote_pipeline_rejects_a_wrong_release_version() {
    let mut ctx = TestContext::new();
    let origin = BareRepo::new();
    let origin_url = origin.path().display().to_string();
    service(&mut ctx, &origin);
    ctx.release()
        .args(["--artifact", ARTIFACT, "build"])
        .success();
    let agent = Agent::new(&ctx);
    let promote = Jenkinsfile::load("promote");
    let (ws, head) = job_workspace(&origin, "main");
    let vars = promote_vars("abc", "web-stable", &origin_url, &head);
    let run = agent.run(&promote, ws.path(), &borrowed(&vars));
    assert_eq!(run.code, Some(2), "expected exit 2{}", run.report());
    assert!(
        run.stderr.contains("error: `abc` is not a build"),
        "the message must name `abc`{}",
        run.report()
    );
    let result = json_file(ws.path().join("promote.json"));
    assert_eq!(result["error"]["exit_code"], 2, "{result}");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("abc")
    );
    assert!(
        object(&ctx, "latest-stable.txt").is_none(),
        "a pointer was written"
    );
    assert!(origin.tags().is_empty(), "a tag was pushed");
}

/// Owned copies of `(name, value)` pairs.
fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn push_vars(hosts: &str, asgs: &str, script: &str) -> Vec<(String, String)> {
    owned(&[
        ("SERVICE", ARTIFACT),
        ("VERSION", ""),
        ("HOSTS", hosts),
        ("ASG_NAMES", asgs),
        ("FORKS", "2"),
        ("MAX_FAILURES", "1"),
        ("CUSTOM_SCRIPT", script),
        ("TRANSPORT", "ssh"),
        ("SSM_OUTPUT", ""),
        ("SSH_USER", "deploy"),
        ("SUDO", "true"),
        ("SSH_CONFIG", ""),
        ("DRY_RUN", "true"),
        ("BUILD_NUMBER", "3"),
        ("BUILD_TIMESTAMP", TIMESTAMP),
    ])
}

/// HOSTS=* needs the service's Auto Scaling Groups: the step says so before calling release.
#[test]
fn push_pipeline_needs_asg_names_for_every_host() {
    let ctx = TestContext::new();
    let agent = Agent::new(&ctx);
    let push = Jenkinsfile::load("push");
    let ws = tempfile::tempdir().expect("workspace");
    let vars = push_vars("*", "", "");
    let run = agent.run(&push, ws.path(), &borrowed(&vars));
    assert_eq!(run.code, Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("ASG_NAMES is empty"),
        "{}",
        run.report()
    );
    assert!(
        !run.stderr.contains("+ release"),
        "release ran anyway{}",
        run.report()
    );
}

/// DRY_RUN with a HOSTS list: the build is resolved (latest-stable) and the batches are printed
/// in FORKS-sized groups, in the order given; no host is contacted. Needs `release push`
/// (merged from main).
#[test]
fn push_pipeline_dry_run_plans_the_hosts() {
    let mut ctx = TestContext::new();
    ctx.workspace.write("app/main.py", "print('web')\n");
    ctx.workspace.commit("web");
    ctx.release()
        .args(["--artifact", ARTIFACT, "build"])
        .success();
    ctx.release()
        .args(["--artifact", ARTIFACT, "promote", "--no-tag", "latest"])
        .success();
    let agent = Agent::new(&ctx);
    let push = Jenkinsfile::load("push");
    let ws = tempfile::tempdir().expect("workspace");
    let vars = push_vars(
        "127.0.0.11 127.0.0.12,127.0.0.13",
        "",
        "/opt/deploy/deploy.sh {artifact} {version}",
    );
    let run = agent.run(&push, ws.path(), &borrowed(&vars)).success();
    assert_archived(&push, ws.path());
    let plan = json_file(ws.path().join("push.json"));
    assert_eq!(plan["dry_run"], true, "{plan}{}", run.report());
    assert_eq!(plan["version"], 1, "{plan}");
    assert_eq!(
        plan["batches"], 2,
        "one type per key: a count, as in the report; {plan}"
    );
    let batches: Vec<Vec<String>> = plan["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .map(|batch| {
            batch
                .as_array()
                .expect("a batch")
                .iter()
                .map(|t| t["host"].as_str().expect("host").to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        batches,
        [vec!["127.0.0.11", "127.0.0.12"], vec!["127.0.0.13"]],
        "{plan}"
    );
    let logs: Vec<PathBuf> = fs_err::read_dir(ws.path().join("push-logs"))
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(logs.is_empty(), "a dry run wrote host logs: {logs:?}");

    // CUSTOM_SCRIPT reaches `--command`: a template with an unknown placeholder is refused.
    let vars = push_vars("127.0.0.11", "", "/opt/deploy/deploy.sh {nope}");
    let run = agent.run(&push, ws.path(), &borrowed(&vars));
    assert_eq!(run.code, Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("invalid --command template"),
        "{}",
        run.report()
    );
}

/// A `release` stand-in for the push job: writes `RELEASE_PUSH_VIA` and then each argument it
/// got, one per line, to `$WORKSPACE/argv`, and prints an empty JSON document.
fn argv_recorder() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("release-argv-")
        .tempdir()
        .expect("stand-in dir");
    let script = r#"#!/bin/sh
{ printf 'RELEASE_PUSH_VIA=%s\n' "${RELEASE_PUSH_VIA-unset}"; printf '%s\n' "$@"; } > "$WORKSPACE/argv"
echo '{}'
"#;
    let path = dir.path().join("release");
    fs_err::write(&path, script).expect("write the stand-in");
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the stand-in");
    dir
}

/// TRANSPORT reaches `release push` as `--via` (ssm) or as the env twin (ssh, the default),
/// SSM_OUTPUT as `--ssm-output` with ssm only, the SSH parameters with ssh only; hostile values
/// stay single words. Runs the job's step with a stand-in `release` that records its arguments.
#[test]
fn push_pipeline_passes_the_transport_and_ssm_output_as_single_words() {
    let agent = Agent {
        endpoint: "http://127.0.0.1:9".into(),
        bucket: "build".into(),
        home: tempfile::tempdir().expect("agent HOME"),
    };
    let push = Jenkinsfile::load("push");
    let stand_in = argv_recorder();
    let path = format!("{}:/usr/bin:/bin", stand_in.path().display());
    let hostile_output = "s3://logs/release x; touch /tmp/pwned-$(id -u) *";
    let hostile_group = "web-a;$(id)";
    let args = |transport: &str, output: &str| {
        let ws = tempfile::tempdir().expect("workspace");
        let mut vars = push_vars("*", &format!("{hostile_group},web-b"), "");
        for (key, value) in &mut vars {
            match key.as_str() {
                "TRANSPORT" => *value = transport.into(),
                "SSM_OUTPUT" => *value = output.into(),
                "SSH_CONFIG" => *value = "/etc/ssh config".into(),
                _ => {}
            }
        }
        vars.push(("PATH".into(), path.clone()));
        agent.run(&push, ws.path(), &borrowed(&vars)).success();
        let argv = fs_err::read_to_string(ws.path().join("argv")).expect("the stand-in ran");
        let workspace = ws.path().display().to_string();
        argv.lines()
            .map(|l| l.replace(&workspace, "$WORKSPACE"))
            .collect::<Vec<_>>()
    };
    let common = [
        "--output",
        "json",
        "push",
        "--asg",
        hostile_group,
        "--asg",
        "web-b",
        "--batch",
        "2",
        "--max-failures",
        "1",
    ];

    let ssm = args("ssm", hostile_output);
    let mut expected = vec!["RELEASE_PUSH_VIA=unset"];
    expected.extend(common);
    expected.extend(["--via", "ssm", "--ssm-output", hostile_output]);
    assert_eq!(ssm, expected, "TRANSPORT=ssm");

    let ssm_no_output = args("ssm", "");
    assert_eq!(
        ssm_no_output,
        expected[..expected.len() - 2],
        "an empty SSM_OUTPUT passes no --ssm-output"
    );

    let ssh = args("ssh", hostile_output);
    let mut expected = vec!["RELEASE_PUSH_VIA=ssh"];
    expected.extend(common);
    expected.extend([
        "--sudo",
        "--ssh-config",
        "/etc/ssh config",
        "--ssh-user",
        "deploy",
        "--strict-host-keys",
        "accept-new",
        "--log-dir",
        "$WORKSPACE/push-logs",
    ]);
    assert_eq!(ssh, expected, "TRANSPORT=ssh: no --via, no --ssm-output");
}

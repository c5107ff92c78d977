//! `release promote`, `rollback`, `list`, `show` and `history` end to end: the real binary
//! against moto, with a bare repository on disk as `origin`.

mod cost;
mod failures;
mod flow;
mod listing;
mod ssh_remote;

use serde_json::Value;

use crate::common::{BareRepo, Release, S3, TestContext};

pub const ARTIFACT: &str = "web";

pub fn key(name: &str) -> String {
    format!("{ARTIFACT}/prod/{name}")
}

/// A test context whose workspace has the bare `origin`.
pub struct World {
    pub ctx: TestContext,
    pub origin: BareRepo,
}

impl World {
    pub fn new() -> World {
        let ctx = TestContext::new();
        let origin = BareRepo::new();
        ctx.workspace.add_origin(&origin);
        World { ctx, origin }
    }

    /// The binary in the workspace, for this artifact, as user `alice`.
    pub fn release(&self) -> Release {
        self.ctx
            .release()
            .env("ARTIFACT", ARTIFACT)
            .env("BUILD_USER_ID", "alice")
    }

    /// Commits a change, pushes it to origin and builds it; returns (number, commit).
    pub fn build(&mut self, content: &str) -> (u64, String) {
        let commit = self.commit(content);
        self.ctx.workspace.push();
        (self.build_here(), commit)
    }

    pub fn commit(&mut self, content: &str) -> String {
        self.ctx.workspace.write("app/main.py", content);
        self.ctx.workspace.commit(content)
    }

    pub fn build_here(&self) -> u64 {
        let doc = self
            .release()
            .args(["--output", "json", "build", "app"])
            .success()
            .stdout_json();
        doc["version"].as_u64().expect("build number")
    }

    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.ctx.s3.get(&self.ctx.bucket, &key(name))
    }

    pub fn stable(&self) -> Option<String> {
        self.get("latest-stable.txt")
            .map(|b| String::from_utf8(b).unwrap())
    }

    pub fn manifest(&self, n: u64) -> String {
        String::from_utf8(self.get(&format!("{ARTIFACT}-{n}.release")).unwrap()).unwrap()
    }

    /// The history records, oldest first.
    pub fn history(&self) -> Vec<Value> {
        history(&self.ctx.s3, &self.ctx.bucket)
    }

    /// Every key with its ETag: equal snapshots mean no object was written.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        snapshot(&self.ctx.s3, &self.ctx.bucket)
    }
}

pub fn history(s3: &S3, bucket: &str) -> Vec<Value> {
    s3.keys(bucket, &key("history/"))
        .iter()
        .map(|k| serde_json::from_slice(&s3.get(bucket, k).unwrap()).unwrap())
        .collect()
}

pub fn snapshot(s3: &S3, bucket: &str) -> Vec<(String, String)> {
    s3.keys(bucket, "")
        .into_iter()
        .map(|k| {
            let etag = s3.head(bucket, &k).unwrap().e_tag().unwrap().to_owned();
            (k, etag)
        })
        .collect()
}

/// An old job's archive: folders, then RELEASE as the LAST member, padded like GNU tar.
pub fn old_job_tar(release: &str, filler: u64) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(filler);
    header.set_mode(0o644);
    builder
        .append_data(
            &mut header,
            "obelix/big.bin",
            std::io::Read::take(std::io::repeat(7), filler),
        )
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(release.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "RELEASE", release.as_bytes())
        .unwrap();
    let mut bytes = builder.into_inner().unwrap();
    bytes.resize(bytes.len().div_ceil(10240) * 10240, 0);
    bytes
}

/// A bucket as the old jobs left it: builds 17 and 23 as `.tar` with RELEASE last, latest.txt
/// at 23, no manifests. Returns build 17's RELEASE.
pub fn seed_legacy(w: &World) -> &'static str {
    let (s3, bucket) = (&w.ctx.s3, &w.ctx.bucket);
    let release_17 = "MODULE=web\nVERSION=17\nBUILD=12\nTIMESTAMP=Mon Jan 23 11:20:02 IST 2016\n";
    s3.put(bucket, &key("web-17.tar"), old_job_tar(release_17, 50_000));
    let release_23 = "MODULE=web\nVERSION=23\nBUILD=33\n";
    s3.put(bucket, &key("web-23.tar"), old_job_tar(release_23, 1000));
    s3.put(bucket, &key("latest.txt"), release_23);
    release_17
}

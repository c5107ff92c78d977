//! `promote N` reads the same few small objects whatever the archive's size (DESIGN.md:
//! "reads at most the manifest, or the tail of its archive"): proven by counting requests and
//! bytes through a proxy, not by time, since moto reads a whole object to serve a range.

use super::{ARTIFACT, key, old_job_tar};
use crate::common::{FaultProxy, Moto, Release, S3};

/// Requests and bytes down of `promote N --no-tag` for one bucket, through a counting proxy.
fn promote_cost(moto: &Moto, bucket: &str, n: u64) -> (usize, usize) {
    let proxy = FaultProxy::new(&moto.endpoint());
    Release::new()
        .endpoint(&proxy.endpoint())
        .env("RELEASE_BUCKET", bucket)
        .env("ARTIFACT", ARTIFACT)
        .args(["promote", &n.to_string(), "--no-tag"])
        .success();
    (proxy.count(), proxy.bytes_down())
}

#[test]
#[allow(clippy::print_stderr)] // the figures are the proof; show them with --nocapture
fn promote_reads_do_not_grow_with_the_archive() {
    const BIG: u64 = 200 << 20;
    const SMALL: u64 = 1 << 10;
    let moto = Moto::start();
    let s3 = S3::new(&moto.endpoint());
    let mut costs = Vec::new();
    for (style, size) in [("new", SMALL), ("new", BIG), ("old", SMALL), ("old", BIG)] {
        let bucket = crate::common::unique_bucket(&format!("cost-{style}"));
        s3.create_bucket(&bucket);
        let n = 5;
        if style == "new" {
            s3.put(&bucket, &key("web-5.tar.gz"), vec![0u8; size as usize]);
            let manifest = format!(
                "MODULE=web\nVERSION=5\nBUILD=9\nGIT_COMMIT={}\nTIMESTAMP=now\n\
                 ARCHIVE=web-5.tar.gz\nSHA256={}\nSIZE={size}\n",
                "a".repeat(40),
                "0".repeat(64)
            );
            s3.put(&bucket, &key("web-5.release"), manifest);
        } else {
            let tar = old_job_tar("MODULE=web\nVERSION=5\nBUILD=9\n", size);
            s3.put(&bucket, &key("web-5.tar"), tar);
        }
        let (requests, bytes) = promote_cost(&moto, &bucket, n);
        eprintln!(
            "promote {style} build, archive {size} bytes: {requests} requests, {bytes} bytes down"
        );
        assert!(
            String::from_utf8(s3.get(&bucket, &key("latest-stable.txt")).unwrap())
                .unwrap()
                .contains("VERSION=5\n")
        );
        assert!(bytes < 300 << 10, "{style} {size}: {bytes} bytes down");
        costs.push(requests);
        // Free moto's memory before the next big object.
        for k in s3.keys(&bucket, "") {
            s3.delete(&bucket, &k);
        }
    }
    assert_eq!(costs[0], costs[1], "new builds: {costs:?}");
    assert_eq!(costs[2], costs[3], "old builds: {costs:?}");
    assert!(costs.iter().all(|&c| c <= 6), "{costs:?}");
}

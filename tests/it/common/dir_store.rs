//! Builds into a directory store (`file://`): no server, no network; what a build stored is
//! read back from the directory.

use std::io::Read;
use std::path::Path;

use super::{Release, Workspace};

/// The binary in `ws` for `artifact`, building into the directory store `store`. The endpoint
/// points at a closed loopback port, so an accidental AWS call fails at once.
pub fn release(ws: &Workspace, store: &Path, artifact: &str) -> Release {
    Release::new()
        .current_dir(ws.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("RELEASE_BUCKET", format!("file://{}", store.display()))
        .args(["--artifact", artifact])
}

/// Member names of build `n` of `artifact` (stage `prod`, tar.gz) in the directory store.
pub fn members(store: &Path, artifact: &str, n: u64) -> Vec<String> {
    let path = store
        .join(artifact)
        .join("prod")
        .join(format!("{artifact}-{n}.tar.gz"));
    let bytes = fs_err::read(&path).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).unwrap();
            name
        })
        .collect()
}

//! Install tests' shared pieces: running `install` into a directory, reading what it left
//! there, and hostile archives written header by header and published as a build with a
//! correct manifest (so that only the unpacker can refuse them).

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Release, TestContext};

/// `release --artifact web install --dir DIR` in the context's world; add the build and flags.
pub fn install(ctx: &TestContext, dir: &Path) -> Release {
    ctx.release()
        .args(["--artifact", "web", "install", "--dir"])
        .arg(dir)
}

/// Where `current` in `dir` points (`releases/N`), if anywhere.
pub fn current(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("current"))
        .ok()
        .map(|p| p.display().to_string())
}

/// The names under `dir/releases`, sorted.
pub fn releases(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// One raw member: name, type, mode, link target, data.
pub struct Member<'a>(
    pub &'a str,
    pub tar::EntryType,
    pub u32,
    pub &'a str,
    pub &'a [u8],
);

/// A tar of `members`, written header by header: the tar crate's setters refuse `..` and
/// absolute paths, as they should, and a hostile archive has them all the same.
pub fn archive(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for Member(name, kind, mode, link, data) in members {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Uploads `object` as build `n` of `web` (`web-{n}{ext}`) with a manifest giving `sha256` and
/// `size`.
pub fn publish_as(ctx: &TestContext, n: u64, ext: &str, object: &[u8], sha256: &str, size: u64) {
    let name = format!("web-{n}{ext}");
    ctx.s3
        .put(&ctx.bucket, &format!("web/prod/{name}"), object.to_vec());
    let manifest = format!(
        "MODULE=web\nVERSION={n}\nBUILD=manual\nGIT_COMMIT=0000\nTIMESTAMP=now\n\
         ARCHIVE={name}\nSHA256={sha256}\nSIZE={size}\n"
    );
    ctx.s3
        .put(&ctx.bucket, &format!("web/prod/web-{n}.release"), manifest);
}

/// Uploads `object` as build `n` with a correct manifest.
pub fn publish(ctx: &TestContext, n: u64, ext: &str, object: &[u8]) {
    let sha256 = hex::encode(Sha256::digest(object));
    publish_as(ctx, n, ext, object, &sha256, object.len() as u64);
}

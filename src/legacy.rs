//! Builds made by the old shell jobs: an uncompressed `{artifact}-{N}.tar` with no `.release`
//! beside it, whose RELEASE is the archive's LAST member (`tar cf … obelix commonix RELEASE`).
//!
//! The manifest is found without downloading the archive: a ranged read of its tail holds
//! RELEASE's header and data, two zero blocks and the record padding (GNU tar pads to 10 KiB),
//! and a backwards scan for a valid header named RELEASE finds it.

/// Bytes read from the end of an old archive first; a second, larger read follows if needed.
pub(crate) const TAIL_READS: [u64; 2] = [16 << 10, 256 << 10];

const BLOCK: usize = 512;

/// The RELEASE member's data, if `tail` (the last bytes of a tar file) holds its header.
///
/// `tail` must end where the file ends; the file's size is a multiple of 512, as every tar's.
pub(crate) fn find_release(tail: &[u8]) -> Option<Vec<u8>> {
    // Block boundaries are counted from the end, where the tail is aligned.
    let first = tail.len() % BLOCK;
    let blocks = (tail.len() - first) / BLOCK;
    (0..blocks).rev().find_map(|i| {
        let start = first + i * BLOCK;
        let header = &tail[start..start + BLOCK];
        let size = release_header_size(header)?;
        let data = tail.get(start + BLOCK..start + BLOCK + size)?;
        Some(data.to_vec())
    })
}

/// The member size if `block` is a valid header of a regular file named RELEASE.
fn release_header_size(block: &[u8]) -> Option<usize> {
    let name = trim_nul(&block[0..100]);
    if name != b"RELEASE" && name != b"./RELEASE" {
        return None;
    }
    if !matches!(block[156], b'0' | 0) {
        return None;
    }
    let stored = parse_octal(&block[148..156])?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != stored {
        return None;
    }
    let size = parse_octal(&block[124..136])?;
    // A manifest is a few hundred bytes; anything large is not the RELEASE we want.
    (size <= 64 << 10).then_some(size as usize)
}

fn trim_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(trim_nul(field)).ok()?.trim();
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_job_tar(big: usize) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(big as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "obelix/big.bin", vec![7u8; big].as_slice())
            .unwrap();
        let release = b"MODULE=obelix-appengine\nVERSION=17\nBUILD=12\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(release.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "RELEASE", release.as_slice())
            .unwrap();
        let mut bytes = builder.into_inner().unwrap();
        // GNU tar's record padding.
        bytes.resize(bytes.len().div_ceil(10240) * 10240, 0);
        bytes
    }

    #[test]
    fn finds_release_in_the_tail() {
        let tar = old_job_tar(100_000);
        let tail = &tar[tar.len() - TAIL_READS[0] as usize..];
        let found = find_release(tail).unwrap();
        assert!(found.starts_with(b"MODULE=obelix-appengine\nVERSION=17\n"));
    }

    #[test]
    fn a_tail_without_release_finds_nothing() {
        let tar = old_job_tar(100_000);
        // The tail of the big member only.
        assert!(find_release(&tar[..60_000]).is_none());
        assert!(find_release(&[]).is_none());
    }

    #[test]
    fn a_whole_small_archive_works_too() {
        let tar = old_job_tar(10);
        assert!(find_release(&tar).is_some());
    }
}

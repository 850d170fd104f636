//! Facts derived from the pinned lock text: its hash, the runtime id, the
//! number of pinned packages and the pinned torch version.

use sha2::{Digest, Sha256};

/// Lower-case hex sha256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The runtime id for a lock and a python version: the first 16 hex chars of
/// sha256(lock text + python version string).
pub(crate) fn compute_id(lock: &str, python_version: &str) -> String {
    let mut data = String::with_capacity(lock.len() + python_version.len());
    data.push_str(lock);
    data.push_str(python_version);
    let mut hex = sha256_hex(data.as_bytes());
    hex.truncate(16);
    hex
}

/// The `name==version` pins of a requirements lock, in file order.
pub(crate) fn pins(lock: &str) -> impl Iterator<Item = (&str, &str)> {
    lock.lines().filter_map(|line| {
        // Requirement lines start at column 0; hashes, comments and
        // continuation lines are indented or start with `#`/`-`.
        if line.is_empty() || line.starts_with([' ', '\t', '#', '-']) {
            return None;
        }
        let spec = line.split([' ', ';', '\\']).next()?.trim();
        let (name, version) = spec.split_once("==")?;
        Some((name.trim(), version.trim()))
    })
}

/// How many packages the lock pins.
pub(crate) fn package_count(lock: &str) -> usize {
    pins(lock).count()
}

/// The version the lock pins for `package` (names compared case-insensitively,
/// with `-`, `_` and `.` treated alike as in PEP 503).
pub(crate) fn pinned_version<'a>(lock: &'a str, package: &str) -> Option<&'a str> {
    let want = normalize(package);
    pins(lock)
        .find(|(name, _)| normalize(name) == want)
        .map(|(_, version)| version)
}

fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "\
# header comment
foo==1.0 \\
    --hash=sha256:aaaa
    # via bar
Bar_Baz==2.3.4 ; python_version >= \"3.8\" \\
    --hash=sha256:bbbb \\
    --hash=sha256:cccc
-e ./local
";

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn id_is_sixteen_hex_chars_of_lock_plus_python() {
        let id = compute_id("lock text", "3.11");
        assert_eq!(id.len(), 16);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(id, &sha256_hex(b"lock text3.11")[..16]);
        assert_ne!(id, compute_id("lock text ", "3.11"));
        assert_ne!(id, compute_id("lock text", "3.12"));
    }

    #[test]
    fn pins_skip_hashes_comments_and_markers() {
        let pins: Vec<_> = pins(SMALL).collect();
        assert_eq!(pins, vec![("foo", "1.0"), ("Bar_Baz", "2.3.4")]);
        assert_eq!(package_count(SMALL), 2);
        assert_eq!(pinned_version(SMALL, "bar-baz"), Some("2.3.4"));
        assert_eq!(pinned_version(SMALL, "missing"), None);
    }

    #[test]
    fn embedded_lock_pins_torch_and_counts_packages() {
        assert_eq!(pinned_version(crate::LOCK, "torch"), Some("2.4.1"));
        assert_eq!(pinned_version(crate::LOCK, "torchvision"), Some("0.19.1"));
        // Every pin in the lock has a hash block (the lock is --generate-hashes).
        let hashes_blocks = crate::LOCK
            .lines()
            .zip(crate::LOCK.lines().skip(1))
            .filter(|(a, b)| {
                !a.starts_with([' ', '#']) && a.contains("==") && b.contains("--hash=")
            })
            .count();
        assert_eq!(package_count(crate::LOCK), hashes_blocks);
        assert!(package_count(crate::LOCK) > 10);
    }
}

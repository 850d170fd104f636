//! Unprivileged identities for runs when proctor runs as root.
//!
//! Each concurrent cold run gets its own uid (and the same gid) from a fixed high range,
//! [`FIRST_ID`]..[`FIRST_ID`]+[`ID_COUNT`], and each warm zygote a block of [`ID_BLOCK`]
//! ids above it (its children's), far above the ids distributions hand out
//! (users from 1000, `/etc/subuid` ranges from 100000 in steps of 65536): no host file
//! belongs to it, so chmod/chown/utime/xattr of host files fail at the kernel, and runs
//! cannot touch each other's files. Ids are unique within this process and drawn at
//! random, so concurrent proctor processes collide with negligible probability.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Mutex;

use crate::SandboxError;

/// The first id of the range runs are given.
pub const FIRST_ID: u32 = 2_000_000_000;
/// How many ids the range holds.
pub const ID_COUNT: u32 = 100_000_000;
/// The warm zygote gets a block of ids (mapped to 0.. in its user namespace, one per
/// child), from the range above the single ids.
pub const ID_BLOCK: u32 = 65_536;
/// How many blocks fit between the single ids and 2^31 (some tools misread larger ids).
const BLOCKS: u32 = 700;

static IN_USE: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// A uid/gid reserved for one run; dropping it frees the id.
#[derive(Debug)]
pub struct RunId(u32);

impl RunId {
    /// Reserves an id no other run of this process holds.
    pub fn allocate() -> RunId {
        RunId::reserve(|random| FIRST_ID + (random % u64::from(ID_COUNT)) as u32)
    }

    /// Reserves a block of [`ID_BLOCK`] ids; [`RunId::uid`] is its first.
    pub fn allocate_block() -> RunId {
        RunId::reserve(|random| {
            FIRST_ID + ID_COUNT + (random % u64::from(BLOCKS)) as u32 * ID_BLOCK
        })
    }

    fn reserve(pick: impl Fn(u64) -> u32) -> RunId {
        let mut guard = IN_USE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let in_use = guard.get_or_insert_with(HashSet::new);
        loop {
            // A freshly keyed hasher is a random source good enough to spread ids.
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            let id = pick(random);
            if in_use.insert(id) {
                return RunId(id);
            }
        }
    }

    /// The uid (also the gid) of the run; of a block, its first.
    pub fn uid(&self) -> u32 {
        self.0
    }
}

impl Drop for RunId {
    fn drop(&mut self) {
        let mut guard = IN_USE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(in_use) = guard.as_mut() {
            in_use.remove(&self.0);
        }
    }
}

/// Gives `path` (and what proctor put under it) to `uid`, so that a run with that id can
/// write its scratch. Symlinks are changed, never followed.
pub fn hand_over(path: &Path, uid: u32) -> Result<(), SandboxError> {
    let io = |e: std::io::Error| SandboxError::Io {
        context: format!("cannot hand {} over to the run", path.display()),
        source: e,
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).map_err(io)?;
    if std::fs::symlink_metadata(path).map_err(io)?.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            hand_over(&entry.map_err(io)?.path(), uid)?;
        }
    }
    Ok(())
}

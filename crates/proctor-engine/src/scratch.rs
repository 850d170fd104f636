//! A run's bounded filesystems seen from the trusted side: whether it filled them (watched
//! while it runs and checked at its end), and a bounded copy of what trusted code collects
//! from its scratch once it has ended.
//!
//! With the sandbox the scratch is a size-limited tmpfs (see `proctor_sandbox::Spec::
//! scratch_bytes`) that proctor holds by a descriptor of its root; it is freed when that
//! descriptor is closed, so nothing a run writes ever reaches the host's disk unless it is
//! copied out here, within bounds. Its `/dev/shm` is a tmpfs of its own too.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::dir::Dir;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode};

/// How deep a collected tree may go; deeper directories are left behind.
const MAX_DEPTH: usize = 32;
/// How many files and directories a collection copies at most.
const MAX_ENTRIES: u64 = 100_000;
/// How often a running run's filesystems are looked at.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Whether a tmpfs is full: no block or no inode left. A write past its size failed with
/// `ENOSPC` then; a run that stayed below it cannot look full.
fn full(fs: &OwnedFd) -> bool {
    nix::sys::statvfs::fstatvfs(fs).is_ok_and(|st| st.blocks_free() == 0 || st.files_free() == 0)
}

/// Which of a run's bounded filesystems it filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// Its scratch: the disk quota.
    Scratch,
    /// Its own `/dev/shm`.
    Shm,
}

/// A run's scratch and `/dev/shm`, watched for fullness: sampled every [`SAMPLE_EVERY`]
/// while the run is alive and once at its end, and remembered, so that a run that filled
/// its quota, got `ENOSPC` and deleted its files before it ended is still seen to have
/// filled it (unless it did both within one sampling period). Tmpfs keeps no high-water
/// mark; a file system that was full is the kernel's own account that a write past it failed.
#[derive(Default)]
pub(crate) struct DiskWatch {
    /// The watched filesystems' roots (the scratch first).
    mounts: Mutex<Vec<(Filled, OwnedFd)>>,
    filled: Mutex<Option<Filled>>,
}

impl DiskWatch {
    /// Watches `fs` from now on.
    pub fn watch(&self, which: Filled, fs: &OwnedFd) {
        if let Ok(fd) = fs.try_clone() {
            crate::pool::lock(&self.mounts).push((which, fd));
        }
    }

    /// Looks at the filesystems now; returns what was ever seen full (the first one).
    pub fn sample(&self) -> Option<Filled> {
        let now = crate::pool::lock(&self.mounts)
            .iter()
            .find(|(_, fd)| full(fd))
            .map(|(which, _)| *which);
        let mut filled = crate::pool::lock(&self.filled);
        if filled.is_none() {
            *filled = now;
        }
        *filled
    }

    /// Whether one of them is full right now (whatever was seen before).
    pub fn full_now(&self) -> bool {
        crate::pool::lock(&self.mounts)
            .iter()
            .any(|(_, fd)| full(fd))
    }

    /// Forgets what was seen (a session's next call starts afresh).
    pub fn reset(&self) {
        *crate::pool::lock(&self.filled) = None;
    }

    /// Samples until dropped.
    pub async fn keep_sampling(&self) {
        loop {
            self.sample();
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }
}

/// What a collection left behind.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    pub bytes: u64,
    pub entries: u64,
    /// Symlinks, devices, sockets, unreadable entries, too deep, over the byte or entry budget.
    pub skipped: u64,
}

fn open_at(dir: &OwnedFd, name: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let fd = openat(Some(dir.as_raw_fd()), name, flags, Mode::empty())?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `rel` under `root` one component at a time, never following a symlink.
fn open_dir(root: &OwnedFd, rel: &[OsString]) -> io::Result<OwnedFd> {
    let mut dir = root.try_clone()?;
    for name in rel {
        dir = open_at(&dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    }
    Ok(dir)
}

/// Copies the tree under `scratch` into `dest` (created; it must not exist): regular
/// files and directories only, at most `max_bytes` of file content, [`MAX_ENTRIES`]
/// entries and [`MAX_DEPTH`] levels; symlinks are never followed and special files never
/// opened for reading. Iterative, one open directory at a time. The copies belong to
/// proctor (0644 files, 0755 directories).
pub(crate) fn copy_out(scratch: &OwnedFd, dest: &Path, max_bytes: u64) -> io::Result<Copied> {
    fs::DirBuilder::new().mode(0o755).create(dest)?;
    let mut copied = Copied::default();
    // Directories still to copy, as paths of names relative to the scratch's root.
    let mut pending: Vec<Vec<OsString>> = vec![Vec::new()];
    while let Some(rel) = pending.pop() {
        let Ok(dir) = open_dir(scratch, &rel) else {
            copied.skipped += 1;
            continue;
        };
        let to: PathBuf = rel.iter().fold(dest.to_path_buf(), |p, n| p.join(n));
        let mut listing = Dir::from_fd(nix::unistd::dup(dir.as_raw_fd())?)?;
        for entry in listing.iter() {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if copied.entries >= MAX_ENTRIES {
                copied.skipped += 1;
                continue;
            }
            // O_NONBLOCK: a FIFO must not stall the copy (it is skipped below anyway).
            let Ok(fd) = open_at(&dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK) else {
                copied.skipped += 1;
                continue;
            };
            let st = fstat(fd.as_raw_fd())?;
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR if rel.len() < MAX_DEPTH => {
                    fs::DirBuilder::new().mode(0o755).create(to.join(name))?;
                    copied.entries += 1;
                    let mut sub = rel.clone();
                    sub.push(name.to_os_string());
                    pending.push(sub);
                }
                libc::S_IFREG if (st.st_size as u64) <= max_bytes - copied.bytes => {
                    let room = max_bytes - copied.bytes;
                    let n = copy_file(fd, &to.join(name), room)?;
                    copied.bytes += n;
                    copied.entries += 1;
                }
                _ => copied.skipped += 1,
            }
        }
    }
    Ok(copied)
}

/// Copies at most `room` bytes of `from` into a new file `to`.
fn copy_file(from: OwnedFd, to: &Path, room: u64) -> io::Result<u64> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(to)?;
    let n = io::copy(&mut fs::File::from(from).take(room), &mut out)?;
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> OwnedFd {
        fs::File::open(path).unwrap().into()
    }

    #[test]
    fn copies_files_and_directories_but_no_links_fifos_or_excess() {
        let src = tempfile::tempdir().unwrap();
        let secret = tempfile::NamedTempFile::new().unwrap();
        fs::write(secret.path(), "host secret").unwrap();
        fs::create_dir_all(src.path().join("a/b")).unwrap();
        fs::write(src.path().join("model.pt"), "weights").unwrap();
        fs::write(src.path().join("a/b/deep.txt"), "deep").unwrap();
        fs::write(src.path().join("big.bin"), vec![0u8; 4096]).unwrap();
        std::os::unix::fs::symlink(secret.path(), src.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/", src.path().join("a/root")).unwrap();
        nix::unistd::mkfifo(&src.path().join("fifo"), Mode::S_IRWXU).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("collected");
        let copied = copy_out(&open(src.path()), &dest, 100).unwrap();
        assert_eq!(
            fs::read_to_string(dest.join("model.pt")).unwrap(),
            "weights"
        );
        assert_eq!(
            fs::read_to_string(dest.join("a/b/deep.txt")).unwrap(),
            "deep"
        );
        for absent in ["big.bin", "link", "a/root", "fifo"] {
            assert!(
                fs::symlink_metadata(dest.join(absent)).is_err(),
                "{absent} was copied"
            );
        }
        assert_eq!(copied.bytes, 11);
        assert_eq!(copied.skipped, 4);
        // The destination must be new: a collection never merges into existing files.
        assert!(copy_out(&open(src.path()), &dest, 100).is_err());
    }

    #[test]
    fn a_deep_chain_is_cut_at_the_depth_limit() {
        let src = tempfile::tempdir().unwrap();
        let mut path = src.path().to_path_buf();
        for _ in 0..MAX_DEPTH + 5 {
            path.push("d");
        }
        fs::create_dir_all(&path).unwrap();
        let out = tempfile::tempdir().unwrap();
        let copied = copy_out(&open(src.path()), &out.path().join("c"), 1 << 20).unwrap();
        assert_eq!(copied.entries, MAX_DEPTH as u64);
        assert_eq!(copied.skipped, 1);
    }
}

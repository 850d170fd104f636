//! Removing a directory tree a sandboxed run built: it may be 25,000 levels deep, hold
//! directories without permissions or millions of entries. The walk is iterative (no
//! recursion, so no stack to overflow), holds a constant number of file descriptors (it
//! climbs back through `..` and checks it landed where it came from), never follows a
//! symbolic link, and is meant to run on a blocking thread, never on the async runtime.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmodat, fstat, FchmodatFlags, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// One directory on the way down: its name in its parent, its identity, and the
/// subdirectories still to visit.
struct Level {
    name: OsString,
    id: (u64, u64),
    pending: Vec<OsString>,
}

fn identity(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let st = fstat(fd.as_raw_fd())?;
    Ok((st.st_dev, st.st_ino))
}

fn open_dir(parent: &OwnedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(Some(parent.as_raw_fd()), name, flags, Mode::empty())?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Opens a subdirectory, granting ourselves access first if the run took it away.
fn enter(parent: &OwnedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    match open_dir(parent, name) {
        Err(nix::errno::Errno::EACCES) => {
            fchmodat(
                Some(parent.as_raw_fd()),
                name,
                Mode::S_IRWXU,
                FchmodatFlags::NoFollowSymlink,
            )?;
            open_dir(parent, name)
        }
        other => other,
    }
}

/// Unlinks everything in `dir` that is not a directory; returns the subdirectories.
fn scan(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut subdirs = Vec::new();
    let listing = Dir::from_fd(nix::unistd::dup(dir.as_raw_fd())?)?;
    let mut listing = listing;
    for entry in listing.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(t) => t == Type::Directory,
            None => nix::sys::stat::fstatat(
                Some(dir.as_raw_fd()),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .unwrap_or(false),
        };
        if is_dir {
            subdirs.push(name.to_os_string());
        } else {
            match unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(subdirs)
}

/// Removes `root` and everything beneath it (see the module docs). A missing `root` is fine.
pub fn remove_tree(root: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_dir() => return std::fs::remove_file(root),
        Ok(_) => {}
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(root, flags, Mode::empty())?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    let mut current = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut stack = vec![Level {
        name: OsString::new(),
        id: identity(&current)?,
        pending: scan(&current)?,
    }];
    while let Some(top) = stack.last_mut() {
        if let Some(name) = top.pending.pop() {
            match enter(&current, &name) {
                Ok(sub) => {
                    let level = Level {
                        id: identity(&sub)?,
                        pending: scan(&sub)?,
                        name,
                    };
                    current = sub;
                    stack.push(level);
                }
                Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let done = stack.pop().expect("non-empty");
        let Some(parent_level) = stack.last() else {
            break;
        };
        let parent = open_dir(&current, OsStr::new(".."))?;
        if identity(&parent)? != parent_level.id {
            return Err(io::Error::other(
                "the tree changed while it was being removed",
            ));
        }
        current = parent;
        match unlinkat(
            Some(current.as_fd().as_raw_fd()),
            done.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(current);
    std::fs::remove_dir(root)
}

/// [`remove_tree`] on a blocking thread, logged rather than returned: for cleanup paths.
pub async fn remove_tree_blocking(root: std::path::PathBuf) {
    let shown = root.display().to_string();
    match tokio::task::spawn_blocking(move || remove_tree(&root)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("cannot remove {shown}: {e}"),
        Err(e) => tracing::warn!("removing {shown} failed: {e}"),
    }
}

/// [`remove_tree`] from synchronous code that may run on the async runtime (a `Drop`):
/// handed to a blocking thread when there is a runtime, done inline otherwise.
pub(crate) fn remove_tree_detached(root: std::path::PathBuf) {
    let remove = move || {
        if let Err(e) = remove_tree(&root) {
            tracing::warn!("cannot remove {}: {e}", root.display());
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => drop(handle.spawn_blocking(remove)),
        Err(_) => remove(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_deep_chain_with_locked_dirs_files_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run");
        std::fs::create_dir(&root).unwrap();
        let outside = tmp.path().join("outside.txt");
        std::fs::write(&outside, "keep").unwrap();
        // 3,000 levels through relative mkdir/chdir-free openat, a file and a symlink out at each.
        let mut dir = nix::fcntl::open(&root, OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        for i in 0..3000 {
            nix::sys::stat::mkdirat(Some(dir), "d", Mode::S_IRWXU).unwrap();
            let f = openat(
                Some(dir),
                "f",
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::S_IRUSR,
            )
            .unwrap();
            nix::unistd::close(f).unwrap();
            nix::unistd::symlinkat(&outside, Some(dir), "link").unwrap();
            let next = openat(Some(dir), "d", OFlag::O_DIRECTORY, Mode::empty()).unwrap();
            if i == 10 {
                nix::sys::stat::fchmod(next, Mode::empty()).unwrap();
            }
            nix::unistd::close(dir).unwrap();
            dir = next;
        }
        nix::unistd::close(dir).unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    }
}

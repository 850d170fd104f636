//! The private root of a run: a small tmpfs holding only what the run may see — system
//! libraries, the runtime, the harness and the run's inputs bind-mounted read-only, its
//! scratch read-write, each at the same absolute path as on the host — then `pivot_root`
//! into it. Host sockets, `/root`, the rest of `/etc`, other runs: not there at all.
//! Read-only binds make chmod/utime/xattr of host files fail with `EROFS` whatever the
//! run's uid, and landlock stays on top as a second wall. With a disk quota the scratch is
//! not the host directory but a size-limited tmpfs mounted at its path (see [`scratch`]).

use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::{SandboxError, Spec, SYSTEM_READ_ONLY, SYSTEM_READ_WRITE};

/// Where the new root is assembled (in the run's own mount namespace; sources are opened
/// before anything is mounted here, so a source under `/tmp` is still reachable).
const ASSEMBLY: &str = "/tmp";
/// Paths the root gets fresh instead of from the host.
const FRESH: &[&str] = &["/proc", "/dev/shm", "/etc/passwd", "/etc/group"];
/// Size of a run's private `/tmp` and `/dev/shm` (each), in bytes; the warm pool's
/// children get a `/dev/shm` of this size too.
pub const SHM_BYTES: u64 = 1 << 30;

/// One host path to show in the run's root.
enum Source {
    /// A file or directory, opened before the host tree is covered.
    Object {
        fd: OwnedFd,
        dir: bool,
        writable: bool,
    },
    /// A symlink (e.g. `/lib -> usr/lib`), recreated as such.
    Link(PathBuf),
}

/// The run's root, planned from the host before any mount.
pub(crate) struct Plan {
    sources: Vec<(PathBuf, Source)>,
    /// The scratch tmpfs: where, and its size in bytes.
    scratch: Option<(PathBuf, u64)>,
}

fn setup(context: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(format!("{context}: {e}"))
}

/// Opens every path `spec` may see; missing ones are skipped. Parents come before
/// their descendants, so a nested bind lands on top of its parent's.
pub(crate) fn plan(spec: &Spec) -> Result<Plan, SandboxError> {
    let listed = SYSTEM_READ_ONLY
        .iter()
        .map(|p| (PathBuf::from(p), false))
        .chain(spec.read_only.iter().map(|p| (p.clone(), false)))
        .chain(SYSTEM_READ_WRITE.iter().map(|p| (PathBuf::from(p), true)))
        .chain(spec.read_write.iter().map(|p| (p.clone(), true)));
    let scratch = spec.scratch_bytes.map(|bytes| (spec.cwd.clone(), bytes));
    let mut sources = Vec::new();
    for (path, writable) in listed {
        if !path.is_absolute() || FRESH.iter().any(|f| path == Path::new(f)) {
            continue;
        }
        if scratch.as_ref().is_some_and(|(at, _)| *at == path) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let source = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| setup("reading a link", e))?;
            Source::Link(target)
        } else {
            let fd = open(
                &path,
                OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|e| setup(&format!("opening {}", path.display()), e))?;
            // SAFETY: a fresh descriptor this process owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            Source::Object {
                fd,
                dir: meta.is_dir(),
                writable,
            }
        };
        sources.push((path, source));
    }
    sources.sort_by_key(|(p, _)| p.components().count());
    Ok(Plan { sources, scratch })
}

fn inside(path: &Path) -> PathBuf {
    Path::new(ASSEMBLY).join(path.strip_prefix("/").unwrap_or(path))
}

fn make_dirs(path: &Path) -> Result<(), SandboxError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| setup(&format!("creating {}", path.display()), e))
}

fn mount_tmpfs(target: &Path, options: &str) -> Result<(), SandboxError> {
    make_dirs(target)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options))
        .map_err(|e| setup(&format!("mounting a tmpfs on {}", target.display()), e))
}

/// Mount flags of `target` that a remount must keep: in a user namespace the kernel
/// refuses to clear flags inherited from the host (they are locked).
fn kept_flags(target: &Path) -> Result<MsFlags, SandboxError> {
    let have = statvfs(target)
        .map_err(|e| setup(&format!("statvfs {}", target.display()), e))?
        .flags();
    let pairs = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(pairs
        .iter()
        .filter(|(st, _)| have.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
}

/// Binds one opened source at its host path in the new root.
fn bind(path: &Path, fd: &OwnedFd, dir: bool) -> Result<PathBuf, SandboxError> {
    let target = inside(path);
    if dir {
        make_dirs(&target)?;
    } else if fs::symlink_metadata(&target).is_err() {
        make_dirs(target.parent().unwrap_or(Path::new(ASSEMBLY)))?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&target)
            .map_err(|e| setup(&format!("creating {}", target.display()), e))?;
    }
    let from = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mount(
        Some(from.as_str()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| setup(&format!("binding {}", path.display()), e))?;
    Ok(target)
}

/// Remounts a bind read-only (unless writable), never setuid, devices only under `/dev`.
fn seal(path: &Path, target: &Path, writable: bool) -> Result<(), SandboxError> {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID;
    flags |= kept_flags(target)?;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    if !path.starts_with("/dev") {
        flags |= MsFlags::MS_NODEV;
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| setup(&format!("sealing {}", path.display()), e))
}

/// A passwd and group naming only root, the run's own id and nobody.
fn write_identity(uid: u32, gid: u32, home: &Path) -> Result<(), SandboxError> {
    let etc = inside(Path::new("/etc"));
    make_dirs(&etc)?;
    let home = home.display();
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}:sandbox:{home}:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nsandbox:x:{gid}:\nnogroup:x:65534:\n");
    for (name, text) in [("passwd", passwd), ("group", group)] {
        fs::write(etc.join(name), text).map_err(|e| setup("writing /etc", e))?;
    }
    Ok(())
}

/// Populates `/dev`; returns the root of its fresh `/dev/shm`.
fn make_dev() -> Result<OwnedFd, SandboxError> {
    let dev = inside(Path::new("/dev"));
    make_dirs(&dev)?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))
            .map_err(|e| setup("populating /dev", e))?;
    }
    let shm = dev.join("shm");
    mount_tmpfs(&shm, &format!("size={SHM_BYTES},mode=1777"))?;
    open_dir(&shm)
}

fn open_dir(path: &Path) -> Result<OwnedFd, SandboxError> {
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| setup(&format!("opening {}", path.display()), e))?;
    // SAFETY: a fresh descriptor this process owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Options of a scratch tmpfs of `bytes` owned by `uid`/`gid`: one inode per 4 KiB of
/// quota (inodes cost kernel memory too), at least 1,024.
pub fn scratch_options(bytes: u64, uid: u32, gid: u32) -> String {
    let inodes = (bytes / 4096).max(1024);
    format!("size={bytes},nr_inodes={inodes},mode=0700,uid={uid},gid={gid}")
}

/// Mounts the run's scratch tmpfs at `at` (inside the assembly), gives it a `.tmp` of the
/// run's own, and opens its root for the caller.
fn scratch(at: &Path, bytes: u64, uid: u32, gid: u32) -> Result<OwnedFd, SandboxError> {
    let target = inside(at);
    mount_tmpfs(&target, &scratch_options(bytes, uid, gid))?;
    let tmp = target.join(".tmp");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| setup("creating the scratch's .tmp", e))?;
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))
        .map_err(|e| setup("handing the scratch's .tmp over", e))?;
    open_dir(&target)
}

/// Builds the root from `plan` and pivots into it. Runs in init (pid 1 of the run's pid
/// namespace, with mount rights in its mount namespace); `uid`/`gid` name the worker.
/// Returns the roots of the scratch tmpfs and of `/dev/shm`, when the plan has a scratch.
pub(crate) fn enter(
    plan: Plan,
    uid: u32,
    gid: u32,
    home: &Path,
) -> Result<Option<[OwnedFd; 2]>, SandboxError> {
    mount_tmpfs(Path::new(ASSEMBLY), "size=4m,mode=0755")?;
    // Fresh filesystems first: a bind under /tmp (a PROCTOR_HOME there) lands on top.
    let shm = make_dev()?;
    mount_tmpfs(
        &inside(Path::new("/tmp")),
        &format!("size={SHM_BYTES},mode=1777"),
    )?;
    let mut sealed = Vec::new();
    for (path, source) in &plan.sources {
        match source {
            Source::Link(target) => {
                let at = inside(path);
                make_dirs(at.parent().unwrap_or(Path::new(ASSEMBLY)))?;
                std::os::unix::fs::symlink(target, &at)
                    .map_err(|e| setup(&format!("linking {}", path.display()), e))?;
            }
            Source::Object { fd, dir, writable } => {
                sealed.push((path, bind(path, fd, *dir)?, *writable));
            }
        }
    }
    let scratch = match &plan.scratch {
        Some((at, bytes)) => Some([scratch(at, *bytes, uid, gid)?, shm]),
        None => None,
    };
    for (path, target, writable) in sealed {
        seal(path, &target, writable)?;
    }
    drop(plan);
    let proc_at = inside(Path::new("/proc"));
    make_dirs(&proc_at)?;
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &proc_at, Some("proc"), quiet, None::<&str>)
        .map_err(|e| setup("mounting a private /proc", e))?;
    write_identity(uid, gid, home)?;
    pivot()?;
    Ok(scratch)
}

/// `pivot_root(".", ".")` then detaching the old root: the host tree is gone for good.
fn pivot() -> Result<(), SandboxError> {
    std::env::set_current_dir(ASSEMBLY).map_err(|e| setup("entering the new root", e))?;
    let dot = OsStr::new(".");
    nix::unistd::pivot_root(dot, dot).map_err(|e| setup("pivot_root", e))?;
    umount2(dot, MntFlags::MNT_DETACH).map_err(|e| setup("detaching the host's root", e))?;
    std::env::set_current_dir("/").map_err(|e| setup("entering /", e))?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| setup("making the new root read-only", e))
}

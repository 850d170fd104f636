//! Per-run control groups on cgroup v1 (a hierarchy per controller) and v2 (unified).
//!
//! A run gets its own cgroup with memory, pids and (optionally) cpu limits. The cgroup
//! is also how a run's whole process tree is found and killed, how an OOM kill is
//! recognised, and where peak memory is read.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proctor_core::Limits;
use serde::Serialize;

use crate::SandboxError;

/// Environment variable naming the delegated cgroup under which proctor creates run
/// cgroups: a path relative to each hierarchy's root (v1) or to the unified root (v2).
pub const PARENT_ENV: &str = "PROCTOR_CGROUP_PARENT";

/// Which cgroup interface this machine offers for the controllers proctor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`, ...).
    V1,
    /// The unified hierarchy.
    V2,
}

/// One mounted cgroup hierarchy, as read from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// `cgroup2` for the unified hierarchy, otherwise `cgroup`.
    pub fs_type: String,
    /// v1 controllers of the hierarchy (from the super options), empty for v2.
    pub controllers: Vec<String>,
}

/// Parses the cgroup mounts out of `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // Fields: id parent major:minor root mount_point opts [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let fs_type = right[0];
        if fs_type != "cgroup" && fs_type != "cgroup2" {
            continue;
        }
        let controllers = if fs_type == "cgroup" {
            right[2]
                .split(',')
                .filter(|o| matches!(*o, "memory" | "pids" | "cpu" | "cpuacct" | "freezer"))
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        mounts.push(Mount {
            mount_point: PathBuf::from(left[4]),
            fs_type: fs_type.to_string(),
            controllers,
        });
    }
    mounts
}

/// Parses `/proc/self/cgroup`: returns `(controllers, path)` per line; v2's line has no controllers.
pub fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((controllers, path.to_string()))
        })
        .collect()
}

/// Where run cgroups are created: one parent directory per controller (v1) or one (v2).
#[derive(Debug, Clone, Serialize)]
pub struct CgroupRoot {
    /// The interface in use.
    pub version: Version,
    /// v1: `(controller, parent dir)` for memory, pids and, when present, cpu and freezer.
    /// v2: a single `("unified", parent dir)`.
    pub parents: Vec<(String, PathBuf)>,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CgroupRoot {
    /// Finds the cgroup interface and a writable parent for run cgroups on this machine.
    pub fn detect() -> Result<CgroupRoot, SandboxError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let parent = std::env::var(PARENT_ENV).ok();
        let root = Self::plan(
            &parse_mountinfo(&mountinfo),
            &parse_proc_cgroup(&own),
            parent.as_deref(),
        )?;
        root.prepare()?;
        Ok(root)
    }

    /// Decides version and parent directories from parsed mount and membership tables
    /// (pure, so that both layouts are unit-tested on any machine).
    pub fn plan(
        mounts: &[Mount],
        own: &[(Vec<String>, String)],
        parent_override: Option<&str>,
    ) -> Result<CgroupRoot, SandboxError> {
        let v1_memory = mounts
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == "memory"));
        if v1_memory.is_some() {
            let mut parents = Vec::new();
            for controller in ["memory", "pids", "cpu", "freezer"] {
                let Some(mount) = mounts
                    .iter()
                    .find(|m| m.controllers.iter().any(|c| c == controller))
                else {
                    if controller == "memory" || controller == "pids" {
                        return Err(SandboxError::MissingFeature {
                            feature: format!("cgroup v1 {controller} controller"),
                            how: format!("mount it: mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}"),
                        });
                    }
                    continue;
                };
                let base = match parent_override {
                    Some(p) => p.trim_start_matches('/').to_string(),
                    None => own
                        .iter()
                        .find(|(cs, _)| cs.iter().any(|c| c == controller))
                        .map(|(_, p)| p.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                };
                parents.push((
                    controller.to_string(),
                    mount.mount_point.join(base).join("proctor"),
                ));
            }
            return Ok(CgroupRoot {
                version: Version::V1,
                parents,
            });
        }
        let Some(unified) = mounts.iter().find(|m| m.fs_type == "cgroup2") else {
            return Err(SandboxError::MissingFeature {
                feature: "cgroups (neither a v1 memory hierarchy nor cgroup2 is mounted)".into(),
                how: "mount cgroup2: mount -t cgroup2 none /sys/fs/cgroup".into(),
            });
        };
        let base = match parent_override {
            Some(p) => p.trim_start_matches('/').to_string(),
            None => own
                .iter()
                .find(|(cs, _)| cs.is_empty())
                .map(|(_, p)| p.trim_start_matches('/').to_string())
                .unwrap_or_default(),
        };
        Ok(CgroupRoot {
            version: Version::V2,
            parents: vec![("unified".into(), unified.mount_point.join(base))],
        })
    }

    /// Makes the parents usable: creates them (v1) or enables controllers for children (v2).
    pub fn prepare(&self) -> Result<(), SandboxError> {
        match self.version {
            Version::V1 => {
                for (controller, dir) in &self.parents {
                    if let Err(e) = fs::create_dir_all(dir) {
                        return Err(not_delegated(controller, dir, &e));
                    }
                    if controller == "memory" {
                        // Children inherit the parent's accounting; without it limits are not hierarchical.
                        let _ = fs::write(dir.join("memory.use_hierarchy"), "1");
                    }
                    if let Err(e) = probe_writable(dir) {
                        return Err(not_delegated(controller, dir, &e));
                    }
                }
                Ok(())
            }
            Version::V2 => {
                let dir = &self.parents[0].1;
                prepare_v2_parent(dir, std::process::id())
            }
        }
    }

    /// Removes run cgroups left by proctor processes that died without cleaning up.
    pub fn sweep_stale(&self) {
        for (controller, parent) in &self.parents {
            let dir = match self.version {
                Version::V1 => parent.clone(),
                Version::V2 => parent.join("proctor"),
            };
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("run-").and_then(|r| r.split('-').next()) else {
                    continue;
                };
                if Path::new(&format!("/proc/{pid}")).exists() {
                    continue;
                }
                Cgroup::new(self.version, vec![(controller.clone(), entry.path())]).remove();
            }
        }
    }

    /// Creates the cgroup of one run, with its limits written.
    pub fn create(&self, limits: &Limits) -> Result<Cgroup, SandboxError> {
        let name = format!(
            "run-{}-{}",
            std::process::id(),
            RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut dirs = Vec::new();
        let cleanup = |dirs: &Vec<(String, PathBuf)>| {
            for (_, d) in dirs {
                let _ = fs::remove_dir(d);
            }
        };
        for (controller, parent) in &self.parents {
            let dir = match self.version {
                Version::V1 => parent.join(&name),
                Version::V2 => parent.join("proctor").join(&name),
            };
            if let Err(e) = fs::create_dir(&dir) {
                cleanup(&dirs);
                return Err(SandboxError::Cgroup(format!(
                    "cannot create cgroup {}: {e}",
                    dir.display()
                )));
            }
            dirs.push((controller.clone(), dir));
        }
        let cg = Cgroup::new(self.version, dirs);
        cg.set_limits(limits)?;
        Ok(cg)
    }
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    // Unique per call: several backends of one process may probe at once.
    let probe = dir.join(format!(
        "probe-{}-{}",
        std::process::id(),
        RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&probe)?;
    fs::remove_dir(&probe)
}

fn not_delegated(controller: &str, dir: &Path, err: &std::io::Error) -> SandboxError {
    SandboxError::MissingFeature {
        feature: format!(
            "a writable cgroup for the {controller} controller ({}: {err})",
            dir.display()
        ),
        how: format!(
            "run as root, or delegate a subtree to your user: sudo mkdir -p <mount>/proctor-$USER/proctor && sudo chown -R $USER <mount>/proctor-$USER for each of the memory, pids and cpu hierarchies, then export {PARENT_ENV}=proctor-$USER"
        ),
    }
}

/// On v2 a cgroup may delegate controllers to children only if it holds no processes
/// itself, so run cgroups live under `<parent>/proctor`, and when proctor's own process
/// sits in `parent` it first moves into a leaf `<parent>/supervisor-<pid>`.
fn prepare_v2_parent(parent: &Path, own_pid: u32) -> Result<(), SandboxError> {
    let wanted = ["memory", "pids", "cpu"];
    let available = fs::read_to_string(parent.join("cgroup.controllers")).map_err(|e| {
        SandboxError::MissingFeature {
            feature: format!("cgroup v2 at {}: {e}", parent.display()),
            how: format!("run under a delegated cgroup (e.g. `systemd-run --user --scope -p Delegate=yes proctor ...`) or set {PARENT_ENV}"),
        }
    })?;
    for c in ["memory", "pids"] {
        if !available.split_whitespace().any(|a| a == c) {
            return Err(SandboxError::MissingFeature {
                feature: format!("the cgroup v2 {c} controller in {}", parent.display()),
                how: "delegate it: systemd-run --user --scope -p Delegate=yes, or enable it in the parent's cgroup.subtree_control".into(),
            });
        }
    }
    let enable: String = wanted
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c} "))
        .collect();
    let enable = enable.trim_end();
    let write_subtree = |dir: &Path| fs::write(dir.join("cgroup.subtree_control"), enable);
    if let Err(e) = write_subtree(parent) {
        // EBUSY: the parent holds processes (possibly us); move ours into a leaf and retry.
        let procs = fs::read_to_string(parent.join("cgroup.procs")).unwrap_or_default();
        if procs.lines().any(|l| l.trim() == own_pid.to_string()) {
            let leaf = parent.join(format!("supervisor-{own_pid}"));
            let _ = fs::create_dir(&leaf);
            fs::write(leaf.join("cgroup.procs"), own_pid.to_string()).map_err(|e| {
                SandboxError::Cgroup(format!("cannot move proctor into {}: {e}", leaf.display()))
            })?;
            write_subtree(parent).map_err(|e| not_delegated("memory", parent, &e))?;
        } else {
            return Err(not_delegated("memory", parent, &e));
        }
    }
    let runs = parent.join("proctor");
    match fs::create_dir(&runs) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(not_delegated("memory", &runs, &e)),
    }
    write_subtree(&runs).map_err(|e| not_delegated("memory", &runs, &e))?;
    Ok(())
}

/// The cgroup of one run; removed by [`Cgroup::remove`] after its processes are gone
/// (or when dropped, so that an early return cannot leak one).
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    /// `(controller, dir)`; v2 has one entry.
    dirs: Vec<(String, PathBuf)>,
    removed: std::sync::atomic::AtomicBool,
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Cgroup {
    fn new(version: Version, dirs: Vec<(String, PathBuf)>) -> Cgroup {
        Cgroup {
            version,
            dirs,
            removed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(|(_, d)| d.as_path()),
            Version::V1 => self
                .dirs
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, d)| d.as_path()),
        }
    }

    /// The directories of this cgroup (one per v1 controller, one on v2).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// The `cgroup.procs` files a process writes its pid into to join this cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Writes (or rewrites) the run's limits.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        let mem = limits.memory_mb.saturating_mul(1 << 20);
        let write = |controller: &str, file: &str, value: String, required: bool| {
            let Some(dir) = self.dir(controller) else {
                return Ok(());
            };
            match fs::write(dir.join(file), &value) {
                Ok(()) => Ok(()),
                Err(_) if !required => Ok(()),
                Err(e) => Err(SandboxError::Cgroup(format!(
                    "cannot set {file}={value} in {}: {e}",
                    dir.display()
                ))),
            }
        };
        let period = 100_000u64;
        let quota = (limits.cpus * period as f64) as u64;
        match self.version {
            Version::V1 => {
                // memsw (present only with swap accounting) must stay >= the memory limit:
                // raising needs memsw first, lowering needs it last, so write it around.
                let memsw = "memory.memsw.limit_in_bytes";
                write("memory", memsw, mem.to_string(), false)?;
                write("memory", "memory.limit_in_bytes", mem.to_string(), true)?;
                write("memory", memsw, mem.to_string(), false)?;
                write("memory", "memory.swappiness", "0".into(), false)?;
                write("pids", "pids.max", limits.max_pids.to_string(), true)?;
                if quota > 0 {
                    write("cpu", "cpu.cfs_period_us", period.to_string(), false)?;
                    write("cpu", "cpu.cfs_quota_us", quota.to_string(), false)?;
                }
            }
            Version::V2 => {
                write("memory", "memory.max", mem.to_string(), true)?;
                write("memory", "memory.swap.max", "0".into(), false)?;
                // One OOM kills the whole run rather than leaving a maimed tree behind.
                write("memory", "memory.oom.group", "1".into(), false)?;
                write("pids", "pids.max", limits.max_pids.to_string(), true)?;
                if quota > 0 {
                    write("cpu", "cpu.max", format!("{quota} {period}"), false)?;
                }
            }
        }
        Ok(())
    }

    /// Adds a process (by host pid) to this cgroup.
    pub fn add_pid(&self, pid: u32) -> Result<(), SandboxError> {
        for file in self.procs_files() {
            fs::write(&file, pid.to_string()).map_err(|e| {
                SandboxError::Cgroup(format!("cannot add pid {pid} to {}: {e}", file.display()))
            })?;
        }
        Ok(())
    }

    /// Host pids of all processes in this cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let dir = self.dir("pids").or_else(|| self.dir("memory"));
        dir.and_then(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process of the run and waits (up to `deadline`) until none is left.
    /// Returns whether the cgroup is empty.
    pub fn kill_all(&self, deadline: Duration) -> bool {
        self.kill_others(&[], deadline)
    }

    /// Kills every process of the run but those in `keep` (a session's own processes, which
    /// live on between calls while what a call left running must not); true when only they
    /// are left.
    pub fn kill_all_but(&self, keep: &[i32], deadline: Duration) -> bool {
        self.kill_others(keep, deadline)
    }

    fn kill_others(&self, keep: &[i32], deadline: Duration) -> bool {
        let start = Instant::now();
        if self.version == Version::V2 && keep.is_empty() {
            if let Some(dir) = self.dir("unified") {
                let _ = fs::write(dir.join("cgroup.kill"), "1");
            }
        }
        // v1 (and v2 kernels before 5.14): freeze so a fork bomb cannot outrun us, kill, thaw.
        let freezer = self.dir("freezer").map(|d| d.join("freezer.state"));
        // Killed processes usually leave within a fraction of a millisecond: look again
        // soon, then less often.
        let mut pause = Duration::from_micros(100);
        loop {
            let mut pids = self.pids();
            pids.retain(|p| !keep.contains(p));
            if pids.is_empty() {
                if let Some(f) = &freezer {
                    let _ = fs::write(f, "THAWED");
                }
                return true;
            }
            if let Some(f) = &freezer {
                let _ = fs::write(f, "FROZEN");
            }
            for pid in pids {
                // SAFETY: kill(2) with a pid read from our own cgroup; no memory is touched.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            if let Some(f) = &freezer {
                let _ = fs::write(f, "THAWED");
            }
            if start.elapsed() > deadline {
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// Whether the kernel's OOM killer acted in this cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = self.dir("memory") else {
            return false;
        };
        let counter = |file: &str, key: &str| -> u64 {
            fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == key).then(|| v.trim().parse().ok()).flatten()
                    })
                })
                .unwrap_or(0)
        };
        match self.version {
            Version::V1 => counter("memory.oom_control", "oom_kill") > 0,
            Version::V2 => counter("memory.events", "oom_kill") > 0,
        }
    }

    /// Peak memory charged to the cgroup, in bytes, when the kernel reports it.
    pub fn peak_bytes(&self) -> Option<u64> {
        let dir = self.dir("memory")?;
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }

    /// Kills what is left and removes the cgroup directories.
    pub fn remove(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.kill_all(Duration::from_secs(5));
        for (_, dir) in &self.dirs {
            // rmdir can race with the kernel still tearing down the last task.
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_MOUNTINFO: &str = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n22 1 8:1 / / rw - ext4 /dev/sda1 rw";
    const V1_MOUNTINFO: &str = "\
30 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 25 0:30 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
34 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn detects_v2_and_uses_own_cgroup_as_parent() {
        let mounts = parse_mountinfo(V2_MOUNTINFO);
        let own = parse_proc_cgroup(
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n",
        );
        let root = CgroupRoot::plan(&mounts, &own, None).unwrap();
        assert_eq!(root.version, Version::V2);
        assert_eq!(
            root.parents[0].1,
            PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope"
            )
        );
    }

    #[test]
    fn detects_v1_per_controller_parents_even_beside_a_hybrid_unified_mount() {
        let mounts = parse_mountinfo(V1_MOUNTINFO);
        let own = parse_proc_cgroup("4:memory:/process_api/abc\n8:pids:/\n1:cpu,cpuacct:/\n0::/\n");
        let root = CgroupRoot::plan(&mounts, &own, None).unwrap();
        assert_eq!(root.version, Version::V1);
        let memory = &root.parents.iter().find(|(c, _)| c == "memory").unwrap().1;
        assert_eq!(
            memory,
            &PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/proctor")
        );
        let cpu = &root.parents.iter().find(|(c, _)| c == "cpu").unwrap().1;
        assert_eq!(cpu, &PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/proctor"));
        assert!(root.parents.iter().any(|(c, _)| c == "freezer"));
    }

    #[test]
    fn parent_override_applies_to_every_hierarchy() {
        let mounts = parse_mountinfo(V1_MOUNTINFO);
        let root = CgroupRoot::plan(&mounts, &[], Some("/proctor-ci")).unwrap();
        for (_, dir) in &root.parents {
            assert!(dir.ends_with("proctor-ci/proctor"), "{}", dir.display());
        }
        let root =
            CgroupRoot::plan(&parse_mountinfo(V2_MOUNTINFO), &[], Some("delegated")).unwrap();
        assert_eq!(root.parents[0].1, PathBuf::from("/sys/fs/cgroup/delegated"));
    }

    #[test]
    fn no_cgroups_is_a_clear_refusal() {
        let err = CgroupRoot::plan(&[], &[], None).unwrap_err().to_string();
        assert!(err.contains("cgroups"), "{err}");
        assert!(err.contains("mount"), "{err}");
    }

    /// A fake v2 tree in a temp dir: regular files stand in for the kernel's interface files.
    fn fake_v2(controllers: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), controllers).unwrap();
        fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        dir
    }

    #[test]
    fn v2_layout_enables_controllers_and_writes_limits() {
        let dir = fake_v2("cpuset cpu io memory pids");
        prepare_v2_parent(dir.path(), 4242).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        // mkdir on a real cgroupfs creates the interface files; create the ones we write here.
        let root = CgroupRoot {
            version: Version::V2,
            parents: vec![("unified".into(), dir.path().to_path_buf())],
        };
        fs::write(dir.path().join("proctor/cgroup.subtree_control"), "").unwrap();
        let limits = Limits {
            memory_mb: 512,
            max_pids: 64,
            cpus: 1.5,
            ..Limits::default()
        };
        let cg = root.create(&limits).unwrap();
        let run = cg.dirs().next().unwrap().to_path_buf();
        assert!(run.starts_with(dir.path().join("proctor")));
        let read = |f: &str| fs::read_to_string(run.join(f)).unwrap();
        assert_eq!(read("memory.max"), (512u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(cg.procs_files(), vec![run.join("cgroup.procs")]);
        fs::write(
            run.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        fs::write(run.join("memory.peak"), "1048576\n").unwrap();
        assert_eq!(cg.peak_bytes(), Some(1 << 20));
    }

    #[test]
    fn v2_moves_proctor_out_of_a_parent_it_occupies() {
        // A regular file accepts any write, so simulate EBUSY with a directory in place of subtree_control.
        let dir = fake_v2("memory pids");
        fs::remove_file(dir.path().join("cgroup.subtree_control")).unwrap();
        fs::create_dir(dir.path().join("cgroup.subtree_control")).unwrap();
        fs::write(dir.path().join("cgroup.procs"), "17\n4242\n").unwrap();
        let err = prepare_v2_parent(dir.path(), 4242).unwrap_err();
        // It moved itself into the leaf before retrying.
        assert_eq!(
            fs::read_to_string(dir.path().join("supervisor-4242/cgroup.procs")).unwrap(),
            "4242"
        );
        assert!(err.to_string().contains("delegate"), "{err}");
    }

    #[test]
    fn v2_without_memory_controller_is_refused_with_a_fix() {
        let dir = fake_v2("cpu io");
        let err = prepare_v2_parent(dir.path(), 1).unwrap_err().to_string();
        assert!(err.contains("memory controller"), "{err}");
        assert!(err.contains("Delegate=yes"), "{err}");
    }
}

//! The warm pool: a sandboxed zygote that has imported torch and numpy forks a child
//! per run or session; each child is moved into its own cgroup and narrows its own
//! landlock domain to its run directory before running anything untrusted.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use proctor_core::{Job, JobError, Limits, RunResult, Status};
use proctor_sandbox::cgroup::Cgroup;
use proctor_sandbox::{ExitReport, Spec, SHM_BYTES, SYSTEM_READ_ONLY, SYSTEM_READ_WRITE};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use crate::scratch::{DiskWatch, Filled};
use crate::supervise::{classify, supervise, Killer};
use crate::workspace::{job_args, Target, Workspace};
use crate::Inner;

/// Largest datagram either side of the warm pool's sockets sends, JSON-encoded (a
/// SOCK_SEQPACKET message must fit the socket buffer, ~208 KiB by default). The harness
/// gets it from the zygote's environment (`PROCTOR_MAX_FRAME_BYTES`); nothing else defines it.
pub const MAX_FRAME_BYTES: usize = 200_000;

/// How long a forked child may take to be ready, from the fork to the moment its run's
/// code starts. Start-up, not the run's time: the run's clock starts when the child is
/// ready, so a slow start-up (a loaded machine) never eats into a run's time limit.
const CHILD_READY: Duration = Duration::from_secs(60);

/// The error of a child not ready within [`CHILD_READY`].
fn not_ready(step: &str) -> JobError {
    JobError::Engine(format!(
        "the warm pool's forked child {step} within {} s (start-up, before the run's code and its time limit; the machine may be overloaded)",
        CHILD_READY.as_secs()
    ))
}

/// Locks a mutex whose data stays consistent even if a holder panicked: one panic must
/// not poison every later run.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What of `/proc` a forked child may read: its own entry (`/proc/self` is resolved by the
/// child) and machine-wide facts, but not the list of processes nor a sibling's entry.
const CHILD_PROC: &[&str] = &[
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/sys",
];

/// Holds the current zygote; restarts it when it has died.
pub(crate) struct Pool {
    zygote: tokio::sync::Mutex<Option<Arc<Zygote>>>,
    /// Why the last start failed, until one succeeds.
    failure: Mutex<Option<String>>,
    spare: Mutex<Option<Spare>>,
    refilling: AtomicBool,
}

#[derive(Default)]
struct Pending {
    forked: Option<oneshot::Sender<i32>>,
    exited: Option<oneshot::Sender<ExitReport>>,
}

pub(crate) struct Zygote {
    sock: Arc<OwnedFd>,
    send_lock: Mutex<()>,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
    alive: Arc<AtomicBool>,
    host_pid: i32,
    /// Its runs' scratch directories (read-write for the zygote).
    dir: PathBuf,
    /// Its runs' inputs (read-only for the zygote: a hard-linked input is a host file).
    inputs_dir: PathBuf,
    cgroup: Arc<Cgroup>,
    _helper: Mutex<tokio::process::Child>,
    next_id: AtomicU64,
    /// Root mode: the zygote's block of host ids (it is the first, each child one of its own).
    run_id: Option<proctor_sandbox::RunId>,
    /// Ids (within the block) of the children alive.
    child_ids: Arc<Mutex<ChildIds>>,
}

/// Which ids of the zygote's block its children hold.
#[derive(Default)]
struct ChildIds {
    in_use: std::collections::HashSet<u32>,
    next: u32,
}

/// A child's id within the zygote's user namespace (0, the zygote's own, when proctor is
/// not root: then only one id is mapped), freed when dropped.
struct ChildId {
    uid: u32,
    ids: Arc<Mutex<ChildIds>>,
}

impl Drop for ChildId {
    fn drop(&mut self) {
        lock(&self.ids).in_use.remove(&self.uid);
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.cgroup.remove();
        crate::tree::remove_tree_detached(std::mem::take(&mut self.dir));
        crate::tree::remove_tree_detached(std::mem::take(&mut self.inputs_dir));
    }
}

#[derive(Deserialize)]
struct ZygoteMessage {
    op: String,
    #[serde(default)]
    id: u64,
    #[serde(default)]
    pid: i32,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    signal: Option<i32>,
    #[serde(default)]
    maxrss_kb: i64,
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> JobError {
    JobError::Engine(format!("{what}: {e}"))
}

fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), JobError> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| engine_err("cannot create a control socket", e))
}

fn send(fd: &OwnedFd, msg: &serde_json::Value, fds: &[i32]) -> Result<(), JobError> {
    let data = serde_json::to_vec(msg).expect("json");
    if data.len() > MAX_FRAME_BYTES {
        return Err(JobError::Engine(format!(
            "message of {} bytes exceeds the warm pool's frame limit of {MAX_FRAME_BYTES} bytes",
            data.len()
        )));
    }
    let iov = [IoSlice::new(&data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(|e| engine_err("cannot reach the warm pool", e))
}

/// Host pids of `pid`'s children.
fn host_children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Host pid of `pid`'s child whose pid in its own namespace is `ns_pid`.
fn host_child(pid: i32, ns_pid: Option<i32>) -> Option<i32> {
    host_children(pid).into_iter().find(|child: &i32| {
        let Some(want) = ns_pid else { return true };
        std::fs::read_to_string(format!("/proc/{child}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("NSpid:")).and_then(|l| {
                    l.split_whitespace()
                        .last()
                        .and_then(|p| p.parse::<i32>().ok())
                })
            })
            == Some(want)
    })
}

impl Pool {
    pub fn new() -> Pool {
        Pool {
            zygote: tokio::sync::Mutex::new(None),
            failure: Mutex::new(None),
            spare: Mutex::new(None),
            refilling: AtomicBool::new(false),
        }
    }

    /// The zygote's host pid, if one is running.
    pub async fn zygote_pid(&self) -> Option<i32> {
        let slot = self.zygote.lock().await;
        slot.as_ref()
            .filter(|z| z.alive.load(Ordering::SeqCst))
            .map(|z| z.host_pid)
    }

    /// The live zygote, started (or restarted after a death) on demand.
    pub async fn zygote(&self, inner: &Inner) -> Result<Arc<Zygote>, JobError> {
        let mut slot = self.zygote.lock().await;
        if let Some(z) = slot.as_ref() {
            if z.alive.load(Ordering::SeqCst) {
                return Ok(z.clone());
            }
            tracing::warn!("the warm zygote died; starting a new one");
        }
        let started = start_zygote(inner).await;
        *lock(&self.failure) = started.as_ref().err().map(|e| e.to_string());
        let z = Arc::new(started?);
        *slot = Some(z.clone());
        Ok(z)
    }

    /// The pool's state right now, without waiting behind a zygote that is starting.
    pub fn state(&self) -> crate::WarmPool {
        if let Some(failure) = lock(&self.failure).clone() {
            return crate::WarmPool::Failed(failure);
        }
        match self.zygote.try_lock() {
            Ok(slot)
                if slot
                    .as_ref()
                    .is_some_and(|z| z.alive.load(Ordering::SeqCst)) =>
            {
                crate::WarmPool::Ready
            }
            _ => crate::WarmPool::Starting,
        }
    }
}

static POOL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What the zygote's harness reads from its environment.
fn zygote_env(config: &crate::EngineConfig) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PROCTOR_MAX_FRAME_BYTES".into(),
            MAX_FRAME_BYTES.to_string(),
        ),
        ("PROCTOR_SHM_BYTES".into(), SHM_BYTES.to_string()),
    ];
    if config.test_without_landlock_scoping {
        env.push((crate::WITHOUT_LANDLOCK_SCOPING_ENV.into(), "1".into()));
    }
    env
}

async fn start_zygote(inner: &Inner) -> Result<Zygote, JobError> {
    let sandbox = inner
        .sandbox
        .as_ref()
        .ok_or_else(|| JobError::Engine("the warm pool needs the sandbox".into()))?;
    let dir = inner.paths.runs.join(format!(
        "warm-{}-{}",
        std::process::id(),
        POOL_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let inputs_dir = dir.with_file_name(format!(
        "{}-inputs",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    for d in [&dir, &inputs_dir] {
        std::fs::create_dir_all(d)
            .map_err(|e| engine_err("cannot create the pool directory", e))?;
    }
    let mut read_only = inner.paths.read_only.clone();
    read_only.push(inputs_dir.clone());
    let (ours, theirs) = seqpacket_pair()?;
    let spec = Spec {
        program: inner.paths.python.clone(),
        args: ["-u", "-s", "-m", "proctor_harness.zygote"]
            .map(String::from)
            .to_vec(),
        env: inner.paths.env(&dir, &zygote_env(&inner.config)),
        cwd: dir.clone(),
        read_only,
        read_write: vec![dir.clone()],
        network: false,
        cgroup_procs: Vec::new(),
        pass_fd: true,
        run_id: None,
        warm_parent: true,
        // Each child mounts its own scratch (see `Forked::start`).
        scratch_bytes: None,
    };
    // The zygote's own cgroup holds only the zygote and children not yet moved out.
    let limits = Limits {
        timeout_ms: u64::MAX,
        memory_mb: 8192,
        max_pids: 4096,
        ..Limits::default()
    };
    let prepared = sandbox
        .command_with_fd(&spec, &limits, Some(&theirs))
        .map_err(|e| JobError::Sandbox(e.to_string()))?;
    let mut command = prepared.command;
    let log = std::fs::File::create(dir.join("zygote.log"))
        .map_err(|e| engine_err("cannot create the zygote log", e))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let cgroup = Arc::new(prepared.cgroup);
    let helper = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| engine_err("cannot start the warm zygote", e))?;
    drop(prepared.status_writer);
    drop(theirs);
    let helper_pid = helper.id().unwrap_or(0) as i32;
    let sock = Arc::new(ours);
    let pending: Arc<Mutex<HashMap<u64, Pending>>> = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    let (ready_tx, ready_rx) = oneshot::channel::<i32>();
    {
        let (sock, pending, alive) = (sock.clone(), pending.clone(), alive.clone());
        let status = prepared.status;
        std::thread::Builder::new()
            .name("proctor-zygote-reader".into())
            .spawn(move || {
                let _status = status; // keep init's status pipe open while the zygote lives
                read_zygote(&sock, &pending, ready_tx);
                alive.store(false, Ordering::SeqCst);
                lock(&pending).clear();
            })
            .map_err(|e| engine_err("cannot start the pool reader", e))?;
    }
    let ready = tokio::time::timeout(Duration::from_secs(300), ready_rx).await;
    let zygote_ns_pid = match ready {
        Ok(Ok(pid)) => pid,
        _ => {
            cgroup.remove();
            let log = std::fs::read_to_string(dir.join("zygote.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            crate::tree::remove_tree_blocking(dir).await;
            crate::tree::remove_tree_blocking(inputs_dir).await;
            return Err(JobError::Engine(format!(
                "the warm zygote did not start:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
    };
    let init = host_child(helper_pid, None);
    let host_pid = init
        .and_then(|init| host_child(init, Some(zygote_ns_pid)))
        .ok_or_else(|| JobError::Engine("cannot find the warm zygote's process".into()))?;
    Ok(Zygote {
        sock,
        send_lock: Mutex::new(()),
        pending,
        alive,
        host_pid,
        dir,
        inputs_dir,
        cgroup,
        _helper: Mutex::new(helper),
        next_id: AtomicU64::new(1),
        run_id: prepared.run_id,
        child_ids: Arc::default(),
    })
}

fn read_zygote(
    sock: &OwnedFd,
    pending: &Mutex<HashMap<u64, Pending>>,
    ready: oneshot::Sender<i32>,
) {
    let mut ready = Some(ready);
    let mut buf = vec![0u8; MAX_FRAME_BYTES];
    loop {
        let n = match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => return,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        let Ok(msg) = serde_json::from_slice::<ZygoteMessage>(&buf[..n]) else {
            continue;
        };
        match msg.op.as_str() {
            "ready" => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(msg.pid);
                }
            }
            "forked" => {
                if let Some(tx) = lock(pending).get_mut(&msg.id).and_then(|p| p.forked.take()) {
                    let _ = tx.send(msg.pid);
                }
            }
            "exit" => {
                if let Some(tx) = lock(pending).remove(&msg.id).and_then(|p| p.exited) {
                    let _ = tx.send(ExitReport {
                        exit_code: msg.exit_code,
                        signal: msg.signal,
                        maxrss_kb: msg.maxrss_kb,
                        setup_error: None,
                    });
                }
            }
            _ => {}
        }
    }
}

/// A forked child, moved into its cgroup and told to go.
struct Forked {
    /// Host pid of the child: the run's reaper, outside the run's own pid namespace.
    pid: i32,
    ctl: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// How the run ended, one JSON line from the child before it exits (see
    /// [`first_report`]).
    report: OwnedFd,
    exited: oneshot::Receiver<ExitReport>,
    /// Its own id; held until the run's files are gone.
    id: ChildId,
}

impl Zygote {
    /// Creates a workspace for a run of this zygote's children, its scratch theirs.
    fn workspace(&self, job: &Job) -> Result<(Workspace, Target), JobError> {
        Workspace::create_apart(&self.dir, &self.inputs_dir, job)
    }

    /// An id of the block no other live child holds (skipping 0, the zygote's).
    fn child_id(&self) -> ChildId {
        if self.run_id.is_none() {
            return ChildId {
                uid: 0,
                ids: self.child_ids.clone(),
            };
        };
        let mut ids = lock(&self.child_ids);
        loop {
            ids.next = ids.next % (proctor_sandbox::ID_BLOCK - 1) + 1;
            let uid = ids.next;
            if ids.in_use.insert(uid) {
                return ChildId {
                    uid,
                    ids: self.child_ids.clone(),
                };
            }
        }
    }

    /// Forks a child and moves it into `cgroup`; it waits for its job (see [`Forked::start`]).
    async fn prefork(&self, cgroup: &Cgroup) -> Result<Forked, JobError> {
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| engine_err("cannot create a pipe", e))
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (ctl, ctl_theirs) = seqpacket_pair()?;
        let (report_r, report_w) = pipe()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (forked_tx, forked_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = oneshot::channel();
        lock(&self.pending).insert(
            id,
            Pending {
                forked: Some(forked_tx),
                exited: Some(exited_tx),
            },
        );
        {
            let _guard = lock(&self.send_lock);
            let fds = [
                out_w.as_raw_fd(),
                err_w.as_raw_fd(),
                ctl_theirs.as_raw_fd(),
                report_w.as_raw_fd(),
            ];
            if let Err(e) = send(&self.sock, &json!({"op": "spawn", "id": id}), &fds) {
                lock(&self.pending).remove(&id);
                self.alive.store(false, Ordering::SeqCst);
                return Err(e);
            }
        }
        drop((out_w, err_w, ctl_theirs, report_w));
        let ns_pid = tokio::time::timeout(CHILD_READY, forked_rx)
            .await
            .map_err(|_| not_ready("was not forked"))?
            .map_err(|_| JobError::Engine("the warm zygote died while forking".into()))?;
        let host = host_child(self.host_pid, Some(ns_pid)).ok_or_else(|| {
            JobError::Engine("the forked child vanished before it started".into())
        })?;
        cgroup
            .add_pid(host as u32)
            .map_err(|e| JobError::Sandbox(e.to_string()))?;
        // Now in its cgroup, the child forks the run's process into a pid namespace of its
        // own (child.py), ahead of demand too.
        send(&ctl, &json!({"op": "placed"}), &[])?;
        Ok(Forked {
            pid: host,
            ctl,
            stdout: out_r,
            stderr: err_r,
            report: report_r,
            exited: exited_rx,
            id: self.child_id(),
        })
    }
}

impl Forked {
    /// Gives the child its job: what to run, where, and what it may touch. The child
    /// mounts its scratch (a tmpfs of the run's disk quota, owned by its id), confines
    /// itself and, as the last step before the run's code, hands back the roots of the
    /// scratch and of its `/dev/shm`: the first is returned here (the run's files live as
    /// long as it is held), both are watched for fullness by the returned [`DiskWatch`].
    async fn start(
        &self,
        inner: &Inner,
        ws: &Workspace,
        mut request: serde_json::Value,
        limits: &Limits,
        extra_env: &[(String, String)],
    ) -> Result<(OwnedFd, DiskWatch), JobError> {
        let mut read_only: Vec<PathBuf> = SYSTEM_READ_ONLY
            .iter()
            .filter(|p| **p != "/proc")
            .chain(CHILD_PROC)
            .map(PathBuf::from)
            .collect();
        read_only.extend(inner.paths.read_only.iter().cloned());
        read_only.push(ws.inputs.clone());
        let mut read_write: Vec<PathBuf> = SYSTEM_READ_WRITE.iter().map(PathBuf::from).collect();
        read_write.push(ws.work.clone());
        let env: HashMap<String, String> =
            inner.paths.env(&ws.work, extra_env).into_iter().collect();
        let uid = self.id.uid;
        let scratch = proctor_sandbox::scratch_options(crate::cold::disk_bytes(limits), uid, uid);
        let fields = request.as_object_mut().expect("request is an object");
        fields.insert("op".into(), json!("go"));
        fields.insert("cwd".into(), json!(ws.work));
        fields.insert("env".into(), json!(env));
        fields.insert("read_only".into(), json!(read_only));
        fields.insert("read_write".into(), json!(read_write));
        fields.insert("uid".into(), json!(uid));
        fields.insert("scratch".into(), json!(scratch));
        send(&self.ctl, &request, &[])?;
        let ctl = self
            .ctl
            .try_clone()
            .map_err(|e| engine_err("cannot reach the child", e))?;
        let [scratch, shm] = tokio::task::spawn_blocking(move || receive_scratch(&ctl))
            .await
            .map_err(|e| engine_err("cannot reach the child", e))??;
        let disk = DiskWatch::default();
        disk.watch(Filled::Scratch, &scratch);
        disk.watch(Filled::Shm, &shm);
        Ok((scratch, disk))
    }
}

/// Waits (at most [`CHILD_READY`]) for the child's scratch root on its control socket,
/// or for its word on why it could not confine itself.
fn receive_scratch(ctl: &OwnedFd) -> Result<[OwnedFd; 2], JobError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::os::fd::{AsFd, FromRawFd};
    let mut fds = [PollFd::new(ctl.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(CHILD_READY.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    if !matches!(poll(&mut fds, ms), Ok(n) if n > 0) {
        return Err(not_ready("did not set up its scratch and confinement"));
    }
    let mut buf = [0u8; 1024];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let msg = recvmsg::<()>(
        ctl.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| engine_err("cannot reach the child", e))?;
    let len = msg.bytes.min(1024);
    for cmsg in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed these descriptors for us.
            let mut owned = fds
                .into_iter()
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
            if let (Some(scratch), Some(shm)) = (owned.next(), owned.next()) {
                return Ok([scratch, shm]);
            }
        }
    }
    let said = String::from_utf8_lossy(&buf[..len]).into_owned();
    Err(JobError::Engine(if said.is_empty() {
        "the forked child could not set up its scratch (see the zygote's log)".into()
    } else {
        said
    }))
}

/// A child forked ahead of demand, already in its own cgroup.
struct Spare {
    zygote: Arc<Zygote>,
    forked: Forked,
    cgroup: Arc<Cgroup>,
}

/// A forked child for a run or a session: the spare if there is one, else a fresh fork.
/// Either way a new spare is prepared in the background for the next caller.
async fn acquire(
    inner: &Arc<Inner>,
    limits: &Limits,
) -> Result<(Arc<Zygote>, Forked, Arc<Cgroup>), JobError> {
    let zygote = inner.pool.zygote(inner).await?;
    let spare = lock(&inner.pool.spare).take();
    let acquired = match spare {
        Some(s) if Arc::ptr_eq(&s.zygote, &zygote) && zygote.alive.load(Ordering::SeqCst) => {
            s.cgroup
                .set_limits(limits)
                .map_err(|e| JobError::Sandbox(e.to_string()))?;
            let Spare {
                zygote,
                forked,
                cgroup,
            } = s;
            (zygote, forked, cgroup)
        }
        stale => {
            if let Some(stale) = stale {
                stale.retire();
            }
            let sandbox = inner.sandbox.as_ref().expect("warm runs are sandboxed");
            let cgroup = Arc::new(
                sandbox
                    .cgroups()
                    .create(limits)
                    .map_err(|e| JobError::Sandbox(e.to_string()))?,
            );
            match zygote.prefork(&cgroup).await {
                Ok(forked) => (zygote, forked, cgroup),
                Err(e) => {
                    cgroup.remove();
                    return Err(e);
                }
            }
        }
    };
    refill(inner.clone());
    Ok(acquired)
}

pub(crate) fn refill(inner: Arc<Inner>) {
    if inner.pool.refilling.swap(true, Ordering::SeqCst) {
        return;
    }
    tokio::spawn(async move {
        let made = async {
            let zygote = inner.pool.zygote(&inner).await?;
            let sandbox = inner.sandbox.as_ref().expect("warm runs are sandboxed");
            let cgroup = Arc::new(
                sandbox
                    .cgroups()
                    .create(&Limits::default())
                    .map_err(|e| JobError::Sandbox(e.to_string()))?,
            );
            match zygote.prefork(&cgroup).await {
                Ok(forked) => Ok(Spare {
                    zygote,
                    forked,
                    cgroup,
                }),
                Err(e) => {
                    cgroup.remove();
                    Err(e)
                }
            }
        }
        .await;
        match made {
            Ok(spare) => {
                let old = lock(&inner.pool.spare).replace(spare);
                if let Some(old) = old {
                    old.retire();
                }
            }
            Err(e) => tracing::warn!("could not fork a spare child: {e}"),
        }
        inner.pool.refilling.store(false, Ordering::SeqCst);
    });
}

impl Spare {
    /// Kills the unused child (closing its control socket alone would let it exit too,
    /// but its cgroup must go as well).
    fn retire(self) {
        self.cgroup.remove();
    }
}

fn target_request(target: &Target, args: &[String]) -> serde_json::Value {
    match target {
        Target::Script(path) => {
            json!({"kind": "run", "mode": "script", "target": path, "args": args})
        }
        Target::Module(module) => {
            json!({"kind": "run", "mode": "module", "target": module, "args": args})
        }
    }
}

fn pipe_reader(fd: OwnedFd) -> Result<tokio::net::unix::pipe::Receiver, JobError> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
        .map_err(|e| engine_err("cannot watch a pipe", e))
}

/// A warm run; falls back to a cold one if the pool cannot start.
pub(crate) async fn run(inner: &Arc<Inner>, job: Job) -> Result<RunResult, JobError> {
    let started = Instant::now();
    let (zygote, forked, cgroup) = match acquire(inner, &job.limits).await {
        Ok(acquired) => acquired,
        Err(e) => {
            tracing::warn!("warm pool unavailable, running cold: {e}");
            return crate::cold::run(inner, job).await;
        }
    };
    let (ws, target) = zygote.workspace(&job)?;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "warm run: child and workspace ready"
    );
    let (scratch, disk) = forked
        .start(
            inner,
            &ws,
            target_request(&target, job_args(&job)),
            &job.limits,
            &job.env,
        )
        .await?;
    // The run's code starts now: its time limit and wall time count from here, not from
    // the zygote's or the child's start-up (their own deadlines are above).
    let running = Instant::now();
    drop(forked.ctl);
    let child_id = forked.id;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "warm run: child released"
    );
    let exited = forked.exited;
    let report = pipe_reader(forked.report)?;
    let killer = Killer::new(Some(cgroup.clone()), None);
    let (spare, reaper) = (killer.clone(), forked.pid);
    let exit = async move {
        match first_report(report).await {
            Some(r) => {
                // Nothing of the run is left but its reaper, which is ending on its own.
                spare.spare(reaper);
                Some(r)
            }
            None => exited.await.ok(),
        }
    };
    let observed = supervise(
        pipe_reader(forked.stdout)?,
        pipe_reader(forked.stderr)?,
        exit,
        &job,
        killer,
        running,
        &disk,
    )
    .await;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "warm run: ended"
    );
    let result = classify(observed, Some(&cgroup), &job.limits, disk.sample());
    // The copy first: the scratch's pages are charged to the run's cgroup until it closes.
    crate::cold::collect(&ws, &job, Some(scratch)).await?;
    release(cgroup, ws, child_id, started);
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "warm run: result ready"
    );
    Ok(result)
}

/// How the run ended, from the first line on its reaper's report pipe; `None` when the
/// reaper ended without one (killed with its cgroup: the zygote reports that end).
async fn first_report(mut pipe: tokio::net::unix::pipe::Receiver) -> Option<ExitReport> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut chunk = [0u8; 512];
    while !line.contains(&b'\n') && line.len() < 4096 {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => line.extend_from_slice(&chunk[..n]),
        }
    }
    let end = line.iter().position(|b| *b == b'\n')?;
    serde_json::from_slice(&line[..end]).ok()
}

/// Releases an ended run's cgroup (waiting for its reaper to leave it), directories and id
/// on a thread of their own: the result does not wait for rmdirs, unlinks and the reaper's
/// exit (a copy of the zygote's address space to free). Bounded: the cgroup's removal
/// gives up after its kill deadline and the tree removal is iterative. Should the process
/// end first, the next start sweeps what is left (stale runs and cgroups).
fn release(cgroup: Arc<Cgroup>, ws: Workspace, id: ChildId, started: Instant) {
    let work = move || {
        cgroup.remove();
        ws.remove_now();
        drop(id);
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "warm run: cleaned up"
        );
    };
    let thread = std::thread::Builder::new().name("proctor-release".into());
    if let Err(e) = thread.spawn(work) {
        tracing::warn!("cannot start a thread to release a run ({e}): its cgroup and directories stay until the next start");
    }
}

/// What one snippet in a session did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionReply {
    /// `ok`, `error` (an exception), `disk_limit` (this call filled the session's disk quota
    /// or `/dev/shm`; the session lives on), `timeout`, `oom` or `killed` (the last three end
    /// the session unless the snippet could be interrupted in Python, in which case the
    /// session lives on).
    pub status: Status,
    /// Captured standard output (file-descriptor level).
    pub stdout: String,
    /// Captured standard error, with the traceback if the snippet raised.
    pub stderr: String,
    /// `repr` of the last expression's value, if the snippet ended with one.
    pub value: Option<String>,
    /// The exception, if any.
    pub error: Option<String>,
    /// Whether the call hit its timeout.
    pub timed_out: bool,
    /// Whether output was cut at the limit.
    pub output_truncated: bool,
    /// Time the snippet took.
    pub wall_ms: f64,
    /// Whether the session is still usable.
    pub session_alive: bool,
}

#[derive(Deserialize)]
struct ChildReply {
    ok: bool,
    stdout: String,
    stderr: String,
    value: Option<String>,
    error: Option<String>,
    timed_out: bool,
    output_truncated: bool,
    wall_ms: f64,
}

struct SessionState {
    /// Host pids of the session's processes, which live on between calls: its reaper, and
    /// the reaper's children, the init of the session's pid namespace and the session itself.
    pids: Vec<i32>,
    ctl: Arc<OwnedFd>,
    cgroup: Arc<Cgroup>,
    _ws: Workspace,
    _child_id: ChildId,
    limits: Limits,
    last_used: Mutex<Instant>,
    alive: AtomicBool,
    call_lock: tokio::sync::Mutex<()>,
    _zygote: Arc<Zygote>,
    /// Its scratch and `/dev/shm`, watched during each call.
    disk: DiskWatch,
}

impl SessionState {
    fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.cgroup.kill_all(Duration::from_secs(5));
    }
}

impl Drop for SessionState {
    fn drop(&mut self) {
        self.cgroup.remove();
    }
}

/// CPU quota of a session, in cores.
const SESSION_CPUS: f64 = 1.0;

/// A persistent forked child that runs successive snippets in one namespace.
/// Dropping the last handle kills it; so does its idle timeout.
#[derive(Clone)]
pub struct Session {
    state: Arc<SessionState>,
}

pub(crate) async fn open_session(
    inner: &Arc<Inner>,
    mut limits: Limits,
    idle: Duration,
) -> Result<Session, JobError> {
    // A session lives for many calls: whatever it runs gets one core at most.
    if limits.cpus <= 0.0 || limits.cpus > SESSION_CPUS {
        limits.cpus = SESSION_CPUS;
    }
    let (zygote, forked, cgroup) = acquire(inner, &limits).await?;
    let job = Job::new(proctor_core::Command::Code {
        code: String::new(),
    });
    let (ws, _) = zygote.workspace(&job)?;
    // The session's scratch lives in its own mount namespace as long as it does.
    let (_scratch, disk) = forked
        .start(inner, &ws, json!({"kind": "session"}), &limits, &[])
        .await?;
    // Sessions report output per call; the child's own stdout/stderr carry nothing.
    drop((forked.stdout, forked.stderr, forked.report, forked.exited));
    // The scratch came from the session's process, so it is alive, and so is its init.
    let mut pids = host_children(forked.pid);
    if pids.len() != 2 {
        return Err(JobError::Engine(
            "the session's processes vanished as it started".into(),
        ));
    }
    pids.push(forked.pid);
    let state = Arc::new(SessionState {
        pids,
        ctl: Arc::new(forked.ctl),
        cgroup,
        _ws: ws,
        _child_id: forked.id,
        limits,
        last_used: Mutex::new(Instant::now()),
        alive: AtomicBool::new(true),
        call_lock: tokio::sync::Mutex::new(()),
        _zygote: zygote,
        disk,
    });
    spawn_idle_reaper(Arc::downgrade(&state), idle);
    Ok(Session { state })
}

fn spawn_idle_reaper(state: Weak<SessionState>, idle: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(idle.min(Duration::from_secs(1))).await;
            let Some(s) = state.upgrade() else { return };
            if !s.alive.load(Ordering::SeqCst) {
                return;
            }
            let since = lock(&s.last_used).elapsed();
            if since >= idle && s.call_lock.try_lock().is_ok() {
                tracing::info!("session idle for {:.0} s, freeing it", since.as_secs_f64());
                let s2 = s.clone();
                let _ = tokio::task::spawn_blocking(move || s2.kill()).await;
                return;
            }
        }
    });
}

impl Session {
    /// Whether the session can still run snippets.
    pub fn is_alive(&self) -> bool {
        self.state.alive.load(Ordering::SeqCst)
    }

    /// Runs `code` in the session's namespace. A snippet that overruns `timeout` is
    /// interrupted (the session survives); one stuck where Python cannot interrupt it
    /// is killed with the session.
    pub async fn exec(&self, code: &str, timeout: Duration) -> Result<SessionReply, JobError> {
        let state = &self.state;
        let _call = state.call_lock.lock().await;
        if !self.is_alive() {
            return Err(JobError::Engine(
                "the session has ended (idle timeout, kill or crash); open a new one".into(),
            ));
        }
        *lock(&state.last_used) = Instant::now();
        let request = json!({
            "op": "exec",
            "code": code,
            "timeout_s": timeout.as_secs_f64(),
            "max_output_bytes": state.limits.max_output_bytes.min(60_000),
        });
        let encoded = request.to_string().len();
        if encoded > MAX_FRAME_BYTES {
            return Err(JobError::Engine(format!(
                "the snippet is too large: {} bytes, {encoded} once JSON-encoded with its call; the limit is {MAX_FRAME_BYTES} bytes (the session is still alive)",
                code.len()
            )));
        }
        // A call fills the disk if it found room and was seen without any (a snippet may
        // free it after its ENOSPC); one that found it full already may never have written.
        let was_full = state.disk.full_now();
        state.disk.reset();
        send(&state.ctl, &request, &[])?;
        let ctl = state.ctl.clone();
        let hard = timeout + Duration::from_secs(2);
        /// What the control socket gave back.
        enum Answer {
            Reply(Vec<u8>),
            /// Nothing within the hard deadline: stuck where Python cannot interrupt it.
            Silent,
            /// The child is gone (OOM kill, crash).
            Closed,
        }
        let reading = tokio::task::spawn_blocking(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(ctl.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(hard.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(0) => return Answer::Silent,
                Ok(_) => {}
                Err(_) => return Answer::Closed,
            }
            let mut buf = vec![0u8; MAX_FRAME_BYTES];
            match recv(ctl.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) if n > 0 => Answer::Reply(buf[..n].to_vec()),
                _ => Answer::Closed,
            }
        });
        let answer = tokio::select! {
            answer = reading => answer.map_err(|e| engine_err("session reader failed", e))?,
            _ = state.disk.keep_sampling() => unreachable!("sampling never ends"),
        };
        *lock(&state.last_used) = Instant::now();
        let parsed = match &answer {
            Answer::Reply(bytes) => serde_json::from_slice::<ChildReply>(bytes).ok(),
            _ => None,
        };
        if let Some(r) = parsed {
            // What the snippet left running (children, double forks) ends with the call.
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                s.cgroup.kill_all_but(&s.pids, Duration::from_secs(5))
            })
            .await;
            let filled = state.disk.sample().filter(|_| !was_full);
            let (status, stderr) = match filled {
                Some(_) if !r.timed_out => (
                    Status::DiskLimit,
                    r.stderr + &crate::supervise::filled_note(filled, &state.limits),
                ),
                _ if r.timed_out => (Status::Timeout, r.stderr),
                _ if r.ok => (Status::Ok, r.stderr),
                _ => (Status::Error, r.stderr),
            };
            return Ok(SessionReply {
                status,
                stdout: r.stdout,
                stderr,
                value: r.value,
                error: r.error,
                timed_out: r.timed_out,
                output_truncated: r.output_truncated,
                wall_ms: r.wall_ms,
                session_alive: true,
            });
        }
        let oom = state.cgroup.oom_killed();
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || s.kill()).await;
        let (status, stderr) = match answer {
            _ if oom => (
                Status::Oom,
                format!("[proctor] the session exceeded its memory limit of {} MiB and was killed", state.limits.memory_mb),
            ),
            Answer::Silent => (
                Status::Timeout,
                format!("[proctor] the snippet could not be interrupted after {:.1} s; the session was killed", timeout.as_secs_f64()),
            ),
            _ => (Status::Killed, "[proctor] the session's process died".to_string()),
        };
        Ok(SessionReply {
            status,
            stdout: String::new(),
            stderr,
            value: None,
            error: Some(format!("session ended: {status}")),
            timed_out: status == Status::Timeout,
            output_truncated: false,
            wall_ms: hard.as_secs_f64() * 1000.0,
            session_alive: false,
        })
    }

    /// Ends the session now.
    pub async fn close(&self) {
        let s = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || s.kill()).await;
    }
}

//! Watching a run: bounded output capture, the wall-clock limit, and turning what the
//! kernel reported into a [`RunResult`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_core::{Job, Limits, OutputTap, RunResult, Status, Stream};
use proctor_sandbox::cgroup::Cgroup;
use proctor_sandbox::ExitReport;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::scratch::{DiskWatch, Filled};

/// Kills a run's whole tree. Cheap to clone into readers and timers.
#[derive(Clone)]
pub(crate) struct Killer {
    cgroup: Option<Arc<Cgroup>>,
    /// Process groups to kill as well (the unsandboxed developer mode has no cgroup).
    pgid: Option<i32>,
    /// A process of the cgroup not to wait for (0: none), see [`Killer::spare`].
    spared: Arc<AtomicI32>,
}

impl Killer {
    pub fn new(cgroup: Option<Arc<Cgroup>>, pgid: Option<i32>) -> Killer {
        Killer {
            cgroup,
            pgid,
            spared: Arc::new(AtomicI32::new(0)),
        }
    }

    /// From now on, kills leave `pid` alone and do not wait for it: a warm run's reaper
    /// that reported the run's end, with nothing of the run left, and is exiting itself
    /// (its cgroup's removal waits for it, off the result's path).
    pub fn spare(&self, pid: i32) {
        self.spared.store(pid, Ordering::SeqCst);
    }

    pub async fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) of a process group we created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        if let Some(cg) = self.cgroup.clone() {
            let spared = self.spared.load(Ordering::SeqCst);
            let _ = tokio::task::spawn_blocking(move || {
                let deadline = Duration::from_secs(5);
                match spared {
                    0 => cg.kill_all(deadline),
                    pid => cg.kill_all_but(&[pid], deadline),
                }
            })
            .await;
        }
    }
}

/// Reads at most `limit` bytes, showing them to `tap` as they come; past that, kills the
/// run and drains nothing more.
async fn read_limited<R: AsyncRead + Unpin>(
    mut r: R,
    limit: u64,
    exceeded: Arc<AtomicBool>,
    killer: Killer,
    tap: Option<(&OutputTap, Stream)>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => {
                let room = (limit as usize).saturating_sub(buf.len());
                let kept = &chunk[..n.min(room)];
                if let Some((tap, stream)) = tap {
                    tap.feed(stream, kept);
                }
                buf.extend_from_slice(kept);
                if n > room {
                    exceeded.store(true, Ordering::SeqCst);
                    killer.kill().await;
                    return buf;
                }
            }
        }
    }
}

/// What the supervision saw, before classification.
pub(crate) struct Observed {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<ExitReport>,
    pub timed_out: bool,
    pub output_exceeded: bool,
    /// The run's own time: from its start to its main process's end (or its kill).
    pub wall: Duration,
}

/// Captures both streams and waits for `exit`, within `limits.timeout_ms` counted from
/// `started`, the moment the run's code started; meanwhile samples `disk`.
pub(crate) async fn supervise<O, E, X>(
    stdout: O,
    stderr: E,
    exit: X,
    job: &Job,
    killer: Killer,
    started: Instant,
    disk: &DiskWatch,
) -> Observed
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
    X: Future<Output = Option<ExitReport>>,
{
    let limits = &job.limits;
    let tap = job.tap.as_ref();
    let exceeded = Arc::new(AtomicBool::new(false));
    // The run ends with its main process: whatever it left behind (daemons holding the
    // output pipes open) is killed, as a cold run's pid namespace would be.
    let reaper = killer.clone();
    let exit = async move {
        let report = exit.await;
        let ended = Instant::now();
        reaper.kill().await;
        (report, ended)
    };
    let work = async {
        tokio::join!(
            read_limited(
                stdout,
                limits.max_output_bytes,
                exceeded.clone(),
                killer.clone(),
                tap.map(|t| (t, Stream::Stdout)),
            ),
            read_limited(
                stderr,
                limits.max_output_bytes,
                exceeded.clone(),
                killer.clone(),
                tap.map(|t| (t, Stream::Stderr)),
            ),
            exit
        )
    };
    tokio::pin!(work);
    let sampling = disk.keep_sampling();
    tokio::pin!(sampling);
    let deadline = Duration::from_millis(limits.timeout_ms);
    let mut timed_out = false;
    let (stdout, stderr, (exit, ended)) = tokio::select! {
        r = &mut work => r,
        _ = &mut sampling => unreachable!("sampling never ends"),
        _ = tokio::time::sleep(deadline.saturating_sub(started.elapsed())) => {
            timed_out = true;
            let killed = Instant::now();
            killer.kill().await;
            let (stdout, stderr, (exit, _)) = (&mut work).await;
            (stdout, stderr, (exit, killed))
        }
    };
    Observed {
        stdout,
        stderr,
        exit,
        timed_out,
        output_exceeded: exceeded.load(Ordering::SeqCst),
        wall: ended.saturating_duration_since(started),
    }
}

/// Turns observations into a result. Memory is judged by the kernel's counters, with
/// one textual sign accepted: a failed run whose last line is Python's `MemoryError`
/// (an allocation refused outright, e.g. 50 GB on a 24 GB machine, never reaches the
/// cgroup limit). A run can only make its own result worse by faking it. `disk`: what the
/// run filled, if it filled its scratch or its `/dev/shm` (see [`DiskWatch`]).
pub(crate) fn classify(
    obs: Observed,
    cgroup: Option<&Cgroup>,
    limits: &Limits,
    disk: Option<Filled>,
) -> RunResult {
    let exit = obs.exit.unwrap_or_default();
    let stderr = String::from_utf8_lossy(&obs.stderr).into_owned();
    let memory_error = exit.exit_code.is_some_and(|c| c != 0)
        && stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.starts_with("MemoryError"));
    let oom = memory_error || cgroup.is_some_and(Cgroup::oom_killed);
    let status = if obs.output_exceeded {
        Status::OutputLimit
    } else if obs.timed_out {
        Status::Timeout
    } else if oom {
        Status::Oom
    } else if disk.is_some() {
        Status::DiskLimit
    } else {
        match (exit.exit_code, exit.signal) {
            (Some(0), _) => Status::Ok,
            (Some(_), _) => Status::Error,
            _ => Status::Killed,
        }
    };
    let mut stderr = stderr;
    if status == Status::Oom && !stderr.contains("memory limit") {
        stderr.push_str(&format!(
            "\n[proctor] the run exceeded its memory limit of {} MiB and was stopped\n",
            limits.memory_mb
        ));
    }
    if status == Status::Timeout {
        stderr.push_str(&format!(
            "\n[proctor] the run exceeded its time limit of {:.1} s and was killed\n",
            limits.timeout_ms as f64 / 1000.0
        ));
    }
    if status == Status::DiskLimit {
        stderr.push_str(&filled_note(disk, limits));
    }
    if status == Status::OutputLimit {
        stderr.push_str(&format!(
            "\n[proctor] output passed the limit of {} bytes; the rest was dropped and the run stopped\n",
            limits.max_output_bytes
        ));
    }
    let peak_kb = exit.maxrss_kb.max(0) as f64;
    let peak_rss_mb = if peak_kb > 0.0 {
        peak_kb / 1024.0
    } else {
        cgroup.and_then(Cgroup::peak_bytes).unwrap_or(0) as f64 / (1024.0 * 1024.0)
    };
    RunResult {
        status,
        exit_code: exit.exit_code,
        stdout: String::from_utf8_lossy(&obs.stdout).into_owned(),
        stderr,
        wall_ms: obs.wall.as_secs_f64() * 1000.0,
        peak_rss_mb,
        output_truncated: obs.output_exceeded,
        memory_peak_mb: cgroup
            .and_then(Cgroup::peak_bytes)
            .map(|b| b as f64 / (1024.0 * 1024.0)),
    }
}

/// What proctor says of a filled filesystem.
pub(crate) fn filled_note(disk: Option<Filled>, limits: &Limits) -> String {
    match disk {
        Some(Filled::Shm) => format!(
            "\n[proctor] the run filled its /dev/shm ({} MiB); writes past it failed with ENOSPC\n",
            proctor_sandbox::SHM_BYTES >> 20
        ),
        _ => format!(
            "\n[proctor] the run filled its disk quota of {} MiB (its scratch directory); writes past it failed with ENOSPC\n",
            limits.disk_mb
        ),
    }
}

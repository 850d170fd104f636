//! Admission of gradings: a grading runs sandboxes allowed several GiB and a core each, so
//! a server grades only as many at once as the host's memory and cores hold — the sum of
//! the running gradings' memory limits stays within a budget, at most `max_running` run
//! at once — and queues a few more; beyond the queue a request is refused at once with a
//! time to retry, never left to exhaust the host.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::GymError;

/// How much grading a server takes on at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradingLimits {
    /// The sum of the memory limits of the gradings running at once, in MiB. A grading
    /// that alone needs more runs alone.
    pub memory_budget_mb: u64,
    /// Gradings running at once (each keeps about a core busy).
    pub max_running: usize,
    /// Gradings waiting for their turn; more are refused (`CAPACITY_REACHED`, with a
    /// time to retry).
    pub max_queued: usize,
}

/// Memory left to everything else on the host: the server, episodes' sessions, the system.
fn host_reserve_mb(total_mb: u64) -> u64 {
    (total_mb / 8).max(2048)
}

impl GradingLimits {
    /// Limits that this host holds: the memory budget is the host's memory (or the
    /// server's cgroup limit, when lower) minus a reserve of an eighth (at least 2 GiB),
    /// one grading per core, and a queue of four per core (at least eight).
    pub fn for_host() -> GradingLimits {
        let total_mb = [host_memory_mb(), cgroup_memory_mb()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(8192);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        GradingLimits {
            memory_budget_mb: total_mb.saturating_sub(host_reserve_mb(total_mb)).max(1),
            max_running: cores,
            max_queued: (4 * cores).max(8),
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in MiB.
fn host_memory_mb() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// The memory limit of this process's cgroup (v2 `memory.max`, v1
/// `memory.limit_in_bytes`), in MiB, when one is set and visible.
fn cgroup_memory_mb() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = match controllers {
            "" => format!("/sys/fs/cgroup{path}/memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
            }
            _ => return None,
        };
        let bytes: u64 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
        Some(bytes >> 20)
    })
}

/// What `/health` shows of grading.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GradingStatus {
    /// Gradings running now.
    pub running: usize,
    /// Gradings waiting for their turn.
    pub queued: usize,
    /// The sum of the running gradings' memory limits, in MiB.
    pub memory_reserved_mb: u64,
    /// The most gradings that ran at once since the server started.
    pub peak_running: usize,
    /// Gradings refused because the queue was full.
    pub refused: u64,
}

struct Inner {
    limits: GradingLimits,
    slots: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    status: Mutex<GradingStatus>,
    /// Mean seconds a grading took (exponentially weighted): what a refused client is
    /// told to wait.
    mean_s: Mutex<f64>,
}

/// The gradings of one server: see the module's documentation.
#[derive(Clone)]
pub struct Admission(Arc<Inner>);

/// A running grading's share of the budget, given back when dropped.
pub struct Ticket {
    admission: Arc<Inner>,
    memory_mb: u64,
    started: Instant,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// Counts a waiting request as queued until it runs or gives up (its future dropped).
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.status().queued -= 1;
    }
}

/// Seconds a grading is assumed to take before any finished.
const FIRST_ESTIMATE_S: f64 = 60.0;

impl Admission {
    /// An admission under `limits`.
    pub fn new(limits: GradingLimits) -> Admission {
        Admission(Arc::new(Inner {
            slots: Arc::new(Semaphore::new(limits.max_running.max(1))),
            memory: Arc::new(Semaphore::new(budget_permits(&limits) as usize)),
            limits,
            status: Mutex::new(GradingStatus::default()),
            mean_s: Mutex::new(FIRST_ESTIMATE_S),
        }))
    }

    /// Running, queued and reserved now.
    pub fn status(&self) -> GradingStatus {
        self.0.status().clone()
    }

    /// Waits for room for a grading whose sandboxes may use `memory_mb` at once; refused
    /// at once when the queue is full.
    pub async fn admit(&self, memory_mb: u64) -> Result<Ticket, GymError> {
        let inner = &self.0;
        let need = memory_mb.clamp(1, u64::from(inner.budget_permits())) as u32;
        if let Some(permits) = inner.try_take(need) {
            return Ok(self.start(permits, need));
        }
        let waiting = inner.enqueue()?;
        let slot = inner.slots.clone().acquire_owned().await;
        let memory = inner.memory.clone().acquire_many_owned(need).await;
        drop(waiting);
        let permits = (slot.expect("never closed"), memory.expect("never closed"));
        Ok(self.start(permits, need))
    }

    fn start(&self, permits: (OwnedSemaphorePermit, OwnedSemaphorePermit), mb: u32) -> Ticket {
        let mut status = self.0.status();
        status.running += 1;
        status.memory_reserved_mb += u64::from(mb);
        status.peak_running = status.peak_running.max(status.running);
        Ticket {
            admission: self.0.clone(),
            memory_mb: u64::from(mb),
            started: Instant::now(),
            _permits: permits,
        }
    }
}

/// The memory budget as semaphore permits (one per MiB; `acquire_many` takes a `u32`).
fn budget_permits(limits: &GradingLimits) -> u32 {
    limits.memory_budget_mb.clamp(1, u64::from(u32::MAX)) as u32
}

impl Inner {
    fn budget_permits(&self) -> u32 {
        budget_permits(&self.limits)
    }

    fn status(&self) -> MutexGuard<'_, GradingStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Room right now, without queueing (fails while others wait: the semaphores are fair).
    fn try_take(&self, need: u32) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let memory = self.memory.clone().try_acquire_many_owned(need).ok()?;
        Some((slot, memory))
    }

    fn enqueue(&self) -> Result<Waiting<'_>, GymError> {
        let mut status = self.status();
        if status.queued >= self.limits.max_queued {
            status.refused += 1;
            let waiting = status.queued + status.running;
            drop(status);
            return Err(GymError::Busy {
                running: self.limits.max_running,
                queued: self.limits.max_queued,
                retry_after_s: self.retry_after(waiting),
            });
        }
        status.queued += 1;
        Ok(Waiting(self))
    }

    /// Seconds until room is likely: the gradings ahead, `max_running` at a time.
    fn retry_after(&self, ahead: usize) -> u64 {
        let mean = *self.mean_s.lock().unwrap_or_else(|e| e.into_inner());
        let rounds = ahead.div_ceil(self.limits.max_running.max(1)).max(1);
        (mean * rounds as f64).ceil().clamp(1.0, 3600.0) as u64
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        {
            let mut mean = self
                .admission
                .mean_s
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *mean = 0.8 * *mean + 0.2 * took;
        }
        let mut status = self.admission.status();
        status.running -= 1;
        status.memory_reserved_mb -= self.memory_mb;
    }
}

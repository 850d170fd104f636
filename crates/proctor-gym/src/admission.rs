//! Admission of what the gym runs in sandboxes: episodes' sessions (long-lived, each
//! allowed its limits' memory) and gradings (a minute or two, several GiB and a core
//! each). The memory limits of everything admitted add up to at most a budget that the
//! host holds, so whatever clients do in their sandboxes the host is not driven out of
//! memory.
//!
//! Gradings: at most `max_running` at once, a bounded FIFO queue waits, and beyond it a
//! request is refused at once with a time to retry. Sessions are admitted at once or
//! refused (a reset does not wait), and never take memory the first waiting grading
//! needs. Nothing waits while holding memory (an episode's session closes once its fix
//! is in line), so the gradings of open episodes always get their turn.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Notify;

use crate::GymError;

/// How much the gym takes on at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradingLimits {
    /// The sum of the memory limits of the sessions and gradings running at once, in
    /// MiB. A grading that alone needs more counts as the whole budget: it runs alone.
    pub memory_budget_mb: u64,
    /// Gradings running at once (each keeps about a core busy).
    pub max_running: usize,
    /// Gradings waiting for their turn; more are refused (`CAPACITY_REACHED`, with a
    /// time to retry).
    pub max_queued: usize,
}

/// Memory left to everything else on the host: the server, the system.
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

/// What `/health` shows of the gym's load.
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
    /// Episodes' sessions open now.
    pub sessions: usize,
    /// The sum of their memory limits, in MiB.
    pub sessions_memory_mb: u64,
}

struct Ledger {
    status: GradingStatus,
    /// The waiting gradings (id, MiB), first in line first.
    queue: VecDeque<(u64, u64)>,
    next_id: u64,
    /// Mean seconds a grading took (exponentially weighted): what a refused client is
    /// told to wait.
    mean_s: f64,
}

impl Ledger {
    fn used_mb(&self) -> u64 {
        self.status.memory_reserved_mb + self.status.sessions_memory_mb
    }
}

struct Inner {
    limits: GradingLimits,
    max_sessions: usize,
    ledger: Mutex<Ledger>,
    /// Signalled whenever memory, a slot or the head of the queue frees up.
    changed: Notify,
}

/// The sessions and gradings of one gym: see the module's documentation.
#[derive(Clone)]
pub struct Admission(Arc<Inner>);

/// A running grading's share of the budget, given back when dropped.
pub struct Ticket {
    admission: Arc<Inner>,
    memory_mb: u64,
    started: Instant,
}

/// An open session's share of the budget, given back when dropped.
pub struct SessionTicket {
    admission: Arc<Inner>,
    memory_mb: u64,
}

/// A grading let in: running already, or in line (leaving it when dropped).
pub enum Entry {
    /// Room was free: it runs.
    Running(Ticket),
    /// It waits its turn.
    Queued(Waiting),
}

/// A grading in line; dropped, it leaves the line (the request gave up).
pub struct Waiting {
    admission: Admission,
    id: u64,
    need: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let inner = &self.admission.0;
        let mut ledger = inner.ledger();
        ledger.queue.retain(|&(id, _)| id != self.id);
        ledger.status.queued = ledger.queue.len();
        drop(ledger);
        inner.changed.notify_waiters();
    }
}

/// Seconds a grading is assumed to take before any finished.
const FIRST_ESTIMATE_S: f64 = 60.0;

impl Admission {
    /// An admission under `limits` holding at most `max_sessions` sessions.
    pub fn new(limits: GradingLimits, max_sessions: usize) -> Admission {
        Admission(Arc::new(Inner {
            limits,
            max_sessions,
            ledger: Mutex::new(Ledger {
                status: GradingStatus::default(),
                queue: VecDeque::new(),
                next_id: 0,
                mean_s: FIRST_ESTIMATE_S,
            }),
            changed: Notify::new(),
        }))
    }

    /// Running, queued and reserved now.
    pub fn status(&self) -> GradingStatus {
        self.0.ledger().status.clone()
    }

    /// Waits for room for a grading whose sandboxes may use `memory_mb` at once; refused
    /// at once when the queue is full.
    pub async fn admit(&self, memory_mb: u64) -> Result<Ticket, GymError> {
        Ok(self.enter(memory_mb)?.admitted().await)
    }

    /// Lets a grading of `memory_mb` in: it runs now, or takes its place in line;
    /// refused at once when the line is full.
    pub fn enter(&self, memory_mb: u64) -> Result<Entry, GymError> {
        let inner = &*self.0;
        let need = memory_mb.clamp(1, inner.limits.memory_budget_mb.max(1));
        let mut ledger = inner.ledger();
        if ledger.queue.is_empty() && inner.fits(&ledger, need) {
            return Ok(Entry::Running(self.start(&mut ledger, need)));
        }
        if ledger.queue.len() >= inner.limits.max_queued {
            ledger.status.refused += 1;
            let ahead = ledger.queue.len() + ledger.status.running;
            return Err(GymError::Busy {
                running: inner.limits.max_running,
                queued: inner.limits.max_queued,
                retry_after_s: inner.retry_after(&ledger, ahead),
            });
        }
        let id = ledger.next_id;
        ledger.next_id += 1;
        ledger.queue.push_back((id, need));
        ledger.status.queued = ledger.queue.len();
        Ok(Entry::Queued(Waiting {
            admission: self.clone(),
            id,
            need,
        }))
    }

    /// Room for a session whose limits allow `memory_mb`, now or never: refused when the
    /// gym holds its most sessions or the memory is spent (counting what the first
    /// waiting grading needs, so resets cannot starve it).
    pub fn open_session(&self, memory_mb: u64) -> Result<SessionTicket, GymError> {
        let inner = &*self.0;
        let mut ledger = inner.ledger();
        let budget = inner.limits.memory_budget_mb;
        let head = ledger.queue.front().map_or(0, |&(_, need)| need);
        let status = &ledger.status;
        if status.sessions >= inner.max_sessions {
            return Err(GymError::Capacity(format!(
                "{} episodes are running, the most this gym holds",
                status.sessions
            )));
        }
        if ledger.used_mb() + head + memory_mb > budget {
            return Err(GymError::Capacity(format!(
                "{} episodes and {} gradings are running and {} gradings wait; one more episode's {memory_mb} MiB does not fit the gym's {budget} MiB of memory",
                status.sessions, status.running, status.queued
            )));
        }
        ledger.status.sessions += 1;
        ledger.status.sessions_memory_mb += memory_mb;
        Ok(SessionTicket {
            admission: self.0.clone(),
            memory_mb,
        })
    }

    fn start(&self, ledger: &mut Ledger, memory_mb: u64) -> Ticket {
        let status = &mut ledger.status;
        status.running += 1;
        status.memory_reserved_mb += memory_mb;
        status.peak_running = status.peak_running.max(status.running);
        Ticket {
            admission: self.0.clone(),
            memory_mb,
            started: Instant::now(),
        }
    }
}

impl Entry {
    /// The grading's ticket, once it is its turn and there is room.
    pub async fn admitted(self) -> Ticket {
        let waiting = match self {
            Entry::Running(ticket) => return ticket,
            Entry::Queued(waiting) => waiting,
        };
        let admission = waiting.admission.clone();
        let inner = &*admission.0;
        loop {
            // Registered before looking, so a change between the look and the wait wakes it.
            let changed = inner.changed.notified();
            {
                let mut ledger = inner.ledger();
                let first = ledger.queue.front().map(|&(id, _)| id) == Some(waiting.id);
                if first && inner.fits(&ledger, waiting.need) {
                    let ticket = admission.start(&mut ledger, waiting.need);
                    drop(ledger);
                    drop(waiting); // leaves the line and wakes the next in it
                    return ticket;
                }
            }
            changed.await;
        }
    }
}

impl Inner {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a grading of `need` MiB (at most the budget) runs now: a slot is free and
    /// its memory fits beside the running gradings and the open sessions.
    fn fits(&self, ledger: &Ledger, need: u64) -> bool {
        ledger.status.running < self.limits.max_running.max(1)
            && ledger.used_mb() + need <= self.limits.memory_budget_mb
    }

    /// Seconds until room is likely: the gradings ahead, `max_running` at a time.
    fn retry_after(&self, ledger: &Ledger, ahead: usize) -> u64 {
        let rounds = ahead.div_ceil(self.limits.max_running.max(1)).max(1);
        (ledger.mean_s * rounds as f64).ceil().clamp(1.0, 3600.0) as u64
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        let mut ledger = self.admission.ledger();
        ledger.mean_s = 0.8 * ledger.mean_s + 0.2 * took;
        ledger.status.running -= 1;
        ledger.status.memory_reserved_mb -= self.memory_mb;
        drop(ledger);
        self.admission.changed.notify_waiters();
    }
}

impl Drop for SessionTicket {
    fn drop(&mut self) {
        let mut ledger = self.admission.ledger();
        ledger.status.sessions -= 1;
        ledger.status.sessions_memory_mb -= self.memory_mb;
        drop(ledger);
        self.admission.changed.notify_waiters();
    }
}

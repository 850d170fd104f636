//! The static pass's time budget and cancellation: checked between files and inside the
//! Python parser, so an adversarial input or a client that went away cannot hold a thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A deadline plus a flag the waiting side sets when nobody wants the answer any more.
#[derive(Debug, Clone)]
pub struct Budget {
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
}

impl Budget {
    /// A budget of `limit` from now.
    pub fn new(limit: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + limit,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A budget that never runs out (the synchronous static pass of the CLI and bench).
    pub fn unlimited() -> Budget {
        Budget::new(Duration::from_secs(365 * 24 * 3600))
    }

    /// Whether the work should stop: out of time or cancelled.
    pub fn exhausted(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// A guard that cancels the budget when dropped (the review future was dropped,
    /// e.g. because the HTTP client disconnected) unless it was disarmed.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.cancelled.clone())
    }
}

/// Cancels its budget when dropped.
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

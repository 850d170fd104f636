//! Login throttling by name *and* client address, with exponential backoff: guessing a
//! password from one address gets slower and slower, while the same name from another
//! address (the legitimate user) is not locked out by it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before the backoff starts.
const FREE_FAILURES: u32 = 5;
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Entries idle for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

#[derive(Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<(String, String), (u32, Instant)>>,
}

impl Throttle {
    /// How long `(name, client)` must still wait before its next attempt.
    pub(crate) fn wait(&self, name: &str, client: &str) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, last) = map.get(&(name.to_string(), client.to_string()))?;
        let over = count.checked_sub(FREE_FAILURES)?;
        let wait = Duration::from_secs(1u64 << over.min(10)).min(MAX_WAIT);
        wait.checked_sub(last.elapsed()).filter(|d| !d.is_zero())
    }

    pub(crate) fn failed(&self, name: &str, client: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, last)| last.elapsed() < FORGET_AFTER);
        let entry = map
            .entry((name.to_string(), client.to_string()))
            .or_insert((0, Instant::now()));
        *entry = (entry.0 + 1, Instant::now());
    }

    pub(crate) fn succeeded(&self, name: &str, client: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(name.to_string(), client.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_per_name_and_address() {
        let t = Throttle::default();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.wait("alice", "10.0.0.9"), None);
            t.failed("alice", "10.0.0.9");
        }
        t.failed("alice", "10.0.0.9");
        assert!(t.wait("alice", "10.0.0.9").is_some());
        // The legitimate user elsewhere is not locked out.
        assert_eq!(t.wait("alice", "192.168.1.2"), None);
        t.succeeded("alice", "10.0.0.9");
        assert_eq!(t.wait("alice", "10.0.0.9"), None);
    }
}

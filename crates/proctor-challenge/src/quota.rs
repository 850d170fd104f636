//! Submission quotas per account, over sliding windows of an account's recent uploads:
//! a daily quota of official evaluations and an hourly rate of uploads (see
//! [`crate::definition::Limits`]). An upload over either is refused before intake, with
//! when the oldest counted upload leaves the window.

use std::time::Duration;

use proctor_store::Recent;

use crate::definition::Limits;

/// The hourly window.
pub const HOUR_MS: i64 = 3_600_000;
/// The daily window.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// An upload refused by a quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Exceeded {
    /// What limit, in words.
    pub message: String,
    /// Unix ms when one more upload is allowed.
    pub resets_at_ms: i64,
    /// How long until then.
    pub retry_after: Duration,
}

/// Whether one more upload to `challenge` (`official` or not) fits the limits, given the
/// account's uploads of the last day (`recent`, any challenge) at `now_ms`.
pub fn check(
    limits: &Limits,
    challenge: &str,
    official: bool,
    recent: &[Recent],
    now_ms: i64,
) -> Result<(), Exceeded> {
    let mine = || recent.iter().filter(|r| r.challenge == challenge);
    let hourly: Vec<i64> = mine()
        .filter(|r| r.created_ms > now_ms - HOUR_MS)
        .map(|r| r.created_ms)
        .collect();
    if let Some(reset) = over(&hourly, limits.submissions_per_hour, HOUR_MS) {
        return Err(exceeded(
            format!(
                "rate limit: {} submissions per hour to {challenge}",
                limits.submissions_per_hour
            ),
            reset,
            now_ms,
        ));
    }
    let daily: Vec<i64> = mine()
        .filter(|r| r.official && !r.rejected && r.created_ms > now_ms - DAY_MS)
        .map(|r| r.created_ms)
        .collect();
    match over(&daily, limits.official_per_day, DAY_MS) {
        Some(reset) if official => Err(exceeded(
            format!(
                "daily quota: {} official submissions per 24 hours to {challenge}",
                limits.official_per_day
            ),
            reset,
            now_ms,
        )),
        _ => Ok(()),
    }
}

/// When the window of `times` (oldest first) admits one more, if it is full.
fn over(times: &[i64], limit: u32, window_ms: i64) -> Option<i64> {
    let limit = limit as usize;
    (times.len() >= limit).then(|| {
        // The upload that must leave the window for one more to fit.
        let leaving = times.len() - limit;
        times.get(leaving).map_or(0, |t| t + window_ms)
    })
}

fn exceeded(what: String, resets_at_ms: i64, now_ms: i64) -> Exceeded {
    let retry_after = Duration::from_millis((resets_at_ms - now_ms).max(1000) as u64);
    Exceeded {
        message: format!(
            "{what} reached; retry in {} s",
            retry_after.as_secs().max(1)
        ),
        resets_at_ms,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(challenge: &str, official: bool, rejected: bool, created_ms: i64) -> Recent {
        Recent {
            challenge: challenge.into(),
            official,
            rejected,
            created_ms,
        }
    }

    #[test]
    fn daily_official_quota_counts_evaluated_uploads_of_the_challenge() {
        let limits = Limits {
            official_per_day: 2,
            submissions_per_hour: 100,
        };
        let now = 10 * DAY_MS;
        let t0 = now - 5 * HOUR_MS;
        let mut recent = vec![
            up("c", true, false, t0),
            up("c", true, true, t0 + 1), // rejected at intake: not a probe
            up("other", true, false, t0 + 2),
            up("c", false, false, t0 + 3),
        ];
        assert_eq!(check(&limits, "c", true, &recent, now), Ok(()));
        recent.push(up("c", true, false, t0 + 10));
        let e = check(&limits, "c", true, &recent, now).unwrap_err();
        assert_eq!(
            e.resets_at_ms,
            t0 + DAY_MS,
            "when the oldest leaves the window"
        );
        assert_eq!(e.retry_after, Duration::from_millis(19 * HOUR_MS as u64));
        assert!(e.message.starts_with("daily quota: 2 official"), "{e}");
        // Public uploads are not limited by it, and a day later it is free again.
        assert_eq!(check(&limits, "c", false, &recent, now), Ok(()));
        assert_eq!(check(&limits, "c", true, &recent, t0 + DAY_MS + 1), Ok(()));
    }

    #[test]
    fn hourly_rate_counts_every_upload_of_the_challenge() {
        let limits = Limits {
            official_per_day: 100,
            submissions_per_hour: 3,
        };
        let now = 100 * HOUR_MS;
        let recent: Vec<_> = (0..4)
            .map(|i| up("c", i % 2 == 0, i == 3, now - HOUR_MS + 1000 * (i + 1)))
            .collect();
        let e = check(&limits, "c", false, &recent, now).unwrap_err();
        // Four in the window, three allowed: the second-oldest must leave.
        assert_eq!(e.resets_at_ms, now + 2000);
        assert_eq!(e.retry_after, Duration::from_secs(2));
        assert!(
            e.message.starts_with("rate limit: 3 submissions per hour"),
            "{e}"
        );
        assert_eq!(check(&limits, "other", false, &recent, now), Ok(()));
        assert_eq!(check(&limits, "c", false, &recent, now + 2001), Ok(()));
    }
}

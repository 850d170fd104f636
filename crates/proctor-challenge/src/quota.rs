//! Submission quotas per account (see [`crate::definition::Limits`]): a daily quota of
//! official evaluations that resets at 00:00 UTC, as Kaggle's does, and an hourly rate of
//! uploads over a sliding window. An upload over either is refused before intake, with
//! when one more fits: the next UTC midnight, or when the oldest counted upload leaves the
//! hour.

use std::time::Duration;

use proctor_store::Recent;

use crate::definition::Limits;

/// The hourly window.
pub const HOUR_MS: i64 = 3_600_000;
/// A day.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The start (Unix ms) of the UTC day `now_ms` is in.
pub fn utc_day_start(now_ms: i64) -> i64 {
    now_ms.div_euclid(DAY_MS) * DAY_MS
}

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
/// account's uploads of the last 24 hours (`recent`, any challenge) at `now_ms`.
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
    let today = utc_day_start(now_ms);
    let official_today = mine()
        .filter(|r| r.official && !r.rejected && r.created_ms >= today)
        .count();
    if official && official_today >= limits.official_per_day as usize {
        return Err(exceeded(
            format!(
                "daily quota: {} official submissions per UTC day to {challenge}",
                limits.official_per_day
            ),
            today + DAY_MS,
            now_ms,
        ));
    }
    Ok(())
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
            "{what} reached; retry at {} (in {} s)",
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_millis(resets_at_ms.max(0) as u64)
            ),
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
    fn daily_official_quota_counts_evaluated_uploads_of_the_utc_day() {
        let limits = Limits {
            official_per_day: 2,
            submissions_per_hour: 100,
            ..Limits::default()
        };
        // 2026-12-07 19:00 UTC; yesterday's uploads do not count, however recent.
        let midnight = 1_796_601_600_000;
        assert_eq!(utc_day_start(midnight + 19 * HOUR_MS), midnight);
        let now = midnight + 19 * HOUR_MS;
        let mut recent = vec![
            up("c", true, false, midnight - 1), // 23:59:59.999 yesterday
            up("c", true, false, midnight + HOUR_MS),
            up("c", true, true, midnight + 2 * HOUR_MS), // rejected at intake: not a probe
            up("other", true, false, midnight + 3 * HOUR_MS),
            up("c", false, false, midnight + 4 * HOUR_MS),
        ];
        assert_eq!(check(&limits, "c", true, &recent, now), Ok(()));
        recent.push(up("c", true, false, midnight + 18 * HOUR_MS));
        let e = check(&limits, "c", true, &recent, now).unwrap_err();
        assert_eq!(e.resets_at_ms, midnight + DAY_MS, "the next UTC midnight");
        assert_eq!(e.retry_after, Duration::from_millis(5 * HOUR_MS as u64));
        assert!(
            e.message.starts_with("daily quota: 2 official submissions per UTC day to c reached; retry at Tue, 08 Dec 2026 00:00:00 GMT (in 18000 s)"),
            "{e}"
        );
        // Public uploads are not limited by it, and at midnight it is free again.
        assert_eq!(check(&limits, "c", false, &recent, now), Ok(()));
        assert!(check(&limits, "c", true, &recent, midnight + DAY_MS - 1).is_err());
        assert_eq!(
            check(&limits, "c", true, &recent, midnight + DAY_MS),
            Ok(())
        );
    }

    #[test]
    fn hourly_rate_counts_every_upload_of_the_challenge() {
        let limits = Limits {
            official_per_day: 100,
            submissions_per_hour: 3,
            ..Limits::default()
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

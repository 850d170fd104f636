//! From a grader's verdict to a score: the band from which bugs are fixed and which
//! thresholds hold, the position inside the band from the measured metric.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::task::{Band, TaskSpec};

/// What the grading run established (measured, never printed).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Bug id → fixed?
    pub bugs: BTreeMap<String, bool>,
    /// Measured metrics (e.g. `val_acc`, `f1`, `nan_losses`, `loss_decreases`).
    pub metrics: BTreeMap<String, f64>,
    /// The script ran to completion.
    pub ran: bool,
    /// The run hit (or, graded with headroom, would have hit) its memory limit.
    pub oom: bool,
    /// Bugs the grader found partly fixed.
    pub partial: Vec<String>,
    /// Signs of a bug hidden rather than fixed: the score sits at the bottom of its band.
    pub at_floor: bool,
}

/// The score and the band it fell in.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// 0–1.
    pub score: f64,
    /// Band id.
    pub band: String,
    /// The band's condition in words.
    pub band_rule: String,
}

impl Outcome {
    fn fixed(&self) -> usize {
        self.bugs.values().filter(|f| **f).count()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "progress" => Some(self.fixed() as f64 / self.bugs.len().max(1) as f64),
            _ => self.metrics.get(name).copied(),
        }
    }

    /// One term of a band's `when`.
    fn term(&self, term: &str) -> bool {
        let fixed = self.fixed();
        let total = self.bugs.len();
        if let Some(bug) = term.strip_prefix("fixed:") {
            return self.bugs.get(bug).copied().unwrap_or(false);
        }
        if let Some(bug) = term.strip_prefix("not_fixed:") {
            return !self.bugs.get(bug).copied().unwrap_or(false);
        }
        if let Some(rest) = term.strip_prefix("n_fixed") {
            let (op, k) = if let Some(k) = rest.strip_prefix(">=") {
                (">=", k)
            } else if let Some(k) = rest.strip_prefix("<=") {
                ("<=", k)
            } else {
                ("=", rest.trim_start_matches('='))
            };
            let Ok(k) = k.trim().parse::<usize>() else {
                return false;
            };
            return match op {
                ">=" => fixed >= k,
                "<=" => fixed <= k,
                _ => fixed == k,
            };
        }
        match term {
            "all_fixed" => fixed == total,
            "none_fixed" => fixed == 0,
            "partial" => (fixed > 0 && fixed < total) || !self.partial.is_empty(),
            "runs" => self.ran,
            "crash" => !self.ran && !self.oom,
            "oom" => self.oom,
            "nan" => self.metric("nan_losses").is_some_and(|n| n > 0.0),
            "loss_decreases" => self.metric("loss_decreases").is_some_and(|d| d > 0.0),
            _ => false,
        }
    }

    /// A band's `when`: alternatives by `|`, each a conjunction by `&`.
    pub fn holds(&self, when: &str) -> bool {
        when.split('|')
            .any(|alt| alt.split('&').all(|t| self.term(t.trim())))
    }
}

fn band_matches(band: &Band, o: &Outcome) -> bool {
    if !o.holds(&band.when) {
        return false;
    }
    match band.metric_min {
        Some(min) => band
            .metric
            .as_deref()
            .and_then(|m| o.metric(m))
            .is_some_and(|m| m >= min),
        None => true,
    }
}

/// Scores `o` with the task's bands (first match wins); no match scores 0.
pub fn score(spec: &TaskSpec, o: &Outcome) -> Scored {
    for band in &spec.bands {
        if !band_matches(band, o) {
            continue;
        }
        let position = match (band.metric.as_deref(), band.scale) {
            _ if o.at_floor => 0.0,
            (Some(name), Some([a, b])) if b > a => {
                let m = o.metric(name).unwrap_or(a);
                ((m - a) / (b - a)).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        let score = band.lo + (band.hi - band.lo) * position;
        return Scored {
            score: (score * 10_000.0).round() / 10_000.0,
            band: band.id.clone(),
            band_rule: band.condition.clone(),
        };
    }
    Scored {
        score: 0.0,
        band: "none".into(),
        band_rule: "no rubric band matched".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        toml::from_str(
            r#"
id = "t"
alias = "task1"
title = "t"
difficulty = "easy"
description = "d"
script = "broken.py"
timeout_s = 10.0
memory_mb = 512
[heldout]
generator = "make_data"
n = 10
predict = "argmax"
[[bugs]]
id = "a"
description = "a"
[[bugs]]
id = "b"
description = "b"
[[bands]]
id = "all_fixed"
when = "all_fixed & runs"
metric = "val_acc"
metric_min = 0.9
scale = [0.9, 1.0]
lo = 0.85
hi = 1.0
[[bands]]
id = "one_fixed"
when = "n_fixed>=1 & runs"
metric = "val_acc"
scale = [0.5, 0.9]
lo = 0.4
hi = 0.7
[[bands]]
id = "none_fixed"
when = "none_fixed & runs | nan"
metric = "val_acc"
scale = [0.5, 0.9]
lo = 0.15
hi = 0.25
[[bands]]
id = "crash"
when = "crash | oom"
metric = "progress"
scale = [0.0, 1.0]
lo = 0.0
hi = 0.1
"#,
        )
        .unwrap()
    }

    fn outcome(a: bool, b: bool, acc: f64, ran: bool) -> Outcome {
        Outcome {
            bugs: [("a".to_string(), a), ("b".to_string(), b)].into(),
            metrics: [("val_acc".to_string(), acc)].into(),
            ran,
            oom: false,
            partial: Vec::new(),
            at_floor: false,
        }
    }

    #[test]
    fn bands_follow_fixes_and_metric() {
        let s = spec();
        let all = score(&s, &outcome(true, true, 0.95, true));
        assert_eq!(all.band, "all_fixed");
        assert!((all.score - 0.925).abs() < 1e-9);
        // All fixed but below the threshold: falls to the next band that holds.
        assert_eq!(score(&s, &outcome(true, true, 0.8, true)).band, "one_fixed");
        assert_eq!(
            score(&s, &outcome(false, true, 0.7, true)).band,
            "one_fixed"
        );
        let none = score(&s, &outcome(false, false, 0.5, true));
        assert_eq!((none.band.as_str(), none.score), ("none_fixed", 0.15));
        let crash = score(&s, &outcome(true, false, 0.99, false));
        assert_eq!((crash.band.as_str(), crash.score), ("crash", 0.05));
    }

    #[test]
    fn a_hidden_bug_sits_at_the_bottom_of_its_band() {
        let s = spec();
        let mut o = outcome(true, true, 0.99, true);
        o.at_floor = true;
        let r = score(&s, &o);
        assert_eq!(r.band, "all_fixed");
        assert_eq!(r.score, s.bands[0].lo);
    }

    #[test]
    fn terms_cover_counts_named_bugs_and_flags() {
        let mut o = outcome(true, false, 0.7, true);
        assert!(o.holds("n_fixed=1") && o.holds("n_fixed<=1") && !o.holds("n_fixed>=2"));
        assert!(o.holds("fixed:a & not_fixed:b & partial & runs"));
        assert!(!o.holds("crash") && !o.holds("oom") && !o.holds("nan"));
        o.metrics.insert("nan_losses".into(), 3.0);
        assert!(o.holds("nan"));
        o.oom = true;
        o.ran = false;
        assert!(o.holds("oom") && !o.holds("crash"));
        assert!(!o.holds("bogus_term"));
        let mut none = outcome(false, false, 0.5, true);
        assert!(!none.holds("partial"));
        none.partial.push("a".into());
        assert!(none.holds("partial & runs"));
    }

    #[test]
    fn missing_metric_never_earns_a_thresholded_band() {
        let s = spec();
        let mut o = outcome(true, true, 0.0, true);
        o.metrics.clear();
        let r = score(&s, &o);
        assert_eq!(r.band, "one_fixed");
        assert_eq!(r.score, 0.4);
    }
}

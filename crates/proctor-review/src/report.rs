//! What a review says: findings, smoke runs and the verdict.

use serde::{Deserialize, Serialize};

/// How much a finding matters: a blocker makes the code not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The code is not ready while this stands.
    Blocker,
    /// Something could not be verified or looks wrong; the code may still be ready.
    Warning,
    /// For the record.
    Info,
}

/// One thing the review found, with where it is and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable identifier of the kind of finding (e.g. `missing-variation-in-smoke-config`).
    pub id: String,
    /// How much it matters.
    pub severity: Severity,
    /// Project-relative path of the file concerned, when there is one.
    pub file: Option<String>,
    /// 1-based line in that file, when known.
    pub line: Option<usize>,
    /// What is wrong, in plain words.
    pub message: String,
    /// What proves it: a code excerpt, a traceback line, the analysis.
    pub evidence: Option<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A finding without location, evidence or fix.
    pub fn new(id: &str, severity: Severity, message: impl Into<String>) -> Finding {
        Finding {
            id: id.to_string(),
            severity,
            file: None,
            line: None,
            message: message.into(),
            evidence: None,
            fix: None,
        }
    }

    /// Sets the file and line.
    pub fn at(mut self, file: &str, line: Option<usize>) -> Finding {
        self.file = Some(file.to_string());
        self.line = line;
        self
    }

    /// Sets the evidence (cut to a readable length).
    pub fn evidence(mut self, evidence: impl Into<String>) -> Finding {
        self.evidence = Some(cut(&evidence.into(), 600));
        self
    }

    /// Sets the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// How one smoke run ended, as the review classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Ran to completion.
    Ok,
    /// Failed because the code is wrong.
    CodeDefect,
    /// Failed only because the sandbox is offline (a download).
    NeedsNetwork,
    /// Failed only because a package is missing from the managed runtime.
    MissingDependency,
    /// Passed its time limit.
    Timeout,
    /// Passed its memory limit.
    Oom,
}

/// One smoke run of one variation from one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmokeRun {
    /// The run variation (`*` when the entry point runs them all at once).
    pub variation: String,
    /// `smoke_test`, or `full_experiment` (lightened: one epoch, capped loaders, CPU).
    pub config: String,
    /// How it ended.
    pub status: RunStatus,
    /// `stand-in` when synthetic data or random weights replaced a download, else `real`.
    pub data: String,
    /// Wall-clock time of the run.
    pub wall_ms: u64,
    /// The error, one line, when it failed.
    pub error: Option<String>,
    /// The command line the run executed (inside the project directory).
    pub command: String,
}

/// The answer of a review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// True only when there is no blocker.
    pub is_experiment_code_ready: bool,
    /// Empty when ready, else a numbered list of the blockers: what, where, how to fix.
    pub experiment_code_issue: String,
    /// Everything found, blockers first.
    pub findings: Vec<Finding>,
    /// The smoke runs.
    pub runs: Vec<SmokeRun>,
}

impl Review {
    /// The verdict and the issue list from findings and runs.
    pub fn new(mut findings: Vec<Finding>, runs: Vec<SmokeRun>) -> Review {
        findings.sort_by(|a, b| {
            (a.severity, &a.file, a.line, &a.id).cmp(&(b.severity, &b.file, b.line, &b.id))
        });
        let mut seen = std::collections::HashSet::new();
        findings.retain(|f| seen.insert((f.id.clone(), f.file.clone(), f.line, f.message.clone())));
        let blockers: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
            .collect();
        let issue = blockers
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let place = match (&f.file, f.line) {
                    (Some(file), Some(line)) => format!(" ({file}:{line})"),
                    (Some(file), None) => format!(" ({file})"),
                    _ => String::new(),
                };
                let fix = f
                    .fix
                    .as_deref()
                    .map(|x| format!(" Fix: {x}"))
                    .unwrap_or_default();
                format!("{}. [{}]{} {}{}", i + 1, f.id, place, f.message, fix)
            })
            .collect::<Vec<_>>()
            .join("\n");
        Review {
            is_experiment_code_ready: blockers.is_empty(),
            experiment_code_issue: issue,
            findings,
            runs,
        }
    }

    /// The blockers.
    pub fn blockers(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
    }
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

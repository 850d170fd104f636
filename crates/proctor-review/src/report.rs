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
    /// The lines of the derived code around `line`, numbered (when the file is there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
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
            excerpt: None,
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
    /// The last lines the run printed (stdout, then stderr).
    #[serde(default)]
    pub log_tail: String,
}

/// Warnings worth a line in the issue list after the blockers, most important first.
const IMPORTANT_WARNINGS: &[&str] = &[
    "method-component-missing",
    "variation-maybe-not-implemented",
    "missing-dependency",
    "needs-network",
];

impl Finding {
    /// "file:line — message Fix: …" on one line, short enough for a prompt.
    fn one_line(&self) -> String {
        let place = match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{file}:{line} — "),
            (Some(file), None) => format!("{file} — "),
            _ => String::new(),
        };
        let fix = self
            .fix
            .as_deref()
            .map(|x| format!(" Fix: {x}"))
            .unwrap_or_default();
        let text = format!("{place}{}{fix}", cut(&self.message, 320));
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
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
    /// Time spent installing the project's declared dependencies, when this review
    /// installed them (absent when they came from the cache or none were needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_install_ms: Option<u64>,
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
        let mut issue: Vec<String> = blockers
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{}. {}", i + 1, f.one_line()))
            .collect();
        // What a generator must also hear about: the method's core absent, variations alike.
        let rank = |f: &Finding| IMPORTANT_WARNINGS.iter().position(|id| *id == f.id);
        let mut important: Vec<(usize, &Finding)> = findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .filter_map(|f| Some((rank(f)?, f)))
            .collect();
        important.sort_by_key(|(r, _)| *r);
        important.truncate(3);
        if !blockers.is_empty() && !important.is_empty() {
            issue.push("Also (warnings):".into());
            issue.extend(important.iter().map(|(_, f)| format!("- {}", f.one_line())));
        }
        let issue = issue.join("\n");
        Review {
            is_experiment_code_ready: blockers.is_empty(),
            experiment_code_issue: issue,
            findings,
            runs,
            env_install_ms: None,
        }
    }

    /// Gives every finding that points at a line of the derived code the lines around it.
    pub fn attach_excerpts(&mut self, derived: &crate::Project) {
        for f in &mut self.findings {
            let (Some(file), Some(line)) = (&f.file, f.line) else {
                continue;
            };
            f.excerpt = derived.text(file).and_then(|text| excerpt(text, line));
        }
    }

    /// The blockers.
    pub fn blockers(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
    }
}

/// Lines `line - 2 ..= line + 2` of `text`, numbered, the line itself marked with `>`
/// (each line cut to a readable length); `None` when the file has no such line.
fn excerpt(text: &str, line: usize) -> Option<String> {
    const AROUND: usize = 2;
    let lines: Vec<&str> = text.lines().collect();
    if line == 0 || line > lines.len() {
        return None;
    }
    let first = line.saturating_sub(AROUND).max(1);
    let last = (line + AROUND).min(lines.len());
    let width = last.to_string().len();
    let numbered: Vec<String> = (first..=last)
        .map(|n| {
            let mark = if n == line { '>' } else { ' ' };
            format!("{mark}{n:>width$} | {}", cut(lines[n - 1], 200))
        })
        .collect();
    Some(numbered.join("\n"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_lists_blockers_one_line_each_then_the_important_warnings() {
        let review = Review::new(
            vec![
                Finding::new("yaml-1.1-number-as-string", Severity::Warning, "minor"),
                Finding::new("needs-network", Severity::Warning, "download"),
                Finding::new(
                    "method-component-missing",
                    Severity::Warning,
                    "no hypergradient",
                ),
                Finding::new("runtime-crash", Severity::Blocker, "crashed:\n  KeyError")
                    .at("src/train.py", Some(5))
                    .fix("add the key"),
            ],
            Vec::new(),
        );
        assert_eq!(
            review.experiment_code_issue,
            "1. src/train.py:5 — crashed: KeyError Fix: add the key\nAlso (warnings):\n- no hypergradient\n- download"
        );
        let ready = Review::new(
            vec![Finding::new(
                "method-component-missing",
                Severity::Warning,
                "x",
            )],
            Vec::new(),
        );
        assert!(ready.is_experiment_code_ready && ready.experiment_code_issue.is_empty());
    }

    #[test]
    fn excerpts_show_the_lines_around_a_finding_with_the_line_marked() {
        let text = "a = 1\nb = 2\nc = PLACEHOLDER\nd = 4\ne = 5\nf = 6\n";
        assert_eq!(
            excerpt(text, 3).unwrap(),
            " 1 | a = 1\n 2 | b = 2\n>3 | c = PLACEHOLDER\n 4 | d = 4\n 5 | e = 5"
        );
        assert_eq!(excerpt(text, 1).unwrap().lines().count(), 3);
        assert_eq!(excerpt(text, 6).unwrap().lines().last(), Some(">6 | f = 6"));
        assert_eq!(excerpt(text, 7), None);
        assert_eq!(excerpt(text, 0), None);
        let mut review = Review::new(
            vec![
                Finding::new("placeholder", Severity::Blocker, "x").at("src/a.py", Some(3)),
                Finding::new("gone", Severity::Blocker, "y").at("src/missing.py", Some(1)),
            ],
            Vec::new(),
        );
        let mut derived = crate::Project::default();
        derived
            .files
            .insert("src/a.py".into(), crate::SourceFile::text(text));
        review.attach_excerpts(&derived);
        let excerpts: Vec<_> = review
            .findings
            .iter()
            .map(|f| f.excerpt.is_some())
            .collect();
        assert_eq!(excerpts, [true, false], "{:?}", review.findings);
    }
}

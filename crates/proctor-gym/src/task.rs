//! Debug tasks: a broken script, its bugs, its rubric bands, the trusted grader module.

use serde::{Deserialize, Serialize};

use crate::GymError;

include!(concat!(env!("OUT_DIR"), "/embedded_tasks.rs"));

/// One bug a task's script carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bug {
    /// Stable id (the grader's verdict keys).
    pub id: String,
    /// What is wrong, in words.
    pub description: String,
    /// What a trusted measurement must show for the bug to count as fixed, whatever the
    /// observations say: `<metric> <= <x>` or `<metric> >= <x>` over the report's metrics
    /// (a missing metric fails).
    #[serde(default)]
    pub gate: Option<String>,
}

impl Bug {
    /// Whether the trusted `metrics` support this bug being fixed (no gate: yes).
    pub fn gate_holds(&self, metrics: &std::collections::BTreeMap<String, f64>) -> bool {
        let Some(gate) = self.gate.as_deref() else {
            return true;
        };
        let parse = |op: &str| {
            let (name, value) = gate.split_once(op)?;
            Some((
                metrics.get(name.trim()).copied()?,
                value.trim().parse::<f64>().ok()?,
            ))
        };
        if let Some((m, x)) = parse("<=") {
            m <= x
        } else if let Some((m, x)) = parse(">=") {
            m >= x
        } else {
            false
        }
    }
}

/// A rubric band: which outcome it covers and the score range it maps to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Band {
    /// Short name shown with the score.
    pub id: String,
    /// The rubric's condition, in words.
    #[serde(default)]
    pub condition: String,
    /// When the band applies: terms joined by `&` (and), alternatives by `|` (or).
    /// Terms: `all_fixed`, `none_fixed`, `partial`, `n_fixed>=K` (also `=`, `<=`),
    /// `fixed:<bug>`, `not_fixed:<bug>`, `runs`, `crash`, `oom`, `nan`, `loss_decreases`.
    pub when: String,
    /// The measured metric that places the score inside the band (`progress` is the
    /// fraction of bugs fixed).
    #[serde(default)]
    pub metric: Option<String>,
    /// The band applies only if the metric reaches this value.
    #[serde(default)]
    pub metric_min: Option<f64>,
    /// Metric values mapped onto `[lo, hi]` (clamped).
    #[serde(default)]
    pub scale: Option<[f64; 2]>,
    /// Lowest score of the band.
    pub lo: f64,
    /// Highest score of the band.
    pub hi: f64,
}

/// `task.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Folder name, e.g. `broken-training-loop`.
    pub id: String,
    /// WhipStudio's id, e.g. `task1`.
    pub alias: String,
    /// Title.
    pub title: String,
    /// easy | medium | hard.
    pub difficulty: String,
    /// What the agent is told.
    pub description: String,
    /// File name of the broken script.
    pub script: String,
    /// Wall-clock limit of a graded run.
    pub timeout_s: f64,
    /// Memory limit of a graded run (the OOM task relies on it).
    pub memory_mb: u64,
    /// The bugs.
    pub bugs: Vec<Bug>,
    /// The bug that shows as memory past `memory_mb` (it stays open in a run that needs more).
    #[serde(default)]
    pub memory_bug: Option<String>,
    /// A fix that crashes before training is run again, in a fresh sandbox, with shape
    /// and label mismatches adapted and counted (task6: one crash hides the other fixes).
    #[serde(default)]
    pub tolerant_rerun: bool,
    /// Rubric bands, first match wins.
    pub bands: Vec<Band>,
    /// How the trained model is measured on held-out data.
    pub heldout: HeldOut,
    /// Reference fixes (for tests and docs): file and the bug ids it fixes.
    #[serde(default)]
    pub references: Vec<Reference>,
}

/// `[heldout]`: fresh samples of the task's own generator, drawn with a secret seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOut {
    /// `make_data(n, seed)` of the broken script.
    pub generator: String,
    /// Number of samples.
    pub n: usize,
    /// Layouts of the inputs to offer the model, in order (`as_is`, `nchw`, `nchw28`):
    /// the first one the exported model accepts is measured.
    #[serde(default = "as_is")]
    pub views: Vec<String>,
    /// The prediction rule applied (by proctor) to the model's outputs.
    pub predict: crate::heldout::Predict,
    /// The module-level name of the model, when the script has one.
    #[serde(default = "model")]
    pub model: String,
}

fn as_is() -> Vec<String> {
    vec!["as_is".into()]
}

fn model() -> String {
    "model".into()
}

/// A reference fix shipped with a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    /// File name in the task folder.
    pub file: String,
    /// Bug ids it fixes.
    pub fixes: Vec<String>,
    /// Bug ids it fixes only in part.
    #[serde(default)]
    pub partial: Vec<String>,
    /// The band it must land in.
    #[serde(default)]
    pub band: Option<String>,
}

/// A task with its files.
#[derive(Debug, Clone)]
pub struct Task {
    /// Parsed `task.toml`.
    pub spec: TaskSpec,
    /// Every file of the folder: (name, contents).
    pub files: &'static [(&'static str, &'static str)],
}

impl Task {
    /// A file of the task folder.
    pub fn file(&self, name: &str) -> Option<&'static str> {
        self.files.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    /// The broken script the agent starts from.
    pub fn broken_script(&self) -> &'static str {
        self.file(&self.spec.script).unwrap_or_default()
    }
}

/// All embedded tasks, in folder order.
pub fn all() -> Result<Vec<Task>, GymError> {
    EMBEDDED
        .iter()
        .map(|(slug, files)| {
            let toml_text = files
                .iter()
                .find(|(n, _)| *n == "task.toml")
                .map(|(_, c)| *c)
                .ok_or_else(|| GymError::BadTask(format!("{slug}: task.toml is missing")))?;
            let spec: TaskSpec = toml::from_str(toml_text)
                .map_err(|e| GymError::BadTask(format!("{slug}/task.toml: {e}")))?;
            Ok(Task { spec, files })
        })
        .collect()
}

/// A task by slug or WhipStudio alias (`task1`…`task6`).
pub fn find(id: &str) -> Result<Task, GymError> {
    let tasks = all()?;
    let known: Vec<String> = tasks
        .iter()
        .map(|t| format!("{} ({})", t.spec.id, t.spec.alias))
        .collect();
    tasks
        .into_iter()
        .find(|t| t.spec.id == id || t.spec.alias == id)
        .ok_or_else(|| GymError::UnknownTask {
            id: id.to_string(),
            known: known.join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_holds_only_when_its_trusted_metric_does() {
        let bug = |gate: Option<&str>| Bug {
            id: "b".into(),
            description: "d".into(),
            gate: gate.map(str::to_string),
        };
        let metrics: std::collections::BTreeMap<String, f64> = [
            ("bce".to_string(), 0.06),
            ("printed_f1_error".to_string(), 0.5),
        ]
        .into();
        assert!(bug(None).gate_holds(&metrics));
        assert!(bug(Some("bce <= 0.15")).gate_holds(&metrics));
        assert!(!bug(Some("bce >= 0.15")).gate_holds(&metrics));
        assert!(!bug(Some("printed_f1_error <= 0.10")).gate_holds(&metrics));
        // a metric that was not measured never supports a fix; nor does a gate it cannot read
        assert!(!bug(Some("f1 >= 0.5")).gate_holds(&metrics));
        assert!(!bug(Some("bce < 0.15")).gate_holds(&metrics));
    }
}

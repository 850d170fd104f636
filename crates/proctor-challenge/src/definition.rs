//! Challenge definitions: `tasks/challenge/<id>/challenge.toml` plus a statement.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One split of the generated data: samples per class and the seed of its generator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// Samples drawn per class.
    pub per_class: u32,
    /// Seed of the split's own `torch.Generator` (public configuration).
    pub seed: u64,
}

/// The synthetic data of a challenge (the original benchmark's generator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Number of classes.
    pub num_classes: u32,
    /// Feature dimension of a sample.
    pub input_dim: u32,
    /// Seed of the prototypes' generator (public configuration).
    pub prototype_seed: u64,
    /// Norm of every prototype.
    pub prototype_scale: f64,
    /// Standard deviation of the noise around a prototype.
    pub noise_std: f64,
    /// Batch size of every loader.
    pub batch_size: u32,
    /// Training split.
    pub train: SplitSpec,
    /// Validation split.
    pub val: SplitSpec,
    /// Test split.
    pub test: SplitSpec,
    /// Pinned SHA-256 of the public files (`train`, `val`, `test_inputs`, `test_labels`).
    #[serde(default)]
    pub public_sha256: BTreeMap<String, String>,
}

impl DataSpec {
    /// Training samples.
    pub fn train_samples(&self) -> u32 {
        self.train.per_class * self.num_classes
    }
    /// Validation samples.
    pub fn val_samples(&self) -> u32 {
        self.val.per_class * self.num_classes
    }
    /// Test samples.
    pub fn test_samples(&self) -> u32 {
        self.test.per_class * self.num_classes
    }
}

/// Resources of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Wall-clock limit of the whole evaluation (training and inference), in seconds.
    pub time_limit_s: u64,
    /// CPUs a run sees, whatever the host has (`os.cpu_count()`, the affinity mask,
    /// torch's threads, OpenMP/MKL defaults), so that results reproduce across machines.
    pub cpu_threads: u32,
    /// CPU time a run may use, in cores (a quota, independent of `cpu_threads`).
    pub cpu_quota: f64,
    /// Memory limit of a run, in MiB.
    pub memory_mb: u64,
    /// Process and thread limit of a run.
    pub max_pids: u64,
}

/// How often an account may submit to a challenge (as Kaggle does): official
/// submissions each probe the secret data, so they have a daily quota that resets at
/// 00:00 UTC; every upload counts against an hourly rate. `[limits]` in `challenge.toml`,
/// these defaults without.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Official submissions evaluated per account per UTC day (uploads rejected at
    /// intake never touch the data and do not count).
    pub official_per_day: u32,
    /// Uploads (either split, rejected ones included) per account in any hour.
    pub submissions_per_hour: u32,
    /// Whether admins submit without quotas (to check a challenge or rescore).
    pub admins_exempt: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            official_per_day: 5,
            submissions_per_hour: 30,
            admins_exempt: true,
        }
    }
}

/// A metric shown for every submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// Key in the submission's metrics (`score`, `accuracy`, `params`).
    pub name: String,
    /// Human label.
    pub label: String,
    /// Whether a higher value is better.
    pub higher_is_better: bool,
}

/// A challenge, as defined by its `challenge.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Stable id, e.g. `imagenet-pareto-500k`.
    pub id: String,
    /// Display title.
    pub title: String,
    /// One-line summary.
    pub summary: String,
    /// File name of the statement (markdown), next to the definition.
    pub statement: String,
    /// Hard limit on counted parameters.
    pub param_limit: u64,
    /// Accuracy that scores 0; 100 % accuracy scores 100.
    pub baseline_accuracy: f64,
    /// The metric that ranks submissions.
    pub rank_metric: String,
    /// Generated data.
    pub data: DataSpec,
    /// Resource profile of an evaluation.
    pub resources: Resources,
    /// Metrics shown for every submission.
    pub metrics: Vec<Metric>,
    /// Submission quotas per account.
    #[serde(default)]
    pub limits: Limits,
    /// The statement's markdown text (read from `statement`).
    #[serde(skip_deserializing, default)]
    pub statement_markdown: String,
}

impl Challenge {
    /// Parses a definition; `statement` is the statement's text.
    pub fn parse(toml_text: &str, statement: &str, origin: &str) -> Result<Challenge, Error> {
        let mut c: Challenge = toml::from_str(toml_text).map_err(|e| Error::Definition {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        c.statement_markdown = statement.to_string();
        let bad = |message: String| Error::Definition {
            path: origin.to_string(),
            message,
        };
        if !(0.0..1.0).contains(&c.baseline_accuracy) {
            return Err(bad(format!(
                "baseline_accuracy must be in [0, 1), got {}",
                c.baseline_accuracy
            )));
        }
        if c.data.num_classes == 0 || c.data.input_dim == 0 || c.data.batch_size == 0 {
            return Err(bad(
                "num_classes, input_dim and batch_size must be positive".into(),
            ));
        }
        let r = &c.resources;
        let quota_ok = r.cpu_quota.is_finite() && r.cpu_quota > 0.0;
        if r.cpu_threads == 0 || r.time_limit_s == 0 || !quota_ok {
            return Err(bad(
                "cpu_threads, cpu_quota and time_limit_s must be positive".into(),
            ));
        }
        Ok(c)
    }

    /// Loads `dir/challenge.toml` and its statement.
    pub fn load(dir: &Path) -> Result<Challenge, Error> {
        let path = dir.join("challenge.toml");
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| Error::Definition {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let text = read(&path)?;
        let head: toml::Value = toml::from_str(&text).map_err(|e| Error::Definition {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let statement_name = head
            .get("statement")
            .and_then(|v| v.as_str())
            .unwrap_or("statement.md");
        let statement = read(&dir.join(statement_name))?;
        Challenge::parse(&text, &statement, &path.display().to_string())
    }

    /// `clamp((accuracy - baseline) / (1 - baseline) * 100, 0, 100)`.
    pub fn score(&self, accuracy: f64) -> f64 {
        let b = self.baseline_accuracy;
        ((accuracy - b) / (1.0 - b) * 100.0).clamp(0.0, 100.0)
    }
}

/// The challenges a platform hosts, by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    challenges: BTreeMap<String, Challenge>,
}

macro_rules! builtin {
    ($($dir:literal),* $(,)?) => {
        &[$((
            $dir,
            include_str!(concat!("../../../tasks/challenge/", $dir, "/challenge.toml")),
            include_str!(concat!("../../../tasks/challenge/", $dir, "/statement.md")),
        )),*]
    };
}

/// The definitions shipped in `tasks/challenge/`, embedded in the binary.
const BUILTIN: &[(&str, &str, &str)] = builtin!(
    "imagenet-pareto-200k",
    "imagenet-pareto-500k",
    "imagenet-pareto-1m",
    "imagenet-pareto-2.5m",
    "imagenet-pareto-5m",
);

impl Catalog {
    /// The challenges shipped with proctor (`tasks/challenge/`, embedded at build time).
    pub fn builtin() -> Catalog {
        let mut catalog = Catalog::default();
        for (dir, toml_text, statement) in BUILTIN {
            let c = Challenge::parse(toml_text, statement, &format!("tasks/challenge/{dir}"))
                .expect("the built-in challenge definitions parse (tested)");
            catalog.challenges.insert(c.id.clone(), c);
        }
        catalog
    }

    /// Every `*/challenge.toml` under `root`.
    pub fn load_dir(root: &Path) -> Result<Catalog, Error> {
        let mut catalog = Catalog::default();
        let entries = std::fs::read_dir(root).map_err(|e| Error::Definition {
            path: root.display().to_string(),
            message: e.to_string(),
        })?;
        for entry in entries.flatten() {
            if entry.path().join("challenge.toml").is_file() {
                let c = Challenge::load(&entry.path())?;
                catalog.challenges.insert(c.id.clone(), c);
            }
        }
        Ok(catalog)
    }

    /// The challenge with this id.
    pub fn get(&self, id: &str) -> Result<&Challenge, Error> {
        self.challenges
            .get(id)
            .ok_or_else(|| Error::UnknownChallenge {
                id: id.to_string(),
                known: self
                    .list()
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// All challenges, ordered by parameter limit.
    pub fn list(&self) -> Vec<&Challenge> {
        let mut v: Vec<&Challenge> = self.challenges.values().collect();
        v.sort_by_key(|c| c.param_limit);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_challenges_match_the_original_constants() {
        let catalog = Catalog::builtin();
        let expect = [
            ("imagenet-pareto-200k", 200_000, 0.65),
            ("imagenet-pareto-500k", 500_000, 0.72),
            ("imagenet-pareto-1m", 1_000_000, 0.80),
            ("imagenet-pareto-2.5m", 2_500_000, 0.85),
            ("imagenet-pareto-5m", 5_000_000, 0.88),
        ];
        let listed: Vec<&str> = catalog.list().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(listed, expect.iter().map(|e| e.0).collect::<Vec<_>>());
        for (id, limit, base) in expect {
            let c = catalog.get(id).unwrap();
            assert_eq!(c.param_limit, limit);
            assert_eq!(c.baseline_accuracy, base);
            assert_eq!(c.data.num_classes, 128);
            assert_eq!(c.data.input_dim, 384);
            assert_eq!(c.resources.time_limit_s, 3600);
            assert_eq!(c.data.train_samples(), 2048);
            assert_eq!(c.data.val_samples(), 512);
            assert_eq!(c.data.test_samples(), 1024);
            assert!(c.statement_markdown.contains(&format!("{}", limit / 1000)));
            let names: Vec<&str> = c.metrics.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, ["score", "accuracy", "params"]);
        }
        // The builtin copies are the files in tasks/challenge.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/challenge");
        let on_disk = Catalog::load_dir(&dir).unwrap();
        assert_eq!(on_disk.list().len(), 5);
        assert_eq!(
            on_disk.get("imagenet-pareto-1m").unwrap(),
            catalog.get("imagenet-pareto-1m").unwrap()
        );
    }

    #[test]
    fn score_is_the_original_linear_scale() {
        let catalog = Catalog::builtin();
        let c = catalog.get("imagenet-pareto-500k").unwrap();
        assert_eq!(c.score(0.72), 0.0);
        assert_eq!(c.score(0.5), 0.0);
        assert_eq!(c.score(1.0), 100.0);
        assert!((c.score(0.87) - 53.571).abs() < 0.01);
    }

    #[test]
    fn unknown_challenge_lists_the_known_ones() {
        let err = Catalog::builtin().get("imagenet-pareto-7k").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown challenge \"imagenet-pareto-7k\": known challenges are imagenet-pareto-200k, imagenet-pareto-500k, imagenet-pareto-1m, imagenet-pareto-2.5m, imagenet-pareto-5m"
        );
    }
}

//! The challenge data, generated on the trusted side with the original generator.
//!
//! torch's RNG defines this data, so generation runs the managed runtime's torch as a
//! sandboxed job of proctor's own code (`challenge_data.py`; no participant code in that
//! process). The official configuration derives every seed from a server secret; the
//! secret itself never leaves proctor (the generator only sees derived seeds).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use proctor_core::{Command, Job, Limits};
use proctor_engine::Backend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::definition::DataSpec;
use crate::Error;

/// The generator, run in a sandbox as a trusted step.
pub(crate) const GENERATOR: &str =
    include_str!("../../../python/proctor_harness/challenge_data.py");

/// The data files of one configuration.
pub const FILES: [&str; 4] = ["train", "val", "test_inputs", "test_labels"];

/// Which data a submission is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The original benchmark's data, tensor for tensor.
    Public,
    /// Same distribution, seeds derived from the server secret.
    Official,
}

impl Split {
    /// `public` or `official`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Public => "public",
            Split::Official => "official",
        }
    }
}

/// A generated data set on disk (trusted).
#[derive(Debug, Clone)]
pub struct DataSet {
    /// Directory holding `train.safetensors`, `val.safetensors`, `test_inputs.safetensors`,
    /// `test_labels.safetensors` and `digests.json`.
    pub dir: PathBuf,
    /// SHA-256 of each file.
    pub sha256: BTreeMap<String, String>,
    /// Accuracy of the nearest-true-prototype rule on the test split.
    pub oracle_accuracy: f64,
    /// Test labels (trusted side only).
    pub test_labels: Vec<i64>,
}

impl DataSet {
    /// Path of one of [`FILES`].
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.safetensors"))
    }
}

#[derive(Serialize)]
struct GenSplit {
    per_class: u32,
    seed: u64,
}

#[derive(Serialize)]
struct GenConfig {
    num_classes: u32,
    input_dim: u32,
    prototype_seed: u64,
    prototype_scale: f64,
    noise_std: f64,
    splits: BTreeMap<&'static str, GenSplit>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    sha256: BTreeMap<String, String>,
    oracle_accuracy: f64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads (or creates, mode 0600) the server secret under `home`.
pub fn secret(home: &Path) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = home.join("challenge");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("secret");
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 32 => return Ok(s),
        Ok(_) => {
            return Err(Error::Data(format!(
                "{} is too short to be a secret",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Error::io(Path::new("/dev/urandom"), e))?;
    let text = hex(&bytes);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut f) => {
            f.write_all(text.as_bytes())
                .map_err(|e| Error::io(&path, e))?;
            f.sync_all().map_err(|e| Error::io(&path, e))?;
            Ok(text.into_bytes())
        }
        // Another process created it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(&path).map_err(|e| Error::io(&path, e))
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn derive_seed(secret: &[u8], what: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"proctor-challenge-official-v1\0");
    h.update(secret);
    h.update(b"\0");
    h.update(what.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) & (i64::MAX as u64)
}

fn config(spec: &DataSpec, split: Split, secret: Option<&[u8]>) -> GenConfig {
    let seed = |what: &str, public: u64| match (split, secret) {
        (Split::Official, Some(s)) => derive_seed(s, what),
        _ => public,
    };
    let mut splits = BTreeMap::new();
    for (name, s) in [
        ("train", &spec.train),
        ("val", &spec.val),
        ("test", &spec.test),
    ] {
        splits.insert(
            name,
            GenSplit {
                per_class: s.per_class,
                seed: seed(name, s.seed),
            },
        );
    }
    GenConfig {
        num_classes: spec.num_classes,
        input_dim: spec.input_dim,
        prototype_seed: seed("prototypes", spec.prototype_seed),
        prototype_scale: spec.prototype_scale,
        noise_std: spec.noise_std,
        splits,
    }
}

/// Generates (once; cached under `home/challenge/data/`) the data of `spec`.
pub async fn ensure<B: Backend>(
    backend: &B,
    home: &Path,
    spec: &DataSpec,
    split: Split,
) -> Result<DataSet, Error> {
    let secret = match split {
        Split::Official => Some(secret(home)?),
        Split::Public => None,
    };
    let cfg = config(spec, split, secret.as_deref());
    let cfg_json = serde_json::to_vec(&cfg).expect("config serializes");
    let id = hex(&Sha256::digest(&cfg_json)[..8]);
    let root = home.join("challenge").join("data");
    let dir = root.join(format!("{}-{id}", split.as_str()));
    if let Some(set) = load(&dir, spec)? {
        return Ok(set);
    }
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let tmp = root.join(format!(
        ".gen-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let staging = root.join(format!(
        ".in-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let script = staging.join("challenge_data.py");
    std::fs::write(&script, GENERATOR).map_err(|e| Error::io(&script, e))?;
    std::fs::write(staging.join("config.json"), &cfg_json).map_err(|e| Error::io(&staging, e))?;
    let job = Job::new(Command::Script {
        path: script,
        args: vec!["../inputs/config.json".into()],
    })
    .with_input(staging.join("config.json"), "config.json")
    .with_limits(Limits {
        timeout_ms: 120_000,
        memory_mb: 2048,
        ..Limits::default()
    })
    .collect_into(&tmp);
    let result = backend.run(job).await;
    let _ = std::fs::remove_dir_all(&staging);
    let result = result.map_err(|e| Error::Data(format!("data generation could not run: {e}")))?;
    if !result.is_ok() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::Data(format!(
            "data generation ended with status {}: {}",
            result.status,
            tail(&result.stderr, 2000)
        )));
    }
    let finished = finish(&tmp, spec, split);
    let set = match finished {
        Ok(()) => match std::fs::rename(&tmp, &dir) {
            Ok(()) => load(&dir, spec)?,
            Err(_) if dir.exists() => load(&dir, spec)?,
            Err(e) => return Err(Error::io(&dir, e)),
        },
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let _ = std::fs::remove_dir_all(&tmp);
    set.ok_or_else(|| Error::Data(format!("generated data in {} is incomplete", dir.display())))
}

/// Checks what the generator wrote, records digests, pins public data to the definition.
fn finish(tmp: &Path, spec: &DataSpec, split: Split) -> Result<(), Error> {
    let mut sha256 = BTreeMap::new();
    for name in FILES {
        let path = tmp.join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        sha256.insert(name.to_string(), hex(&Sha256::digest(&bytes)));
    }
    if split == Split::Public && !spec.public_sha256.is_empty() && spec.public_sha256 != sha256 {
        return Err(Error::Data(format!(
            "the generated public data differs from the pinned digests (is the runtime's torch the pinned 2.4.1?): got {sha256:?}"
        )));
    }
    let generated: serde_json::Value = std::fs::read(tmp.join("generated.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let stored = Stored {
        sha256,
        oracle_accuracy: generated["oracle_accuracy"].as_f64().unwrap_or(f64::NAN),
    };
    let path = tmp.join("digests.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&stored).expect("serializes"),
    )
    .map_err(|e| Error::io(&path, e))?;
    for extra in ["generated.json", ".tmp"] {
        let p = tmp.join(extra);
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
    }
    load_checked(tmp, spec).map(|_| ())
}

fn load(dir: &Path, spec: &DataSpec) -> Result<Option<DataSet>, Error> {
    if !dir.join("digests.json").is_file() {
        return Ok(None);
    }
    load_checked(dir, spec).map(Some)
}

/// Reads a data set and verifies its digests, shapes and labels.
fn load_checked(dir: &Path, spec: &DataSpec) -> Result<DataSet, Error> {
    let path = dir.join("digests.json");
    let stored: Stored = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::Data(format!("{} is unreadable", path.display())))?;
    let mut test_labels = Vec::new();
    for name in FILES {
        let path = dir.join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if stored.sha256.get(name) != Some(&hex(&Sha256::digest(&bytes))) {
            return Err(Error::Data(format!(
                "{} does not match its digest",
                path.display()
            )));
        }
        let (n, with_x, with_y) = match name {
            "train" => (spec.train_samples(), true, true),
            "val" => (spec.val_samples(), true, true),
            "test_inputs" => (spec.test_samples(), true, false),
            _ => (spec.test_samples(), false, true),
        };
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        let n = n as usize;
        if with_x {
            let x = st
                .tensor("x")
                .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
            if x.dtype() != safetensors::Dtype::F32 || x.shape() != [n, spec.input_dim as usize] {
                return Err(Error::Data(format!(
                    "{}: x has the wrong shape",
                    path.display()
                )));
            }
        }
        if with_y {
            let y = st
                .tensor("y")
                .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
            if y.dtype() != safetensors::Dtype::I64 || y.shape() != [n] {
                return Err(Error::Data(format!(
                    "{}: y has the wrong shape",
                    path.display()
                )));
            }
            let labels: Vec<i64> = y
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            if labels
                .iter()
                .any(|&l| l < 0 || l >= spec.num_classes as i64)
            {
                return Err(Error::Data(format!(
                    "{}: labels out of range",
                    path.display()
                )));
            }
            if name == "test_labels" {
                test_labels = labels;
            }
        }
    }
    Ok(DataSet {
        dir: dir.to_path_buf(),
        sha256: stored.sha256,
        oracle_accuracy: stored.oracle_accuracy,
        test_labels,
    })
}

/// The last `max` bytes of a text, on a character boundary.
pub(crate) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let a = secret(home.path()).unwrap();
        let b = secret(home.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(home.path().join("challenge/secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn official_seeds_derive_from_the_secret() {
        let spec = crate::Catalog::builtin()
            .get("imagenet-pareto-500k")
            .unwrap()
            .data
            .clone();
        let public = config(&spec, Split::Public, None);
        assert_eq!(public.prototype_seed, 2025);
        assert_eq!(public.splits["train"].seed, 1337);
        let a = config(&spec, Split::Official, Some(b"secret-a"));
        let b = config(&spec, Split::Official, Some(b"secret-b"));
        assert_ne!(a.prototype_seed, 2025);
        assert_ne!(a.prototype_seed, b.prototype_seed);
        assert_ne!(a.splits["train"].seed, a.splits["test"].seed);
    }
}

//! Submission intake: a zip project (or a bare `solution.py`) is validated and unpacked
//! into a project directory, or rejected with a message the submitter can act on.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::definition::Challenge;

/// Name of the manifest at the root of a project.
pub const MANIFEST: &str = "agentics.solution.json";
/// Largest accepted upload.
pub const MAX_ZIP_BYTES: u64 = 10 << 20;
/// Largest total size of the unpacked files.
pub const MAX_UNPACKED_BYTES: u64 = 50 << 20;
/// Most entries a zip may hold.
pub const MAX_ENTRIES: usize = 200;
/// Largest total size of the project's Python source (`*.py`), the only files besides
/// the exported model that inference sees: weights cannot hide in a huge literal.
pub const MAX_SOURCE_BYTES: u64 = 128 << 10;

/// `agentics.solution.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The challenge id this project is for.
    pub challenge: String,
    /// Python file (relative to the project root) defining the solution class.
    pub entrypoint: String,
    /// Name of the solution class.
    #[serde(rename = "class")]
    pub class: String,
    /// Display name of the solution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Why a submission was rejected before anything ran. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a zip (nor a bare `.py`).
    #[error(
        "the upload is not a valid zip archive ({0}): submit a .zip project or a bare solution.py"
    )]
    NotZip(String),
    /// Upload too large.
    #[error("the zip is {size} bytes, over the {max}-byte (10 MiB) limit")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Too many entries.
    #[error("the zip has {count} entries, over the limit of {max}")]
    TooManyEntries {
        /// Its entry count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Expands past the limit (declared or actual sizes).
    #[error("the zip expands to more than {max} bytes (50 MiB) of files")]
    ExpandsTooMuch {
        /// The limit.
        max: u64,
    },
    /// An absolute path, a `..` component or another unsafe name.
    #[error("unsafe path {0:?} in the zip: entries must be relative paths without `..`")]
    UnsafePath(String),
    /// A symlink entry.
    #[error("{0:?} is a symlink: symlinks are not accepted in a submission")]
    Symlink(String),
    /// A file whose name is also a folder of another entry (`p` beside `p/x`, or `p/.`).
    #[error("{0:?} is both a file and a folder in the zip")]
    Clash(String),
    /// A name too long or nested too deep to be a project file.
    #[error("{0:?}... is too long or nested too deep: at most 255 bytes per name, {MAX_NAME_BYTES} per path and {MAX_NAME_DEPTH} folders")]
    NameTooLong(String),
    /// Two entries with one name.
    #[error("{0:?} appears twice in the zip: entry names must be unique")]
    Duplicate(String),
    /// No manifest.
    #[error("missing {MANIFEST} at the root of the zip: add {{\"challenge\": \"{challenge}\", \"entrypoint\": \"solution.py\", \"class\": \"Solution\"}}")]
    MissingManifest {
        /// The challenge submitted to.
        challenge: String,
    },
    /// Manifest is not the expected JSON.
    #[error("malformed {MANIFEST}: {0}")]
    MalformedManifest(String),
    /// Manifest names another challenge.
    #[error("{MANIFEST} names challenge {named:?}, but this submission is for {expected:?}")]
    WrongChallenge {
        /// What the manifest says.
        named: String,
        /// Where it was submitted.
        expected: String,
    },
    /// The entrypoint file is not in the project.
    #[error("entrypoint {0:?} named in {MANIFEST} is not in the zip")]
    MissingEntrypoint(String),
    /// The entrypoint is not a usable Python module path.
    #[error("entrypoint {0:?} must be a relative .py path made of Python identifiers (e.g. \"solution.py\")")]
    BadEntrypoint(String),
    /// The class is not defined in the entrypoint.
    #[error("{entrypoint} defines no class {class} (expected a top-level `class {class}` with a solve(self, train_loader, val_loader, metadata) method)")]
    MissingClass {
        /// The entrypoint.
        entrypoint: String,
        /// The class it should define.
        class: String,
    },
    /// A file is not UTF-8 Python.
    #[error("{0} is not UTF-8 text")]
    NotText(String),
    /// The Python source is over [`MAX_SOURCE_BYTES`].
    #[error("the project's Python source (.py files) is {size} bytes, over the {max}-byte (128 KiB) limit: inference runs only your .py files and the model solve() returns, so weights belong in that model's tensors, not in source literals or data files")]
    SourceTooLarge {
        /// Total size of the `.py` files.
        size: u64,
        /// The limit.
        max: u64,
    },
}

/// A validated project, ready to be written to disk.
#[derive(Debug, Clone)]
pub struct Project {
    /// The manifest (generated for a bare `solution.py`).
    pub manifest: Manifest,
    /// Files, by relative path (the manifest included).
    pub files: Vec<(String, Vec<u8>)>,
}

impl Project {
    /// Writes the files under `dir` (created, must not exist), all or nothing: into a
    /// sibling temporary folder renamed into place, removed if anything fails.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("project");
        let tmp = dir.with_file_name(format!(".{name}.partial"));
        let written = self
            .write_files(&tmp)
            .and_then(|()| std::fs::rename(&tmp, dir));
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written
    }

    fn write_files(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, data) in &self.files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, data)?;
        }
        Ok(())
    }

    /// Copies the project's Python source (regular `*.py` files) from `from` (written by
    /// [`Project::write_to`]) to `to`: what inference may see of it. Fails when the
    /// source is over [`MAX_SOURCE_BYTES`] (projects accepted before the limit).
    pub fn copy_source(from: &Path, to: &Path) -> std::io::Result<u64> {
        let mut total = 0u64;
        let mut todo = vec![std::path::PathBuf::new()];
        while let Some(rel) = todo.pop() {
            std::fs::create_dir_all(to.join(&rel))?;
            for entry in std::fs::read_dir(from.join(&rel))? {
                let entry = entry?;
                let (kind, name) = (entry.file_type()?, rel.join(entry.file_name()));
                if kind.is_dir() {
                    todo.push(name);
                } else if kind.is_file() && name.extension().is_some_and(|e| e == "py") {
                    total += std::fs::copy(entry.path(), to.join(&name))?;
                }
            }
        }
        if total > MAX_SOURCE_BYTES {
            return Err(std::io::Error::other(Rejection::SourceTooLarge {
                size: total,
                max: MAX_SOURCE_BYTES,
            }));
        }
        Ok(total)
    }

    /// Reads a project written by [`Project::write_to`] (trusted: proctor wrote it).
    pub fn read_manifest(dir: &Path) -> std::io::Result<Manifest> {
        let text = std::fs::read(dir.join(MANIFEST))?;
        serde_json::from_slice(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Validates an upload: a zip project, or (when `file_name` ends with `.py`) a bare
/// solution file that is wrapped into a project with a generated manifest.
pub fn intake(challenge: &Challenge, file_name: &str, bytes: &[u8]) -> Result<Project, Rejection> {
    if file_name.ends_with(".py") && !bytes.starts_with(b"PK") {
        return wrap_bare(challenge, bytes);
    }
    read_zip(challenge, bytes)
}

/// Builds a zip in memory from `(name, bytes)` entries (deflated), e.g. to submit a
/// project directory.
pub fn zip_files(entries: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).map_err(std::io::Error::other)?;
        w.write_all(data)?;
    }
    Ok(w.finish().map_err(std::io::Error::other)?.into_inner())
}

fn wrap_bare(challenge: &Challenge, bytes: &[u8]) -> Result<Project, Rejection> {
    if bytes.len() as u64 > MAX_ZIP_BYTES {
        return Err(Rejection::TooLarge {
            size: bytes.len() as u64,
            max: MAX_ZIP_BYTES,
        });
    }
    let manifest = Manifest {
        challenge: challenge.id.clone(),
        entrypoint: "solution.py".into(),
        class: "Solution".into(),
        name: None,
        description: None,
    };
    check_class(&manifest, bytes)?;
    check_source_size([("solution.py", bytes)])?;
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    Ok(Project {
        manifest,
        files: vec![
            (MANIFEST.into(), manifest_json),
            ("solution.py".into(), bytes.to_vec()),
        ],
    })
}

/// Longest accepted entry path.
const MAX_NAME_BYTES: usize = 1024;
/// Deepest accepted folder nesting.
const MAX_NAME_DEPTH: usize = 32;

fn safe_name(raw: &str) -> Result<String, Rejection> {
    let too_long = || Rejection::NameTooLong(raw.chars().take(80).collect());
    if raw.len() > MAX_NAME_BYTES || raw.split('/').count() > MAX_NAME_DEPTH + 1 {
        return Err(too_long());
    }
    if raw.split('/').any(|c| c.len() > 255) {
        return Err(too_long());
    }
    let unsafe_ = || Rejection::UnsafePath(raw.to_string());
    if raw.is_empty()
        || raw.starts_with('/')
        || raw.starts_with('\\')
        || raw.contains('\\')
        || raw.contains('\0')
        || raw.as_bytes().get(1) == Some(&b':')
    {
        return Err(unsafe_());
    }
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(unsafe_)?.to_string()),
            Component::CurDir => {}
            _ => return Err(unsafe_()),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_());
    }
    Ok(parts.join("/"))
}

/// `a/b/c` -> `a/b`, `a`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('/').map(move |(i, _)| &name[..i])
}

fn read_zip(challenge: &Challenge, bytes: &[u8]) -> Result<Project, Rejection> {
    if bytes.len() as u64 > MAX_ZIP_BYTES {
        return Err(Rejection::TooLarge {
            size: bytes.len() as u64,
            max: MAX_ZIP_BYTES,
        });
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Rejection::NotZip(e.to_string()))?;
    if zip.len() > MAX_ENTRIES {
        return Err(Rejection::TooManyEntries {
            count: zip.len(),
            max: MAX_ENTRIES,
        });
    }
    // Names, kinds and declared sizes first, before inflating anything.
    let mut seen = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut declared: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| Rejection::NotZip(e.to_string()))?;
        let raw = entry.name().to_string();
        let name = safe_name(&raw)?;
        if entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(Rejection::Symlink(raw));
        }
        if !seen.insert(name.clone()) {
            return Err(Rejection::Duplicate(raw));
        }
        declared = declared.saturating_add(entry.size());
        if !entry.is_dir() {
            files.insert(name.clone());
        }
        if declared > MAX_UNPACKED_BYTES {
            return Err(Rejection::ExpandsTooMuch {
                max: MAX_UNPACKED_BYTES,
            });
        }
    }
    // A file cannot also be a folder: writing the project would fail half-way.
    if let Some(clash) = seen
        .iter()
        .find(|n| ancestors(n).any(|a| files.contains(a)))
    {
        return Err(Rejection::Clash(clash.clone()));
    }
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Rejection::NotZip(e.to_string()))?;
        if entry.is_dir() {
            continue;
        }
        let name = safe_name(entry.name())?;
        // Declared sizes can lie: the actual inflated bytes are capped as well.
        let budget = MAX_UNPACKED_BYTES - total;
        let mut data = Vec::new();
        (&mut entry)
            .take(budget + 1)
            .read_to_end(&mut data)
            .map_err(|e| Rejection::NotZip(format!("{name}: {e}")))?;
        total += data.len() as u64;
        if total > MAX_UNPACKED_BYTES {
            return Err(Rejection::ExpandsTooMuch {
                max: MAX_UNPACKED_BYTES,
            });
        }
        files.push((name, data));
    }
    // A zipped folder (`proj/agentics.solution.json`, ...) is accepted as its content.
    if !files.iter().any(|(n, _)| n == MANIFEST) {
        let tops: BTreeSet<&str> = files
            .iter()
            .map(|(n, _)| n.split('/').next().unwrap_or(""))
            .collect();
        if tops.len() == 1 {
            let top = format!("{}/", tops.into_iter().next().unwrap_or(""));
            if files.iter().any(|(n, _)| *n == format!("{top}{MANIFEST}")) {
                for (n, _) in files.iter_mut() {
                    *n = n.strip_prefix(&top).unwrap_or(n).to_string();
                }
            }
        }
    }
    let manifest_bytes = files
        .iter()
        .find(|(n, _)| n == MANIFEST)
        .map(|(_, d)| d.clone())
        .ok_or_else(|| Rejection::MissingManifest {
            challenge: challenge.id.clone(),
        })?;
    let manifest = parse_manifest(&manifest_bytes)?;
    if manifest.challenge != challenge.id {
        return Err(Rejection::WrongChallenge {
            named: manifest.challenge,
            expected: challenge.id.clone(),
        });
    }
    let entry = safe_name(&manifest.entrypoint)
        .map_err(|_| Rejection::BadEntrypoint(manifest.entrypoint.clone()))?;
    let module_ok =
        entry.ends_with(".py") && entry[..entry.len() - 3].split('/').all(is_identifier);
    if !module_ok {
        return Err(Rejection::BadEntrypoint(manifest.entrypoint.clone()));
    }
    let source = files
        .iter()
        .find(|(n, _)| *n == entry)
        .map(|(_, d)| d.clone())
        .ok_or_else(|| Rejection::MissingEntrypoint(manifest.entrypoint.clone()))?;
    let manifest = Manifest {
        entrypoint: entry,
        ..manifest
    };
    check_class(&manifest, &source)?;
    check_source_size(files.iter().map(|(n, d)| (n.as_str(), d.as_slice())))?;
    Ok(Project { manifest, files })
}

fn check_source_size<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), Rejection> {
    let size: u64 = files
        .into_iter()
        .filter(|(name, _)| name.ends_with(".py"))
        .map(|(_, data)| data.len() as u64)
        .sum();
    if size > MAX_SOURCE_BYTES {
        return Err(Rejection::SourceTooLarge {
            size,
            max: MAX_SOURCE_BYTES,
        });
    }
    Ok(())
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, Rejection> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::MalformedManifest(format!("not valid JSON ({e})")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Rejection::MalformedManifest("expected a JSON object".into()))?;
    for key in ["challenge", "entrypoint", "class"] {
        match obj.get(key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => {}
            Some(_) => {
                return Err(Rejection::MalformedManifest(format!(
                    "\"{key}\" must be a non-empty string"
                )))
            }
            None => {
                return Err(Rejection::MalformedManifest(format!(
                    "missing required key \"{key}\""
                )))
            }
        }
    }
    for key in ["name", "description"] {
        if obj.get(key).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(Rejection::MalformedManifest(format!(
                "\"{key}\" must be a string"
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| Rejection::MalformedManifest(e.to_string()))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The class must be defined at the top level of the entrypoint (`class Name` or
/// `Name = ...`); checked on the text, without running it.
fn check_class(manifest: &Manifest, source: &[u8]) -> Result<(), Rejection> {
    let text =
        std::str::from_utf8(source).map_err(|_| Rejection::NotText(manifest.entrypoint.clone()))?;
    let class = &manifest.class;
    let defined = is_identifier(class)
        && text.lines().any(|line| {
            if let Some(rest) = line.strip_prefix("class ") {
                let rest = rest.trim_start();
                rest.strip_prefix(class.as_str())
                    .is_some_and(|after| after.starts_with(['(', ':', ' ']))
            } else if let Some(rest) = line.strip_prefix(class.as_str()) {
                rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("==")
            } else {
                false
            }
        });
    if defined {
        Ok(())
    } else {
        Err(Rejection::MissingClass {
            entrypoint: manifest.entrypoint.clone(),
            class: class.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;
    use crate::definition::Catalog;

    const SOLUTION: &[u8] = b"import torch\n\nclass Solution:\n    def solve(self, a, b, m):\n        return torch.nn.Linear(384, 128)\n";

    fn challenge() -> Challenge {
        Catalog::builtin()
            .get("imagenet-pareto-500k")
            .unwrap()
            .clone()
    }

    fn manifest(challenge: &str) -> Vec<u8> {
        format!(r#"{{"challenge": "{challenge}", "entrypoint": "solution.py", "class": "Solution", "name": "t"}}"#).into_bytes()
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn reject(bytes: &[u8]) -> String {
        intake(&challenge(), "upload.zip", bytes)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_project_is_written_whole_or_not_at_all() {
        let mut p = intake(&challenge(), "solution.py", SOLUTION).unwrap();
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("sub");
        p.write_to(&dir).unwrap();
        assert!(dir.join("solution.py").is_file());
        // A file that is also a folder fails half-way: nothing stays behind.
        p.files
            .push(("solution.py/x.py".into(), vec![b'#'; 1 << 20]));
        let dir = parent.path().join("sub2");
        assert!(p.write_to(&dir).is_err());
        let left: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn python_source_is_capped_and_only_source_is_copied_for_inference() {
        let m = manifest("imagenet-pareto-500k");
        // A huge literal: over the source limit, in a bare file or a project.
        let mut literal = SOLUTION.to_vec();
        literal.extend(format!("W = {:?}\n", vec![0.5f32; 40_000]).as_bytes());
        for bytes in [
            literal.clone(),
            zip_of(&[("agentics.solution.json", &m), ("solution.py", &literal)]),
        ] {
            let err = intake(&challenge(), "solution.py", &bytes).unwrap_err();
            assert!(matches!(err, Rejection::SourceTooLarge { .. }), "{err}");
            assert!(err.to_string().contains("128 KiB"), "{err}");
        }
        // Data files are accepted (training may read them) but never copied onward.
        let weights = vec![7u8; 1 << 20];
        let p = intake(
            &challenge(),
            "p.zip",
            &zip_of(&[
                ("agentics.solution.json", &m),
                ("solution.py", SOLUTION),
                ("lib/helpers.py", b"X = 1\n"),
                ("lib/weights.bin", &weights),
                ("notes.txt", b"hi"),
            ]),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        p.write_to(&dir.path().join("project")).unwrap();
        let to = dir.path().join("source");
        let copied = Project::copy_source(&dir.path().join("project"), &to).unwrap();
        assert_eq!(copied, SOLUTION.len() as u64 + 6);
        assert!(to.join("solution.py").is_file() && to.join("lib/helpers.py").is_file());
        assert!(!to.join("lib/weights.bin").exists() && !to.join("notes.txt").exists());
        assert!(!to.join(MANIFEST).exists());
    }

    type Entries<'a> = &'a [(&'a str, &'a [u8])];

    #[test]
    fn rejects_names_that_clash_or_are_too_long() {
        let m = manifest("imagenet-pareto-500k");
        let long = "a".repeat(60_000);
        let deep = "d/".repeat(3_000) + "x.py";
        let cases: &[(Entries, &str)] = &[
            (
                &[
                    ("p/.", b"x"),
                    ("p/agentics.solution.json", &m),
                    ("p/solution.py", SOLUTION),
                ],
                "both a file and a folder",
            ),
            (
                &[
                    ("agentics.solution.json", &m),
                    ("solution.py", SOLUTION),
                    ("lib", b"x"),
                    ("lib/a.py", b"x"),
                ],
                "both a file and a folder",
            ),
            (
                &[
                    ("agentics.solution.json", &m),
                    ("solution.py", SOLUTION),
                    (&long, b"x"),
                ],
                "too long",
            ),
            (
                &[
                    ("agentics.solution.json", &m),
                    ("solution.py", SOLUTION),
                    (&deep, b"x"),
                ],
                "too long",
            ),
        ];
        for (entries, expect) in cases {
            let msg = reject(&zip_of(entries));
            assert!(msg.contains(expect), "{msg}");
            assert!(msg.len() < 400, "{msg}");
        }
    }

    #[test]
    fn accepts_a_project_and_a_bare_solution() {
        let m = manifest("imagenet-pareto-500k");
        let p = intake(
            &challenge(),
            "p.zip",
            &zip_of(&[
                (MANIFEST, &m),
                ("solution.py", SOLUTION),
                ("lib/util.py", b"x = 1\n"),
            ]),
        )
        .unwrap();
        assert_eq!(p.manifest.entrypoint, "solution.py");
        assert_eq!(p.manifest.name.as_deref(), Some("t"));
        assert_eq!(p.files.len(), 3);
        let bare = intake(&challenge(), "solution.py", SOLUTION).unwrap();
        assert_eq!(bare.manifest.challenge, "imagenet-pareto-500k");
        assert_eq!(bare.manifest.class, "Solution");
        // A zipped folder is accepted as its content.
        let nested = intake(
            &challenge(),
            "p.zip",
            &zip_of(&[
                ("proj/agentics.solution.json", &m),
                ("proj/solution.py", SOLUTION),
            ]),
        )
        .unwrap();
        assert!(nested.files.iter().any(|(n, _)| n == "solution.py"));
    }

    #[test]
    fn rejects_missing_or_malformed_manifest() {
        assert_eq!(
            reject(&zip_of(&[("solution.py", SOLUTION)])),
            "missing agentics.solution.json at the root of the zip: add {\"challenge\": \"imagenet-pareto-500k\", \"entrypoint\": \"solution.py\", \"class\": \"Solution\"}"
        );
        assert!(
            reject(&zip_of(&[(MANIFEST, b"{nope"), ("solution.py", SOLUTION)]))
                .starts_with("malformed agentics.solution.json: not valid JSON")
        );
        assert_eq!(
            reject(&zip_of(&[
                (
                    MANIFEST,
                    br#"{"challenge": "imagenet-pareto-500k", "class": "Solution"}"#
                ),
                ("solution.py", SOLUTION)
            ])),
            "malformed agentics.solution.json: missing required key \"entrypoint\""
        );
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, br#"[1]"#)])),
            "malformed agentics.solution.json: expected a JSON object"
        );
    }

    #[test]
    fn rejects_wrong_challenge_missing_entrypoint_or_class() {
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, &manifest("imagenet-pareto-1m")), ("solution.py", SOLUTION)])),
            "agentics.solution.json names challenge \"imagenet-pareto-1m\", but this submission is for \"imagenet-pareto-500k\""
        );
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, &manifest("imagenet-pareto-500k"))])),
            "entrypoint \"solution.py\" named in agentics.solution.json is not in the zip"
        );
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, &manifest("imagenet-pareto-500k")), ("solution.py", b"class Solver:\n    pass\n")])),
            "solution.py defines no class Solution (expected a top-level `class Solution` with a solve(self, train_loader, val_loader, metadata) method)"
        );
        assert_eq!(
            intake(&challenge(), "solution.py", b"def solve():\n    pass\n").unwrap_err().to_string(),
            "solution.py defines no class Solution (expected a top-level `class Solution` with a solve(self, train_loader, val_loader, metadata) method)"
        );
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, br#"{"challenge": "imagenet-pareto-500k", "entrypoint": "my-sol.py", "class": "Solution"}"#), ("my-sol.py", SOLUTION)])),
            "entrypoint \"my-sol.py\" must be a relative .py path made of Python identifiers (e.g. \"solution.py\")"
        );
    }

    #[test]
    fn rejects_traversal_absolute_paths_and_duplicates() {
        let m = manifest("imagenet-pareto-500k");
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, &m), ("solution.py", SOLUTION), ("../../etc/cron.d/x", b"x")])),
            "unsafe path \"../../etc/cron.d/x\" in the zip: entries must be relative paths without `..`"
        );
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, &m), ("/etc/passwd", b"x")])),
            "unsafe path \"/etc/passwd\" in the zip: entries must be relative paths without `..`"
        );
        assert_eq!(
            reject(&zip_of(&[(MANIFEST, &m), ("a/../../b.py", b"x")])),
            "unsafe path \"a/../../b.py\" in the zip: entries must be relative paths without `..`"
        );
        assert_eq!(
            reject(&zip_of(&[
                (MANIFEST, &m),
                ("solution.py", SOLUTION),
                ("./solution.py", SOLUTION)
            ])),
            "\"./solution.py\" appears twice in the zip: entry names must be unique"
        );
    }

    #[test]
    fn rejects_symlinks() {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default();
        w.start_file(MANIFEST, opts).unwrap();
        w.write_all(&manifest("imagenet-pareto-500k")).unwrap();
        w.add_symlink("solution.py", "/etc/shadow", opts).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(
            reject(&bytes),
            "\"solution.py\" is a symlink: symlinks are not accepted in a submission"
        );
    }

    #[test]
    fn rejects_zip_bombs_big_uploads_and_many_entries() {
        let m = manifest("imagenet-pareto-500k");
        // 60 MiB of zeros deflate to ~60 KiB.
        let zeros = vec![0u8; 60 << 20];
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file(MANIFEST, opts).unwrap();
        w.write_all(&m).unwrap();
        w.start_file("bomb.bin", opts).unwrap();
        w.write_all(&zeros).unwrap();
        let bomb = w.finish().unwrap().into_inner();
        assert!(bomb.len() < 1 << 20);
        assert_eq!(
            reject(&bomb),
            "the zip expands to more than 52428800 bytes (50 MiB) of files"
        );
        let big = vec![b'P'; (10 << 20) + 1];
        assert_eq!(
            reject(&big),
            "the zip is 10485761 bytes, over the 10485760-byte (10 MiB) limit"
        );
        let names: Vec<String> = (0..201).map(|i| format!("f{i}.py")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        assert_eq!(
            reject(&zip_of(&entries)),
            "the zip has 201 entries, over the limit of 200"
        );
        assert!(reject(b"hello").starts_with("the upload is not a valid zip archive"));
    }
}

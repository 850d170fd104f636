//! A review's input: the method text, the experiment, and the base and derived projects.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Largest file read from a project directory; larger files are cut (and reported).
pub const MAX_FILE_BYTES: usize = 8 << 20;
/// Most files read from a project directory.
const MAX_FILES: usize = 500;
/// Most bytes of project files one case brings: the files unpacked from a zip archive, and
/// the body of `POST /api/review` that carries the archive or the JSON case.
pub const MAX_CASE_BYTES: usize = 32 << 20;

/// Why a case could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The input is not JSON.
    #[error("the input is not valid JSON: {0}")]
    Json(String),
    /// A required key is missing or has the wrong type.
    #[error("{0}")]
    Shape(String),
    /// A file or directory could not be read.
    #[error("cannot read {path:?}: {message}")]
    Io {
        /// The path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// One file of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Its text (lossily decoded when it was not UTF-8).
    pub text: String,
    /// Whether it held NUL bytes or invalid UTF-8 (binary garbage).
    pub binary: bool,
    /// Its size in bytes before any cut.
    pub size: usize,
}

impl SourceFile {
    /// A text file.
    pub fn text(text: impl Into<String>) -> SourceFile {
        let text = text.into();
        SourceFile {
            size: text.len(),
            binary: text.contains('\0'),
            text,
        }
    }

    fn bytes(bytes: &[u8]) -> SourceFile {
        let size = bytes.len();
        let kept = &bytes[..size.min(MAX_FILE_BYTES)];
        let (text, binary) = match std::str::from_utf8(kept) {
            Ok(t) => (t.to_string(), t.contains('\0')),
            Err(_) => (String::from_utf8_lossy(kept).into_owned(), true),
        };
        SourceFile { text, binary, size }
    }
}

/// A project: files by path relative to its root (`src/train.py`, `config/smoke_test.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Project {
    /// The files.
    pub files: BTreeMap<String, SourceFile>,
}

impl Project {
    /// The text of a file, if present.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(|f| f.text.as_str())
    }

    /// The Python files (under `src/`).
    pub fn python(&self) -> impl Iterator<Item = (&String, &SourceFile)> {
        self.files.iter().filter(|(p, _)| p.ends_with(".py"))
    }

    /// Reads a project directory (`src/*.py`, `config/*.yaml`, `pyproject.toml`, and any
    /// other `.py`/`.yaml`/`.toml` file), never following symbolic links.
    pub fn from_dir(dir: &Path) -> Result<Project, CaseError> {
        let io = |path: &Path, e: std::io::Error| CaseError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if !dir.is_dir() {
            return Err(CaseError::Io {
                path: dir.display().to_string(),
                message: "not a directory: pass the project's root directory".into(),
            });
        }
        let mut project = Project::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&d)
                .map_err(|e| io(&d, e))?
                .flatten()
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if name.starts_with('.') || name == "__pycache__" || kind.is_symlink() {
                    continue;
                }
                let path = entry.path();
                if kind.is_dir() {
                    if path.strip_prefix(dir).map_or(0, |p| p.components().count()) < 4 {
                        stack.push(path);
                    }
                    continue;
                }
                if !is_project_file(&name) {
                    continue;
                }
                if project.files.len() >= MAX_FILES {
                    break;
                }
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
                project.files.insert(rel, SourceFile::bytes(&bytes));
            }
        }
        Ok(project)
    }

    /// A project from the JSON form: `{"train_py": "...", "smoke_test_yaml": "...", ...}`.
    /// Keys that do not end in `_py`, `_yaml`, `_yml` or `_toml` are ignored.
    pub fn from_json(value: &Value, what: &str) -> Result<Project, CaseError> {
        let map = value.as_object().ok_or_else(|| {
            CaseError::Shape(format!(
                "`{what}` must be an object of file keys (e.g. \"train_py\") to file contents"
            ))
        })?;
        let mut project = Project::default();
        for (key, content) in map {
            let Some(path) = key_to_path(key) else {
                continue;
            };
            let text = match content {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => {
                    return Err(CaseError::Shape(format!(
                        "`{what}.{key}` must be a string holding the file's content, got {}",
                        kind(other)
                    )))
                }
            };
            project.files.insert(path, SourceFile::text(text));
        }
        Ok(project)
    }
}

/// A file a review reads: code, configuration, and `requirements.txt` (to say that it
/// declares what `pyproject.toml` should).
fn is_project_file(name: &str) -> bool {
    name == "requirements.txt"
        || [".py", ".yaml", ".yml", ".toml"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// `train_py` → `src/train.py`, `smoke_test_yaml` → `config/smoke_test.yaml`,
/// `pyproject_toml` → `pyproject.toml`; `None` for keys that name no file.
pub fn key_to_path(key: &str) -> Option<String> {
    let (stem, ext) = key.rsplit_once('_')?;
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    match ext {
        "py" => Some(format!("src/{stem}.py")),
        "yaml" | "yml" => Some(format!("config/{stem}.{ext}")),
        "toml" => Some(format!("{stem}.toml")),
        _ => None,
    }
}

/// The experiment to review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Experiment {
    /// Its id (e.g. `exp-1`).
    pub id: String,
    /// Free text.
    pub description: String,
    /// The run variations that must all be present and implemented.
    pub run_variations: Vec<String>,
}

/// Everything a review looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Case {
    /// The method's text (sections joined).
    pub new_method: String,
    /// The experimental design (free text).
    pub experimental_design: String,
    /// The experiment.
    pub experiment: Experiment,
    /// The base template.
    pub base: Project,
    /// The derived experiment code under review.
    pub derived: Project,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", text_of(Some(v))))
            .collect::<Vec<_>>()
            .join("\n\n"),
        Some(other) => other.to_string(),
    }
}

impl Case {
    /// Reads the AIRAS-compatible JSON input (see `review-format.md`). Unknown keys are ignored.
    pub fn from_json_str(input: &str) -> Result<Case, CaseError> {
        let value: Value =
            serde_json::from_str(input).map_err(|e| CaseError::Json(e.to_string()))?;
        Case::from_json(&value)
    }

    /// Reads the JSON input from a parsed value.
    pub fn from_json(value: &Value) -> Result<Case, CaseError> {
        let obj = value
            .as_object()
            .ok_or_else(|| CaseError::Shape("the input must be a JSON object".into()))?;
        let need = |key: &str| {
            obj.get(key).ok_or_else(|| {
                CaseError::Shape(format!(
                    "missing key `{key}`: the input needs `experiment`, `base_code` and `experiment_code`"
                ))
            })
        };
        let experiment = need("experiment")?;
        let exp = experiment.as_object().ok_or_else(|| {
            CaseError::Shape("`experiment` must be an object with `run_variations`".into())
        })?;
        let variations = exp.get("run_variations").ok_or_else(|| {
            CaseError::Shape(
                "missing key `experiment.run_variations`: list the run variations".into(),
            )
        })?;
        let run_variations = variations
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                CaseError::Shape(format!(
                    "`experiment.run_variations` must be an array of strings, got {}",
                    kind(variations)
                ))
            })?;
        Ok(Case {
            new_method: text_of(obj.get("new_method")),
            experimental_design: text_of(obj.get("experimental_design")),
            experiment: Experiment {
                id: text_of(exp.get("id")),
                description: text_of(exp.get("description")),
                run_variations,
            },
            base: Project::from_json(need("base_code")?, "base_code")?,
            derived: Project::from_json(need("experiment_code")?, "experiment_code")?,
        })
    }

    /// Reads the directory form: `--base DIR --derived DIR --variations a,b [--method FILE]`.
    pub fn from_dirs(
        base: &Path,
        derived: &Path,
        variations: &[String],
        method: Option<&Path>,
    ) -> Result<Case, CaseError> {
        let new_method = match method {
            Some(p) => std::fs::read_to_string(p).map_err(|e| CaseError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })?,
            None => String::new(),
        };
        Ok(Case {
            new_method,
            experimental_design: String::new(),
            experiment: Experiment {
                id: String::new(),
                description: String::new(),
                run_variations: variations.to_vec(),
            },
            base: Project::from_dir(base)?,
            derived: Project::from_dir(derived)?,
        })
    }

    /// A case from a zip archive holding `base/` and `derived/` project directories,
    /// `variations.txt` (names separated by commas or lines) and optionally `method.md`,
    /// at its root or inside one top-level folder. Only `.py`, `.yaml`, `.yml` and
    /// `.toml` files are read (each at most [`MAX_FILE_BYTES`], [`MAX_CASE_BYTES`] in all); entries
    /// with `..` or absolute paths are skipped.
    pub fn from_zip(bytes: &[u8]) -> Result<Case, CaseError> {
        use std::io::Read;
        let bad = |m: String| CaseError::Shape(format!("the zip archive: {m}"));
        let mut zip =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(e.to_string()))?;
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let mut budget = MAX_CASE_BYTES as u64;
        for i in 0..zip.len().min(4 * MAX_FILES) {
            let file = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
            let name = file.name().replace('\\', "/");
            let keep = [".py", ".yaml", ".yml", ".toml", ".md", ".txt"]
                .iter()
                .any(|e| name.ends_with(e));
            if file.is_dir() || !keep || name.starts_with('/') || name.split('/').any(|c| c == "..")
            {
                continue;
            }
            let mut data = Vec::new();
            let cap = budget.min(MAX_FILE_BYTES as u64 + 1);
            file.take(cap)
                .read_to_end(&mut data)
                .map_err(|e| bad(e.to_string()))?;
            budget = budget.saturating_sub(data.len() as u64);
            if budget == 0 {
                return Err(bad(format!(
                    "it holds more than {} MiB of project files",
                    MAX_CASE_BYTES >> 20
                )));
            }
            entries.push((name, data));
        }
        // Everything may sit inside one top-level folder.
        let prefix = ["variations.txt", "base/", "derived/"]
            .iter()
            .find_map(|marker| {
                entries.iter().find_map(|(n, _)| {
                    let at = n.find(marker)?;
                    (n[..at].matches('/').count() <= 1 && (at == 0 || n[..at].ends_with('/')))
                        .then(|| n[..at].to_string())
                })
            })
            .unwrap_or_default();
        let mut base = Project::default();
        let mut derived = Project::default();
        let (mut variations, mut method) = (None, String::new());
        for (name, data) in &entries {
            let Some(rel) = name.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let text = || String::from_utf8_lossy(data).into_owned();
            let is_code = is_project_file(rel.rsplit('/').next().unwrap_or(rel));
            if let (Some(p), true) = (rel.strip_prefix("base/"), is_code) {
                if base.files.len() < MAX_FILES {
                    base.files.insert(p.to_string(), SourceFile::bytes(data));
                }
            } else if let (Some(p), true) = (rel.strip_prefix("derived/"), is_code) {
                if derived.files.len() < MAX_FILES {
                    derived.files.insert(p.to_string(), SourceFile::bytes(data));
                }
            } else if rel == "variations.txt" {
                variations = Some(text());
            } else if rel == "method.md" {
                method = text();
            }
        }
        if derived.files.is_empty() {
            return Err(bad("no `derived/` project files (put the experiment code under `derived/`, the template under `base/`)".into()));
        }
        let variations: Vec<String> = variations
            .ok_or_else(|| bad("no `variations.txt` listing the run variations".into()))?
            .split([',', '\n'])
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Case {
            new_method: method,
            experimental_design: String::new(),
            experiment: Experiment {
                id: String::new(),
                description: String::new(),
                run_variations: variations,
            },
            base,
            derived,
        })
    }

    /// The case as the zip archive [`Case::from_zip`] reads (the text files of both
    /// projects, `variations.txt`, `method.md`): how the CLI sends a directory case to a
    /// server.
    pub fn to_zip(&self) -> Result<Vec<u8>, CaseError> {
        use std::io::Write;
        let bad = |e: &dyn std::fmt::Display| {
            CaseError::Shape(format!("cannot build the zip archive: {e}"))
        };
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let projects = [("base", &self.base), ("derived", &self.derived)];
        let files = projects.iter().flat_map(|(dir, project)| {
            project
                .files
                .iter()
                .filter(|(_, f)| !f.binary)
                .map(move |(path, f)| (format!("{dir}/{path}"), f.text.as_str()))
        });
        let variations = self.experiment.run_variations.join("\n");
        let extra = [
            ("variations.txt".to_string(), variations.as_str()),
            ("method.md".to_string(), self.new_method.as_str()),
        ];
        for (name, text) in files.chain(extra) {
            zip.start_file(name, options).map_err(|e| bad(&e))?;
            zip.write_all(text.as_bytes()).map_err(|e| bad(&e))?;
        }
        Ok(zip.finish().map_err(|e| bad(&e))?.into_inner())
    }

    /// All the method-describing text: the method, the design and the experiment's description.
    pub fn method_text(&self) -> String {
        [
            self.new_method.as_str(),
            self.experimental_design.as_str(),
            self.experiment.description.as_str(),
        ]
        .join("\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zipped(entries: &[(&str, &str)]) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, text) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_at_its_root_gives_both_projects_and_the_variations() {
        let case = Case::from_zip(&zipped(&[
            ("variations.txt", "a\nb\n"),
            ("method.md", "the method"),
            ("base/src/train.py", "x = 1\n"),
            ("derived/src/train.py", "x = 2\n"),
            ("derived/config/runs/a.yaml", "lr: 1\n"),
            ("/abs.py", "y = 1\n"),
        ]))
        .unwrap();
        assert_eq!(case.experiment.run_variations, ["a", "b"]);
        assert_eq!(case.new_method, "the method");
        assert_eq!(case.base.text("src/train.py"), Some("x = 1\n"));
        let derived: Vec<&String> = case.derived.files.keys().collect();
        assert_eq!(derived, ["config/runs/a.yaml", "src/train.py"]);
        let missing = Case::from_zip(&zipped(&[("derived/src/train.py", "x = 2\n")]));
        assert!(missing.unwrap_err().to_string().contains("variations.txt"));
    }

    #[test]
    fn to_zip_round_trips_through_from_zip() {
        let case = Case::from_zip(&zipped(&[
            ("variations.txt", "a,b"),
            ("method.md", "the method"),
            ("base/src/train.py", "x = 1\n"),
            ("derived/src/train.py", "x = 2\n"),
            ("derived/pyproject.toml", "[project]\nname = \"p\"\n"),
        ]))
        .unwrap();
        assert_eq!(Case::from_zip(&case.to_zip().unwrap()).unwrap(), case);
    }

    #[test]
    fn keys_map_to_paths() {
        assert_eq!(key_to_path("train_py").as_deref(), Some("src/train.py"));
        assert_eq!(
            key_to_path("smoke_test_yaml").as_deref(),
            Some("config/smoke_test.yaml")
        );
        assert_eq!(
            key_to_path("full_experiment_yaml").as_deref(),
            Some("config/full_experiment.yaml")
        );
        assert_eq!(
            key_to_path("pyproject_toml").as_deref(),
            Some("pyproject.toml")
        );
        assert_eq!(key_to_path("notes"), None);
        assert_eq!(key_to_path("../x_py"), None);
    }

    #[test]
    fn missing_and_unknown_keys() {
        let err = Case::from_json_str(r#"{"experiment": {"run_variations": []}, "base_code": {}}"#)
            .unwrap_err();
        assert!(
            err.to_string().contains("missing key `experiment_code`"),
            "{err}"
        );
        let err =
            Case::from_json_str(r#"{"experiment": {}, "base_code": {}, "experiment_code": {}}"#)
                .unwrap_err();
        assert!(err.to_string().contains("run_variations"), "{err}");
        let case = Case::from_json_str(
            r#"{"new_method": {"Methods": "ASHA"}, "extra": 1, "experiment": {"run_variations": ["a"], "x": 2},
                "base_code": {"train_py": "x = 1", "whatever": 3}, "experiment_code": {"train_py": "x = 2"}}"#,
        )
        .unwrap();
        assert_eq!(case.derived.text("src/train.py"), Some("x = 2"));
        assert!(case.new_method.contains("Methods: ASHA"));
        let err = Case::from_json_str("{not json").unwrap_err();
        assert!(
            err.to_string().starts_with("the input is not valid JSON"),
            "{err}"
        );
        let err = Case::from_json_str(
            r#"{"experiment": {"run_variations": ["a"]}, "base_code": {}, "experiment_code": {"train_py": 5}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`experiment_code.train_py` must be a string"),
            "{err}"
        );
    }
}

//! Imports and dependencies: every import resolves to the project, the standard library
//! or a package that `pyproject.toml` declares in a form uv installs (PEP 621).

use std::collections::BTreeSet;

use crate::case::Project;
use crate::checks::Analysed;
use crate::report::{Finding, Severity};

/// Modules of Python 3.11's standard library.
const STDLIB: &str = include_str!("stdlib.txt");

/// Import name → distribution, for the packages of the managed runtime.
pub const RUNTIME: &[(&str, &str)] = &[
    ("torch", "torch"),
    ("functorch", "torch"),
    ("torchgen", "torch"),
    ("torchvision", "torchvision"),
    ("numpy", "numpy"),
    ("yaml", "pyyaml"),
    ("matplotlib", "matplotlib"),
    ("mpl_toolkits", "matplotlib"),
    ("seaborn", "seaborn"),
    ("tqdm", "tqdm"),
    ("pandas", "pandas"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("PIL", "pillow"),
    ("jinja2", "jinja2"),
    ("joblib", "joblib"),
    ("sympy", "sympy"),
    ("networkx", "networkx"),
    ("packaging", "packaging"),
    ("safetensors", "safetensors"),
    ("filelock", "filelock"),
    ("fsspec", "fsspec"),
    ("dateutil", "python-dateutil"),
    ("typing_extensions", "typing-extensions"),
    ("cloudpickle", "cloudpickle"),
    ("triton", "triton"),
    ("contourpy", "contourpy"),
    ("cycler", "cycler"),
    ("kiwisolver", "kiwisolver"),
    ("pyparsing", "pyparsing"),
    ("threadpoolctl", "threadpoolctl"),
    ("markupsafe", "markupsafe"),
    ("mpmath", "mpmath"),
    ("fontTools", "fonttools"),
];

/// Import name → distribution for well-known packages whose names differ.
const KNOWN: &[(&str, &str)] = &[
    ("cv2", "opencv-python"),
    ("skimage", "scikit-image"),
    ("bs4", "beautifulsoup4"),
    ("attr", "attrs"),
    ("hydra", "hydra-core"),
    ("google", "protobuf"),
    ("pytorch_lightning", "pytorch-lightning"),
    ("lightning", "lightning"),
    ("wandb", "wandb"),
    ("transformers", "transformers"),
    ("datasets", "datasets"),
    ("timm", "timm"),
    ("einops", "einops"),
    ("omegaconf", "omegaconf"),
    ("tensorboard", "tensorboard"),
    ("torchaudio", "torchaudio"),
    ("optuna", "optuna"),
    ("ray", "ray"),
    ("h5py", "h5py"),
    ("requests", "requests"),
];

/// What well-known distributions install with them (their required dependencies, as of
/// their current releases): an import these provide works after the project's install.
const PROVIDES: &[(&str, &[&str])] = &[
    (
        "torch",
        &[
            "filelock",
            "typing-extensions",
            "sympy",
            "networkx",
            "jinja2",
            "fsspec",
        ],
    ),
    ("torchvision", &["numpy", "pillow", "torch"]),
    (
        "matplotlib",
        &[
            "numpy",
            "pillow",
            "contourpy",
            "cycler",
            "kiwisolver",
            "pyparsing",
            "packaging",
            "python-dateutil",
            "fonttools",
        ],
    ),
    ("pandas", &["numpy", "python-dateutil", "pytz", "tzdata"]),
    ("seaborn", &["numpy", "pandas", "matplotlib"]),
    (
        "scikit-learn",
        &["numpy", "scipy", "joblib", "threadpoolctl"],
    ),
    ("scipy", &["numpy"]),
    ("hydra-core", &["omegaconf", "packaging"]),
    ("omegaconf", &["pyyaml"]),
    (
        "huggingface-hub",
        &[
            "filelock",
            "fsspec",
            "packaging",
            "pyyaml",
            "requests",
            "tqdm",
            "typing-extensions",
        ],
    ),
    (
        "transformers",
        &[
            "huggingface-hub",
            "tokenizers",
            "safetensors",
            "regex",
            "requests",
            "tqdm",
            "numpy",
            "packaging",
            "pyyaml",
            "filelock",
        ],
    ),
    (
        "datasets",
        &[
            "numpy",
            "pandas",
            "pyarrow",
            "requests",
            "tqdm",
            "fsspec",
            "huggingface-hub",
            "pyyaml",
            "packaging",
            "filelock",
            "dill",
        ],
    ),
    (
        "timm",
        &[
            "torch",
            "torchvision",
            "pyyaml",
            "huggingface-hub",
            "safetensors",
        ],
    ),
    ("sympy", &["mpmath"]),
    ("jinja2", &["markupsafe"]),
];

/// The declared distribution that brings `dist` with it, if any (following [`PROVIDES`]).
fn provider(declared: &BTreeSet<String>, dist: &str) -> Option<String> {
    declared.iter().find_map(|root| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.as_str()];
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            let deps = PROVIDES
                .iter()
                .find(|(p, _)| *p == d)
                .map_or(&[][..], |p| p.1);
            if deps.contains(&dist) {
                return Some(root.clone());
            }
            todo.extend(deps.iter().copied());
        }
        None
    })
}

/// PEP 503 normalised distribution name.
pub fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['_', '.'], "-")
}

fn dist_of(module: &str) -> String {
    RUNTIME
        .iter()
        .chain(KNOWN)
        .find(|(m, _)| *m == module)
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| normalise(module))
}

fn in_runtime(module: &str) -> bool {
    RUNTIME.iter().any(|(m, _)| *m == module)
}

/// One PEP 621 dependency as written.
#[derive(Debug, Clone)]
pub struct Requirement {
    /// The requirement string.
    pub spec: String,
    /// Its distribution name.
    pub name: String,
    /// Its line in `pyproject.toml`.
    pub line: Option<usize>,
}

/// The string requirements of `[project] dependencies` (nothing when the file does not
/// parse: the static pass reports that).
pub fn requirements(text: &str) -> Vec<Requirement> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let items = doc
        .get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
        .map_or(&[][..], |a| a.as_slice());
    items
        .iter()
        .filter_map(|i| i.as_str())
        .map(|spec| Requirement {
            spec: spec.trim().to_string(),
            name: name_of(spec),
            line: line_of(text, spec),
        })
        .filter(|r| !r.name.is_empty())
        .collect()
}

/// The distribution name a requirement starts with.
fn name_of(spec: &str) -> String {
    spec.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

/// The line of `pyproject.toml` where `spec` is written (quoted).
fn line_of(text: &str, spec: &str) -> Option<usize> {
    let quoted = [format!("\"{spec}\""), format!("'{spec}'")];
    text.lines()
        .position(|l| quoted.iter().any(|q| l.contains(q.as_str())))
        .or_else(|| text.lines().position(|l| l.contains(spec)))
        .map(|i| i + 1)
}

/// What installing the project's declared dependencies showed.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    /// Top-level modules the installed environment provides beyond the runtime (empty
    /// when it was not built): an import among them is not undeclared.
    pub modules: BTreeSet<String>,
    /// Declared distributions (normalised) left uninstalled because a declared dependency
    /// cannot be installed: that is reported at `pyproject.toml`, their imports are not
    /// reported again.
    pub not_installed: BTreeSet<String>,
}

/// Checks `pyproject.toml` and every import of the derived code.
pub fn check(project: &Project, code: &Analysed, installed: &Installed, out: &mut Vec<Finding>) {
    let declared = pyproject(project, out);
    let stdlib: BTreeSet<&str> = STDLIB.lines().map(str::trim).collect();
    let local: BTreeSet<String> = project
        .files
        .keys()
        .filter_map(|p| p.strip_prefix("src/"))
        .filter_map(|p| p.strip_suffix(".py"))
        .map(|p| p.replace('/', "."))
        .collect();
    let mut reported = BTreeSet::new();
    for (path, module) in &code.modules {
        for import in &module.imports {
            let top = import.module.split('.').next().unwrap_or("");
            let line = Some(import.line);
            if import.level > 0 {
                let target = if import.module.is_empty() {
                    "__init__".to_string()
                } else {
                    import.module.clone()
                };
                if !local.contains(&target)
                    && !local.iter().any(|l| l.starts_with(&format!("{target}.")))
                    && import
                        .module
                        .split('.')
                        .next()
                        .is_some_and(|m| !local.contains(m))
                {
                    out.push(
                        Finding::new(
                            "import-unresolved",
                            Severity::Blocker,
                            format!(
                                "relative import `.{}` in `{path}` names no module of the project",
                                import.module
                            ),
                        )
                        .at(path, line)
                        .fix("import a module that exists in `src/`"),
                    );
                }
                continue;
            }
            if top == "src" {
                let rest = import.module.strip_prefix("src.").unwrap_or("");
                let first = rest.split('.').next().unwrap_or("");
                if !rest.is_empty() && !local.contains(first) && !local.contains(rest) {
                    out.push(
                        Finding::new(
                            "import-unresolved",
                            Severity::Blocker,
                            format!(
                                "`{}` imported in `{path}` does not exist in the project",
                                import.module
                            ),
                        )
                        .at(path, line)
                        .fix(format!("add `src/{first}.py` or import an existing module")),
                    );
                }
                continue;
            }
            if stdlib.contains(top) || top.is_empty() || top == "__future__" {
                continue;
            }
            if local.contains(top) {
                out.push(
                    Finding::new(
                        "import-unresolved",
                        Severity::Blocker,
                        format!("`import {}` in `{path}` only works with `src/` on the path; `python -m src.main` runs from the project root", import.module),
                    )
                    .at(path, line)
                    .fix(format!("write `from src import {top}` or `from src.{top} import ...`")),
                );
                continue;
            }
            let dist = dist_of(top);
            if installed.not_installed.contains(&dist) || !reported.insert(dist.clone()) {
                continue;
            }
            let is_declared = declared.as_ref().is_some_and(|d| d.contains(&dist));
            let via = declared
                .as_ref()
                .and_then(|d| provider(d, &dist))
                .map(|p| format!("`{p}`"))
                .or_else(|| {
                    installed
                        .modules
                        .contains(top)
                        .then(|| "the declared dependencies".to_string())
                });
            if let (false, Some(via)) = (is_declared, &via) {
                out.push(
                    Finding::new(
                        "dependency-transitive",
                        Severity::Info,
                        format!("`{}` is imported in `{path}`; `{dist}` is not declared; it is installed with {via}", import.module),
                    )
                    .at(path, line)
                    .fix(format!("declare \"{dist}\" directly so a change in {via} cannot remove it")),
                );
            } else if !is_declared && declared.is_some() {
                out.push(
                    Finding::new(
                        "undeclared-dependency",
                        Severity::Blocker,
                        format!("`{}` is imported in `{path}` but `{dist}` is not declared in pyproject.toml", import.module),
                    )
                    .at(path, line)
                    .fix(format!("add \"{dist}\" to `[project] dependencies` in pyproject.toml")),
                );
            } else if !in_runtime(top) && !installed.modules.contains(top) {
                out.push(
                    Finding::new(
                        "missing-dependency",
                        Severity::Warning,
                        format!("`{dist}` (imported in `{path}`) is not in the managed runtime: code using it could not be verified by running it"),
                    )
                    .at(path, line),
                );
            }
            let _ = import.optional;
        }
    }
}

/// The finding for dependencies listed only in `requirements.txt`, if it lists any.
fn requirements_only(project: &Project) -> Option<Finding> {
    let text = project.text("requirements.txt")?;
    let first = text
        .lines()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    Some(
        Finding::new(
            "dependencies-not-installable",
            Severity::Blocker,
            "dependencies are declared only in `requirements.txt`: the pipeline installs what `pyproject.toml` declares (`[project] dependencies`), so the code's packages would be missing",
        )
        .at("requirements.txt", Some(first + 1))
        .fix("move them to `[project] dependencies = [\"torch>=2.2\", ...]` in pyproject.toml"),
    )
}

/// The declared distributions (normalised), or `None` when nothing installable is declared.
fn pyproject(project: &Project, out: &mut Vec<Finding>) -> Option<BTreeSet<String>> {
    const PATH: &str = "pyproject.toml";
    let text = project.text(PATH)?;
    let doc: toml::Table = match text.parse() {
        Ok(d) => d,
        Err(e) => {
            out.push(
                Finding::new(
                    "pyproject-parse-error",
                    Severity::Blocker,
                    format!("pyproject.toml is not valid TOML: {}", e.message()),
                )
                .at(
                    PATH,
                    e.span()
                        .map(|s| text[..s.start.min(text.len())].lines().count().max(1)),
                )
                .fix("fix the TOML syntax"),
            );
            return None;
        }
    };
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    let poetry = doc
        .get("tool")
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.get("dependencies"))
        .is_some();
    let Some(project_table) = doc.get("project").and_then(|p| p.as_table()) else {
        let (message, fix) = if poetry {
            (
                "dependencies are declared only in `[tool.poetry.dependencies]`, which uv does not install: the code's packages would be missing".to_string(),
                "declare them in PEP 621 form: `[project]` with `name`, `version` and `dependencies = [\"torch>=2.2\", ...]`",
            )
        } else if let Some(f) = requirements_only(project) {
            out.push(f);
            return None;
        } else {
            (
                "pyproject.toml has no `[project]` table: no dependency is declared in a form uv installs".to_string(),
                "add a PEP 621 `[project]` table with `name`, `version` and `dependencies = [...]`",
            )
        };
        out.push(
            Finding::new("dependencies-not-installable", Severity::Blocker, message)
                .at(PATH, line("[tool.poetry.dependencies]"))
                .fix(fix),
        );
        return None;
    };
    if !project_table.contains_key("name") {
        out.push(
            Finding::new(
                "pyproject-invalid",
                Severity::Blocker,
                "`[project]` has no `name`: uv rejects the project",
            )
            .at(PATH, line("[project]"))
            .fix("add `name = \"...\"` under `[project]`"),
        );
    }
    let mut declared = BTreeSet::new();
    let no_list = project_table
        .get("dependencies")
        .and_then(|d| d.as_array())
        .is_none_or(|a| a.is_empty());
    if let (true, false, Some(f)) = (no_list, poetry, requirements_only(project)) {
        out.push(f);
        return None;
    }
    match project_table.get("dependencies") {
        None => {
            if poetry {
                out.push(
                    Finding::new(
                        "dependencies-not-installable",
                        Severity::Blocker,
                        "`[project]` declares no `dependencies`; they are only in `[tool.poetry.dependencies]`, which uv does not install",
                    )
                    .at(PATH, line("[tool.poetry.dependencies]"))
                    .fix("move them to `[project] dependencies = [\"torch>=2.2\", ...]`"),
                );
            }
        }
        Some(toml::Value::Array(items)) => {
            for item in items {
                let Some(spec) = item.as_str() else {
                    out.push(
                        Finding::new("dependencies-not-installable", Severity::Blocker, format!("dependency `{item}` is not a string requirement"))
                            .at(PATH, line("dependencies"))
                            .fix("write each dependency as a PEP 508 string, e.g. \"torch>=2.2\""),
                    );
                    continue;
                };
                let name = name_of(spec);
                if name.is_empty() {
                    out.push(
                        Finding::new("dependencies-not-installable", Severity::Blocker, format!("`{spec}` is not a valid requirement"))
                            .at(PATH, line(spec))
                            .fix("write a PEP 508 requirement such as \"torch>=2.2\""),
                    );
                } else {
                    declared.insert(normalise(&name));
                }
            }
        }
        Some(_) => out.push(
            Finding::new(
                "dependencies-not-installable",
                Severity::Blocker,
                "`[project] dependencies` is a table, not a list of requirement strings: uv rejects it",
            )
            .at(PATH, line("dependencies"))
            .fix("write `dependencies = [\"torch>=2.2\", \"pyyaml>=6\"]`"),
        ),
    }
    Some(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_only_in_requirements_txt_are_one_finding_there() {
        let mut project = Project::default();
        for (path, text) in [
            (
                "pyproject.toml",
                "[project]\nname = \"x\"\nversion = \"0.1\"\n",
            ),
            ("requirements.txt", "# pinned\ntorch>=2.2\ndatasets\n"),
        ] {
            project
                .files
                .insert(path.into(), crate::case::SourceFile::text(text.to_string()));
        }
        let mut out = Vec::new();
        assert_eq!(pyproject(&project, &mut out), None);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].id, "dependencies-not-installable");
        assert_eq!(
            (out[0].file.as_deref(), out[0].line),
            (Some("requirements.txt"), Some(2))
        );
    }

    #[test]
    fn transitive_providers_are_followed() {
        let declared: BTreeSet<String> = ["torch", "hydra-core"].map(String::from).into();
        assert_eq!(provider(&declared, "pyyaml").as_deref(), Some("hydra-core"));
        assert_eq!(provider(&declared, "mpmath").as_deref(), Some("torch"));
        assert_eq!(provider(&declared, "tqdm"), None);
    }
}

//! The project's own environment: the PEP 621 dependencies of `pyproject.toml`, installed
//! on top of the managed runtime before the sandboxed runs. This is a trusted step, so it
//! runs no code of the project's packages: wheels only (`--only-binary :all:`, nothing is
//! built), resolved against the runtime's pins, installed `--no-deps` into a directory
//! keyed by the hash of what was asked, bounded in time and size. The runs see that
//! directory after the runtime on their path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::case::Project;
use crate::deps::{normalise, requirements, Installed, Requirement};
use crate::report::{cut, Finding, Severity};

const PYPROJECT: &str = "pyproject.toml";
/// Bump when what goes into an environment changes, so old cache entries are not reused.
const CACHE_VERSION: &str = "env-v2";
/// The research stack's pins (`runtime/research.lock`): a constraint of every install.
const RESEARCH_LOCK: &str = include_str!("../../../runtime/research.lock");
/// What the research stack asks for (`runtime/research.in`).
const RESEARCH_IN: &str = include_str!("../../../runtime/research.in");
/// Most requirements and resolved packages one project may bring.
const MAX_REQUIREMENTS: usize = 64;
const MAX_PACKAGES: usize = 200;

/// Where and how project environments are built.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// Cache of built environments (`$PROCTOR_HOME/review-envs`), on the filesystem of the
    /// engine's run directories (they are hard-linked into each run).
    pub dir: PathBuf,
    /// `$PROCTOR_HOME`, where uv is found or installed.
    pub home: PathBuf,
    /// The managed runtime's interpreter: wheels are chosen for it.
    pub python: PathBuf,
    /// The runtime's id (part of the cache key).
    pub runtime_id: String,
    /// Longest a resolution plus install may take.
    pub timeout: Duration,
    /// Largest environment kept, in MiB.
    pub max_mb: u64,
}

impl EnvOptions {
    /// Environments in `$home/review-envs` for `runtime`: at most 5 minutes and 3 GiB.
    pub fn new(home: &Path, runtime: &proctor_runtime::Runtime) -> EnvOptions {
        EnvOptions {
            dir: home.join("review-envs"),
            home: home.to_path_buf(),
            python: runtime.python.clone(),
            runtime_id: runtime.id.clone(),
            timeout: Duration::from_secs(300),
            max_mb: 3072,
        }
    }
}

/// Installs the research stack (`runtime/research.in`: datasets, timm, transformers,
/// hydra-core, omegaconf, … on top of the runtime's pandas, scipy, scikit-learn,
/// matplotlib, seaborn), so that projects using it install from the local cache.
/// Returns the time taken (`None`: it was cached) and the packages installed.
pub async fn install_research(opts: &EnvOptions) -> Result<(Option<u64>, usize), String> {
    let wanted: Vec<Requirement> = RESEARCH_IN
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Requirement {
            spec: l.to_string(),
            name: l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect(),
            line: None,
        })
        .collect();
    let key = cache_key(&wanted, &opts.runtime_id);
    let final_dir = opts.dir.join(&key);
    let started = Instant::now();
    let took = if final_dir.join("env.json").is_file() {
        None
    } else {
        match tokio::time::timeout(opts.timeout, build(&wanted, opts, &key)).await {
            Err(_) => return Err(format!("took longer than {} s", opts.timeout.as_secs())),
            Ok(Err(Failure::NotBuilt(why))) => return Err(why),
            Ok(Err(Failure::Conflict(e) | Failure::Unresolvable(e))) => return Err(uv_tail(&e)),
            Ok(Ok(())) => Some(started.elapsed().as_millis() as u64),
        }
    };
    Ok((took, top_level_modules(&final_dir.join("site")).len()))
}

/// The environment a review's runs get.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The directory of installed packages, when the project needs any beyond the runtime.
    pub overlay: Option<PathBuf>,
    /// What the static pass should know: modules installed, dependencies unresolvable.
    pub installed: Installed,
    /// What the install found (an unresolvable dependency, an environment not built).
    pub findings: Vec<Finding>,
    /// A declared dependency cannot be installed: running the code would only show that.
    pub blocked: bool,
    /// Time the install took; `None` when it came from the cache or nothing was needed.
    pub install_ms: Option<u64>,
}

/// Installs what the project declares (from the cache when it was built before).
pub async fn prepare(project: &Project, opts: &EnvOptions) -> Prepared {
    let mut out = Prepared::default();
    let Some(text) = project.text(PYPROJECT) else {
        return out;
    };
    let mut wanted = Vec::new();
    for r in requirements(text) {
        if plain_requirement(&r.spec) {
            wanted.push(r);
        } else {
            out.findings.push(
                Finding::new(
                    "dependency-not-verified",
                    Severity::Warning,
                    format!("dependency `{}` is not a plain PyPI requirement (direct URL, path or option): it was not installed, code using it could not be verified", cut(&r.spec, 80)),
                )
                .at(PYPROJECT, r.line),
            );
        }
    }
    if wanted.is_empty() {
        return out;
    }
    if wanted.len() > MAX_REQUIREMENTS {
        out.findings.push(not_built(format!(
            "{} dependencies are declared; at most {MAX_REQUIREMENTS} are installed for a review",
            wanted.len()
        )));
        return out;
    }
    let key = cache_key(&wanted, &opts.runtime_id);
    let final_dir = opts.dir.join(&key);
    if final_dir.join("env.json").is_file() {
        finish(&mut out, &final_dir);
        return out;
    }
    let started = Instant::now();
    let built = tokio::time::timeout(opts.timeout, build(&wanted, opts, &key)).await;
    match built {
        Err(_) => out.findings.push(not_built(format!(
            "installing the declared dependencies took longer than {} s",
            opts.timeout.as_secs()
        ))),
        Ok(Err(Failure::NotBuilt(why))) => out.findings.push(not_built(why)),
        Ok(Err(Failure::Conflict(stderr))) => {
            let r = named_in(&wanted, &stderr);
            out.findings.push(
                Finding::new(
                    "dependency-conflicts-runtime",
                    Severity::Warning,
                    format!("`{}` cannot be installed beside the managed runtime's pinned packages (torch {}): code using it could not be verified", r.spec, pinned("torch")),
                )
                .at(PYPROJECT, r.line)
                .evidence(uv_tail(&stderr)),
            );
        }
        Ok(Err(Failure::Unresolvable(stderr))) => {
            let r = named_in(&wanted, &stderr);
            out.blocked = true;
            // None of them was installed; the one finding says why.
            let names = wanted.iter().map(|r| normalise(&r.name));
            out.installed.not_installed.extend(names);
            out.findings.push(
                Finding::new(
                    "dependency-unresolvable",
                    Severity::Blocker,
                    format!("declared dependency `{}` cannot be installed: no release on the package index satisfies it", r.spec),
                )
                .at(PYPROJECT, r.line)
                .evidence(uv_tail(&stderr))
                .fix("declare a package name and version range that exist on PyPI (check the spelling), or remove the dependency"),
            );
        }
        Ok(Ok(())) => {
            out.install_ms = Some(started.elapsed().as_millis() as u64);
            finish(&mut out, &final_dir);
        }
    }
    out
}

/// Reads a built environment from the cache into `out`.
fn finish(out: &mut Prepared, dir: &Path) {
    let site = dir.join("site");
    out.installed.modules = top_level_modules(&site);
    if !out.installed.modules.is_empty() {
        out.overlay = Some(site);
    }
}

enum Failure {
    /// The index has nothing that satisfies a requirement (a project defect).
    Unresolvable(String),
    /// Resolvable alone, not with the runtime's pins (nothing the project can fix here).
    Conflict(String),
    /// The machine could not build it (index unreachable, disk, size).
    NotBuilt(String),
}

/// Resolves, installs and moves the environment into the cache as `key`.
async fn build(wanted: &[Requirement], opts: &EnvOptions, key: &str) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::NotBuilt(format!("the environment directory: {e}"));
    std::fs::create_dir_all(&opts.dir).map_err(io)?;
    let uv = {
        let home = opts.home.clone();
        tokio::task::spawn_blocking(move || proctor_runtime::uv(&home))
            .await
            .map_err(|e| Failure::NotBuilt(e.to_string()))?
            .map_err(|e| Failure::NotBuilt(format!("uv is not available: {e}")))?
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{key}-"))
        .tempdir_in(&opts.dir)
        .map_err(io)?;
    let work = tmp.path();
    let wanted_text: String = wanted.iter().map(|r| format!("{}\n", r.spec)).collect();
    std::fs::write(work.join("requirements.in"), wanted_text).map_err(io)?;
    std::fs::write(work.join("runtime.lock"), proctor_runtime::LOCK).map_err(io)?;
    std::fs::write(work.join("research.lock"), RESEARCH_LOCK).map_err(io)?;
    let compile = |constrained: bool| {
        let mut args = vec!["pip", "compile", "requirements.in", "-o", "resolved.txt"];
        if constrained {
            args.extend(["-c", "runtime.lock", "-c", "research.lock"]);
        }
        args.extend(["--no-header", "--no-annotate"]);
        uv_run(&uv, work, &opts.python, args)
    };
    if let Err(stderr) = compile(true).await? {
        return Err(match compile(false).await? {
            Ok(()) => Failure::Conflict(stderr),
            Err(_) if unreachable_index(&stderr) => {
                Failure::NotBuilt(format!("the package index: {}", uv_tail(&stderr)))
            }
            Err(_) => Failure::Unresolvable(stderr),
        });
    }
    let resolved = std::fs::read_to_string(work.join("resolved.txt")).map_err(io)?;
    let missing = beyond_runtime(&resolved);
    if missing.len() > MAX_PACKAGES {
        return Err(Failure::NotBuilt(format!(
            "the dependencies bring {} packages; at most {MAX_PACKAGES} are installed for a review",
            missing.len()
        )));
    }
    std::fs::create_dir_all(work.join("site")).map_err(io)?;
    if !missing.is_empty() {
        std::fs::write(work.join("missing.txt"), missing.join("\n") + "\n").map_err(io)?;
        let args = vec![
            "pip",
            "install",
            "--no-deps",
            "--target",
            "site",
            "-r",
            "missing.txt",
        ];
        if let Err(stderr) = uv_run(&uv, work, &opts.python, args).await? {
            return Err(Failure::NotBuilt(format!(
                "uv could not install the wheels: {}",
                uv_tail(&stderr)
            )));
        }
    }
    // The runs see the environment read-only: compile it once here, or every process of
    // every run compiles what it imports from source (this only compiles, it runs nothing).
    let _ = tokio::process::Command::new(&opts.python)
        .args(["-m", "compileall", "-q", "-j", "0", "site"])
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await;
    let mb = dir_size(&work.join("site")) >> 20;
    if mb > opts.max_mb {
        return Err(Failure::NotBuilt(format!(
            "the declared dependencies take {mb} MiB installed; a review keeps at most {} MiB",
            opts.max_mb
        )));
    }
    let record = serde_json::json!({ "requested": wanted.iter().map(|r| &r.spec).collect::<Vec<_>>(), "installed": missing, "mb": mb });
    std::fs::write(work.join("env.json"), record.to_string()).map_err(io)?;
    let tmp = tmp.keep();
    // Another review may have built the same environment meanwhile: either copy will do.
    if std::fs::rename(&tmp, opts.dir.join(key)).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// Runs `uv ARGS` in `dir` for the runtime's interpreter, wheels only, ignoring any uv
/// configuration; `Ok(Err(stderr))` when uv failed. Dropping the future kills uv.
async fn uv_run(
    uv: &Path,
    dir: &Path,
    python: &Path,
    args: Vec<&str>,
) -> Result<Result<(), String>, Failure> {
    let output = tokio::process::Command::new(uv)
        .args(args)
        .arg("--python")
        .arg(python)
        .args(["--only-binary", ":all:", "--no-config", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Failure::NotBuilt(format!("cannot run uv: {e}")))?;
    if output.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&output.stderr).into_owned()))
    }
}

/// Only `name[extras] specifiers ; markers`: no direct URL, path, option or line break
/// reaches the requirements file uv reads.
fn plain_requirement(spec: &str) -> bool {
    let spec = spec.trim();
    !spec.is_empty()
        && spec.len() <= 200
        && spec.starts_with(|c: char| c.is_ascii_alphanumeric())
        && spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.-[],<>=!~*;:'\"()+".contains(c))
        && !spec.contains("://")
}

fn cache_key(wanted: &[Requirement], runtime_id: &str) -> String {
    let mut specs: Vec<&str> = wanted.iter().map(|r| r.spec.trim()).collect();
    specs.sort_unstable();
    specs.dedup();
    let text = format!(
        "{CACHE_VERSION}\n{runtime_id}\n{RESEARCH_LOCK}\n{}",
        specs.join("\n")
    );
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `name==version` lines of a resolution whose package the runtime does not pin.
fn beyond_runtime(resolved: &str) -> Vec<String> {
    resolved
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            let name = l.split("==").next().unwrap_or("");
            pinned(name).is_empty()
        })
        .map(str::to_string)
        .collect()
}

/// The runtime lock's version of `name`, or "" when it does not pin it.
fn pinned(name: &str) -> &'static str {
    let name = normalise(name);
    proctor_runtime::LOCK
        .lines()
        .filter_map(|l| l.split_once("=="))
        .find(|(n, _)| normalise(n) == name)
        .map_or("", |(_, v)| v.split_whitespace().next().unwrap_or(""))
}

/// The requirement uv's error is about: the first whose name it mentions.
fn named_in<'a>(wanted: &'a [Requirement], stderr: &str) -> &'a Requirement {
    let text = normalise(stderr);
    wanted
        .iter()
        .find(|r| {
            let name = normalise(&r.name);
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .any(|w| w == name)
        })
        .unwrap_or(&wanted[0])
}

fn unreachable_index(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "error sending request",
        "failed to fetch",
        "dns error",
        "timed out",
        "connection refused",
        "network",
    ]
    .iter()
    .any(|w| s.contains(w))
}

/// The last lines of uv's error, without local paths.
fn uv_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .collect();
    lines[lines.len().saturating_sub(4)..].join(" ")
}

fn not_built(why: String) -> Finding {
    Finding::new(
        "environment-not-built",
        Severity::Warning,
        format!("the project's declared dependencies were not installed ({why}): code using packages beyond the managed runtime could not be verified"),
    )
    .at(PYPROJECT, None)
}

/// Importable top-level names in an installed `--target` directory.
fn top_level_modules(site: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(site) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let module = if is_dir {
                (!name.contains('.') && name != "bin" && name != "__pycache__").then_some(name)
            } else {
                name.strip_suffix(".py")
                    .map(str::to_string)
                    .or_else(|| name.split_once(".cpython").map(|(m, _)| m.to_string()))
                    .or_else(|| name.strip_suffix(".abi3.so").map(str::to_string))
            };
            module.filter(|m| !m.is_empty())
        })
        .collect()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_requirements_reach_uv() {
        for ok in [
            "torch>=2.2",
            "hydra-core==1.3.2",
            "datasets[vision] ; python_version >= '3.9'",
            "scikit_learn",
        ] {
            assert!(plain_requirement(ok), "{ok}");
        }
        for bad in [
            "pkg @ https://x.org/p.whl",
            "-e .",
            "--index-url http://x",
            "a\n--extra-index-url x",
            "pkg @ file:///etc",
            "./local",
            "",
        ] {
            assert!(!plain_requirement(bad), "{bad}");
        }
    }

    #[test]
    fn the_key_ignores_order_and_the_runtime_pins_are_left_out() {
        let r = |s: &str| Requirement {
            spec: s.into(),
            name: s.into(),
            line: None,
        };
        assert_eq!(
            cache_key(&[r("a"), r("b")], "x"),
            cache_key(&[r("b"), r("a")], "x")
        );
        assert_ne!(cache_key(&[r("a")], "x"), cache_key(&[r("a")], "y"));
        let missing =
            beyond_runtime("torch==2.4.1\ntimm==1.0.3\nPyYAML==6.0.2\nhuggingface-hub==0.24\n");
        assert_eq!(missing, ["timm==1.0.3", "huggingface-hub==0.24"]);
    }

    #[test]
    fn the_failing_requirement_is_the_one_uv_names() {
        let r = |s: &str, n: &str| Requirement {
            spec: s.into(),
            name: n.into(),
            line: Some(1),
        };
        let wanted = [
            r("torch>=2", "torch"),
            r("nonexistent_pkg>=1", "nonexistent_pkg"),
        ];
        let stderr = "  × No solution found when resolving dependencies:\n  ╰─▶ Because nonexistent-pkg was not found in the package registry and you require nonexistent-pkg>=1, we can conclude that your requirements are unsatisfiable.";
        assert_eq!(named_in(&wanted, stderr).name, "nonexistent_pkg");
    }
}

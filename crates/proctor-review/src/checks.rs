//! The static pass: what can be decided by reading the base and derived projects.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value as Yaml;

use crate::budget::Budget;
use crate::case::{Case, Project, MAX_FILE_BYTES};
use crate::deps::Installed;
use crate::python::{self, PyModule};
use crate::report::{cut, Finding, Severity};

/// The files every project of this shape has.
pub const REQUIRED: &[&str] = &[
    "src/train.py",
    "src/evaluate.py",
    "src/preprocess.py",
    "src/model.py",
    "src/main.py",
    "pyproject.toml",
    "config/smoke_test.yaml",
    "config/full_experiment.yaml",
];
/// The smoke configuration.
pub const SMOKE: &str = "config/smoke_test.yaml";
/// The full configuration.
pub const FULL: &str = "config/full_experiment.yaml";
/// The root configuration of a Hydra-shaped project (runs in `config/runs/`).
pub const HYDRA_ROOT: &str = "config/config.yaml";
/// Deepest YAML nesting parsed: real configs nest a handful of levels, while a deep one
/// takes the YAML parser quadratic time before it reaches its recursion limit.
const MAX_YAML_DEPTH: usize = 64;

/// The analysed Python files of a project.
pub struct Analysed {
    /// Per file.
    pub modules: BTreeMap<String, PyModule>,
}

impl Analysed {
    /// Analyses every readable Python file of `project`; `None` when the budget ran out.
    pub fn new(project: &Project, budget: &Budget) -> Option<Analysed> {
        let modules = project
            .python()
            .filter(|(_, f)| !f.binary)
            .map(|(p, f)| Some((p.clone(), python::analyse(&f.text, budget)?)))
            .collect::<Option<_>>()?;
        Some(Analysed { modules })
    }

    /// Whether any file refers to `key`.
    pub fn refers_to(&self, key: &str) -> bool {
        self.modules.values().any(|m| m.refers_to(key))
    }

    /// Whether any string literal of the code equals `value`.
    pub fn has_string(&self, value: &str) -> bool {
        self.modules.values().any(|m| m.strings.contains(value))
    }
}

/// What the static pass found, with the analysed projects the smoke runs reuse.
pub struct StaticPass {
    /// The findings.
    pub findings: Vec<Finding>,
    /// The base template's Python files.
    pub base: Analysed,
    /// The derived code's Python files.
    pub derived: Analysed,
}

/// Runs every static check of the derived project against the base; `None` when the
/// budget ran out (or was cancelled) first.
/// `installed`: what installing the project's declared dependencies showed.
pub fn run(case: &Case, budget: &Budget, installed: &Installed) -> Option<StaticPass> {
    let base = Analysed::new(&case.base, budget)?;
    let derived = Analysed::new(&case.derived, budget)?;
    let mut out = Vec::new();
    files(case, &mut out);
    for (path, module) in &derived.modules {
        code(path, module, &mut out);
    }
    omissions(&base, &derived, &mut out);
    let configs = configs(&case.derived, &mut out);
    variations(case, &configs, &derived, &mut out);
    crate::deps::check(&case.derived, &derived, installed, &mut out);
    crate::method::check(&case.method_text(), &derived, &mut out);
    if budget.exhausted() {
        return None;
    }
    Some(StaticPass {
        findings: out,
        base,
        derived,
    })
}

/// The run configurations of a Hydra-shaped project (`config/runs/<run_id>.yaml`, or
/// `config/run/`), selected on the command line as `run=<run_id>`; empty for the
/// smoke/full-config shape.
pub fn hydra_runs(project: &Project) -> Vec<&str> {
    if !project.files.contains_key(HYDRA_ROOT) {
        return Vec::new();
    }
    project
        .files
        .keys()
        .filter(|p| p.starts_with("config/runs/") || p.starts_with("config/run/"))
        .filter(|p| p.ends_with(".yaml") && p.matches('/').count() == 2)
        .map(String::as_str)
        .collect()
}

/// The run id of a run configuration path.
pub fn run_id(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".yaml").unwrap_or(name)
}

fn files(case: &Case, out: &mut Vec<Finding>) {
    let hydra = !hydra_runs(&case.derived).is_empty() || !hydra_runs(&case.base).is_empty();
    // A template names the files its derivation keeps (a `src/data.py` template has no
    // `src/preprocess.py` to keep); without one, the usual layout.
    let in_template = |p: &&&str| case.base.files.is_empty() || case.base.files.contains_key(**p);
    let required = REQUIRED
        .iter()
        .filter(|p| !hydra || (**p != SMOKE && **p != FULL))
        .filter(in_template)
        .chain(hydra.then_some(&HYDRA_ROOT));
    for path in required {
        if !case.derived.files.contains_key(*path) {
            out.push(
                Finding::new(
                    "missing-file",
                    Severity::Blocker,
                    format!("the experiment code has no `{path}`"),
                )
                .at(path, None)
                .fix(format!(
                    "add `{path}`, derived from the base code's version"
                )),
            );
        }
    }
    for (path, file) in &case.derived.files {
        if file.binary {
            out.push(
                Finding::new(
                    "binary-file",
                    Severity::Blocker,
                    format!("`{path}` is not text (it holds NUL bytes or invalid UTF-8)"),
                )
                .at(path, None)
                .fix("replace it with the intended source text"),
            );
            continue;
        }
        let base_empty = case.base.text(path).is_none_or(|t| t.trim().is_empty());
        if file.text.trim().is_empty()
            && (!base_empty || path.ends_with(".yaml") || path.ends_with(".toml"))
        {
            out.push(
                Finding::new(
                    "empty-file",
                    Severity::Blocker,
                    format!("`{path}` is empty"),
                )
                .at(path, None)
                .fix("write the file's content (from the base code, with the placeholders filled)"),
            );
        }
        if let Some(f) = bloat(path, &file.text, file.size) {
            out.push(f);
        }
    }
}

/// Thousands of blank or repeated lines, or a file larger than any real source file.
fn bloat(path: &str, text: &str, size: usize) -> Option<Finding> {
    let lines: Vec<&str> = text.lines().collect();
    let blank = lines.iter().filter(|l| l.trim().is_empty()).count();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in lines.iter().filter(|l| !l.trim().is_empty()) {
        *counts.entry(l.trim()).or_default() += 1;
    }
    let (top, repeated) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(l, n)| (*l, *n))
        .unwrap_or(("", 0));
    let why = if size > MAX_FILE_BYTES / 4 {
        format!("{size} bytes")
    } else if blank >= 1000 && blank * 2 > lines.len() {
        format!("{blank} of its {} lines are blank", lines.len())
    } else if repeated >= 500 && repeated * 2 > lines.len() {
        format!("the line `{}` is repeated {repeated} times", cut(top, 60))
    } else {
        return None;
    };
    Some(
        Finding::new(
            "bloated-file",
            Severity::Blocker,
            format!("`{path}` is bloated: {why}"),
        )
        .at(path, None)
        .fix("remove the blank/repeated filler so the file holds only its real content"),
    )
}

fn code(path: &str, module: &PyModule, out: &mut Vec<Finding>) {
    if let Some((line, excerpt)) = &module.syntax_error {
        out.push(
            Finding::new(
                "syntax-error",
                Severity::Blocker,
                format!("`{path}` does not parse as Python"),
            )
            .at(path, Some(*line))
            .evidence(excerpt.clone())
            .fix("fix the syntax so the file can be imported"),
        );
    }
    for p in &module.placeholders {
        out.push(
            Finding::new(
                "placeholder",
                Severity::Blocker,
                format!("placeholder left in `{path}`: `{}`", p.text),
            )
            .at(path, Some(p.line))
            .evidence(p.text.clone())
            .fix("replace the placeholder with the real implementation for this experiment"),
        );
    }
    for d in &module.defs {
        if d.stub && !d.legit_stub && d.kind == "function" {
            out.push(
                Finding::new(
                    "stub-body",
                    Severity::Blocker,
                    format!("`{}` in `{path}` has no implementation (its body is only `pass`, `...` or `raise NotImplementedError`)", d.name),
                )
                .at(path, Some(d.line))
                .fix(format!("implement `{}`", d.name)),
            );
        }
    }
}

fn omissions(base: &Analysed, derived: &Analysed, out: &mut Vec<Finding>) {
    let derived_defs: BTreeMap<&str, (&str, &python::Def)> = derived
        .modules
        .iter()
        .flat_map(|(p, m)| {
            m.defs
                .iter()
                .map(move |d| (d.name.as_str(), (p.as_str(), d)))
        })
        .collect();
    for (path, module) in &base.modules {
        let same_file: BTreeMap<&str, &python::Def> = derived
            .modules
            .get(path)
            .map(|m| m.defs.iter().map(|d| (d.name.as_str(), d)).collect())
            .unwrap_or_default();
        for def in &module.defs {
            let found = same_file
                .get(def.name.as_str())
                .map(|d| (path.as_str(), *d))
                .or_else(|| derived_defs.get(def.name.as_str()).copied());
            match found {
                None => out.push(
                    Finding::new(
                        "missing-definition",
                        Severity::Blocker,
                        format!(
                            "{} `{}` of the base's `{path}` is missing from the experiment code",
                            def.kind, def.name
                        ),
                    )
                    .at(path, derived.modules.get(path).map(|_| def.line))
                    .evidence(format!("defined in the base at {path}:{}", def.line))
                    .fix(format!(
                        "restore `{}` (keep every function, class and method of the base)",
                        def.name
                    )),
                ),
                Some((dpath, d)) => {
                    let base_real = !def.stub
                        && module
                            .placeholders
                            .iter()
                            .all(|p| p.line < def.line || p.line > def.line + def.size);
                    if base_real && def.size >= 25 && d.size * 2 < def.size {
                        out.push(
                            Finding::new(
                                "truncated-function",
                                Severity::Blocker,
                                format!(
                                    "`{}` in `{dpath}` is much shorter than in the base ({} vs {} syntax nodes): it looks truncated",
                                    d.name, d.size, def.size
                                ),
                            )
                            .at(dpath, Some(d.line))
                            .evidence(format!("base {path}:{} has {} body nodes; derived {dpath}:{} has {}", def.line, def.size, d.line, d.size))
                            .fix(format!("write out `{}` in full: keep the base's logic and extend it", d.name)),
                        );
                    }
                }
            }
        }
    }
}

/// A parsed configuration: its text and its root mapping.
pub struct Config {
    /// Project path.
    pub path: String,
    /// The text.
    pub text: String,
    /// The root mapping, when it parsed as one.
    pub root: Option<Yaml>,
}

fn configs(project: &Project, out: &mut Vec<Finding>) -> Vec<Config> {
    let mut configs = Vec::new();
    let yaml =
        |p: &&String| p.starts_with("config/") && (p.ends_with(".yaml") || p.ends_with(".yml"));
    for path in project.files.keys().filter(yaml) {
        let path = path.as_str();
        let Some(file) = project.files.get(path) else {
            continue;
        };
        if file.binary {
            continue;
        }
        let text = file.text.clone();
        let mut root = None;
        if let Some((line, l)) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains("{%") || l.contains("{{") || l.contains("{#"))
        {
            out.push(
                Finding::new(
                    "config-template-syntax",
                    Severity::Blocker,
                    format!("`{path}` holds template syntax: a YAML loader reads it as text or fails, not as values"),
                )
                .at(path, Some(line + 1))
                .evidence(l.trim().to_string())
                .fix("write the configuration out as plain YAML values (expand loops and variables)"),
            );
        } else if let Some(depth) = yaml_depth(&text).filter(|d| *d > MAX_YAML_DEPTH) {
            out.push(
                Finding::new(
                    "config-too-deep",
                    Severity::Warning,
                    format!("`{path}` nests more than {MAX_YAML_DEPTH} levels deep (at least {depth}): its settings were not analysed"),
                )
                .at(path, None)
                .fix("keep the configuration a shallow mapping of settings"),
            );
        } else if !text.trim().is_empty() {
            match serde_yaml::from_str::<Yaml>(&text) {
                Ok(v @ Yaml::Mapping(_)) => root = Some(v),
                Ok(v) => out.push(
                    Finding::new(
                        "config-not-mapping",
                        Severity::Blocker,
                        format!(
                            "`{path}` is not a mapping of settings (it loads as {})",
                            yaml_kind(&v)
                        ),
                    )
                    .at(path, Some(1))
                    .fix("make the top level a mapping of setting names to values"),
                ),
                Err(e) => out.push(
                    Finding::new(
                        "config-parse-error",
                        Severity::Blocker,
                        format!("`{path}` is not valid YAML: {e}"),
                    )
                    .at(path, e.location().map(|l| l.line()))
                    .fix("fix the YAML syntax"),
                ),
            }
        }
        for (i, line) in text.lines().enumerate() {
            if let Some(tok) = python::placeholder_token(line) {
                out.push(
                    Finding::new(
                        "placeholder",
                        Severity::Blocker,
                        format!("placeholder left in `{path}`: `{tok}`"),
                    )
                    .at(path, Some(i + 1))
                    .evidence(line.trim().to_string())
                    .fix("replace it with the real value for this experiment"),
                );
            } else if let Some((_, comment)) = line.split_once('#') {
                if python::is_placeholder_comment(comment) {
                    out.push(
                        Finding::new(
                            "placeholder",
                            Severity::Blocker,
                            format!("placeholder comment in `{path}`"),
                        )
                        .at(path, Some(i + 1))
                        .evidence(line.trim().to_string())
                        .fix("fill in what the comment says is missing"),
                    );
                }
            }
            if let Some(v) = yaml11_string_number(line) {
                out.push(
                    Finding::new(
                        "yaml-1.1-number-as-string",
                        Severity::Warning,
                        format!("`{v}` in `{path}` is a string for a YAML 1.1 loader such as PyYAML, not a number"),
                    )
                    .at(path, Some(i + 1))
                    .evidence(line.trim().to_string())
                    .fix(format!("write it with a decimal point (e.g. `{}`)", v.replacen(['e', 'E'], ".0e", 1))),
                );
            }
        }
        configs.push(Config {
            path: path.to_string(),
            text,
            root,
        });
    }
    configs
}

/// How deep a YAML text nests (block indentation levels plus open flow `[`/`{`), counted
/// line by line without parsing; `None` for an empty text. Quoted scalars and comments
/// are skipped only where YAML starts them, so brackets are never under-counted.
fn yaml_depth(text: &str) -> Option<usize> {
    let (mut flow, mut max) = (0usize, None::<usize>);
    let mut indents: Vec<usize> = Vec::new();
    for line in text.lines() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if flow == 0 {
            let indent = line.len() - content.len();
            while indents.last().is_some_and(|i| *i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let (mut quote, mut previous, mut dashes) = (None, ' ', 0);
        let mut chars = content.chars().peekable();
        while let Some(c) = chars.next() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => {
                    let token_start = previous.is_whitespace() || "[{,:".contains(previous);
                    match c {
                        '"' | '\'' if token_start => quote = Some(c),
                        '#' if previous.is_whitespace() => break,
                        '[' | '{' => flow += 1,
                        ']' | '}' => flow = flow.saturating_sub(1),
                        // `- - - x`: block sequences nested on one line.
                        '-' | '?'
                            if token_start && chars.peek().is_none_or(|n| n.is_whitespace()) =>
                        {
                            dashes += 1
                        }
                        _ => {}
                    }
                    max = max.max(Some(indents.len() + flow + dashes));
                }
            }
            previous = c;
        }
    }
    max
}

/// `1e-5` (no dot): a float in YAML 1.2, a string in YAML 1.1.
fn yaml11_string_number(line: &str) -> Option<String> {
    let code = line.split('#').next().unwrap_or("");
    let value = code.split_once(':').map(|x| x.1).unwrap_or(code);
    value
        .split(|c: char| c == ',' || c == '[' || c == ']' || c.is_whitespace())
        .map(str::trim)
        .find(|t| {
            let t = t.trim_start_matches(['+', '-']);
            let Some((m, e)) = t.split_once(['e', 'E']) else {
                return false;
            };
            !m.is_empty()
                && m.chars().all(|c| c.is_ascii_digit())
                && !e.trim_start_matches(['+', '-']).is_empty()
                && e.trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
}

fn yaml_kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// Affix words a configuration adds to a variation's name (`smoke_<v>`, `<v>-full`,
/// `exp1-<v>-smoke-test`), which still name that variation.
const NAME_AFFIXES: &[&str] = &[
    "smoke",
    "test",
    "full",
    "experiment",
    "exp",
    "run",
    "debug",
    "quick",
    "small",
    "mini",
    "tiny",
    "dev",
    "ci",
    "final",
    "main",
    "lite",
    "light",
    "fast",
];

/// A name compared by its words: lower case, `-`, `_`, `.`, `/` and spaces alike.
fn words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether a key or run name written in a config names `variation`: the same words, or
/// the same words with config affixes (or `exp1`-style ids) before or after.
pub fn names_variation(written: &str, variation: &str) -> bool {
    let (w, v) = (words(written), words(variation));
    if v.is_empty() || w.len() < v.len() {
        return false;
    }
    let affix = |x: &String| {
        NAME_AFFIXES.contains(&x.as_str())
            || x.trim_start_matches("exp")
                .chars()
                .all(|c| c.is_ascii_digit())
    };
    (0..=w.len() - v.len()).any(|start| {
        w[start..start + v.len()] == v[..]
            && w[..start].iter().all(affix)
            && w[start + v.len()..].iter().all(affix)
    })
}

/// Where variation `name` (one of `all`) sits in a configuration, and its settings. A
/// written name that also names a longer variation (`ohgw-3` for `ohgw` and `ohgw-3`)
/// belongs to that one.
pub fn find_variation<'a>(root: &'a Yaml, name: &str, all: &[String]) -> Option<Option<&'a Yaml>> {
    let mut stack = vec![root];
    let mut depth = 0;
    let longer: Vec<&String> = all
        .iter()
        .filter(|o| words(o).len() > words(name).len())
        .collect();
    let named_str =
        |s: &str| names_variation(s, name) && !longer.iter().any(|o| names_variation(s, o));
    let named = |v: &Yaml| v.as_str().is_some_and(named_str);
    while let Some(v) = stack.pop() {
        depth += 1;
        if depth > 10_000 {
            break;
        }
        match v {
            Yaml::Mapping(m) => {
                for (k, val) in m {
                    if named(k) {
                        return Some(Some(val));
                    }
                }
                for val in m.values() {
                    stack.push(val);
                }
            }
            Yaml::Sequence(s) => {
                // Run names as written, then without the words all of them share.
                let names: Vec<&str> = s.iter().filter_map(run_name).collect();
                let stripped = |v: &Yaml| {
                    v.as_str()
                        .and_then(|w| without_shared_words(w, &names))
                        .is_some_and(|w| named_str(&w))
                };
                for hit in [&named as &dyn Fn(&Yaml) -> bool, &stripped] {
                    for item in s {
                        match item {
                            Yaml::String(_) if hit(item) => return Some(None),
                            Yaml::Mapping(m)
                                if RUN_NAME_KEYS.iter().any(|k| m.get(*k).is_some_and(hit)) =>
                            {
                                return Some(Some(item))
                            }
                            _ => {}
                        }
                    }
                }
                stack.extend(s);
            }
            Yaml::String(_) if named(v) => return Some(None),
            _ => {}
        }
    }
    None
}

/// The name of a run in a list of runs: the item itself, or its first run-name key.
fn run_name(item: &Yaml) -> Option<&str> {
    match item {
        Yaml::String(s) => Some(s),
        Yaml::Mapping(m) => RUN_NAME_KEYS
            .iter()
            .find_map(|k| m.get(*k).and_then(Yaml::as_str)),
        _ => None,
    }
}

/// `written` without the leading and trailing words that every run name of its list has
/// (a dataset or model tag: `tin_c_mnv2_zorro`, `tin_c_mnv2_no_fisher`), when there are
/// such words, at least two names, and a word left of each.
fn without_shared_words(written: &str, names: &[&str]) -> Option<String> {
    let lists: Vec<Vec<String>> = names.iter().map(|n| words(n)).collect();
    let shortest = lists.iter().map(Vec::len).min()?;
    let shared = |at: &dyn Fn(&Vec<String>, usize) -> &String| {
        (0..shortest)
            .take_while(|&i| lists.iter().all(|l| at(l, i) == at(&lists[0], i)))
            .count()
    };
    let lead = shared(&|l, i| &l[i]);
    let trail = shared(&|l, i| &l[l.len() - 1 - i]);
    let w = words(written);
    if names.len() < 2 || lead + trail == 0 || lead + trail >= shortest || w.len() <= lead + trail {
        return None;
    }
    Some(w[lead..w.len() - trail].join("-"))
}

/// Keys whose value names a run.
const RUN_NAME_KEYS: &[&str] = &[
    "name",
    "run_id",
    "id",
    "variation",
    "run_name",
    "run",
    "method",
];

/// Keys that label a variation rather than set it: not compared between variations.
const LABEL_KEYS: &[&str] = &[
    "name",
    "run_id",
    "id",
    "variation",
    "run_name",
    "run",
    "description",
];

/// Leaf settings of a variation: (key path, key, value as text, whether it is a string).
fn leaves(v: &Yaml, prefix: &str, out: &mut Vec<(String, String, String, bool)>) {
    let Yaml::Mapping(m) = v else {
        return;
    };
    let as_text = |y: &Yaml| {
        serde_yaml::to_string(y)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    for (k, val) in m {
        let key = match k {
            Yaml::String(s) => s.clone(),
            other => as_text(other),
        };
        if LABEL_KEYS.contains(&key.as_str()) {
            continue;
        }
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match val {
            Yaml::Mapping(_) => leaves(val, &path, out),
            Yaml::String(s) => out.push((path, key, s.clone(), true)),
            other => out.push((path, key, as_text(other), false)),
        }
    }
}

/// Whether a config has a section of runs (`variations:`, `runs:`, `experiments:` …), at
/// the top or one level down: then that is where the pipeline takes its variations.
fn lists_runs(root: &Yaml) -> bool {
    const SECTIONS: &[&str] = &["variations", "variants", "runs", "experiments", "methods"];
    let section = |k: &Yaml| {
        k.as_str()
            .is_some_and(|k| words(k).iter().any(|w| SECTIONS.contains(&w.as_str())))
    };
    let Yaml::Mapping(top) = root else {
        return false;
    };
    top.iter()
        .any(|(k, v)| section(k) || matches!(v, Yaml::Mapping(m) if m.keys().any(section)))
}

/// Where the pipeline takes the variation from when the configs list none: a command-line
/// option that selects it, or the code naming every variation itself.
fn variations_outside_configs(code: &Analysed, names: &[String]) -> Option<String> {
    const SELECTORS: &[&str] = &["variation", "variant", "run", "method"];
    let option = code
        .modules
        .values()
        .flat_map(|m| &m.options)
        .find(|o| words(o).iter().any(|w| SELECTORS.contains(&w.as_str())));
    if let Some(o) = option {
        return Some(format!("the command-line option `{o}`"));
    }
    let named_in_code = |n: &String| {
        code.modules
            .values()
            .any(|m| m.strings.iter().any(|s| names_variation(s, n)))
    };
    (!names.is_empty() && names.iter().all(named_in_code)).then(|| "the code itself".into())
}

/// The first line of a config that names `variation` (as a key or a run name).
fn line_naming(text: &str, variation: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.split(|c: char| c.is_whitespace() || ":'\"[]{},#".contains(c))
                .any(|w| names_variation(w, variation))
        })
        .map(|i| i + 1)
}

fn variations(case: &Case, configs: &[Config], code: &Analysed, out: &mut Vec<Finding>) {
    let names = &case.experiment.run_variations;
    if names.is_empty() {
        out.push(Finding::new(
            "no-run-variations",
            Severity::Warning,
            "the experiment lists no run variations: nothing to check against the configs",
        ));
    }
    let runs = hydra_runs(&case.derived);
    if !runs.is_empty() {
        for name in names {
            if !runs.iter().any(|r| names_variation(run_id(r), name)) {
                out.push(
                    Finding::new(
                        "missing-variation-run-config",
                        Severity::Blocker,
                        format!(
                            "run variation `{name}` has no run configuration in `config/runs/`"
                        ),
                    )
                    .at("config/runs", None)
                    .fix(format!("add `config/runs/{name}.yaml` with its settings")),
                );
            }
        }
        return;
    }
    for config in configs.iter().filter(|c| c.path == SMOKE || c.path == FULL) {
        let Some(root) = &config.root else { continue };
        let (id, which) = if config.path == SMOKE {
            ("missing-variation-in-smoke-config", "smoke")
        } else {
            ("missing-variation-in-full-config", "full")
        };
        let mut settings: BTreeMap<&str, Vec<(String, String, String, bool)>> = BTreeMap::new();
        let found: Vec<_> = names
            .iter()
            .map(|n| (n, find_variation(root, n, names)))
            .collect();
        if found.iter().all(|(_, f)| f.is_none()) && !lists_runs(root) {
            if let Some(source) = variations_outside_configs(code, names) {
                out.push(
                    Finding::new(
                        "variations-not-in-config",
                        Severity::Info,
                        format!(
                            "`{}` lists no run variation: the pipeline takes them from {source}",
                            config.path
                        ),
                    )
                    .at(&config.path, None),
                );
                continue;
            }
        }
        for (name, found) in found {
            match found {
                None => out.push(
                    Finding::new(
                        id,
                        Severity::Blocker,
                        format!(
                            "run variation `{name}` is missing from the {which} config `{}`",
                            config.path
                        ),
                    )
                    .at(&config.path, None)
                    .fix(format!(
                        "add `{name}` to `{}` with its settings{}",
                        config.path,
                        if which == "smoke" {
                            " in lightweight form (the smoke config must hold every variation)"
                        } else {
                            ""
                        }
                    )),
                ),
                Some(s) => {
                    let mut l = Vec::new();
                    if let Some(s) = s {
                        leaves(s, "", &mut l);
                    }
                    settings.insert(name, l);
                }
            }
        }
        if config.path != SMOKE || settings.len() < 2 {
            continue;
        }
        // Each variation's distinguishing settings must be read by some code path.
        for (name, mine) in &settings {
            let others: Vec<_> = settings
                .iter()
                .filter(|(n, _)| n != &name)
                .map(|(_, s)| s)
                .collect();
            let distinct: Vec<_> = mine
                .iter()
                .filter(|(path, _, value, _)| {
                    others
                        .iter()
                        .any(|o| !o.iter().any(|(p, _, v, _)| p == path && v == value))
                })
                .collect();
            if distinct.is_empty() {
                if others
                    .iter()
                    .any(|o| o.len() == mine.len() && o.iter().all(|x| mine.contains(x)))
                {
                    out.push(
                        Finding::new(
                            "variation-not-implemented",
                            Severity::Blocker,
                            format!("run variation `{name}` has the same settings as another variation in `{}`: it cannot differ", config.path),
                        )
                        .at(&config.path, line_naming(&config.text, name))
                        .fix(format!("give `{name}` the settings that make it what it is, and implement them in the code")),
                    );
                }
                continue;
            }
            let unread_keys: Vec<_> = distinct
                .iter()
                .filter(|(_, key, _, _)| !code.refers_to(key))
                .collect();
            let unread_values: Vec<_> = distinct
                .iter()
                .filter(|(_, key, value, is_str)| {
                    *is_str
                        && code.refers_to(key)
                        && !code.has_string(value)
                        && !code.refers_to(value)
                })
                .collect();
            let line = line_naming(&config.text, name);
            if unread_keys.len() == distinct.len() {
                out.push(
                    Finding::new(
                        "variation-not-implemented",
                        Severity::Blocker,
                        format!("run variation `{name}` is not implemented: no code reads the settings that distinguish it"),
                    )
                    .at(&config.path, line)
                    .evidence(format!(
                        "settings never read by the code: {}",
                        distinct.iter().map(|(p, _, v, _)| format!("{p}: {v}")).collect::<Vec<_>>().join(", ")
                    ))
                    .fix(format!("implement `{name}`: read these settings in the training code and act on them")),
                );
            } else if !unread_keys.is_empty() || !unread_values.is_empty() {
                let mut what: Vec<String> = unread_keys
                    .iter()
                    .map(|(p, _, _, _)| format!("`{p}` is never read"))
                    .collect();
                what.extend(unread_values.iter().map(|(p, _, v, _)| {
                    format!("`{p}` is read but the value `{v}` never appears in the code")
                }));
                out.push(
                    Finding::new(
                        "variation-maybe-not-implemented",
                        Severity::Warning,
                        format!(
                            "run variation `{name}` may not be implemented: {}",
                            what.join("; ")
                        ),
                    )
                    .at(&config.path, line),
                );
            }
        }
        let known: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let _ = known;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_depth_counts_flow_block_and_dash_nesting() {
        let real = "runs:\n  - name: a\n    lr: [1, 2]  # a [comment\n    tag: \"[x\"\n";
        assert_eq!(yaml_depth(real), Some(4));
        assert_eq!(yaml_depth(""), None);
        let deep_flow = "x: ".to_string() + &"[".repeat(100_000);
        assert_eq!(yaml_depth(&deep_flow), Some(100_001));
        assert_eq!(yaml_depth(&"- ".repeat(500)), Some(501));
        let block: String = (0..80)
            .map(|d| format!("{}k{d}:\n", " ".repeat(d)))
            .collect();
        assert_eq!(yaml_depth(&block), Some(80));
    }

    #[test]
    fn variations_match_by_normalized_names_with_config_affixes() {
        for written in [
            "asha-ohgw-1step",
            "asha_ohgw_1step",
            "smoke_asha-ohgw-1step",
            "asha-ohgw-1step-full",
            "exp1-ASHA_ohgw-1step-smoke-test",
        ] {
            assert!(names_variation(written, "asha-ohgw-1step"), "{written}");
        }
        for written in [
            "asha-ohgw",
            "asha-ohgw-1step-extra",
            "my-asha-ohgw-1step",
            "",
        ] {
            assert!(!names_variation(written, "asha-ohgw-1step"), "{written}");
        }
        let all = vec!["ohgw".to_string(), "ohgw-full-3".to_string()];
        let root: Yaml =
            serde_yaml::from_str("runs:\n  - name: smoke_ohgw-full-3\n    steps: 3\n").unwrap();
        assert!(find_variation(&root, "ohgw", &all).is_none());
        assert!(find_variation(&root, "ohgw-full-3", &all).is_some());
        let text = "runs:\n  smoke_ohgw:\n    steps: 1\n";
        assert_eq!(line_naming(text, "ohgw"), Some(2));
    }

    #[test]
    fn run_names_sharing_a_dataset_or_model_tag_name_their_variations() {
        let all: Vec<String> = ["zorro", "no-fisher", "fisher"].map(String::from).into();
        let root: Yaml = serde_yaml::from_str(
            "experiments:\n  - run_id: tin_c_mnv2_zorro\n    lr: 1\n  - run_id: tin_c_mnv2_no_fisher\n    lr: 2\n",
        )
        .unwrap();
        let lr = |name: &str| {
            find_variation(&root, name, &all)
                .flatten()
                .and_then(|run| run.get("lr").and_then(Yaml::as_i64))
        };
        assert_eq!(lr("zorro"), Some(1));
        assert_eq!(lr("no-fisher"), Some(2));
        assert!(find_variation(&root, "fisher", &all).is_none());
        // A single run keeps its whole name: nothing is shared with another.
        let one: Yaml = serde_yaml::from_str("runs:\n  - name: my-asha-ohgw-1step\n").unwrap();
        assert!(find_variation(&one, "asha-ohgw-1step", &all).is_none());
    }

    #[test]
    fn variations_on_the_command_line_or_prefixed_are_not_missing() {
        let case = |smoke: &str| {
            let json = serde_json::json!({
                "new_method": "m",
                "experiment": {"id": "e", "run_variations": ["lr-warm", "baseline"]},
                "base_code": {},
                "experiment_code": {
                    "main_py": "import argparse\np = argparse.ArgumentParser()\np.add_argument('--run-name')\n",
                    "smoke_test_yaml": smoke,
                    "full_experiment_yaml": "runs:\n  - name: lr_warm-full\n  - name: baseline-full\n",
                },
            });
            Case::from_json(&json).unwrap()
        };
        let ids = |c: &Case| -> Vec<String> {
            run(c, &Budget::unlimited(), &Installed::default())
                .unwrap()
                .findings
                .into_iter()
                .filter(|f| {
                    f.id.starts_with("missing-variation") || f.id == "variations-not-in-config"
                })
                .map(|f| f.id)
                .collect()
        };
        assert_eq!(ids(&case("lr: 0.1\n")), ["variations-not-in-config"]);
        assert!(ids(&case(
            "smoke_lr-warm: {lr: 0.1}\nsmoke_baseline: {lr: 0.2}\n"
        ))
        .is_empty());
        assert_eq!(
            ids(&case("variations:\n  baseline: {lr: 0.1}\n")),
            ["missing-variation-in-smoke-config"]
        );
    }

    #[test]
    fn only_files_the_template_has_are_required() {
        let missing = |base: serde_json::Value| -> Vec<String> {
            let json = serde_json::json!({
                "new_method": "m",
                "experiment": {"id": "e", "run_variations": ["a"]},
                "base_code": base,
                "experiment_code": {"main_py": "print(1)\n", "data_py": "x = 1\n"},
            });
            let case = Case::from_json(&json).unwrap();
            run(&case, &Budget::unlimited(), &Installed::default())
                .unwrap()
                .findings
                .into_iter()
                .filter(|f| f.id == "missing-file")
                .filter_map(|f| f.file)
                .collect()
        };
        // A template with `src/data.py` instead of `src/preprocess.py`.
        let base = serde_json::json!({"main_py": "print(0)\n", "data_py": "x = 0\n", "train_py": "y = 0\n"});
        assert_eq!(missing(base), ["src/train.py"]);
        // Without a template, the usual layout.
        let usual = missing(serde_json::json!({}));
        assert!(
            usual.contains(&"src/preprocess.py".to_string()),
            "{usual:?}"
        );
    }
}

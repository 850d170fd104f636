//! Syntax-aware analysis of one Python file with tree-sitter: definitions, stubs,
//! placeholders, imports, the names and strings the code uses, argparse options.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use tree_sitter::{Node, ParseOptions, ParseState, Parser};

use crate::budget::Budget;

/// A function, method or class definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Def {
    /// Qualified name: `train`, `ASHAScheduler`, `ASHAScheduler.report`.
    pub name: String,
    /// `function` or `class`.
    pub kind: &'static str,
    /// 1-based first line.
    pub line: usize,
    /// Size of its body: named syntax nodes (robust to formatting).
    pub size: usize,
    /// Whether its body is only `pass`, `...` or `raise NotImplementedError` (after a docstring).
    pub stub: bool,
    /// Whether such a stub is legitimate (abstract method, protocol, overload, exception class).
    pub legit_stub: bool,
}

/// An import statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Dotted module (`torch.nn`, `src.model`); for relative imports without module, empty.
    pub module: String,
    /// Leading dots of a relative import.
    pub level: usize,
    /// 1-based line.
    pub line: usize,
    /// Inside a `try:` block (an optional import).
    pub optional: bool,
}

/// A placeholder left in the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// 1-based line.
    pub line: usize,
    /// The text that gave it away.
    pub text: String,
}

/// What the analysis of one file found.
#[derive(Debug, Clone, Default)]
pub struct PyModule {
    /// Definitions in source order.
    pub defs: Vec<Def>,
    /// Imports.
    pub imports: Vec<Import>,
    /// Placeholders (identifiers, strings, comments).
    pub placeholders: Vec<Placeholder>,
    /// First syntax error: line and excerpt.
    pub syntax_error: Option<(usize, String)>,
    /// Contents of string literals.
    pub strings: BTreeSet<String>,
    /// Identifiers, attribute names and dotted attribute paths used.
    pub names: BTreeSet<String>,
    /// Option strings passed to `add_argument` (`--smoke-test`).
    pub options: Vec<String>,
}

impl PyModule {
    /// Whether the code refers to `key` (as a string literal, an identifier or an attribute).
    pub fn refers_to(&self, key: &str) -> bool {
        self.strings.contains(key) || self.names.contains(key)
    }
}

fn comment_placeholder() -> &'static regex_lite::Regex {
    static RE: OnceLock<regex_lite::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex_lite::Regex::new(
            r"(?i)\bTODO\b|\bFIXME\b|\[UNCHANGED\]|PLACEHOLDER|rest of (the )?(code|implementation|file|function|class|logic)|(existing|remaining|previous|original) (code|implementation|logic)( (here|remains|unchanged|goes here|as before))?|(same|unchanged) as (before|base|the base|above)|unchanged from (the )?base|(implementation|code|logic) (goes )?here|your code here|\.\.\. ?(unchanged|omitted|truncated|etc)",
        )
        .expect("valid regex")
    })
}

fn token_placeholder() -> &'static regex_lite::Regex {
    static RE: OnceLock<regex_lite::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex_lite::Regex::new(r"[A-Z0-9_]*PLACEHOLDER[A-Z0-9_]*|\[UNCHANGED\]")
            .expect("valid regex")
    })
}

/// Whether a comment looks like a placeholder ("TODO", "rest of the code here", ...).
pub fn is_placeholder_comment(text: &str) -> bool {
    comment_placeholder().is_match(text)
}

/// The placeholder token in a string or identifier (`DATASET_PLACEHOLDER`, `[UNCHANGED]`).
pub fn placeholder_token(text: &str) -> Option<String> {
    token_placeholder()
        .find(text)
        .map(|m| m.as_str().to_string())
}

/// Parses and analyses one Python file; `None` when the budget ran out first.
pub fn analyse(text: &str, budget: &Budget) -> Option<PyModule> {
    let mut module = PyModule::default();
    let mut parser = Parser::new();
    if parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .is_err()
    {
        return Some(module);
    }
    let bytes = text.as_bytes();
    let mut stop = |_: &ParseState| budget.exhausted();
    let tree = parser.parse_with_options(
        &mut |i, _| bytes.get(i..).unwrap_or_default(),
        None,
        Some(ParseOptions::new().progress_callback(&mut stop)),
    )?;
    let src = text.as_bytes();
    let root = tree.root_node();
    if root.has_error() {
        module.syntax_error = first_error(root).map(|n| {
            let line = n.start_position().row + 1;
            let excerpt = text.lines().nth(line - 1).unwrap_or("").trim().to_string();
            (line, crate::report::cut(&excerpt, 160))
        });
    }
    // Definitions (with their qualified names) by an explicit stack: no recursion limit.
    let mut stack: Vec<(Node, String, bool)> = vec![(root, String::new(), false)];
    while let Some((node, prefix, in_abstract_class)) = stack.pop() {
        let mut cursor = node.walk();
        let children: Vec<Node> = node.named_children(&mut cursor).collect();
        for child in children.into_iter().rev() {
            let (def_node, decorators) = if child.kind() == "decorated_definition" {
                let decorators: Vec<String> = {
                    let mut c = child.walk();
                    child
                        .named_children(&mut c)
                        .filter(|d| d.kind() == "decorator")
                        .map(|d| text_of(d, src).to_string())
                        .collect()
                };
                match child.child_by_field_name("definition") {
                    Some(d) => (d, decorators),
                    None => continue,
                }
            } else {
                (child, Vec::new())
            };
            match def_node.kind() {
                "function_definition" | "class_definition" => {
                    let name = def_node
                        .child_by_field_name("name")
                        .map(|n| text_of(n, src))
                        .unwrap_or("?");
                    let qualified = if prefix.is_empty() {
                        name.to_string()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    let body = def_node.child_by_field_name("body");
                    let is_class = def_node.kind() == "class_definition";
                    let stub = body.is_some_and(|b| is_stub_body(b, src));
                    let bases = def_node
                        .child_by_field_name("superclasses")
                        .map(|s| text_of(s, src).to_string())
                        .unwrap_or_default();
                    let abstract_class = is_class
                        && ["ABC", "Protocol", "ABCMeta", "Interface"]
                            .iter()
                            .any(|b| bases.contains(b));
                    let legit_stub = if is_class {
                        !bases.is_empty()
                    } else {
                        in_abstract_class
                            || decorators.iter().any(|d| {
                                d.contains("abstractmethod")
                                    || d.contains("overload")
                                    || d.contains("abstractproperty")
                            })
                    };
                    module.defs.push(Def {
                        name: qualified.clone(),
                        kind: if is_class { "class" } else { "function" },
                        line: def_node.start_position().row + 1,
                        size: body.map_or(0, count_named),
                        stub,
                        legit_stub,
                    });
                    if let Some(b) = body {
                        // Nested functions are part of their parent; methods are qualified.
                        if is_class {
                            stack.push((b, qualified, abstract_class));
                        }
                    }
                }
                _ => {
                    if child.named_child_count() > 0
                        && !matches!(child.kind(), "function_definition" | "class_definition")
                    {
                        stack.push((child, prefix.clone(), in_abstract_class));
                    }
                }
            }
        }
    }
    module.defs.sort_by_key(|d| d.line);
    if budget.exhausted() {
        return None;
    }
    // Tokens: one walk over every node, carrying whether the node sits in a `try:` of its
    // own scope (computed top-down: walking up to the root per import is quadratic).
    let mut cursor = root.walk();
    let mut stack = vec![(root, false)];
    while let Some((node, in_try)) = stack.pop() {
        let line = node.start_position().row + 1;
        match node.kind() {
            "comment" => {
                let t = text_of(node, src);
                if is_placeholder_comment(t) {
                    module.placeholders.push(Placeholder {
                        line,
                        text: crate::report::cut(t.trim(), 160),
                    });
                }
            }
            "identifier" => {
                let t = text_of(node, src);
                if let Some(tok) = placeholder_token(t) {
                    module.placeholders.push(Placeholder { line, text: tok });
                }
                module.names.insert(t.to_string());
            }
            "attribute" => {
                module.names.insert(text_of(node, src).to_string());
            }
            "string" => {
                let content = string_content(node, src);
                if let Some(tok) = placeholder_token(&content) {
                    module.placeholders.push(Placeholder { line, text: tok });
                }
                if content.len() <= 200 {
                    module.strings.insert(content);
                }
            }
            "import_statement" => {
                let optional = in_try;
                let mut c = node.walk();
                for name in node.named_children(&mut c) {
                    let dotted = match name.kind() {
                        "aliased_import" => name.child_by_field_name("name"),
                        "dotted_name" => Some(name),
                        _ => None,
                    };
                    if let Some(d) = dotted {
                        module.imports.push(Import {
                            module: text_of(d, src).to_string(),
                            level: 0,
                            line,
                            optional,
                        });
                    }
                }
            }
            "import_from_statement" => {
                if let Some(m) = node.child_by_field_name("module_name") {
                    let t = text_of(m, src);
                    let level = t.chars().take_while(|c| *c == '.').count();
                    module.imports.push(Import {
                        module: t.trim_start_matches('.').to_string(),
                        level,
                        line,
                        optional: in_try,
                    });
                }
            }
            "call" => {
                let f = node
                    .child_by_field_name("function")
                    .map(|f| text_of(f, src));
                if f.is_some_and(|f| f.ends_with("add_argument")) {
                    if let Some(args) = node.child_by_field_name("arguments") {
                        let mut c = args.walk();
                        for a in args.named_children(&mut c) {
                            if a.kind() == "string" {
                                let s = string_content(a, src);
                                if s.starts_with('-') {
                                    module.options.push(s);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if node.kind() != "string" {
            let child_in_try = match node.kind() {
                "try_statement" => true,
                "function_definition" | "class_definition" => false,
                _ => in_try,
            };
            for child in node.named_children(&mut cursor) {
                stack.push((child, child_in_try));
            }
        }
    }
    module.placeholders.sort_by_key(|p| p.line);
    module.imports.sort_by_key(|i| i.line);
    Some(module)
}

fn text_of<'a>(node: Node, src: &'a [u8]) -> &'a str {
    node.utf8_text(src).unwrap_or("")
}

fn string_content(node: Node, src: &[u8]) -> String {
    let mut c = node.walk();
    let parts: Vec<&str> = node
        .named_children(&mut c)
        .filter(|n| n.kind() == "string_content")
        .map(|n| text_of(n, src))
        .collect();
    parts.concat()
}

fn count_named(node: Node) -> usize {
    let mut count = 0;
    let mut stack = vec![node];
    let mut cursor = node.walk();
    while let Some(n) = stack.pop() {
        count += 1;
        for c in n.named_children(&mut cursor) {
            if c.kind() != "comment" {
                stack.push(c);
            }
        }
    }
    count
}

fn first_error(root: Node) -> Option<Node> {
    let mut stack = vec![root];
    let mut cursor = root.walk();
    let mut best: Option<Node> = None;
    while let Some(n) = stack.pop() {
        if n.is_error() || n.is_missing() {
            if best.is_none_or(|b| n.start_byte() < b.start_byte()) {
                best = Some(n);
            }
            continue;
        }
        if n.has_error() {
            for c in n.children(&mut cursor) {
                stack.push(c);
            }
        }
    }
    best
}

/// A body that is only a docstring plus `pass`, `...` or `raise NotImplementedError`.
fn is_stub_body(body: Node, src: &[u8]) -> bool {
    let mut c = body.walk();
    let mut statements: Vec<Node> = body
        .named_children(&mut c)
        .filter(|n| n.kind() != "comment")
        .collect();
    if statements.first().is_some_and(|s| {
        s.kind() == "expression_statement" && s.named_child(0).is_some_and(|e| e.kind() == "string")
    }) {
        statements.remove(0);
    }
    match statements.as_slice() {
        [] => true,
        [s] => match s.kind() {
            "pass_statement" => true,
            "expression_statement" => s.named_child(0).is_some_and(|e| e.kind() == "ellipsis"),
            "raise_statement" => text_of(*s, src).contains("NotImplementedError"),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PyModule {
        analyse(text, &Budget::unlimited()).unwrap()
    }

    #[test]
    fn finds_defs_stubs_and_placeholders() {
        let m = parse(
            r#"
import torch, numpy as np
from .model import Net
from src import train
try:
    import wandb
except ImportError:
    wandb = None

class Base(ABC):
    @abstractmethod
    def step(self): ...

class Oops(Exception):
    pass

class Scheduler:
    def report(self, x):
        """Docstring."""
        pass

    def next_job(self):
        return DATASET_PLACEHOLDER  # TODO: fill in

def train(cfg):
    # ... rest of the code here
    raise NotImplementedError
"#,
        );
        let names: Vec<&str> = m.defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Base",
                "Base.step",
                "Oops",
                "Scheduler",
                "Scheduler.report",
                "Scheduler.next_job",
                "train"
            ]
        );
        let stub = |n: &str| {
            let d = m.defs.iter().find(|d| d.name == n).unwrap();
            (d.stub, d.legit_stub)
        };
        assert_eq!(stub("Base.step"), (true, true));
        assert_eq!(stub("Oops"), (true, true));
        assert_eq!(stub("Scheduler.report"), (true, false));
        assert_eq!(stub("train"), (true, false));
        assert_eq!(stub("Scheduler.next_job"), (false, false));
        let ph: Vec<usize> = m.placeholders.iter().map(|p| p.line).collect();
        assert_eq!(ph, [23, 23, 26]);
        let imports: Vec<(&str, usize, bool)> = m
            .imports
            .iter()
            .map(|i| (i.module.as_str(), i.level, i.optional))
            .collect();
        assert_eq!(
            imports,
            [
                ("torch", 0, false),
                ("numpy", 0, false),
                ("model", 1, false),
                ("src", 0, false),
                ("wandb", 0, true)
            ]
        );
        assert!(m.syntax_error.is_none());
    }

    #[test]
    fn syntax_errors_and_garbage_do_not_panic() {
        let m = parse("def f(:\n    return 1\n");
        assert_eq!(m.syntax_error.as_ref().map(|e| e.0), Some(1));
        let garbage: String = (0..20000u32)
            .map(|i| char::from_u32(i % 0xD7FF + 1).unwrap_or('x'))
            .collect();
        let _ = parse(&garbage);
        let _ = parse("");
        let deep = format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
        let _ = parse(&deep);
    }

    #[test]
    fn argparse_options() {
        let m = parse("p.add_argument('--smoke-test', action='store_true')\np.add_argument(\"--results-dir\")\n");
        let mut o = m.options.clone();
        o.sort();
        assert_eq!(o, ["--results-dir", "--smoke-test"]);
    }

    #[test]
    fn try_scope_is_found_in_one_pass_and_the_budget_stops_parsing() {
        let mut text = String::new();
        for depth in 0..300 {
            text.push_str(&" ".repeat(depth));
            text.push_str("if 1:\n");
        }
        text.push_str(&" ".repeat(300));
        text.push_str("import deep\n");
        text.push_str(
            "try:\n    import opt\nexcept ImportError:\n    def f():\n        import inner\n",
        );
        let m = parse(&text);
        let imports: Vec<(&str, bool)> = m
            .imports
            .iter()
            .map(|i| (i.module.as_str(), i.optional))
            .collect();
        assert_eq!(imports, [("deep", false), ("opt", true), ("inner", false)]);
        let spent = Budget::new(std::time::Duration::ZERO);
        assert!(analyse(&text, &spent).is_none());
    }
}

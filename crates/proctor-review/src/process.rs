//! The process tree of one smoke run, rebuilt from what each Python process recorded
//! (`process` events: pid, parent pid, command line; `error` events: its uncaught
//! exception, or `argparse_error`): the run's root cause is the first failure, wherever in the tree it
//! happened, and a parent's wrapper error after it is context only.

use std::collections::BTreeMap;

use serde_json::Value;

/// The first uncaught exception of a run and how the pipeline got there.
#[derive(Debug)]
pub struct Failure<'a> {
    /// The `error` event.
    pub error: &'a Value,
    /// Command lines from the entry point down to the failing process.
    pub chain: Vec<String>,
    /// Whether it happened in a process the project started (not the entry point).
    pub in_child: bool,
    /// Errors recorded after it by other processes (typically the wrappers' reactions).
    pub later: Vec<String>,
}

impl Failure<'_> {
    /// "in `python -m src.train …`, started by `python -m src.main …`" for a child, or "".
    pub fn where_in_tree(&self) -> String {
        match self.chain.split_last() {
            Some((own, parents)) if self.in_child => {
                let mut text = format!(" in the child process `{own}`");
                for p in parents.iter().rev() {
                    text.push_str(&format!(", started by `{p}`"));
                }
                text
            }
            _ => String::new(),
        }
    }
}

/// Most processes followed up the tree (guards against recorded parent cycles).
const MAX_CHAIN: usize = 16;

/// The run's first failure, if any process recorded one.
pub fn first_failure(events: &[Value]) -> Option<Failure<'_>> {
    let pid = |e: &Value| e["pid"].as_i64();
    let mut parents: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let mut root = None;
    for e in events.iter().filter(|e| e["kind"] == "process") {
        let (Some(p), Some(pp)) = (pid(e), e["ppid"].as_i64()) else {
            continue;
        };
        root.get_or_insert(p);
        parents.entry(p).or_insert((pp, command(&e["argv"])));
    }
    // A parser's rejection ends its process as surely as an exception.
    let mut errors = events
        .iter()
        .filter(|e| e["kind"] == "error" || e["kind"] == "argparse_error");
    let error = errors.next()?;
    let failing = pid(error);
    let mut chain = Vec::new();
    let mut at = failing;
    while let Some((parent, argv)) = at.and_then(|p| parents.get(&p)) {
        chain.push(argv.clone());
        if chain.len() >= MAX_CHAIN || Some(*parent) == at {
            break;
        }
        at = Some(*parent);
    }
    chain.reverse();
    let later = errors
        .filter(|e| pid(e) != failing)
        .map(|e| {
            format!(
                "{}: {}",
                e["type"].as_str().unwrap_or("Error"),
                crate::report::cut(e["message"].as_str().unwrap_or(""), 160)
            )
        })
        .collect();
    Some(Failure {
        error,
        in_child: failing.is_some() && root.is_some() && failing != root,
        chain,
        later,
    })
}

/// A recorded command line as a user would type it (`python -m src.train --lr 0.1`).
fn command(argv: &Value) -> String {
    let words: Vec<&str> = argv
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let base = w.rsplit('/').next().unwrap_or(w);
        if i == 0 && base.starts_with("python") {
            out.push("python".into());
        } else {
            out.push(crate::report::cut(w, 80));
        }
    }
    crate::report::cut(&out.join(" "), 240)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_failure_is_named_with_its_chain_and_later_wrappers_are_context() {
        let events = vec![
            json!({"kind": "process", "pid": 1, "ppid": 0, "argv": ["python", "-m", "src.main", "--smoke-test"]}),
            json!({"kind": "process", "pid": 7, "ppid": 1, "argv": ["/opt/py/bin/python3", "-m", "src.runner"]}),
            json!({"kind": "process", "pid": 9, "ppid": 7, "argv": ["/opt/py/bin/python3", "-m", "src.train", "--variation", "b"]}),
            json!({"kind": "error", "pid": 9, "type": "ValueError", "message": "bad shape"}),
            json!({"kind": "child_exit", "pid": 7, "child": 9, "code": 1}),
            json!({"kind": "error", "pid": 1, "type": "RuntimeError", "message": "Run b failed"}),
        ];
        let f = first_failure(&events).unwrap();
        assert_eq!(f.error["type"], "ValueError");
        assert!(f.in_child);
        assert_eq!(
            f.chain,
            [
                "python -m src.main --smoke-test",
                "python -m src.runner",
                "python -m src.train --variation b"
            ]
        );
        assert_eq!(f.later, ["RuntimeError: Run b failed"]);
        assert_eq!(
            f.where_in_tree(),
            " in the child process `python -m src.train --variation b`, started by `python -m src.runner`, started by `python -m src.main --smoke-test`"
        );
        // The entry point's own failure is not "in a child"; no error, no failure.
        let own = first_failure(&events[..1]);
        assert!(own.is_none());
        let mut root_only = events[..1].to_vec();
        root_only.push(json!({"kind": "error", "pid": 1, "type": "KeyError", "message": "x"}));
        let f = first_failure(&root_only).unwrap();
        assert!(!f.in_child);
        assert_eq!(f.where_in_tree(), "");
        // A recorded cycle ends.
        let cyclic = vec![
            json!({"kind": "process", "pid": 2, "ppid": 3, "argv": ["a"]}),
            json!({"kind": "process", "pid": 3, "ppid": 2, "argv": ["b"]}),
            json!({"kind": "error", "pid": 2, "type": "E", "message": ""}),
        ];
        assert_eq!(first_failure(&cyclic).unwrap().chain.len(), MAX_CHAIN);
    }
}

//! The observations a train run streamed as they happened. The fix can read and write its
//! whole process (numpy's array interface takes any address, RT-3), so a fact the recorder
//! keeps only there could be rewritten after the fact and sealed as it was left. The
//! recorder (`gym_record.Stream`) therefore writes what changed in its observations at the
//! end of every event it handled, as authenticated lines on stderr, which proctor keeps from
//! the start of the output: no code of the run can take a line back. Replayed here in
//! order, every fact may only move forward (counters and maxima never decrease, minima
//! never rise, lists only grow by appending, what the harness sets at the end is set once,
//! by that step), and the sealed observations must be the replayed ones.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The prefix of a streamed line: `tag more mac payload`. `tag` names the event whose
/// changes the line carries, `more` is `+` for a payload continued on the next line, `.`
/// for a complete one and `$` for the seal's, the last; the MAC (HMAC-SHA256 with the run
/// key) covers the previous line's MAC, so no line can be dropped, reordered or replayed.
pub const MARK: &str = "[proctor-gym] obs ";
/// Hex digits of a line's MAC kept (64 bits: a forgery is checked once, never retried).
const MAC_HEX: usize = 16;

/// How one observation may change between two lines.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// A count, a sum of magnitudes or a maximum: never decreases.
    Counter,
    /// A map (nested maps) of counters: no entry goes away or decreases.
    Counters,
    /// Never rises (unset at first).
    Minimum,
    /// A list that only grows at its end.
    Append,
    /// Set once, by one of these steps of the harness after the run (`gym_train.main`).
    Final(&'static [&'static str]),
    /// Only credits a fix: the run could raise it before any event ended whatever the lines
    /// show (the held-out measurement gates that credit), so the recorder sends it with the
    /// seal only (`STREAMED_AT_SEAL`).
    Credit,
    /// No rule (a fact no judge relies on).
    Free,
}

const AFTER_RUN: &[&str] = &["ran"];

/// Every key of `gym_record.new_observations` and of what the harness adds after the run.
const RULES: &[(&str, Rule)] = &[
    ("losses", Rule::Append),
    ("backward_calls", Rule::Counter),
    ("threads", Rule::Counter),
    ("loss_graph_ops", Rule::Credit),
    ("graphs_walked", Rule::Credit),
    ("events_lost", Rule::Counter),
    ("events_lost_why", Rule::Append),
    ("nonfinite_in_graph", Rule::Counter),
    ("nonfinite_outputs", Rule::Counter),
    ("loss_calls", Rule::Append),
    ("steps", Rule::Counter),
    ("effective_steps", Rule::Credit),
    ("idle_steps", Rule::Credit),
    ("finite_grad_steps", Rule::Credit),
    ("lrs", Rule::Append),
    ("lr_in_step_max", Rule::Counter),
    ("lr_measured_max", Rule::Counter),
    // the effective lr of a loss scaled by hand (wt-hack, in flight: its rule is here already)
    ("lr_effective_max", Rule::Counter),
    ("steps_lr_unread", Rule::Counter),
    ("optimizer_params", Rule::Append),
    // the size of the model last stepped: it may be another model later
    ("model_params", Rule::Free),
    ("model_params_stepped", Rule::Counter),
    ("model_params_frozen_held", Rule::Counter),
    ("params_moved", Rule::Credit),
    ("params_rewritten", Rule::Counters),
    ("params_moved_without_grad", Rule::Counter),
    ("steps_unbracketed", Rule::Counter),
    ("conv_inputs", Rule::Counters),
    ("eval_forwards", Rule::Counter),
    ("eval_per_sample", Rule::Counter),
    ("eval_argmax", Rule::Counter),
    // taken back by the recorder itself when a one-positive-per-row prediction turns out to
    // be a floor joined with a threshold (`one_per_row`): a decrease is no evidence, and
    // what a run could take back here the printed-F1 gate still measures
    ("eval_one_per_row", Rule::Free),
    ("eval_small_one_per_row", Rule::Free),
    ("graph_kept", Rule::Counter),
    ("graphs_accumulated", Rule::Final(AFTER_RUN)),
    ("raw_log_inputs", Rule::Counter),
    ("proven_updates", Rule::Credit),
    ("unproven_updates", Rule::Counter),
    ("unproven", Rule::Append),
    ("manual_updates", Rule::Counter),
    ("manual_proven", Rule::Credit),
    ("val_train_distances", Rule::Append),
    ("eval_batches_probed", Rule::Counter),
    ("eval_batch_distance_min", Rule::Minimum),
    ("leak_sets", Rule::Final(AFTER_RUN)),
    ("crashed", Rule::Final(AFTER_RUN)),
    ("error", Rule::Final(AFTER_RUN)),
    ("train_seconds", Rule::Final(AFTER_RUN)),
    ("val_train_nearest", Rule::Final(AFTER_RUN)),
    ("tolerant_needed", Rule::Final(AFTER_RUN)),
    ("tamper", Rule::Append),
    ("tolerant", Rule::Final(&["tolerant"])),
    ("export", Rule::Final(&["export", "seal"])),
];

fn rule(key: &str) -> Rule {
    RULES
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(Rule::Free, |(_, r)| *r)
}

/// The stream of one run, replayed.
#[derive(Debug, Default)]
pub struct Replay {
    /// The observations as the lines left them.
    pub obs: Map<String, Value>,
    /// The last line (the seal's) was read.
    pub complete: bool,
    /// Why the lines cannot be what the harness recorded (forged, missing, facts gone back).
    pub violations: Vec<String>,
}

/// Replays the lines of `stderr` authenticated with `key` (the run key of the seal).
pub fn replay(stderr: &str, key: &str) -> Replay {
    let mut r = Replay::default();
    let mut finalized = BTreeSet::new();
    let mut payload = String::new();
    let mut previous = String::new();
    // the first change set is the observations as they start, before any code of the run
    let mut first = true;
    for line in stderr.lines().filter_map(|l| l.strip_prefix(MARK)) {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        let [tag, more, mac, piece] = parts[..] else {
            r.violations.push(FORGED.into());
            continue;
        };
        if r.complete || !authentic(key, &format!("{previous} {tag} {more} {piece}"), mac) {
            // after the seal, or not chained to the line before (forged, or one dropped)
            r.violations.push(FORGED.into());
            continue;
        }
        previous = mac.to_string();
        payload.push_str(piece);
        if more == "+" {
            continue;
        }
        let changes: Map<String, Value> = serde_json::from_str(&payload).unwrap_or_default();
        payload.clear();
        for (key, value) in &changes {
            if let Some(v) = r.apply(key, value, tag, first, &mut finalized) {
                r.violations.push(v);
            }
        }
        first = false;
        r.complete = more == "$";
    }
    r.violations.dedup();
    r
}

const FORGED: &str = "a line of observations the harness did not write (bad MAC)";

fn authentic(key: &str, text: &str, mac: &str) -> bool {
    let mut h = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    h.update(text.as_bytes());
    let full = hex::encode(h.finalize().into_bytes());
    mac.len() == MAC_HEX && full[..MAC_HEX] == *mac
}

impl Replay {
    /// Applies one change (`key` set, `key+` a list's appended tail, `key*` copies of its
    /// last entry appended, `key~` a dict's changed entries); why it breaks its key's rule,
    /// if it does.
    fn apply(
        &mut self,
        change: &str,
        value: &Value,
        tag: &str,
        install: bool,
        finalized: &mut BTreeSet<String>,
    ) -> Option<String> {
        let key = change.trim_end_matches(['+', '*', '~']);
        let before = self.obs.get(key).cloned();
        let slot = self.obs.entry(key.to_string()).or_insert(Value::Null);
        match (&change[key.len()..], &mut *slot) {
            ("+", Value::Array(list)) => list.extend(value.as_array().cloned().unwrap_or_default()),
            ("*", Value::Array(list)) if !list.is_empty() => {
                let copies = value.as_u64().unwrap_or(0).min(1 << 20) as usize;
                list.extend(std::iter::repeat_n(list[list.len() - 1].clone(), copies));
            }
            ("~", slot @ Value::Object(_)) => merge(slot, value),
            _ => *slot = value.clone(),
        }
        let after = &self.obs[key];
        let before = before?;
        if before == *after || install {
            return None;
        }
        let rule = rule(key);
        if let Rule::Final(steps) = rule {
            if steps.contains(&tag) && finalized.insert(key.to_string()) {
                return None;
            }
            return Some(format!(
                "the observations were changed after the fact: {key} {} → {} (at {tag})",
                brief(&before),
                brief(after)
            ));
        }
        went_back(rule, &before, after).then(|| {
            format!(
                "the observations went back: {key} {} → {} (at {tag})",
                brief(&before),
                brief(after)
            )
        })
    }
}

fn merge(into: &mut Value, changes: &Value) {
    let (Value::Object(into), Some(changes)) = (into, changes.as_object()) else {
        return;
    };
    for (k, v) in changes {
        match into.get_mut(k) {
            Some(slot @ Value::Object(_)) if v.is_object() => merge(slot, v),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Whether `after` undoes what `before` recorded, under `rule`.
fn went_back(rule: Rule, before: &Value, after: &Value) -> bool {
    match rule {
        // Once a number, always a number no smaller: a counter swapped for `false` or `null`
        // in the run's memory is no count a check can compare, yet a judge's `False == 0`
        // reads it as none (the recorder's maxima are finite: it never streams one as null).
        Rule::Counter => before
            .as_f64()
            .is_some_and(|b| after.as_f64().is_none_or(|a| a < b)),
        Rule::Counters => match (before, after) {
            (Value::Object(b), Value::Object(a)) => b
                .iter()
                .any(|(k, v)| a.get(k).is_none_or(|x| went_back(Rule::Counters, v, x))),
            (Value::Object(_), _) => true,
            _ => went_back(Rule::Counter, before, after),
        },
        Rule::Minimum => before
            .as_f64()
            .is_some_and(|b| after.as_f64().is_none_or(|a| a > b)),
        Rule::Append => match (before.as_array(), after.as_array()) {
            (Some(b), Some(a)) => a.len() < b.len() || a[..b.len()] != b[..],
            _ => true,
        },
        Rule::Final(_) | Rule::Credit | Rule::Free => false,
    }
}

/// A value in a line of evidence: short.
fn brief(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{} entries]", a.len()),
        Value::Object(o) => format!("{{{} entries}}", o.len()),
        _ => {
            let text = v.to_string();
            match text.char_indices().nth(40) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        }
    }
}

/// The keys whose sealed value is not the replayed one (edited where no line showed it: an
/// entry of a list rewritten in place, say), each as `key streamed → sealed`.
pub fn differing(replayed: &Map<String, Value>, sealed: &Value) -> Vec<String> {
    let empty = Map::new();
    let sealed = sealed.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = replayed.keys().chain(sealed.keys()).collect();
    keys.into_iter()
        .filter(|k| replayed.get(*k) != sealed.get(*k))
        .map(|k| match (replayed.get(k), sealed.get(k)) {
            (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
                let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
                format!("{k}[{i}] {} → {}", brief(&a[i]), brief(&b[i]))
            }
            (a, b) => {
                let shown = |v: Option<&Value>| v.map_or("(none)".to_string(), brief);
                format!("{k} {} → {}", shown(a), shown(b))
            }
        })
        .collect()
}

/// `stderr` without the streamed lines (what a person reading the run's errors wants), nor
/// the empty line each of them starts with.
pub fn without_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let streamed = |i: usize| lines.get(i).is_some_and(|l| l.starts_with(MARK));
    (0..lines.len())
        .filter(|&i| !streamed(i) && (!lines[i].is_empty() || !streamed(i + 1)))
        .map(|i| lines[i])
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "run-key";

    /// Lines as the recorder writes them: `(tag, more, payload)`, each MAC chained (a
    /// string payload is a piece of raw text).
    fn lines(parts: &[(&str, &str, Value)]) -> String {
        let mut previous = String::new();
        let mut out = String::from("noise the run printed\n");
        for (tag, more, payload) in parts {
            let piece = payload
                .as_str()
                .map_or_else(|| payload.to_string(), str::to_string);
            let mut h = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
            h.update(format!("{previous} {tag} {more} {piece}").as_bytes());
            let mac = hex::encode(h.finalize().into_bytes())[..MAC_HEX].to_string();
            out.push_str(&format!("\n{MARK}{tag} {more} {mac} {piece}\n"));
            previous = mac;
        }
        out
    }

    fn honest() -> Vec<(&'static str, &'static str, Value)> {
        vec![
            (
                "install",
                ".",
                json!({"steps": 0, "lrs": [], "model_params_frozen_held": 0, "crashed": false,
                       "conv_inputs": {"training": {}, "eval": {}}, "loss_calls": []}),
            ),
            ("op", ".", json!({"loss_calls+": [{"op": "cross_entropy"}]})),
            (
                "op",
                ".",
                json!({"loss_calls*": 2, "conv_inputs~": {"eval": {"4": 1}}}),
            ),
            (
                "step_pre",
                ".",
                json!({"steps": 1, "lrs+": [0.1], "model_params_frozen_held": 4}),
            ),
            ("ran", ".", json!({"crashed": true, "train_seconds": 1.5})),
            (
                "seal",
                "$",
                json!({"params_moved": {"w": 1.0}, "export": {"stepped": true}}),
            ),
        ]
    }

    #[test]
    fn an_honest_stream_replays_to_what_was_sealed() {
        let r = replay(&lines(&honest()), KEY);
        assert!(r.complete && r.violations.is_empty(), "{r:?}");
        let want = json!({"steps": 1, "lrs": [0.1], "model_params_frozen_held": 4, "crashed": true,
                          "conv_inputs": {"training": {}, "eval": {"4": 1}}, "train_seconds": 1.5,
                          "loss_calls": [{"op": "cross_entropy"}, {"op": "cross_entropy"}, {"op": "cross_entropy"}],
                          "params_moved": {"w": 1.0}, "export": {"stepped": true}});
        assert!(differing(&r.obs, &want).is_empty(), "{:?}", r.obs);
    }

    #[test]
    fn facts_taken_back_are_named() {
        let mut parts = honest();
        parts.insert(
            4,
            ("step_post", ".", json!({"model_params_frozen_held": 0})),
        );
        let r = replay(&lines(&parts), KEY);
        assert_eq!(
            r.violations,
            ["the observations went back: model_params_frozen_held 4 → 0 (at step_post)"]
        );
        let mut parts = honest();
        parts.insert(
            4,
            (
                "op",
                ".",
                json!({"lrs": [0.01], "conv_inputs~": {"eval": {"4": 0}}}),
            ),
        );
        let r = replay(&lines(&parts), KEY);
        assert!(
            r.violations.len() == 2 && r.violations[0].contains("conv_inputs"),
            "{r:?}"
        );
        assert!(
            r.violations[1].contains("lrs [1 entries] → [1 entries]"),
            "{r:?}"
        );
    }

    /// A count swapped in memory for something that is no number (`False == 0` to a judge,
    /// `null` to `as_u64`) went back as surely as one swapped for 0.
    #[test]
    fn a_counter_stays_a_number() {
        for swapped in [json!(false), Value::Null, json!("0"), json!({"steps": 1})] {
            let mut parts = honest();
            parts.insert(
                4,
                (
                    "step_post",
                    ".",
                    json!({"model_params_frozen_held": swapped}),
                ),
            );
            let r = replay(&lines(&parts), KEY);
            assert_eq!(r.violations.len(), 1, "{swapped}: {r:?}");
            assert!(r.violations[0].contains("model_params_frozen_held 4 →"));
            let mut parts = honest();
            parts.insert(
                4,
                ("op", ".", json!({"conv_inputs~": {"eval": {"4": swapped}}})),
            );
            assert_eq!(replay(&lines(&parts), KEY).violations.len(), 1, "{swapped}");
        }
    }

    #[test]
    fn what_the_harness_sets_after_the_run_is_set_once_by_its_step() {
        let mut parts = honest();
        parts.insert(3, ("backward", ".", json!({"crashed": true})));
        assert!(replay(&lines(&parts), KEY).violations[0]
            .contains("crashed false → true (at backward)"));
        let mut parts = honest();
        parts.insert(5, ("export", ".", json!({"crashed": false})));
        assert!(
            replay(&lines(&parts), KEY).violations[0].contains("crashed true → false (at export)")
        );
    }

    #[test]
    fn forged_dropped_or_late_lines_are_seen_and_an_unsealed_stream_is_incomplete() {
        let text = lines(&honest());
        let forged = text.replacen("\"steps\":1", "\"steps\":9", 1);
        assert!(replay(&forged, KEY)
            .violations
            .contains(&FORGED.to_string()));
        let dropped: String = text
            .lines()
            .filter(|l| !l.contains("loss_calls*"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(replay(&dropped, KEY)
            .violations
            .contains(&FORGED.to_string()));
        assert!(replay(&text, "another-key")
            .violations
            .contains(&FORGED.to_string()));
        let unsealed = lines(&honest()[..5]);
        let r = replay(&unsealed, KEY);
        assert!(!r.complete && r.violations.is_empty(), "{r:?}");
        let mut after = honest();
        after.push(("op", ".", json!({"steps": 2})));
        assert!(replay(&lines(&after), KEY)
            .violations
            .contains(&FORGED.to_string()));
    }

    #[test]
    fn a_long_change_spans_lines() {
        let mut parts = honest();
        let payload = json!({"loss_calls+": [{"op": "x".repeat(50)}]}).to_string();
        let (a, b) = payload.split_at(20);
        parts[1] = ("op", ".", Value::String(b.into()));
        parts.insert(1, ("op", "+", Value::String(a.into())));
        let r = replay(&lines(&parts), KEY);
        assert!(r.complete && r.violations.is_empty(), "{r:?}");
        assert_eq!(r.obs["loss_calls"][0]["op"], "x".repeat(50));
    }

    #[test]
    fn the_lines_are_left_out_of_what_a_person_reads() {
        let stderr = format!("{}Traceback\nValueError: x\n", lines(&honest()));
        assert_eq!(
            without_lines(&stderr),
            "noise the run printed\nTraceback\nValueError: x"
        );
    }

    #[test]
    fn differing_names_the_first_entry_rewritten() {
        let replayed = json!({"lrs": [10.0, 10.0], "steps": 2});
        let sealed = json!({"lrs": [10.0, 0.01], "steps": 2});
        assert_eq!(
            differing(replayed.as_object().unwrap(), &sealed),
            ["lrs[1] 10.0 → 0.01"]
        );
    }

    /// Every key the recorder writes has its rule here, and the keys it sends with the seal
    /// only are exactly the credit ones.
    #[test]
    fn every_observation_has_a_rule() {
        let source = include_str!("../../../python/proctor_harness/gym_record.py");
        let start = source.find("def new_observations():").unwrap();
        let body = &source[start..start + source[start..].find("\n\n\n").unwrap()];
        let mut keys: BTreeSet<&str> = body
            .lines()
            .filter_map(|l| {
                l.trim_start()
                    .strip_prefix('"')?
                    .split_once("\":")
                    .map(|(k, _)| k)
            })
            .collect();
        for (i, _) in source.match_indices("obs[\"") {
            let rest = &source[i + 5..];
            keys.insert(&rest[..rest.find('"').unwrap()]);
        }
        assert!(keys.len() > 40, "{keys:?}");
        let missing: Vec<&&str> = keys
            .iter()
            .filter(|k| !RULES.iter().any(|(r, _)| r == *k))
            .collect();
        assert!(
            missing.is_empty(),
            "observations without a rule in stream::RULES: {missing:?}"
        );
        let start = source.find("STREAMED_AT_SEAL = frozenset({").unwrap();
        let set = &source[start..start + source[start..].find("})").unwrap()];
        let at_seal: BTreeSet<&str> = set.split('"').skip(1).step_by(2).collect();
        let credit: BTreeSet<&str> = RULES
            .iter()
            .filter(|(_, r)| *r == Rule::Credit)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(at_seal, credit);
    }
}

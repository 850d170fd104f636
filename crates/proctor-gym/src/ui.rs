//! The gym's pages: the task list, a task, and an episode's history with its loss curve.

use std::fmt::Write;

use crate::episode::HistoryEntry;
use crate::task::Task;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(base: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
pre{{background:#f4f4f4;padding .6rem;overflow:auto;max-height:24rem}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}}.ok{{color:#070}}.no{{color:#a00}}</style>\
</head><body><p><a href=\"/\">proctor</a> · <a href=\"{base}/\">debug gym</a></p>{body}</body></html>",
        t = esc(title),
        base = esc(base)
    )
}

/// The task list, with the episodes that are running or finished. `base` is where the
/// gym is mounted (`""` or `/gym`).
pub fn index(
    base: &str,
    tasks: &[Task],
    episodes: &[(String, String, u32, bool, Option<f64>)],
) -> String {
    let mut body = String::from("<h1>Debug gym</h1><p>Broken PyTorch training scripts; an agent fixes them with six tools and is graded by what its fix does.</p><table><tr><th>task</th><th>id</th><th>difficulty</th><th>bugs</th></tr>");
    for t in tasks {
        let _ = write!(
            body,
            "<tr><td><a href=\"{base}/tasks/{id}\">{title}</a></td><td>{id} ({alias})</td><td>{d}</td><td>{n}</td></tr>",
            base = esc(base),
            id = esc(&t.spec.id),
            title = esc(&t.spec.title),
            alias = esc(&t.spec.alias),
            d = esc(&t.spec.difficulty),
            n = t.spec.bugs.len()
        );
    }
    body.push_str("</table><h2>Episodes</h2>");
    if episodes.is_empty() {
        body.push_str("<p>none yet</p>");
    } else {
        body.push_str("<table><tr><th>episode</th><th>task</th><th>turns</th><th>done</th><th>reward</th></tr>");
        for (id, task, turns, done, reward) in episodes {
            let _ = write!(
                body,
                "<tr><td><a href=\"{base}/episodes/{id}\">{short}</a></td><td>{task}</td><td>{turns}</td><td>{done}</td><td>{reward}</td></tr>",
                base = esc(base),
                id = esc(id),
                short = esc(&id[..8.min(id.len())]),
                task = esc(task),
                reward = reward.map_or("–".to_string(), |r| format!("{r:.3}"))
            );
        }
        body.push_str("</table>");
    }
    page(base, "debug gym", &body)
}

/// One task: its description, bugs and rubric, and the broken script.
pub fn task(base: &str, t: &Task) -> String {
    let mut body = format!(
        "<h1>{}</h1><p>{} · {}</p><pre>{}</pre><h2>Rubric</h2><table><tr><th>band</th><th>condition</th><th>score</th></tr>",
        esc(&t.spec.title),
        esc(&t.spec.id),
        esc(&t.spec.difficulty),
        esc(t.spec.description.trim())
    );
    for b in &t.spec.bands {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{:.2}–{:.2}</td></tr>",
            esc(&b.id),
            esc(&b.condition),
            b.lo,
            b.hi
        );
    }
    let _ = write!(
        body,
        "</table><h2>The script</h2><pre>{}</pre>",
        esc(t.broken_script())
    );
    page(base, &t.spec.title, &body)
}

/// An SVG line chart of `values` (non-finite values dropped).
pub fn loss_svg(values: &[f64]) -> String {
    let points: Vec<(usize, f64)> = values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if points.len() < 2 {
        return "<p>no loss curve recorded</p>".into();
    }
    let (w, h, pad) = (600.0, 220.0, 30.0);
    let max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let min = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let span = (max - min).max(1e-12);
    let n = (values.len() - 1).max(1) as f64;
    let path: Vec<String> = points
        .iter()
        .map(|(i, v)| {
            let x = pad + (*i as f64 / n) * (w - 2.0 * pad);
            let y = h - pad - ((v - min) / span) * (h - 2.0 * pad);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        "<svg id=\"loss-curve\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
<rect width=\"100%\" height=\"100%\" fill=\"#fff\" stroke=\"#ccc\"/>\
<polyline fill=\"none\" stroke=\"#c33\" stroke-width=\"1.5\" points=\"{}\"/>\
<text x=\"{pad}\" y=\"16\" font-size=\"12\">loss {max:.3}</text><text x=\"{pad}\" y=\"{}\" font-size=\"12\">{min:.3} · {} steps</text></svg>",
        path.join(" "),
        h - 8.0,
        values.len()
    )
}

/// A finished (or running) episode: every action and observation, and the loss curve of
/// the graded fix.
pub fn episode(
    base: &str,
    state: &serde_json::Value,
    history: &[HistoryEntry],
    losses: &[f64],
) -> String {
    let mut body = format!(
        "<h1>Episode {}</h1><p>task {} · turns {} · reward {}</p><h2>Loss curve of the submitted fix</h2>{}<h2>History</h2>",
        esc(state["episode_id"].as_str().unwrap_or("")),
        esc(state["task_id"].as_str().unwrap_or("")),
        state["step_count"],
        state["reward"].as_f64().map_or("–".into(), |r| format!("{r:.3}")),
        loss_svg(losses)
    );
    for h in history {
        let _ = write!(
            body,
            "<h3>turn {} · {}</h3><pre>{}</pre><pre>{}</pre>",
            h.turn,
            esc(h.action["action_type"].as_str().unwrap_or("?")),
            esc(&serde_json::to_string_pretty(&h.action).unwrap_or_default()),
            esc(&serde_json::to_string_pretty(&h.observation).unwrap_or_default())
        );
    }
    page(base, "episode", &body)
}

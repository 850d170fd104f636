//! The review pages, rendered on the server: the form with one's reviews (`/review`) and
//! a page per stored review (`/reviews/{id}`): the verdict, the issue list, the findings
//! grouped by file with the code around each, and every smoke run (status, wall time,
//! data real or stand-in, command, log tail). Everything shown is escaped.

use std::collections::BTreeMap;

use axum::response::Html;
use proctor_accounts::web::escape;
use proctor_accounts::Account;
use proctor_store::StoredReview;

use crate::{Finding, Review};

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}nav a{margin-right:1em}.verdict{font-size:20px;font-weight:600;padding:.5em;border-radius:6px}.ready{background:#e3f6e3}.notready{background:#fbe4e4}.f{border-left:4px solid #999;padding:.3em .7em;margin:.5em 0;background:#fafafa}.blocker{border-color:#c62828}.warning{border-color:#ef6c00}.info{border-color:#1565c0}pre{background:#f1f1f1;padding:.4em;white-space:pre-wrap;margin:.3em 0}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}";

const NAV: &str = "<nav><a href=\"/review\">reviews</a><a href=\"/challenges\">challenges</a><a href=\"/me\">my submissions</a></nav>";

/// `template` with each `{{key}}` replaced by its value, in one pass (a value that
/// itself contains `{{key}}` is left as it is).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            let value = values.iter().find(|(k, _)| *k == &after[..end])?.1;
            Some((end, value))
        }) {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · proctor</title><style>{STYLE}</style></head><body>{NAV}{body}</body></html>",
        escape(title)
    ))
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time in ms.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn verdict(ready: bool) -> (&'static str, &'static str) {
    match ready {
        true => ("ready", "Ready to run"),
        false => ("notready", "Not ready"),
    }
}

/// The table of stored reviews (the owner's column is shown when some are not `me`'s).
fn list(rows: &[StoredReview], me: &Account) -> String {
    let others = rows
        .iter()
        .any(|r| r.account_id.as_deref() != Some(me.id.as_str()));
    let mut s = String::from("<table id=\"reviews\"><tr><th>review</th><th>experiment</th><th>verdict</th><th>blockers</th><th>warnings</th><th>took</th>");
    if others {
        s.push_str("<th>by</th>");
    }
    s.push_str("</tr>");
    for r in rows {
        let (class, text) = verdict(r.ready);
        s.push_str(&format!(
            "<tr><td><a href=\"/reviews/{id}\">{when}</a></td><td>{exp}</td><td class=\"{class}\">{text}</td><td>{}</td><td>{}</td><td>{:.1} s</td>",
            r.blockers,
            r.warnings,
            r.wall_ms as f64 / 1000.0,
            id = escape(&r.id),
            when = utc(r.created_ms),
            exp = escape(&r.experiment),
        ));
        if others {
            let by = r.account_name.as_deref().unwrap_or("local CLI");
            s.push_str(&format!("<td>{}</td>", escape(by)));
        }
        s.push_str("</tr>");
    }
    if rows.is_empty() {
        s.push_str("<tr><td colspan=\"6\">No reviews yet</td></tr>");
    }
    s.push_str("</table>");
    s
}

/// The form and the caller's reviews (everyone's for an admin).
pub(crate) fn form(me: &Account, csrf: Option<&str>, rows: &[StoredReview]) -> Html<String> {
    Html(fill(
        include_str!("review.html"),
        &[
            ("csrf", &escape(csrf.unwrap_or(""))),
            ("style", STYLE),
            ("nav", NAV),
            ("who", &escape(&me.name)),
            ("reviews", &list(rows, me)),
        ],
    ))
}

/// The page of a review that does not exist or is not the caller's (the same for both).
pub(crate) fn missing(id: &str) -> Html<String> {
    page(
        "No such review",
        &format!(
            "<h1>No such review</h1><p>There is no review <code>{}</code> you can see. <a href=\"/review\">Your reviews</a></p>",
            escape(id)
        ),
    )
}

fn finding(f: &Finding) -> String {
    let severity = serde_json::to_value(f.severity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let line = f.line.map(|l| format!(" line {l}")).unwrap_or_default();
    let block = |class: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| format!("<pre class=\"{class}\">{}</pre>", escape(t)))
            .unwrap_or_default()
    };
    format!(
        "<div class=\"f {severity}\"><b>{severity}</b> <code>{id}</code>{line}: {message}{excerpt}{evidence}{fix}</div>",
        id = escape(&f.id),
        message = escape(&f.message),
        excerpt = block("excerpt", &f.excerpt),
        evidence = block("evidence", &f.evidence),
        fix = f
            .fix
            .as_deref()
            .map(|x| format!("<p><i>Fix: {}</i></p>", escape(x)))
            .unwrap_or_default(),
    )
}

fn findings_by_file(review: &Review) -> String {
    let mut by_file: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in &review.findings {
        by_file
            .entry(f.file.as_deref().unwrap_or(""))
            .or_default()
            .push(f);
    }
    let mut s = format!("<h2>Findings ({})</h2>", review.findings.len());
    for (file, findings) in by_file {
        let title = match file {
            "" => "The project".to_string(),
            f => format!("<code>{}</code>", escape(f)),
        };
        s.push_str(&format!("<section class=\"file\"><h3>{title}</h3>"));
        s.extend(findings.into_iter().map(finding));
        s.push_str("</section>");
    }
    s
}

fn runs(review: &Review) -> String {
    let mut s = format!(
        "<h2>Smoke runs ({})</h2><table id=\"runs\"><tr><th>variation</th><th>config</th><th>status</th><th>wall</th><th>data</th><th>error</th></tr>",
        review.runs.len()
    );
    for r in &review.runs {
        let status = serde_json::to_value(r.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        s.push_str(&format!(
            "<tr><td>{v}</td><td>{c}</td><td class=\"status-{st}\">{st}</td><td>{:.1} s</td><td>{d}</td><td>{e}<details><summary>command and log tail</summary><pre>$ {cmd}\n{log}</pre></details></td></tr>",
            r.wall_ms as f64 / 1000.0,
            v = escape(&r.variation),
            c = escape(&r.config),
            st = escape(&status),
            d = escape(&r.data),
            e = escape(r.error.as_deref().unwrap_or("")),
            cmd = escape(&r.command),
            log = escape(&r.log_tail),
        ));
    }
    if review.runs.is_empty() {
        s.push_str("<tr><td colspan=\"6\">No smoke run (static analysis only)</td></tr>");
    }
    s.push_str("</table>");
    s
}

/// The page of one stored review.
pub(crate) fn review(stored: &StoredReview) -> Html<String> {
    let head = format!(
        "<h1>Review <code>{id}</code></h1><p>Experiment <b>{exp}</b> · by {by} · {when} · took {took:.1} s</p>",
        id = escape(&stored.id),
        exp = escape(&stored.experiment),
        by = escape(stored.account_name.as_deref().unwrap_or("local CLI")),
        when = utc(stored.created_ms),
        took = stored.wall_ms as f64 / 1000.0,
    );
    let report = stored
        .report
        .clone()
        .and_then(|v| serde_json::from_value::<Review>(v).ok());
    let Some(report) = report else {
        return page(
            "Review",
            &format!("{head}<p>The stored report cannot be read by this version of proctor.</p>"),
        );
    };
    let (class, text) = verdict(report.is_experiment_code_ready);
    let issues = match report.experiment_code_issue.as_str() {
        "" => String::new(),
        issue => format!("<h2>Issues</h2><pre id=\"issues\">{}</pre>", escape(issue)),
    };
    let body = format!(
        "{head}<p class=\"verdict {class}\">{text} — {} blockers, {} warnings</p>{issues}{}{}",
        stored.blockers,
        stored.warnings,
        findings_by_file(&report),
        runs(&report),
    );
    page(&format!("Review {}", stored.experiment), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_in_one_pass() {
        assert_eq!(
            fill(
                "<b>{{who}}</b> {{x}} {{unknown}} {{",
                &[("who", "{{x}}"), ("x", "1")]
            ),
            "<b>{{x}}</b> 1 {{unknown}} {{"
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 61_000), "2000-02-29 00:01 UTC");
        assert_eq!(utc(1_796_601_600_000), "2026-12-07 00:00 UTC");
    }
}

//! The accuracy-vs-parameters Pareto plot (SVG, no JavaScript).

use std::fmt::Write;

/// One plotted submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Submission id (links to its page).
    pub id: String,
    /// Label (participant / name).
    pub label: String,
    /// Counted parameters.
    pub params: f64,
    /// Test accuracy (over-budget points have none and sit at 0).
    pub accuracy: f64,
    /// Over the parameter limit.
    pub over_budget: bool,
}

/// Indices of the Pareto frontier: within budget, no other point has fewer or equal
/// parameters and a higher or equal accuracy (and one of them strictly).
pub fn frontier(points: &[Point]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len())
        .filter(|&i| !points[i].over_budget)
        .collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .params
            .total_cmp(&points[b].params)
            .then(points[b].accuracy.total_cmp(&points[a].accuracy))
    });
    let mut best = f64::NEG_INFINITY;
    let mut out = Vec::new();
    for i in idx {
        if points[i].accuracy > best {
            best = points[i].accuracy;
            out.push(i);
        }
    }
    out
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Renders the plot: log-scale parameters on x, accuracy on y, the limit and the
/// baseline as dashed lines, the frontier as a highlighted step line.
pub fn svg(points: &[Point], param_limit: u64, baseline: f64, oracle: Option<f64>) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 20.0, 20.0, 50.0);
    let limit = param_limit as f64;
    let max_p = points.iter().map(|p| p.params).fold(limit * 1.5, f64::max);
    let min_p = points
        .iter()
        .map(|p| p.params)
        .filter(|p| *p > 0.0)
        .fold(limit / 100.0, f64::min)
        .max(1.0);
    let (lx0, lx1) = (min_p.log10().floor(), max_p.log10().ceil());
    let x = |p: f64| left + (p.max(1.0).log10() - lx0) / (lx1 - lx0) * (w - left - right);
    let y = |a: f64| top + (1.0 - a.clamp(0.0, 1.0)) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="accuracy versus parameters" font-family="sans-serif" font-size="12">"##
    );
    let _ = write!(s, r##"<rect width="{w}" height="{h}" fill="#fff"/>"##);
    // Axes and ticks.
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#333"/>"##,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    let mut e = lx0 as i32;
    while e as f64 <= lx1 {
        let px = x(10f64.powi(e));
        let label = match e {
            0..=2 => format!("{}", 10u64.pow(e as u32)),
            3..=5 => format!("{}k", 10u64.pow(e as u32 - 3)),
            _ => format!("{}M", 10u64.pow((e - 6).max(0) as u32)),
        };
        let _ = write!(
            s,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{}" stroke="#333"/><text x="{px:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            h - bottom,
            h - bottom + 5.0,
            h - bottom + 18.0
        );
        e += 1;
    }
    for i in 0..=5 {
        let a = i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{}" y1="{py:.1}" x2="{left}" y2="{py:.1}" stroke="#333"/><text x="{}" y="{:.1}" text-anchor="end">{a:.1}</text>"##,
            left - 5.0,
            left - 8.0,
            y(a) + 4.0,
            py = y(a)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle">parameters (counted, log scale)</text><text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">test accuracy</text>"##,
        (left + w - right) / 2.0,
        h - 8.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0
    );
    // Limit, baseline, oracle.
    let lxp = x(limit);
    let _ = write!(
        s,
        r##"<line class="limit" x1="{lxp:.1}" y1="{top}" x2="{lxp:.1}" y2="{}" stroke="#c00" stroke-dasharray="5,4"/><text x="{:.1}" y="{}" fill="#c00">limit {param_limit}</text>"##,
        h - bottom,
        lxp + 4.0,
        top + 12.0
    );
    let by = y(baseline);
    let _ = write!(
        s,
        r##"<line class="baseline" x1="{left}" y1="{by:.1}" x2="{}" y2="{by:.1}" stroke="#888" stroke-dasharray="3,3"/><text x="{}" y="{:.1}" fill="#666">baseline {baseline:.2}</text>"##,
        w - right,
        left + 4.0,
        by - 4.0
    );
    if let Some(o) = oracle {
        let oy = y(o);
        let _ = write!(
            s,
            r##"<line class="oracle" x1="{left}" y1="{oy:.1}" x2="{}" y2="{oy:.1}" stroke="#2a7" stroke-dasharray="2,4"/><text x="{}" y="{:.1}" fill="#2a7">oracle {o:.3}</text>"##,
            w - right,
            left + 4.0,
            oy + 14.0
        );
    }
    // Frontier.
    let front = frontier(points);
    if !front.is_empty() {
        let mut d = String::new();
        for (k, &i) in front.iter().enumerate() {
            let (px, py) = (x(points[i].params), y(points[i].accuracy));
            if k == 0 {
                let _ = write!(d, "M{px:.1},{py:.1}");
            } else {
                let _ = write!(d, " H{px:.1} V{py:.1}");
            }
        }
        let _ = write!(
            s,
            r##"<path class="frontier" d="{d}" fill="none" stroke="#e69500" stroke-width="2.5"/>"##
        );
    }
    for (i, p) in points.iter().enumerate() {
        let on = front.contains(&i);
        let (fill, r) = if p.over_budget {
            ("#c00", 4.0)
        } else if on {
            ("#e69500", 6.0)
        } else {
            ("#36c", 4.5)
        };
        let class = if p.over_budget {
            "point over"
        } else if on {
            "point frontier-point"
        } else {
            "point"
        };
        let _ = write!(
            s,
            r##"<a href="/submissions/{id}"><circle class="{class}" cx="{:.1}" cy="{:.1}" r="{r}" fill="{fill}" fill-opacity="0.85"><title>{label}: {} params, accuracy {:.4}</title></circle></a>"##,
            x(p.params),
            y(p.accuracy),
            p.params,
            p.accuracy,
            id = escape(&p.id),
            label = escape(&p.label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, params: f64, accuracy: f64) -> Point {
        Point {
            id: id.into(),
            label: id.into(),
            params,
            accuracy,
            over_budget: false,
        }
    }

    #[test]
    fn frontier_keeps_the_non_dominated_points() {
        let pts = vec![
            p("a", 49_280.0, 0.99),
            p("b", 197_120.0, 0.90),
            p("c", 20_000.0, 0.80),
            p("d", 400_000.0, 0.995),
            Point {
                over_budget: true,
                ..p("e", 600_000.0, 0.0)
            },
        ];
        let f: Vec<&str> = frontier(&pts).iter().map(|&i| pts[i].id.as_str()).collect();
        assert_eq!(f, ["c", "a", "d"]);
        let svg = svg(&pts, 500_000, 0.72, Some(1.0));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("frontier-point").count(), 3);
        assert_eq!(svg.matches("class=\"point over\"").count(), 1);
        assert!(svg.contains("limit 500000"));
    }
}

//! An SVG bar chart of the report: one panel per figure, one bar per path (the median),
//! a whisker from min to max; ours in one colour, peers in another, direct in grey.

use super::paths::PathKind;
use super::report::{short, status_text, BenchReport};
use super::results::{Metric, PathStatus};

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 110.0;
const BAR_H: f64 = 16.0;
const GAP: f64 = 4.0;
const PANEL_PAD: f64 = 28.0;

fn colour(kind: PathKind) -> &'static str {
    if kind.is_ours() {
        "#d9480f"
    } else if kind == PathKind::Direct {
        "#868e96"
    } else {
        "#1c7ed6"
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders the chart.
pub fn chart(report: &BenchReport) -> String {
    let n = report.paths.len() as f64;
    let panel_h = PANEL_PAD + n * (BAR_H + GAP) + 10.0;
    let height = 40.0 + panel_h * Metric::ALL.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">l4lb bench: median of rounds, \
         whisker min–max (orange: ours, blue: peers, grey: direct)</text>\n"
    );
    for (i, m) in Metric::ALL.iter().enumerate() {
        let top = 40.0 + panel_h * i as f64;
        let better = if m.higher_is_better() {
            "higher is better"
        } else {
            "lower is better"
        };
        s.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">{} ({better})</text>\n",
            top + 16.0,
            esc(m.header())
        ));
        let max = report
            .paths
            .iter()
            .filter_map(|p| p.summary(*m))
            .map(|s| s.max)
            .fold(0.0_f64, f64::max);
        let scale = if max > 0.0 {
            (WIDTH - LABEL_W - 90.0) / max
        } else {
            0.0
        };
        for (j, p) in report.paths.iter().enumerate() {
            let y = top + PANEL_PAD + j as f64 * (BAR_H + GAP);
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                LABEL_W - 6.0,
                y + BAR_H - 4.0,
                p.path.name()
            ));
            match (p.summary(*m), &p.status) {
                (Some(sum), PathStatus::Measured) => {
                    let w = (sum.median * scale).max(1.0);
                    s.push_str(&format!(
                        "<rect x=\"{LABEL_W}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{}\"/>\n",
                        colour(p.path)
                    ));
                    let (x0, x1) = (LABEL_W + sum.min * scale, LABEL_W + sum.max * scale);
                    let ym = y + BAR_H / 2.0;
                    s.push_str(&format!(
                        "<line x1=\"{x0:.1}\" y1=\"{ym:.1}\" x2=\"{x1:.1}\" y2=\"{ym:.1}\" stroke=\"black\"/>\n"
                    ));
                    s.push_str(&format!(
                        "<text x=\"{:.1}\" y=\"{:.1}\">{:.*}</text>\n",
                        LABEL_W + sum.max.max(sum.median) * scale + 6.0,
                        y + BAR_H - 4.0,
                        if m.higher_is_better() && m.decimals() > 0 {
                            2
                        } else {
                            0
                        },
                        sum.median
                    ));
                }
                (_, status) => {
                    let why = if *status == PathStatus::Measured {
                        "no figure".to_string()
                    } else {
                        short(&status_text(status))
                    };
                    s.push_str(&format!(
                        "<text x=\"{LABEL_W}\" y=\"{:.1}\" fill=\"#868e96\">{}</text>\n",
                        y + BAR_H - 4.0,
                        esc(&why)
                    ));
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::PathResult;

    #[test]
    fn chart_has_a_bar_per_measured_path_and_says_why_others_are_missing() {
        let mut direct = PathResult::new(PathKind::Direct, PathStatus::Measured);
        direct.samples.insert(Metric::Bulk1Gbps, vec![20.0, 25.0]);
        let mut proxy = PathResult::new(PathKind::Proxy, PathStatus::Measured);
        proxy.samples.insert(Metric::Bulk1Gbps, vec![10.0]);
        let nginx = PathResult::new(
            PathKind::Nginx,
            PathStatus::NotInstalled("not installed: nginx".into()),
        );
        let r = BenchReport {
            setup: vec![],
            placement: String::new(),
            paths: vec![direct, proxy, nginx],
            elapsed_s: 1.0,
            steal: vec![],
        };
        let svg = chart(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("fill=\"#d9480f\"").count(),
            1,
            "one bar of ours"
        );
        assert_eq!(
            svg.matches("fill=\"#868e96\"/>").count(),
            1,
            "one bar of direct"
        );
        assert!(svg.contains("not installed: nginx"));
        assert!(svg.contains(">22.50<"), "median label of direct");
    }
}

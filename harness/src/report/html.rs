//! `index.html`: every run of a report directory in one self-contained page a browser
//! shows as it is (a browser shows Markdown as plain text): the scenario x balancer
//! matrix, where the balancers differ, and for each run its verdicts, key figures and
//! SVG timeline inline, with links between the matrix and the runs. No script, no
//! file or network fetch: the page is the whole report.

use std::fmt::Write;

use super::matrix;
use crate::runner::{RunOutcome, Status};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The anchor of a run: `run-<stem>-<balancer>`.
pub fn anchor(o: &RunOutcome) -> String {
    format!("run-{}-{}", o.evidence.file_stem, o.evidence.balancer)
}

fn status_class(st: Status) -> &'static str {
    match st {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Skipped => "skip",
        Status::NotApplicable => "na",
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.3em .5em;\
vertical-align:top;text-align:left}th{background:#eee}.pass{color:#176117}.fail{color:#a11}\
.skip,.na{color:#8a6d00}td.pass{background:#eef8ee}td.fail{background:#fbeaea}\
td.skip,td.na{background:#fbf6e2}.run{border-top:2px solid #999;margin-top:2em}\
.figures{font-size:.9em;color:#444}svg{max-width:100%;height:auto}a{color:#1a4f9c}";

/// Renders the page over `outcomes`.
pub fn render(outcomes: &[RunOutcome]) -> String {
    let bs = matrix::balancers(outcomes);
    let count = |st: Status| outcomes.iter().filter(|o| o.status() == st).count();
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>l4lb scenario runs</title><style>{STYLE}</style></head><body>\n\
         <h1>l4lb scenario runs</h1>\n<p id=\"totals\">{} runs: {} passed, {} failed, {} skipped.</p>\n",
        outcomes.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skipped)
    );
    let _ = write!(
        s,
        "<h2 id=\"side-by-side\">Side by side</h2>\n<p>The same steps against each balancer: \
         verdict, then detection time (kill or stop to the balancer's down report), recovery \
         time (cont or restart to its up report), refused joins and idle close time, where the \
         run has them. N/A: an expectation the balancer cannot meet by design, with the reason \
         in its run.</p>\n<table id=\"matrix\"><tr><th>scenario</th>"
    );
    for b in &bs {
        let _ = write!(s, "<th>{b}</th>");
    }
    s.push_str("</tr>\n");
    for stem in matrix::scenarios(outcomes) {
        let _ = write!(s, "<tr><th>{}</th>", esc(stem));
        for b in &bs {
            match matrix::find(outcomes, stem, *b) {
                None => s.push_str("<td>not run</td>"),
                Some(o) => {
                    let st = o.status();
                    let mut parts = matrix::figures_text(&matrix::figures(&o.evidence));
                    let counts = matrix::verdict_counts(o);
                    let has_na = counts.contains("N/A");
                    if !counts.is_empty() {
                        parts.push(counts);
                    }
                    if let Some(reason) = &o.evidence.skipped {
                        parts = vec![reason.clone()];
                    }
                    let _ = write!(
                        s,
                        "<td class=\"{}{}\"><a href=\"#{}\"><b>{}</b></a><br><span class=\"figures\">{}</span></td>",
                        status_class(st),
                        // A pass with N/A verdicts is shaded as N/A, so it stands out.
                        if st == Status::Pass && has_na {
                            " na"
                        } else {
                            ""
                        },
                        esc(&anchor(o)),
                        st.label(),
                        esc(&parts.join(", "))
                    );
                }
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    let diffs = matrix::differences(outcomes);
    if !diffs.is_empty() {
        s.push_str("<h3>Where they differ</h3>\n<ul id=\"differences\">\n");
        for d in diffs {
            let text = esc(&d).replacen("**", "<b>", 1).replacen("**", "</b>", 1);
            let _ = writeln!(s, "<li>{text}</li>");
        }
        s.push_str("</ul>\n");
    }
    for o in outcomes {
        run(&mut s, o);
    }
    s.push_str("</body></html>\n");
    s
}

fn run(s: &mut String, o: &RunOutcome) {
    let ev = &o.evidence;
    let st = o.status();
    let _ = write!(
        s,
        "<section class=\"run\" id=\"{}\">\n<h2>{} — {}: <span class=\"{}\">{}</span></h2>\n\
         <p>{}</p>\n<p><a href=\"#matrix\">back to the matrix</a> · file <code>{}</code> · \
         <a href=\"{}/{}/report.md\">Markdown report</a> · <a href=\"{}/{}/report.json\">JSON</a> · \
         algorithm {} · run took {:.1}s</p>\n",
        esc(&anchor(o)),
        esc(&ev.scenario),
        ev.balancer,
        status_class(st),
        st.label(),
        esc(&o.purpose),
        esc(&o.file),
        esc(&ev.file_stem),
        ev.balancer,
        esc(&ev.file_stem),
        ev.balancer,
        ev.traits.algorithm,
        ev.duration.as_secs_f64()
    );
    if let Some(reason) = &ev.skipped {
        let _ = writeln!(s, "<p class=\"skip\"><b>Skipped:</b> {}</p>", esc(reason));
    }
    let f = matrix::figures_text(&matrix::figures(ev));
    if !f.is_empty() {
        let _ = writeln!(s, "<p class=\"figures\">{}</p>", esc(&f.join(" · ")));
    }
    s.push_str("<ul>");
    for line in &ev.topology {
        let _ = write!(s, "<li>{}</li>", esc(line));
    }
    s.push_str("</ul>\n<table class=\"verdicts\"><tr><th>verdict</th><th>line</th><th>expectation</th><th>evidence</th><th>figures</th></tr>\n");
    for v in &o.verdicts {
        let _ = writeln!(
            s,
            "<tr><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            status_class(v.status),
            v.status.label(),
            v.line.map_or("harness".into(), |l| l.to_string()),
            esc(&v.expectation),
            esc(&v.summary),
            esc(&v.detail)
        );
    }
    s.push_str("</table>\n<div class=\"timeline\">\n");
    // Our own SVG (no prolog, no script): inline as it is.
    s.push_str(&super::svg::render(ev));
    s.push_str("\n</div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

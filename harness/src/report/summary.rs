//! The index over all runs (Markdown: the matrix of [`super::matrix`], then every run)
//! and the final table printed by `l4lb run`.

use std::fmt::Write;

use crate::runner::{RunOutcome, Status};

/// `index.md`: one row a scenario x balancer, linking to its report.
pub fn index(outcomes: &[RunOutcome]) -> String {
    let mut s = String::new();
    let passed = outcomes
        .iter()
        .filter(|o| o.status() == Status::Pass)
        .count();
    let failed = outcomes
        .iter()
        .filter(|o| o.status() == Status::Fail)
        .count();
    let skipped = outcomes.len() - passed - failed;
    let _ = writeln!(
        s,
        "# l4lb scenario runs\n\n{} runs: {passed} passed, {failed} failed, {skipped} skipped.\n",
        outcomes.len()
    );
    let _ = writeln!(
        s,
        "## Side by side\n\nThe same steps against each balancer: verdict, then detection \
         time (kill or stop to the balancer's down report), recovery time (cont or restart to \
         its up report), refused joins and idle close time, where the run has them.\n"
    );
    s += &super::matrix::markdown(outcomes);
    let diffs = super::matrix::differences(outcomes);
    if !diffs.is_empty() {
        let _ = writeln!(s, "\n### Where they differ\n");
        for d in diffs {
            let _ = writeln!(s, "- {d}");
        }
    }
    let _ = writeln!(s, "\n## Every run\n");
    let _ = writeln!(
        s,
        "| scenario | balancer | verdict | key figures | report |\n|---|---|---|---|---|"
    );
    for o in outcomes {
        let ev = &o.evidence;
        let _ = writeln!(
            s,
            "| {} ({}) | {} | **{}** | {} | [report]({}/{}/report.md) · [svg]({}/{}/timeline.svg) |",
            ev.scenario,
            ev.file_stem,
            ev.balancer,
            o.status().label(),
            o.key_figures().replace('|', "\\|"),
            ev.file_stem,
            ev.balancer,
            ev.file_stem,
            ev.balancer
        );
    }
    s
}

/// The table `l4lb run` prints at the end.
pub fn table(outcomes: &[RunOutcome]) -> String {
    let rows: Vec<[String; 4]> = outcomes
        .iter()
        .map(|o| {
            [
                o.evidence.file_stem.clone(),
                o.evidence.balancer.to_string(),
                o.status().label().to_string(),
                o.key_figures(),
            ]
        })
        .collect();
    let head = ["scenario", "balancer", "verdict", "key figures"];
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(head[i].len())
        })
        .collect();
    let head = head.map(String::from);
    let mut s = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let _ = writeln!(
            s,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    s
}

//! The index over all runs (Markdown) and the final table printed by `l4lb run`.

use std::fmt::Write;

use crate::runner::{RunOutcome, Status};
use crate::scenario::BalancerKind;

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
        "## Side by side\n\nThe same steps against each balancer.\n"
    );
    let _ = writeln!(s, "| scenario | raw | proxy |\n|---|---|---|");
    let mut stems: Vec<&str> = Vec::new();
    for o in outcomes {
        if !stems.contains(&o.evidence.file_stem.as_str()) {
            stems.push(&o.evidence.file_stem);
        }
    }
    for stem in stems {
        let cell = |b: BalancerKind| {
            outcomes
                .iter()
                .find(|o| o.evidence.file_stem == stem && o.evidence.balancer == b)
                .map_or("not run".to_string(), |o| {
                    format!(
                        "**{}** {}",
                        o.status().label(),
                        o.key_figures().replace('|', "\\|")
                    )
                })
        };
        let _ = writeln!(
            s,
            "| {stem} | {} | {} |",
            cell(BalancerKind::Raw),
            cell(BalancerKind::Proxy)
        );
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

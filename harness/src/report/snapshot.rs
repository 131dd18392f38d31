//! The deterministic part of a run's report: what `cargo test` snapshots.
//!
//! Placements, the order of step events, and each verdict's summary. No times, ports or
//! pids, and no events observed in the background (their order may vary from run to run).

use std::fmt::Write;

use crate::runner::expect::placement_text;
use crate::runner::RunOutcome;

/// Renders the snapshot text of a run.
pub fn render(outcome: &RunOutcome) -> String {
    let ev = &outcome.evidence;
    let mut s = String::new();
    let _ = writeln!(s, "scenario: {} ({})", ev.scenario, ev.file_stem);
    let _ = writeln!(s, "balancer: {}", ev.balancer);
    let _ = writeln!(s, "status: {}", outcome.status().label());
    if let Some(reason) = &ev.skipped {
        let _ = writeln!(s, "skipped: {reason}");
    }
    // Which client of a joint join lands where varies from run to run (their SYNs race);
    // how many each server got does not.
    let placements: Vec<Vec<String>> = ev
        .placements()
        .into_iter()
        .map(|clients| {
            let (together, apart): (Vec<String>, Vec<String>) =
                clients.into_iter().partition(|c| ev.joined_together(c));
            let mut shown = apart;
            if !together.is_empty() {
                shown.push(format!("{} who joined together", together.len()));
            }
            shown
        })
        .collect();
    let _ = writeln!(s, "placement: {}", placement_text(&placements));
    let _ = writeln!(s, "events:");
    for e in ev.events.iter().filter(|e| e.step_line.is_some()) {
        let _ = writeln!(s, "  {}", e.text);
    }
    let _ = writeln!(s, "verdicts:");
    for v in &outcome.verdicts {
        let line = v
            .line
            .map_or("harness".to_string(), |l| format!("line {l}"));
        let _ = writeln!(s, "  {} ({line}) {}", v.status.label(), v.expectation);
        let _ = writeln!(s, "       {}", v.summary);
    }
    s
}

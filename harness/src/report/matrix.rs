//! The scenario x balancer matrix: each run's key figures (detection time, recovery
//! time, refused joins, idle close time) side by side, and where each balancer differs
//! from the others. Pure: figures come from the evidence, not from verdict texts.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::runner::evidence::{Evidence, JoinOutcome, Mark};
use crate::runner::{RunOutcome, Status};
use crate::scenario::{BalancerKind, ServerAction};

/// The key figures of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// From the last kill or stop to the balancer reporting that server down (as the
    /// `failover` expectation times it).
    pub detection: Option<Duration>,
    /// From the last cont or restart to the balancer reporting that server up.
    pub recovery: Option<Duration>,
    /// Refused joins, of all joins.
    pub refused: (usize, usize),
    /// The longest silence after which a session was closed neither by a quit nor by
    /// its server's fault: the balancer's idle close.
    pub idle_close: Option<Duration>,
    /// Whether the balancer had a health view (without one, detection and recovery
    /// cannot be seen).
    pub health_view: bool,
}

/// The key figures of a run.
pub fn figures(ev: &Evidence) -> Figures {
    // The last cause, as the `failover` and `recovery` expectations time it.
    let cause = |actions: &[ServerAction]| {
        ev.events
            .iter()
            .filter_map(|e| match e.mark {
                Some(Mark::Server(s, a)) if actions.contains(&a) => Some((s, e.at)),
                _ => None,
            })
            .next_back()
    };
    let reported = |(s, at): (usize, Duration), up: bool| {
        ev.health
            .iter()
            .find(|h| h.server == s && h.up == up && h.at >= at)
            .map(|h| h.at.saturating_sub(at))
    };
    let detection =
        cause(&[ServerAction::Kill, ServerAction::Stop]).and_then(|c| reported(c, false));
    let recovery =
        cause(&[ServerAction::Cont, ServerAction::Restart]).and_then(|c| reported(c, true));
    let refused = ev
        .joins
        .iter()
        .filter(|j| matches!(j.outcome, JoinOutcome::Refused { .. }))
        .count();
    let faulted: Vec<(usize, Duration)> = ev
        .events
        .iter()
        .filter_map(|e| match e.mark {
            Some(Mark::Server(s, ServerAction::Kill | ServerAction::Stop)) => Some((s, e.at)),
            _ => None,
        })
        .collect();
    let idle_close = ev
        .closes
        .iter()
        .filter(|(_, c)| !c.by_quit)
        .filter(|(name, c)| {
            ev.placement_of(name)
                .is_some_and(|s| !faulted.iter().any(|(f, at)| *f == s && *at <= c.at))
        })
        .map(|(_, c)| c.at.saturating_sub(c.last_activity))
        .max();
    Figures {
        detection,
        recovery,
        refused: (refused, ev.joins.len()),
        idle_close,
        health_view: ev.traits.no_health_view.is_none(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The figures in words, for a matrix cell: only those the run has.
pub fn figures_text(f: &Figures) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = f.detection {
        out.push(format!("detection {}", secs(d)));
    }
    if let Some(d) = f.recovery {
        out.push(format!("recovery {}", secs(d)));
    }
    if f.refused.0 > 0 {
        out.push(format!("refused {}/{}", f.refused.0, f.refused.1));
    }
    if let Some(d) = f.idle_close {
        out.push(format!("idle close {}", secs(d)));
    }
    out
}

/// Counts of verdicts that are not a pass: `1 N/A, 2 FAIL`.
pub fn verdict_counts(o: &RunOutcome) -> String {
    let count = |st: Status| o.verdicts.iter().filter(|v| v.status == st).count();
    [(Status::NotApplicable, "N/A"), (Status::Fail, "failed")]
        .into_iter()
        .filter(|(st, _)| count(*st) > 0)
        .map(|(st, w)| format!("{} {w}", count(st)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The balancers that ran, in report order.
pub fn balancers(outcomes: &[RunOutcome]) -> Vec<BalancerKind> {
    BalancerKind::EVERY
        .into_iter()
        .filter(|b| outcomes.iter().any(|o| o.evidence.balancer == *b))
        .collect()
}

/// The scenarios that ran, in the order they first ran.
pub fn scenarios(outcomes: &[RunOutcome]) -> Vec<&str> {
    let mut stems: Vec<&str> = Vec::new();
    for o in outcomes {
        if !stems.contains(&o.evidence.file_stem.as_str()) {
            stems.push(&o.evidence.file_stem);
        }
    }
    stems
}

/// The run of `stem` against `b`, if it ran.
pub fn find<'a>(outcomes: &'a [RunOutcome], stem: &str, b: BalancerKind) -> Option<&'a RunOutcome> {
    outcomes
        .iter()
        .find(|o| o.evidence.file_stem == stem && o.evidence.balancer == b)
}

/// One line a balancer that differs from the others in some scenario: the verdicts it
/// has (N/A with the reason, failures), more refusals than any other, and a
/// detection time far from the others'.
pub fn differences(outcomes: &[RunOutcome]) -> Vec<String> {
    let bs = balancers(outcomes);
    let mut out = Vec::new();
    if bs.len() < 2 {
        return out;
    }
    for b in &bs {
        let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for stem in scenarios(outcomes) {
            let Some(mine) = find(outcomes, stem, *b) else {
                continue;
            };
            let others: Vec<&RunOutcome> = bs
                .iter()
                .filter(|x| *x != b)
                .filter_map(|x| find(outcomes, stem, *x))
                .collect();
            if others.is_empty() {
                continue;
            }
            let mut n = Vec::new();
            if let Some(reason) = &mine.evidence.skipped {
                n.push(format!("not run: {reason}"));
            }
            // N/A verdicts grouped by their reason, so a reason is said once.
            let mut by_reason: Vec<(&str, Vec<String>)> = Vec::new();
            for v in &mine.verdicts {
                if v.status == Status::NotApplicable {
                    let reason = v.summary.trim_start_matches("not applicable: ");
                    let reason = reason.split("; seen").next().unwrap_or(reason);
                    match by_reason.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, list)) => list.push(short(&v.expectation)),
                        None => by_reason.push((reason, vec![short(&v.expectation)])),
                    }
                } else if v.status == Status::Fail {
                    n.push(format!("FAIL {}", short(&v.expectation)));
                }
            }
            for (reason, list) in by_reason {
                n.push(format!("N/A {} ({reason})", list.join(", ")));
            }
            let f = figures(&mine.evidence);
            let other_refused: Vec<usize> = others
                .iter()
                .map(|o| figures(&o.evidence).refused.0)
                .collect();
            if other_refused.iter().all(|r| *r < f.refused.0) {
                n.push(format!(
                    "refused {} of {} joins (others: {})",
                    f.refused.0,
                    f.refused.1,
                    other_refused
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(d) = f.detection {
                let theirs: Vec<Duration> = others
                    .iter()
                    .filter_map(|o| figures(&o.evidence).detection)
                    .collect();
                if !theirs.is_empty() && theirs.iter().all(|t| d > *t * 2 || d * 2 < *t) {
                    n.push(format!(
                        "detection {} (others: {})",
                        secs(d),
                        theirs
                            .iter()
                            .map(|t| secs(*t))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            if !n.is_empty() {
                notes.insert(stem.to_string(), n);
            }
        }
        if !notes.is_empty() {
            let parts: Vec<String> = notes
                .iter()
                .map(|(stem, n)| format!("{stem}: {}", n.join("; ")))
                .collect();
            out.push(format!("**{b}**: {}", parts.join(" · ")));
        }
    }
    out
}

/// An expectation's words before its list or bound (for a summary line).
fn short(expectation: &str) -> String {
    let e = expectation.split(" within ").next().unwrap_or(expectation);
    let e = e.split(": [").next().unwrap_or(e);
    let e = e.split(" after the idle timeout").next().unwrap_or(e);
    if e.chars().count() > 60 {
        format!("{}…", e.chars().take(59).collect::<String>())
    } else {
        e.to_string()
    }
}

/// The matrix as a Markdown table: a row a scenario, a column a balancer; each cell its
/// verdict, key figures and a link to its report.
pub fn markdown(outcomes: &[RunOutcome]) -> String {
    let bs = balancers(outcomes);
    let mut s = format!(
        "| scenario | {} |\n|---|{}\n",
        bs.iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(bs.len())
    );
    for stem in scenarios(outcomes) {
        let cells: Vec<String> = bs
            .iter()
            .map(|b| match find(outcomes, stem, *b) {
                None => "not run".into(),
                Some(o) => {
                    let mut parts = figures_text(&figures(&o.evidence));
                    let counts = verdict_counts(o);
                    if !counts.is_empty() {
                        parts.push(counts);
                    }
                    if let Some(reason) = &o.evidence.skipped {
                        parts = vec![reason.clone()];
                    }
                    format!(
                        "[**{}**]({stem}/{b}/report.md) {}",
                        o.status().label(),
                        parts.join(", ").replace('|', "\\|")
                    )
                }
            })
            .collect();
        s += &format!("| {stem} | {} |\n", cells.join(" | "));
    }
    s
}

//! Expectations checked against evidence: pure functions, no I/O.
//!
//! Each [`Verdict`] carries a `summary` with no times, ports or pids (it goes into the
//! snapshot) and a `detail` with the measured figures (it goes into the reports only).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::evidence::{Evidence, JoinOutcome, Mark};
use crate::scenario::{server_name, BalancerKind, ExpectKind, Expectation, ServerAction};

/// Outcome of one expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It held.
    Pass,
    /// It did not.
    Fail,
    /// It could not be checked here (reason in the summary).
    Skipped,
}

impl Status {
    /// PASS, FAIL or SKIP.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skipped => "SKIP",
        }
    }
}

/// The verdict on one expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Line of the expectation in the file (None: added by the harness).
    pub line: Option<usize>,
    /// What was expected, in words.
    pub expectation: String,
    /// Outcome.
    pub status: Status,
    /// Deterministic evidence (snapshotted).
    pub summary: String,
    /// Measured figures.
    pub detail: String,
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn verdict(
    line: Option<usize>,
    expectation: String,
    ok: bool,
    summary: String,
    detail: String,
) -> Verdict {
    Verdict {
        line,
        expectation,
        status: if ok { Status::Pass } else { Status::Fail },
        summary,
        detail,
    }
}

/// Checks every expectation that applies to the evidence's balancer, then the
/// harness's own: the timeline ran to its end, and everything was cleaned up.
pub fn evaluate(expectations: &[Expectation], ev: &Evidence) -> Vec<Verdict> {
    if let Some(reason) = &ev.skipped {
        return vec![Verdict {
            line: None,
            expectation: "the scenario can run on this machine".into(),
            status: Status::Skipped,
            summary: reason.clone(),
            detail: reason.clone(),
        }];
    }
    let mut out: Vec<Verdict> = expectations
        .iter()
        .filter(|e| e.only.is_none_or(|b| b == ev.balancer))
        .map(|e| check(e, ev))
        .collect();
    out.push(verdict(
        None,
        "every step of the timeline completed".into(),
        ev.step_failures.is_empty(),
        if ev.step_failures.is_empty() {
            "all steps completed".into()
        } else {
            format!(
                "{} step(s) failed: {}",
                ev.step_failures.len(),
                ev.step_failures.join("; ")
            )
        },
        String::new(),
    ));
    let c = &ev.cleanup;
    let clean = c.namespaces_left.is_empty() && c.processes_left.is_empty() && c.errors.is_empty();
    out.push(verdict(
        None,
        "everything the run created is gone".into(),
        clean,
        if clean {
            "no namespace, process or rule left".into()
        } else {
            format!(
                "left: namespaces [{}], processes [{}]; errors: [{}]",
                c.namespaces_left.join(", "),
                c.processes_left.join(", "),
                c.errors.join("; ")
            )
        },
        String::new(),
    ));
    out
}

/// Checks one expectation.
pub fn check(e: &Expectation, ev: &Evidence) -> Verdict {
    let line = Some(e.line);
    match &e.kind {
        ExpectKind::Placement(map) => {
            let actual = ev.placements();
            let mut wrong = Vec::new();
            for (i, got) in actual.iter().enumerate() {
                let want: Vec<String> = map
                    .iter()
                    .find(|(s, _)| *s == i)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default();
                let got_set: BTreeSet<&String> = got.iter().collect();
                let want_set: BTreeSet<&String> = want.iter().collect();
                if got_set != want_set {
                    wrong.push(format!(
                        "{} has [{}], expected [{}]",
                        server_name(i),
                        got.join(", "),
                        want.join(", ")
                    ));
                }
            }
            let shown = placement_text(&actual);
            verdict(
                line,
                format!(
                    "placement exactly {}",
                    map.iter()
                        .map(|(s, c)| format!("{}: [{}]", server_name(*s), c.join(", ")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                wrong.is_empty(),
                if wrong.is_empty() {
                    format!("placed {shown}")
                } else {
                    wrong.join("; ")
                },
                String::new(),
            )
        }
        ExpectKind::Balanced(bound) => {
            let counts: Vec<usize> = ev.placements().iter().map(|c| c.len()).collect();
            let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
            verdict(
                line,
                format!("clients balanced: most and least loaded server differ by at most {bound}"),
                spread <= *bound as usize && counts.iter().sum::<usize>() > 0,
                format!(
                    "clients per server {}; spread {spread}",
                    counts
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                ),
                String::new(),
            )
        }
        ExpectKind::NotOn(map) => {
            let mut wrong = Vec::new();
            let mut unplaced = Vec::new();
            for (s, clients) in map {
                for c in clients {
                    match ev.placement_of(c) {
                        Some(p) if p == *s => wrong.push(format!("{c} is on {}", server_name(*s))),
                        Some(_) => {}
                        None => unplaced.push(c.clone()),
                    }
                }
            }
            let ok = wrong.is_empty() && unplaced.is_empty();
            verdict(
                line,
                format!(
                    "not placed on {}",
                    map.iter()
                        .map(|(s, c)| format!("{}: [{}]", server_name(*s), c.join(", ")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ok,
                if ok {
                    "none of them is there; all are placed elsewhere".into()
                } else {
                    let mut parts = wrong;
                    if !unplaced.is_empty() {
                        parts.push(format!("not placed at all: {}", unplaced.join(", ")));
                    }
                    parts.join("; ")
                },
                String::new(),
            )
        }
        ExpectKind::ChatIsolation => chat_isolation(line, ev),
        ExpectKind::Heard { text, by, not_by } => {
            let receivers: BTreeSet<String> = ev
                .says
                .iter()
                .filter(|s| &s.text == text)
                .flat_map(|s| ev.receivers(s))
                .collect();
            let missing: Vec<&String> = by.iter().filter(|c| !receivers.contains(*c)).collect();
            let extra: Vec<&String> = not_by.iter().filter(|c| receivers.contains(*c)).collect();
            let ok =
                missing.is_empty() && extra.is_empty() && ev.says.iter().any(|s| &s.text == text);
            let mut problems = Vec::new();
            if !missing.is_empty() {
                problems.push(format!("not received by {}", join(&missing)));
            }
            if !extra.is_empty() {
                problems.push(format!("wrongly received by {}", join(&extra)));
            }
            verdict(
                line,
                format!(
                    "\"{text}\" heard by [{}], not by [{}]",
                    by.join(", "),
                    not_by.join(", ")
                ),
                ok,
                if ok {
                    format!(
                        "received by [{}]",
                        receivers.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                } else {
                    problems.join("; ")
                },
                String::new(),
            )
        }
        ExpectKind::Failover(s) => failover(line, ev, *s),
        ExpectKind::Recovery(s) => recovery(line, ev, *s),
        ExpectKind::Kept(clients) => {
            let mut lost = Vec::new();
            for c in clients {
                if ev.placement_of(c).is_none() {
                    lost.push(format!("{c} was never placed"));
                } else if let Some(close) = ev.closes.get(c) {
                    lost.push(format!("{c} closed ({})", close.how));
                }
            }
            verdict(
                line,
                format!("sessions kept to the end: [{}]", clients.join(", ")),
                lost.is_empty(),
                if lost.is_empty() {
                    "all still connected at the end".into()
                } else {
                    lost.join("; ")
                },
                String::new(),
            )
        }
        ExpectKind::IdleClosed { clients, tolerance } => {
            let idle = ev.settings.idle_timeout;
            let mut problems = Vec::new();
            let mut figures = Vec::new();
            for c in clients {
                match ev.closes.get(c) {
                    None => problems.push(format!("{c} was not closed")),
                    Some(close) if close.by_quit => problems.push(format!("{c} quit by itself")),
                    Some(close) => {
                        let silent = close.at.saturating_sub(close.last_activity);
                        figures.push(format!("{c} closed after {} of silence", secs(silent)));
                        let low = idle.saturating_sub(*tolerance);
                        if silent < low || silent > idle + *tolerance {
                            problems
                                .push(format!("{c} closed outside the idle timeout ± tolerance"));
                        }
                    }
                }
            }
            verdict(
                line,
                format!(
                    "idle sessions closed after the idle timeout ({} ± {}): [{}]",
                    humantime::format_duration(idle),
                    humantime::format_duration(*tolerance),
                    clients.join(", ")
                ),
                problems.is_empty(),
                if problems.is_empty() {
                    "closed on time".into()
                } else {
                    problems.join("; ")
                },
                figures.join("; "),
            )
        }
        ExpectKind::Refused(clients) => {
            let mut wrong = Vec::new();
            for c in clients {
                match ev.joins.iter().find(|j| &j.client == c).map(|j| &j.outcome) {
                    Some(JoinOutcome::Refused { .. }) => {}
                    Some(JoinOutcome::Placed { server }) => {
                        wrong.push(format!("{c} was placed on {}", server_name(*server)))
                    }
                    Some(JoinOutcome::Unplaced { why }) => {
                        wrong.push(format!("{c} hung instead of being refused ({why})"))
                    }
                    None => wrong.push(format!("{c} never joined")),
                }
            }
            verdict(
                line,
                format!("refused cleanly: [{}]", clients.join(", ")),
                wrong.is_empty(),
                if wrong.is_empty() {
                    "each got a clean refusal".into()
                } else {
                    wrong.join("; ")
                },
                ev.joins
                    .iter()
                    .filter(|j| clients.contains(&j.client))
                    .filter_map(|j| match &j.outcome {
                        JoinOutcome::Refused { how } => Some(format!("{}: {how}", j.client)),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        }
        ExpectKind::NoRefused => {
            let bad: Vec<String> = ev
                .joins
                .iter()
                .filter_map(|j| match &j.outcome {
                    JoinOutcome::Placed { .. } => None,
                    JoinOutcome::Refused { how } => Some(format!("{} refused ({how})", j.client)),
                    JoinOutcome::Unplaced { why } => {
                        Some(format!("{} not placed ({why})", j.client))
                    }
                })
                .collect();
            verdict(
                line,
                "no join refused while a backend was alive".into(),
                bad.is_empty() && !ev.joins.is_empty(),
                if bad.is_empty() {
                    format!("all {} joins placed", ev.joins.len())
                } else {
                    bad.join("; ")
                },
                String::new(),
            )
        }
        ExpectKind::OpenSessions(n) => verdict(
            line,
            format!(
                "the balancer holds {n} session(s) at the end ({})",
                if ev.balancer == BalancerKind::Raw {
                    "NAT rows"
                } else {
                    "live sessions"
                }
            ),
            ev.open_sessions_end == Some(*n),
            match ev.open_sessions_end {
                Some(m) => format!("it reports {m}"),
                None => "the balancer's stats could not be read".into(),
            },
            String::new(),
        ),
        ExpectKind::BalancerAlive => verdict(
            line,
            "the balancer still runs at the end".into(),
            ev.balancer_alive_end,
            if ev.balancer_alive_end {
                "running".into()
            } else {
                "it exited".into()
            },
            String::new(),
        ),
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// `s1 [a, b], s2 [c]`.
pub fn placement_text(placements: &[Vec<String>]) -> String {
    placements
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} [{}]", server_name(i), c.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn chat_isolation(line: Option<usize>, ev: &Evidence) -> Verdict {
    let mut problems = Vec::new();
    for say in &ev.says {
        let Some(server) = ev.placement_of(&say.client) else {
            problems.push(format!(
                "{} said \"{}\" but was never placed",
                say.client, say.text
            ));
            continue;
        };
        // Clients on the same server, connected when the line was sent.
        let expected: BTreeSet<String> = ev
            .joins
            .iter()
            .filter(|j| j.outcome == JoinOutcome::Placed { server } && j.settled <= say.at)
            .filter(|j| ev.closes.get(&j.client).is_none_or(|c| c.at > say.at))
            .map(|j| j.client.clone())
            .collect();
        let got: BTreeSet<String> = ev.receivers(say).into_iter().collect();
        if got != expected {
            let missing: Vec<&String> = expected.difference(&got).collect();
            let extra: Vec<&String> = got.difference(&expected).collect();
            let mut p = format!("\"{}\" from {}:", say.wire(), say.client);
            if !missing.is_empty() {
                p += &format!(" missing at {}", join(&missing));
            }
            if !extra.is_empty() {
                p += &format!(" leaked to {}", join(&extra));
            }
            problems.push(p);
        }
    }
    let ok = problems.is_empty() && !ev.says.is_empty();
    verdict(
        line,
        "every line reaches exactly the clients of the sender's server".into(),
        ok,
        if ev.says.is_empty() {
            "no line was said".into()
        } else if ok {
            format!(
                "{} line(s), each received exactly by its server's clients",
                ev.says.len()
            )
        } else {
            problems.join("; ")
        },
        String::new(),
    )
}

/// The last fault (kill/stop) on `server` and the first down mark after it.
fn failover(line: Option<usize>, ev: &Evidence, server: usize) -> Verdict {
    let name = server_name(server);
    let bound = ev.settings.detection_bound();
    let margin = ev.settings.margin();
    let expectation = format!(
        "{name}'s failure noticed within interval x fall + timeout = {} and no client placed there after",
        humantime::format_duration(bound)
    );
    let fault = ev.events.iter().rev().find(|e| {
        matches!(e.mark, Some(Mark::Server(s, ServerAction::Kill | ServerAction::Stop)) if s == server)
    });
    let Some(fault) = fault else {
        return verdict(
            line,
            expectation,
            false,
            format!("{name} was never killed or stopped"),
            String::new(),
        );
    };
    let down = ev
        .health
        .iter()
        .find(|h| h.server == server && !h.up && h.at >= fault.at);
    let Some(down) = down else {
        return verdict(
            line,
            expectation,
            false,
            format!("the balancer never reported {name} down"),
            String::new(),
        );
    };
    let detection = down.at - fault.at;
    let up_again = ev
        .health
        .iter()
        .find(|h| h.server == server && h.up && h.at > down.at)
        .map(|h| h.at);
    let later: Vec<&super::evidence::JoinRecord> = ev
        .joins
        .iter()
        .filter(|j| j.at >= down.at && up_again.is_none_or(|u| j.at < u))
        .collect();
    let there: Vec<&str> = later
        .iter()
        .filter(|j| j.outcome == JoinOutcome::Placed { server })
        .map(|j| j.client.as_str())
        .collect();
    let in_time = detection <= bound + margin;
    let mut summary = if in_time {
        format!("{name} reported down within the bound")
    } else {
        format!("{name} reported down too late")
    };
    summary += &format!("; {} of {} later joins on {name}", there.len(), later.len());
    if !there.is_empty() {
        summary += &format!(" ({})", there.join(", "));
    }
    verdict(
        line,
        expectation,
        in_time && there.is_empty(),
        summary,
        format!(
            "detection {} (bound {} + margin {})",
            secs(detection),
            secs(bound),
            secs(margin)
        ),
    )
}

/// The last revival (cont/restart) of `server`, the first up mark after it, and a later placement there.
fn recovery(line: Option<usize>, ev: &Evidence, server: usize) -> Verdict {
    let name = server_name(server);
    let bound = ev.settings.recovery_bound();
    let margin = ev.settings.margin();
    let expectation = format!(
        "{name}'s return noticed within interval x rise + timeout = {} and clients placed there again",
        humantime::format_duration(bound)
    );
    let revival = ev.events.iter().rev().find(|e| {
        matches!(e.mark, Some(Mark::Server(s, ServerAction::Cont | ServerAction::Restart)) if s == server)
    });
    let Some(revival) = revival else {
        return verdict(
            line,
            expectation,
            false,
            format!("{name} was never continued or restarted"),
            String::new(),
        );
    };
    let up = ev
        .health
        .iter()
        .find(|h| h.server == server && h.up && h.at >= revival.at);
    let Some(up) = up else {
        return verdict(
            line,
            expectation,
            false,
            format!("the balancer never reported {name} up again"),
            String::new(),
        );
    };
    let recovery = up.at - revival.at;
    let later: Vec<&super::evidence::JoinRecord> =
        ev.joins.iter().filter(|j| j.at >= up.at).collect();
    let there = later
        .iter()
        .filter(|j| j.outcome == JoinOutcome::Placed { server })
        .count();
    let in_time = recovery <= bound + margin;
    let summary = format!(
        "{name} reported up {}; {there} of {} later joins on {name}",
        if in_time {
            "within the bound"
        } else {
            "too late"
        },
        later.len()
    );
    verdict(
        line,
        expectation,
        in_time && there > 0,
        summary,
        format!(
            "recovery {} (bound {} + margin {})",
            secs(recovery),
            secs(bound),
            secs(margin)
        ),
    )
}

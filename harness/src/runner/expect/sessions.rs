//! How sessions and the balancer ended: `kept`, `idle_closed`, `refused`, `no_refused`,
//! `open_sessions`, `balancer_alive`.

use std::time::Duration;

use super::{judgement, secs, Judgement};
use crate::runner::evidence::{Evidence, JoinOutcome};
use crate::scenario::{server_name, BalancerKind};

/// These sessions were still open at the end.
pub(super) fn kept(line: Option<usize>, ev: &Evidence, clients: &[String]) -> Judgement {
    let mut lost = Vec::new();
    for c in clients {
        if ev.placement_of(c).is_none() {
            lost.push(format!("{c} was never placed"));
        } else if let Some(close) = ev.closes.get(c) {
            lost.push(format!("{c} closed ({})", close.how));
        }
    }
    judgement(
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

/// These sessions were closed after the idle timeout ± `tolerance` of silence.
pub(super) fn idle_closed(
    line: Option<usize>,
    ev: &Evidence,
    clients: &[String],
    tolerance: Duration,
) -> Judgement {
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
                let low = idle.saturating_sub(tolerance);
                if silent < low || silent > idle.saturating_add(tolerance) {
                    problems.push(format!("{c} closed outside the idle timeout ± tolerance"));
                }
            }
        }
    }
    judgement(
        line,
        format!(
            "idle sessions closed after the idle timeout ({} ± {}): [{}]",
            humantime::format_duration(idle),
            humantime::format_duration(tolerance),
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

/// These joins were refused cleanly.
pub(super) fn refused(line: Option<usize>, ev: &Evidence, clients: &[String]) -> Judgement {
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
    judgement(
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

/// Every join was placed.
pub(super) fn no_refused(line: Option<usize>, ev: &Evidence) -> Judgement {
    let bad: Vec<String> = ev
        .joins
        .iter()
        .filter_map(|j| match &j.outcome {
            JoinOutcome::Placed { .. } => None,
            JoinOutcome::Refused { how } => Some(format!("{} refused ({how})", j.client)),
            JoinOutcome::Unplaced { why } => Some(format!("{} not placed ({why})", j.client)),
        })
        .collect();
    judgement(
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

/// The balancer holds `n` sessions at the end.
pub(super) fn open_sessions(line: Option<usize>, ev: &Evidence, n: u32) -> Judgement {
    judgement(
        line,
        format!(
            "the balancer holds {n} session(s) at the end ({})",
            if ev.balancer == BalancerKind::Raw {
                "NAT rows"
            } else {
                "live sessions"
            }
        ),
        ev.open_sessions_end == Some(n),
        match ev.open_sessions_end {
            Some(m) => format!("it reports {m}"),
            None => "the balancer's stats could not be read".into(),
        },
        String::new(),
    )
}

/// The balancer still runs at the end.
pub(super) fn balancer_alive(line: Option<usize>, ev: &Evidence) -> Judgement {
    judgement(
        line,
        "the balancer still runs at the end".into(),
        ev.balancer_alive_end,
        if ev.balancer_alive_end {
            "running".into()
        } else {
            "it exited".into()
        },
        String::new(),
    )
}

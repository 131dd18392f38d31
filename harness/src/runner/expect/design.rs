//! Expectations a balancer cannot meet by design: judged "not applicable" with the
//! reason and what the evidence showed, never passed silently, never a failure.
//!
//! - No health view (kernel NAT, nginx, a program that tells none): `failover`,
//!   `recovery` and `stayed_up` time or deny a report that cannot be read.
//! - No idle close (raw, kernel NAT): `idle_closed`; no idle timeout at all (kernel
//!   NAT): an `open_sessions` count that fails.
//! - No health checks at all (kernel NAT): after a server fault it keeps sending clients
//!   to the dead server, so placement and refusal expectations that fail after one are
//!   not applicable; those that hold are passed as for any balancer. The same after a
//!   stop (a hang) for passive checks only (nginx): a hung server's kernel still accepts.

use super::{Judgement, Status};
use crate::runner::evidence::{Evidence, JoinOutcome, Mark};
use crate::scenario::{server_name, ExpectKind, Expectation, ServerAction};

/// `judged` as it stands, or "not applicable" when `ev`'s balancer cannot meet `e`.
pub(super) fn by_design(e: &Expectation, ev: &Evidence, judged: Judgement) -> Judgement {
    let t = &ev.traits;
    let reason = match &e.kind {
        ExpectKind::Failover(s) | ExpectKind::Recovery(s) => t
            .no_health_view
            .clone()
            .map(|r| (r, after_fault_text(ev, Some(*s)))),
        ExpectKind::StayedUp(_) => t.no_health_view.clone().map(|r| (r, String::new())),
        ExpectKind::IdleClosed { tolerance, .. } => t
            .no_idle_close
            .clone()
            .or_else(|| {
                (*tolerance < t.idle_close_lag).then(|| {
                    format!(
                        "the {} balancer closes idle sessions on a sweep, up to {} after the \
                         idle timeout, more than this tolerance of {} (widen it to judge \
                         the close)",
                        ev.balancer.as_str(),
                        humantime::format_duration(t.idle_close_lag),
                        humantime::format_duration(*tolerance)
                    )
                })
            })
            .map(|r| (r, String::new())),
        ExpectKind::OpenSessions(_) if judged.status == Status::Fail => {
            t.no_idle_timeout.clone().map(|r| (r, String::new()))
        }
        ExpectKind::Placement(_)
        | ExpectKind::Kept(_)
        | ExpectKind::Balanced(_)
        | ExpectKind::NotOn(_)
        | ExpectKind::Refused(_)
        | ExpectKind::NoRefused
            if judged.status == Status::Fail =>
        {
            let crash = server_fault(ev, &[ServerAction::Kill, ServerAction::Stop]);
            let hang = server_fault(ev, &[ServerAction::Stop]);
            t.no_failover
                .clone()
                .filter(|_| crash)
                .or(t.no_hang_failover.clone().filter(|_| hang))
                .map(|r| (r, after_fault_text(ev, None)))
        }
        _ => None,
    };
    let Some((reason, seen)) = reason else {
        return judged;
    };
    let as_judged = format!(
        "judged as for any balancer: {} ({})",
        judged.status.label(),
        judged.summary
    );
    Judgement {
        status: Status::NotApplicable,
        summary: if seen.is_empty() {
            format!("not applicable: {reason}")
        } else {
            format!("not applicable: {reason}; {seen}")
        },
        detail: [as_judged, judged.detail]
            .into_iter()
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        ..judged
    }
}

/// Whether a server was killed or stopped (one of `actions`) during the run.
fn server_fault(ev: &Evidence, actions: &[ServerAction]) -> bool {
    ev.events
        .iter()
        .any(|e| matches!(e.mark, Some(Mark::Server(_, a)) if actions.contains(&a)))
}

/// What became of the joins after the first kill or stop (of `server`, or any): the
/// evidence a balancer without a health view leaves.
fn after_fault_text(ev: &Evidence, server: Option<usize>) -> String {
    let Some(cause) = ev.events.iter().find(|e| match e.mark {
        Some(Mark::Server(s, ServerAction::Kill | ServerAction::Stop)) => {
            server.is_none_or(|x| x == s)
        }
        _ => false,
    }) else {
        return String::new();
    };
    let Some(Mark::Server(s, _)) = cause.mark else {
        return String::new();
    };
    let later: Vec<_> = ev.joins.iter().filter(|j| j.at >= cause.at).collect();
    let on: Vec<&str> = later
        .iter()
        .filter(|j| j.outcome == JoinOutcome::Placed { server: s })
        .map(|j| j.client.as_str())
        .collect();
    let refused: Vec<&str> = later
        .iter()
        .filter(|j| matches!(j.outcome, JoinOutcome::Refused { .. }))
        .map(|j| j.client.as_str())
        .collect();
    format!(
        "seen after {}'s fault: {} of {} later joins on it, {} refused{}",
        server_name(s),
        on.len(),
        later.len(),
        refused.len(),
        if refused.is_empty() {
            String::new()
        } else {
            format!(" ({})", refused.join(", "))
        }
    )
}

//! How fast the balancer reacted to a server: `failover` (a kill or stop noticed) and
//! `recovery` (a cont or restart noticed), one algorithm with two sets of words.

use std::time::Duration;

use super::{judgement, secs, Judgement};
use crate::runner::evidence::{Evidence, JoinOutcome, JoinRecord, Mark};
use crate::scenario::{server_name, BalancerSettings, ServerAction, ServerIdx};

/// A change of a server's health: what causes it, what the balancer reports, its bound.
pub(super) struct Transition {
    /// Server actions that start it.
    causes: [ServerAction; 2],
    /// The report that ends it: up (true) or down.
    up: bool,
    /// Longest time the balancer may take to report it.
    bound: fn(&BalancerSettings) -> Duration,
    /// Whether later joins must reach the server (recovery) or must not (failover, until
    /// it is reported up again).
    joins_there: bool,
    /// The words: change, formula, promise, causes, report, the measured figure.
    change: &'static str,
    formula: &'static str,
    promise: &'static str,
    never_caused: &'static str,
    never_reported: &'static str,
    reported: &'static str,
    figure: &'static str,
}

/// A kill or stop noticed within interval x fall + timeout, no client placed there after.
pub(super) const FAILOVER: Transition = Transition {
    causes: [ServerAction::Kill, ServerAction::Stop],
    up: false,
    bound: BalancerSettings::detection_bound,
    joins_there: false,
    change: "failure",
    formula: "interval x fall + timeout",
    promise: "no client placed there after",
    never_caused: "killed or stopped",
    never_reported: "down",
    reported: "down",
    figure: "detection",
};

/// A cont or restart noticed within interval x rise + timeout, clients placed there again.
pub(super) const RECOVERY: Transition = Transition {
    causes: [ServerAction::Cont, ServerAction::Restart],
    up: true,
    bound: BalancerSettings::recovery_bound,
    joins_there: true,
    change: "return",
    formula: "interval x rise + timeout",
    promise: "clients placed there again",
    never_caused: "continued or restarted",
    never_reported: "up again",
    reported: "up",
    figure: "recovery",
};

/// The last cause of `t` on `server`, the balancer's first report of it after, whether
/// that came within the bound (plus margin), and where later joins went.
pub(super) fn transition(
    line: Option<usize>,
    ev: &Evidence,
    server: usize,
    t: &Transition,
) -> Judgement {
    let name = server_name(server);
    let bound = (t.bound)(&ev.settings);
    let margin = ev.settings.margin();
    let expectation = format!(
        "{name}'s {} noticed within {} = {} and {}",
        t.change,
        t.formula,
        humantime::format_duration(bound),
        t.promise
    );
    let cause = ev.events.iter().rev().find(|e| {
        matches!(e.mark, Some(Mark::Server(s, action)) if s == server && t.causes.contains(&action))
    });
    let Some(cause) = cause else {
        return judgement(
            line,
            expectation,
            false,
            format!("{name} was never {}", t.never_caused),
            String::new(),
        );
    };
    let report = ev
        .health
        .iter()
        .find(|h| h.server == server && h.up == t.up && h.at >= cause.at);
    let Some(report) = report else {
        return judgement(
            line,
            expectation,
            false,
            format!("the balancer never reported {name} {}", t.never_reported),
            String::new(),
        );
    };
    let taken = report.at.saturating_sub(cause.at);
    // A failover's later joins end when the server is reported up again.
    let window_end = (!t.joins_there)
        .then(|| {
            ev.health
                .iter()
                .find(|h| h.server == server && h.up && h.at > report.at)
                .map(|h| h.at)
        })
        .flatten();
    let later: Vec<&JoinRecord> = ev
        .joins
        .iter()
        .filter(|j| j.at >= report.at && window_end.is_none_or(|end| j.at < end))
        .collect();
    let there: Vec<&str> = later
        .iter()
        .filter(|j| j.outcome == JoinOutcome::Placed { server })
        .map(|j| j.client.as_str())
        .collect();
    let in_time = taken <= bound.saturating_add(margin);
    let mut summary = format!(
        "{name} reported {} {}; {} of {} later joins on {name}",
        t.reported,
        if in_time {
            "within the bound"
        } else {
            "too late"
        },
        there.len(),
        later.len()
    );
    let joins_ok = if t.joins_there {
        !there.is_empty()
    } else {
        if !there.is_empty() {
            summary += &format!(" ({})", there.join(", "));
        }
        there.is_empty()
    };
    judgement(
        line,
        expectation,
        in_time && joins_ok,
        summary,
        format!(
            "{} {} (bound {} + margin {})",
            t.figure,
            secs(taken),
            secs(bound),
            secs(margin)
        ),
    )
}

/// The balancer never reported any of `servers` down during the run.
pub(super) fn stayed_up(line: Option<usize>, ev: &Evidence, servers: &[ServerIdx]) -> Judgement {
    let names: Vec<String> = servers.iter().map(|s| server_name(*s)).collect();
    let downs: Vec<String> = ev
        .health
        .iter()
        .filter(|m| !m.up && servers.contains(&m.server))
        .map(|m| format!("{} down at {}", server_name(m.server), secs(m.at)))
        .collect();
    judgement(
        line,
        format!("never taken out: [{}]", names.join(", ")),
        downs.is_empty(),
        if downs.is_empty() {
            "no down report for them".into()
        } else {
            format!("{} down report(s)", downs.len())
        },
        downs.join("; "),
    )
}

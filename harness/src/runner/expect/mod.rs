//! Expectations checked against evidence: pure functions, no I/O.
//!
//! One module a group of kinds: `placement` (placement, balanced, not_on), `chat`
//! (chat_isolation, heard), `health` (failover, recovery, stayed_up), `sessions` (kept,
//! idle_closed, told_closed, refused, no_refused, open_sessions, balancer_alive), `bulk`
//! (bulk_done); [`check`] finds an
//! expectation's judgement there.
//!
//! Each [`Judgement`] carries a `summary` with no times, ports or pids (it goes into the
//! snapshot) and a `detail` with the measured figures (it goes into the reports only).

use std::time::Duration;

use serde::Serialize;

use super::evidence::Evidence;
use crate::scenario::{ExpectKind, Expectation};

mod bulk;
mod chat;
mod design;
mod health;
mod placement;
mod sessions;

pub use sessions::session_close;

pub use bulk::bulk_figures;
pub use placement::placement_text;

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
    /// The balancer cannot meet it by design (reason in the summary; not a failure).
    #[serde(rename = "not_applicable")]
    NotApplicable,
}

impl Status {
    /// PASS, FAIL, SKIP or N/A.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skipped => "SKIP",
            Status::NotApplicable => "N/A",
        }
    }
}

/// The judgement on one expectation (the report calls it its verdict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
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

fn judgement(
    line: Option<usize>,
    expectation: String,
    ok: bool,
    summary: String,
    detail: String,
) -> Judgement {
    Judgement {
        line,
        expectation,
        status: if ok { Status::Pass } else { Status::Fail },
        summary,
        detail,
    }
}

/// Checks every expectation that applies to the evidence's balancer (named for it, or
/// for its algorithm, or for any), turning what it cannot do by design into "not
/// applicable" (see `expect/design.rs`), then the
/// harness's own: the timeline ran to its end, and everything was cleaned up.
pub fn evaluate(expectations: &[Expectation], ev: &Evidence) -> Vec<Judgement> {
    if let Some(reason) = &ev.skipped {
        return vec![Judgement {
            line: None,
            expectation: "the scenario can run on this machine".into(),
            status: Status::Skipped,
            summary: reason.clone(),
            detail: reason.clone(),
        }];
    }
    let mut out: Vec<Judgement> = expectations
        .iter()
        .filter(|e| e.only.is_none_or(|b| b == ev.balancer))
        .filter(|e| e.algorithm.is_none_or(|a| a == ev.traits.algorithm))
        .map(|e| design::by_design(e, ev, check(e, ev)))
        .collect();
    out.push(judgement(
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
    out.push(judgement(
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
pub fn check(e: &Expectation, ev: &Evidence) -> Judgement {
    let line = Some(e.line);
    match &e.kind {
        ExpectKind::Placement(map) => placement::placement(line, ev, map),
        ExpectKind::Balanced(bound) => placement::balanced(line, ev, *bound),
        ExpectKind::NotOn(map) => placement::not_on(line, ev, map),
        ExpectKind::ChatIsolation => chat::chat_isolation(line, ev),
        ExpectKind::Heard {
            text,
            by,
            not_by,
            within,
        } => chat::heard(line, ev, text, by, not_by, *within),
        ExpectKind::Failover(s) => health::transition(line, ev, *s, &health::FAILOVER),
        ExpectKind::Recovery(s) => health::transition(line, ev, *s, &health::RECOVERY),
        ExpectKind::Kept(clients) => sessions::kept(line, ev, clients),
        ExpectKind::StayedUp(servers) => health::stayed_up(line, ev, servers),
        ExpectKind::IdleClosed { clients, tolerance } => {
            sessions::idle_closed(line, ev, clients, *tolerance)
        }
        ExpectKind::ToldClosed { client, within } => {
            sessions::told_closed(line, ev, client, *within)
        }
        ExpectKind::BulkDone { clients, within } => bulk::bulk_done(line, ev, clients, *within),
        ExpectKind::Refused(clients) => sessions::refused(line, ev, clients),
        ExpectKind::NoRefused => sessions::no_refused(line, ev),
        ExpectKind::OpenSessions(n) => sessions::open_sessions(line, ev, *n),
        ExpectKind::BalancerAlive => sessions::balancer_alive(line, ev),
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

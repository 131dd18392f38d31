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

/// Where and when a client's session was closed by the other side, with the silence
/// before it: at its server's socket (sock_diag) when that went away, otherwise when the
/// client saw it. Silence runs from the client's last own activity (its join or a line it
/// said) before that moment, so a line typed after the close does not count.
pub fn session_close(ev: &Evidence, client: &str) -> Option<(Duration, Duration, &'static str)> {
    let session = ev.session_of(client)?;
    let (at, where_) = match (session.socket_closed, ev.closes.get(client)) {
        (Some(at), _) => (at, "at its server"),
        (None, Some(close)) if !close.by_quit => (close.at, "seen by the client"),
        _ => return None,
    };
    Some((
        at,
        at.saturating_sub(ev.last_activity_before(session, at)),
        where_,
    ))
}

/// These sessions were closed after the idle timeout ± `tolerance` of silence, measured
/// where the close happened ([`session_close`]).
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
        if ev.closes.get(c).is_some_and(|close| close.by_quit) {
            problems.push(format!("{c} quit by itself"));
            continue;
        }
        match session_close(ev, c) {
            None => problems.push(format!("{c} was not closed")),
            Some((_, silent, where_)) => {
                figures.push(format!(
                    "{c} closed {where_} after {} of silence",
                    secs(silent)
                ));
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

/// `client` was told its session had ended (its disconnect line or exit) within `within`
/// of the first line it said into the ended session: the first of its lines in its
/// current session that nobody printed (not even itself: a chat server echoes every
/// line to its sender), or, when every line got through, its last line. Told before it
/// spoke passes; never told fails (the client hangs on a dead session).
pub(super) fn told_closed(
    line: Option<usize>,
    ev: &Evidence,
    client: &str,
    within: Duration,
) -> Judgement {
    let expectation = format!(
        "{client} is told its session ended (FIN or RST) within {} of its next line",
        humantime::format_duration(within)
    );
    let fail = |summary: String, detail: String| {
        judgement(line, expectation.clone(), false, summary, detail)
    };
    let Some(session) = ev.session_of(client) else {
        return fail(format!("{client} was never placed"), String::new());
    };
    let own: Vec<&crate::runner::evidence::SayRecord> = ev
        .says
        .iter()
        .filter(|s| s.client == client && s.at >= session.at)
        .collect();
    let unheard = own
        .iter()
        .find(|s| {
            let wire = s.wire();
            !ev.transcripts.values().any(|lines| {
                lines
                    .iter()
                    .any(|(at, l)| *at >= s.at && l.trim_end().ends_with(&wire))
            })
        })
        .copied();
    let spoke = unheard.or(own.last().copied());
    let told = ev.closes.get(client).filter(|c| !c.by_quit);
    match (spoke, told) {
        (None, _) => fail(
            format!("{client} said nothing after it joined: nothing to be told after"),
            "add a `say` step for it after the session should have ended".into(),
        ),
        (Some(s), None) if unheard.is_none() => fail(
            format!("{client}'s session was not closed: its lines still got through"),
            format!("its last line \"{}\" was heard", s.text),
        ),
        (Some(s), None) => fail(
            format!(
                "{client} said \"{}\" into its ended session and was never told (no FIN or RST): it hangs",
                s.text
            ),
            format!(
                "said at {}, nothing by the end of the run ({} later)",
                secs(s.at),
                secs(ev.duration.saturating_sub(s.at))
            ),
        ),
        (Some(s), Some(close)) => {
            let late = close.at.saturating_sub(s.at);
            let ok = close.at <= s.at || late <= within;
            judgement(
                line,
                expectation.clone(),
                ok,
                // Told before or after its line: which one depends on whether the
                // balancer's own close got through, so only the detail says.
                if ok {
                    format!("{client} was told in time ({})", close.how)
                } else {
                    format!(
                        "{client} was told too late after it spoke ({})",
                        close.how
                    )
                },
                if close.at <= s.at {
                    format!(
                        "told {} before its line \"{}\"",
                        secs(s.at - close.at),
                        s.text
                    )
                } else {
                    format!("told {} after its line \"{}\"", secs(late), s.text)
                },
            )
        }
    }
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

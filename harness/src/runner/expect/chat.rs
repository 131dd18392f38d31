//! What the chat transcripts show: `chat_isolation`, `heard`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{join, judgement, Judgement};
use crate::runner::evidence::{Evidence, JoinOutcome};

pub(super) fn chat_isolation(line: Option<usize>, ev: &Evidence) -> Judgement {
    let mut problems = Vec::new();
    for say in &ev.says {
        let Some(server) = ev
            .session_at(&say.client, say.at)
            .and_then(|j| match j.outcome {
                JoinOutcome::Placed { server } => Some(server),
                _ => None,
            })
        else {
            problems.push(format!(
                "{} said \"{}\" but was not placed then",
                say.client, say.text
            ));
            continue;
        };
        // Clients whose session was on the same server when the line was sent.
        let expected: BTreeSet<String> = ev
            .joins
            .iter()
            .filter(|j| j.outcome == JoinOutcome::Placed { server })
            .filter(|j| ev.session_at(&j.client, say.at) == Some(*j))
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
    judgement(
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

/// Who received a line and who did not; with `within`, how long after being said each
/// of `by` printed it (the worst delay is reported).
pub(super) fn heard(
    line: Option<usize>,
    ev: &Evidence,
    text: &str,
    by: &[String],
    not_by: &[String],
    within: Option<Duration>,
) -> Judgement {
    let receivers: BTreeSet<String> = ev
        .says
        .iter()
        .filter(|s| s.text == text)
        .flat_map(|s| ev.receivers(s))
        .collect();
    let missing: Vec<&String> = by.iter().filter(|c| !receivers.contains(*c)).collect();
    let extra: Vec<&String> = not_by.iter().filter(|c| receivers.contains(*c)).collect();
    let mut ok = missing.is_empty() && extra.is_empty() && ev.says.iter().any(|s| s.text == text);
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("not received by {}", join(&missing)));
    }
    if !extra.is_empty() {
        problems.push(format!("wrongly received by {}", join(&extra)));
    }
    // The measured delays go to the detail: the summary is snapshotted.
    let mut detail = String::new();
    let mut in_time = "";
    if let Some(bound) = within {
        match worst_delay(ev, text, by) {
            Some((d, who)) => {
                detail = format!("worst delay {} ({who})", millis(d));
                if d > bound {
                    ok = false;
                    problems.push(format!("{who} printed it later than {}", millis(bound)));
                } else {
                    in_time = ", each in time";
                }
            }
            None if missing.is_empty() => {
                ok = false;
                problems.push("no receipt after the line was said".into());
            }
            None => {}
        }
    }
    let mut what = format!(
        "\"{text}\" heard by [{}], not by [{}]",
        by.join(", "),
        not_by.join(", ")
    );
    if let Some(bound) = within {
        what += &format!(", within {}", millis(bound));
    }
    judgement(
        line,
        what,
        ok,
        if ok {
            format!(
                "received by [{}]{in_time}",
                receivers.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        } else {
            problems.join("; ")
        },
        detail,
    )
}

/// The longest time, over every saying of `text` and every client of `by` that printed
/// it, from the saying to the first transcript line with it at or after that moment.
fn worst_delay(ev: &Evidence, text: &str, by: &[String]) -> Option<(Duration, String)> {
    let mut worst: Option<(Duration, String)> = None;
    for say in ev.says.iter().filter(|s| s.text == text) {
        let wire = say.wire();
        for client in by {
            let Some(lines) = ev.transcripts.get(client) else {
                continue;
            };
            let first = lines
                .iter()
                .find(|(at, l)| *at >= say.at && l.trim_end().ends_with(&wire));
            if let Some((at, _)) = first {
                let d = *at - say.at;
                if worst.as_ref().is_none_or(|(w, _)| d > *w) {
                    worst = Some((d, client.clone()));
                }
            }
        }
    }
    worst
}

/// A duration in milliseconds with one decimal (`12.3 ms`).
fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

//! Bulk transfers: `bulk_done`, with the throughput each one reached.

use std::time::Duration;

use super::{judgement, secs, Judgement};
use crate::runner::evidence::{BulkRecord, Evidence};

/// Megabits a second of `bytes` over `d` (0 for no time).
pub(super) fn mbit_per_s(bytes: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        bytes as f64 * 8.0 / d.as_secs_f64() / 1e6
    }
}

/// Figures of one transfer: how far it got, its time and throughput each way.
pub fn bulk_figures(b: &BulkRecord) -> String {
    let mut parts = vec![format!(
        "{}: {} of {} bytes back",
        b.client,
        b.echoed * b.line_bytes,
        b.bytes()
    )];
    if let Some(sent) = b.sent_done {
        let d = sent.saturating_sub(b.started);
        parts.push(format!(
            "sent in {} ({:.1} Mbit/s up)",
            secs(d),
            mbit_per_s(b.bytes(), d)
        ));
    } else {
        parts.push("not all sent".into());
    }
    if let (Some(done), true) = (b.echo_done, b.echoed == b.lines) {
        let d = done.saturating_sub(b.started);
        parts.push(format!(
            "echoed back in {} ({:.1} Mbit/s round trip)",
            secs(d),
            mbit_per_s(b.bytes(), d)
        ));
    }
    parts.join(", ")
}

/// Every bulk transfer of these clients came back whole (within `within` of its start).
pub(super) fn bulk_done(
    line: Option<usize>,
    ev: &Evidence,
    clients: &[String],
    within: Option<Duration>,
) -> Judgement {
    let mut problems = Vec::new();
    let mut figures = Vec::new();
    let mut done = Vec::new();
    for c in clients {
        let mine: Vec<&BulkRecord> = ev.bulks.iter().filter(|b| &b.client == c).collect();
        if mine.is_empty() {
            problems.push(format!("{c} made no bulk transfer"));
        }
        for b in mine {
            figures.push(bulk_figures(b));
            if b.echoed < b.lines {
                problems.push(format!("{c}: {} of {} lines came back", b.echoed, b.lines));
                continue;
            }
            let took = b.echo_done.unwrap_or_default().saturating_sub(b.started);
            if let Some(w) = within.filter(|w| took > *w) {
                problems.push(format!(
                    "{c}: came back whole, but later than {}",
                    humantime::format_duration(w)
                ));
                continue;
            }
            done.push(format!("{c}: {} bytes", b.bytes()));
        }
    }
    judgement(
        line,
        format!(
            "bulk transfers came back whole{}: [{}]",
            within.map_or(String::new(), |w| format!(
                " within {}",
                humantime::format_duration(w)
            )),
            clients.join(", ")
        ),
        problems.is_empty(),
        if problems.is_empty() {
            format!("every byte came back ({})", done.join("; "))
        } else {
            problems.join("; ")
        },
        figures.join("; "),
    )
}

//! One run as Markdown: topology, settings, placement, figures, verdicts, timeline.

use std::fmt::Write;
use std::time::Duration;

use crate::runner::RunOutcome;
use crate::scenario::server_name;

fn t(d: Duration) -> String {
    format!("{:>8.3}s", d.as_secs_f64())
}

/// The longest chat line a report shows whole.
pub const SHOWN_LINE: usize = 120;

/// `line` as a report shows it: whole up to [`SHOWN_LINE`] characters, else its start and
/// its size, so a client that sent a huge line does not make a huge report.
pub fn shown(line: &str) -> String {
    if line.chars().count() <= SHOWN_LINE {
        return line.to_string();
    }
    let start: String = line.chars().take(SHOWN_LINE).collect();
    format!("{start}… ({} bytes)", line.len())
}

/// Escapes `|` for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders the Markdown report of a run.
pub fn render(outcome: &RunOutcome) -> String {
    let ev = &outcome.evidence;
    let h = &ev.settings;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# {} — {}: {}\n",
        ev.scenario,
        ev.balancer,
        outcome.status().label()
    );
    let _ = writeln!(s, "> {}\n", outcome.purpose);
    let _ = writeln!(
        s,
        "File `{}` · run took {:.1}s · seed {} (`l4lb run --seed {}` repeats its links' \
         randomness) · [JSON](report.json) · [timeline](timeline.svg)\n",
        outcome.file,
        ev.duration.as_secs_f64(),
        ev.seed,
        ev.seed
    );
    if let Some(reason) = &ev.skipped {
        let _ = writeln!(s, "**Skipped:** {reason}\n");
    }
    let _ = writeln!(s, "## Topology\n");
    for line in &ev.topology {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(
        s,
        "\n## Balancer settings\n\nhealth interval {}, timeout {}, rise {}, fall {}, idle timeout {}; \
         detection bound (interval × fall + timeout) {}, recovery bound (interval × rise + timeout) {}, \
         measurement margin {}.\n",
        humantime::format_duration(h.interval),
        humantime::format_duration(h.timeout),
        h.rise,
        h.fall,
        humantime::format_duration(h.idle_timeout),
        humantime::format_duration(h.detection_bound()),
        humantime::format_duration(h.recovery_bound()),
        humantime::format_duration(h.margin()),
    );
    let _ = writeln!(
        s,
        "## Placement\n\nFrom the kernel: a new established socket on the server's port in its \
         namespace (sock_diag) when each client joined; confirmed by who received whose chat lines.\n"
    );
    let _ = writeln!(s, "| server | clients | count |\n|---|---|---|");
    for (i, clients) in ev.placements().iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            server_name(i),
            clients.join(", "),
            clients.len()
        );
    }
    let refused: Vec<String> = ev
        .joins
        .iter()
        .filter(|j| !matches!(j.outcome, crate::runner::JoinOutcome::Placed { .. }))
        .map(|j| format!("{} ({})", j.client, j.outcome))
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(s, "\nNot placed: {}", refused.join(", "));
    }
    sessions_section(&mut s, ev);
    let figures: Vec<&crate::runner::Judgement> = outcome
        .verdicts
        .iter()
        .filter(|v| !v.detail.is_empty())
        .collect();
    if !figures.is_empty() {
        let _ = writeln!(s, "\n## Failover and timeout figures\n");
        for v in figures {
            let _ = writeln!(s, "- {}: {}", v.expectation, v.detail);
        }
    }
    let _ = writeln!(
        s,
        "\n## Expectations\n\n| verdict | line | expectation | evidence |\n|---|---|---|---|"
    );
    for v in &outcome.verdicts {
        let _ = writeln!(
            s,
            "| **{}** | {} | {} | {} |",
            v.status.label(),
            v.line.map_or("harness".into(), |l| l.to_string()),
            cell(&v.expectation),
            cell(&v.summary)
        );
    }
    let _ = writeln!(
        s,
        "\n## Timeline\n\nTimes from the start of the run; `bg` marks what was observed in the background.\n"
    );
    let _ = writeln!(s, "```");
    for e in &ev.events {
        let origin = e.step_line.map_or("bg".to_string(), |l| format!("L{l}"));
        let _ = writeln!(s, "{} {:>5}  {}", t(e.at), origin, shown(&e.text));
    }
    let _ = writeln!(s, "```\n\n![sessions per server over time](timeline.svg)\n");
    if !ev.fault_windows.is_empty() {
        let _ = writeln!(
            s,
            "## Link faults as they happened\n\n| host | fault | from | until |\n|---|---|---|---|"
        );
        for w in &ev.fault_windows {
            let until = w
                .until
                .map_or("end of run".to_string(), |u| t(u).trim().to_string());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {until} |",
                w.host,
                cell(&w.what),
                t(w.from).trim()
            );
        }
        let _ = writeln!(s);
    }
    if let Some(stats) = &ev.stats_end {
        let _ = writeln!(
            s,
            "<details><summary>Balancer stats at the end</summary>\n\n```\n{}```\n</details>\n",
            stats
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
    }
    if !ev.transcripts.is_empty() {
        let _ = writeln!(s, "## Chat transcripts (what each client received)\n");
        for (client, lines) in &ev.transcripts {
            let _ = writeln!(
                s,
                "<details><summary>{client}: {} lines</summary>\n\n```",
                lines.len()
            );
            for (at, line) in lines.iter().take(200) {
                let _ = writeln!(s, "{} {}", t(*at), shown(line));
            }
            let _ = writeln!(s, "```\n</details>\n");
        }
    }
    s
}

/// Joint joins, rejoins and bulk transfers, when a run had any: every session in order
/// (a rejoined client has one row a session), and each transfer's figures.
fn sessions_section(s: &mut String, ev: &crate::runner::Evidence) {
    for batch in &ev.together {
        let joins: Vec<&crate::runner::JoinRecord> = ev
            .joins
            .iter()
            .filter(|j| batch.contains(&j.client))
            .collect();
        let first = joins.iter().map(|j| j.at).min().unwrap_or_default();
        let last = joins.iter().map(|j| j.at).max().unwrap_or_default();
        let placed = joins.iter().map(|j| j.settled).max().unwrap_or_default();
        let _ = writeln!(
            s,
            "\n{} clients joined together: all started within {:.0} ms of the first, every \
             server socket there {:.0} ms after it; whose socket is whose told by a roll call \
             (one line each, of a length no other's has, counted by `tcpi_bytes_received`).",
            batch.len(),
            last.saturating_sub(first).as_secs_f64() * 1e3,
            placed.saturating_sub(first).as_secs_f64() * 1e3,
        );
    }
    if !ev.rejoins.is_empty() {
        let _ = writeln!(
            s,
            "\n## Sessions\n\n| client | started | outcome | its server socket closed |\n|---|---|---|---|"
        );
        for j in &ev.joins {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                j.client,
                t(j.at).trim(),
                j.outcome,
                j.socket_closed
                    .map_or("-".into(), |c| t(c).trim().to_string())
            );
        }
    }
    if !ev.bulks.is_empty() {
        let _ = writeln!(s, "\n## Bulk transfers\n");
        for b in &ev.bulks {
            let _ = writeln!(s, "- {}", crate::runner::expect::bulk_figures(b));
        }
        let others: Vec<String> = ev
            .bulk_lines_received
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "\nBulk lines printed by each client (left out of its chat transcript): {}",
            others.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_chat_line_is_shown_shortened_with_its_size() {
        assert_eq!(shown("short"), "short");
        let huge = "y".repeat(400_000);
        let s = shown(&huge);
        assert!(s.len() < 200 && s.ends_with("… (400000 bytes)"), "{s}");
    }
}

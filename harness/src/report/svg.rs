//! An SVG timeline: one lane a server with its established sessions over time (kernel
//! samples) on an integer axis, shaded link-fault windows, vertical marks for kills, hangs,
//! revivals, health changes and faults, and ticks for sessions the other side closed.
//! Labels are laid out in rows so that no two overlap.

use std::fmt::Write;

use crate::runner::{Evidence, Mark};
use crate::scenario::{server_name, ServerAction};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 60.0;
const LANE: f64 = 70.0;
const TOP: f64 = 30.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Rough width of `text` at the timeline's 11 px font.
fn text_width(text: &str) -> f64 {
    6.2 * text.chars().count() as f64 + 4.0
}

/// The row (0 = top) of each label, given its start and width in drawing order: the
/// first row where it does not overlap the labels already placed there.
fn label_rows(labels: &[(f64, f64)]) -> Vec<usize> {
    let mut row_ends: Vec<f64> = Vec::new();
    labels
        .iter()
        .map(|&(x, w)| {
            let row = row_ends
                .iter()
                .position(|&end| end <= x)
                .unwrap_or_else(|| {
                    row_ends.push(f64::NEG_INFINITY);
                    row_ends.len() - 1
                });
            row_ends[row] = x + w;
            row
        })
        .collect()
}

/// Round tick spacing (1, 2 or 5 times a power of ten) giving at most `most` ticks over
/// `span`.
fn tick_step(span: f64, most: usize) -> f64 {
    let raw = (span / most as f64).max(1e-9);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

/// A mark's short label: the fault's host and what (the event says "X on HOST (...)").
fn mark_label(mark: Mark, text: &str) -> String {
    match mark {
        Mark::Server(_, ServerAction::Kill) => "kill".into(),
        Mark::Server(_, ServerAction::Stop) => "stop".into(),
        Mark::Server(_, ServerAction::Cont) => "cont".into(),
        Mark::Server(_, ServerAction::Restart) => "restart".into(),
        Mark::Down(_) => "down".into(),
        Mark::Up(_) => "up".into(),
        Mark::Fault => {
            let short: String = text.chars().take(40).collect();
            if short.len() < text.len() {
                format!("{short}…")
            } else {
                short
            }
        }
    }
}

/// The counts with one-sample peaks flattened: a count above both its neighbours that
/// falls back at once is a connection that lived less than a sample (a health check),
/// not a session.
fn without_blips(counts: &[usize]) -> Vec<usize> {
    let mut out = counts.to_vec();
    for k in 1..counts.len().saturating_sub(1) {
        let (before, here, after) = (counts[k - 1], counts[k], counts[k + 1]);
        if here > before && here > after {
            out[k] = before.max(after);
        }
    }
    out
}

/// Renders the timeline of a run.
pub fn render(ev: &Evidence) -> String {
    let servers = ev.servers.max(1);
    let end = ev
        .samples
        .last()
        .map(|s| s.at)
        .into_iter()
        .chain(ev.events.last().map(|e| e.at))
        .max()
        .unwrap_or_default()
        .as_secs_f64()
        .max(0.001);
    let x = |secs: f64| LEFT + (WIDTH - LEFT - 20.0) * secs / end;
    let max_count = ev
        .samples
        .iter()
        .flat_map(|s| s.per_server.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    // Labels of the marks, in rows above the lanes.
    let marks: Vec<(&crate::runner::evidence::Event, Mark, String)> = ev
        .events
        .iter()
        .filter_map(|e| e.mark.map(|m| (e, m, mark_label(m, &e.text))))
        .collect();
    let rows = label_rows(
        &marks
            .iter()
            .map(|(e, _, label)| (x(e.at.as_secs_f64()), text_width(label)))
            .collect::<Vec<_>>(),
    );
    let label_rows_n = rows.iter().max().map_or(0, |r| r + 1);
    let top = TOP + 13.0 * label_rows_n as f64;
    let lanes_bottom = top + LANE * servers as f64;
    let height = lanes_bottom + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<title>{} / {}: established sessions per server over time</title>"#,
        esc(&ev.scenario),
        ev.balancer
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="16" font-size="13">{} — {} (sessions per server; time in s)</text>"#,
        esc(&ev.scenario),
        ev.balancer
    );
    for w in &ev.fault_windows {
        let from = x(w.from.as_secs_f64());
        let until = x(w.until.map_or(end, |u| u.as_secs_f64()));
        let _ = writeln!(
            s,
            r##"<rect class="fault-window" x="{from:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#999" fill-opacity="0.15"><title>{}: {}</title></rect>"##,
            (until - from).max(1.0),
            lanes_bottom - top,
            esc(&w.host),
            esc(&w.what)
        );
    }
    let colours = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
    ];
    let count_step = tick_step(max_count as f64, 3).max(1.0) as usize;
    for i in 0..servers {
        let base = top + LANE * (i as f64 + 1.0) - 10.0;
        let y_of = |count: f64| base - (LANE - 20.0) * count / max_count as f64;
        let _ = writeln!(
            s,
            r##"<text x="8" y="{:.1}">{}</text><line x1="{LEFT}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}" stroke="#ccc"/>"##,
            base - 20.0,
            server_name(i),
            WIDTH - 20.0
        );
        // The lane's own axis: whole numbers of sessions.
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{LEFT}" y2="{base:.1}" stroke="#999"/>"##,
            y_of(max_count as f64)
        );
        for n in (0..=max_count).step_by(count_step) {
            let y = y_of(n as f64);
            let _ = writeln!(
                s,
                r##"<text class="y-tick" x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{n}</text><line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#999"/>"##,
                LEFT - 5.0,
                y + 4.0,
                LEFT - 3.0
            );
        }
        let mut points = String::new();
        let mut prev: Option<f64> = None;
        let last = ev.samples.len().saturating_sub(1);
        let counts = without_blips(
            &ev.samples
                .iter()
                .map(|sample| sample.per_server.get(i).copied().unwrap_or(0))
                .collect::<Vec<_>>(),
        );
        for (k, sample) in ev.samples.iter().enumerate() {
            let count = counts[k] as f64;
            let y = y_of(count);
            let px = x(sample.at.as_secs_f64());
            // A step line: a point where the count changes, and one at the end.
            if prev == Some(y) && k != last {
                continue;
            }
            if let Some(py) = prev {
                let _ = write!(points, "{px:.1},{py:.1} ");
            }
            let _ = write!(points, "{px:.1},{y:.1} ");
            prev = Some(y);
        }
        if !points.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                colours[i % colours.len()],
                points.trim_end()
            );
        }
    }
    for ((e, mark, label), row) in marks.iter().zip(&rows) {
        let (colour, dash, lane) = match *mark {
            Mark::Server(i, ServerAction::Kill) => ("#d62728", "", Some(i)),
            Mark::Server(i, ServerAction::Stop) => ("#ff9800", "", Some(i)),
            Mark::Server(i, ServerAction::Cont) => ("#2ca02c", "", Some(i)),
            Mark::Server(i, ServerAction::Restart) => ("#2ca02c", "", Some(i)),
            Mark::Down(i) => ("#d62728", "4,3", Some(i)),
            Mark::Up(i) => ("#2ca02c", "4,3", Some(i)),
            Mark::Fault => ("#777", "2,2", None),
        };
        let px = x(e.at.as_secs_f64());
        let (y1, y2) = match lane {
            Some(i) => (top + LANE * i as f64, top + LANE * (i as f64 + 1.0) - 10.0),
            None => (top, lanes_bottom),
        };
        let _ = writeln!(
            s,
            r#"<line x1="{px:.1}" y1="{y1:.1}" x2="{px:.1}" y2="{y2:.1}" stroke="{colour}" stroke-dasharray="{dash}"><title>{}</title></line><text class="mark" x="{:.1}" y="{:.1}" fill="{colour}">{}</text>"#,
            esc(&e.text),
            px + 2.0,
            TOP + 13.0 * *row as f64 + 9.0,
            esc(label)
        );
    }
    // Sessions the other side closed, as ticks under the lanes: an idle close (after at
    // least the idle timeout of silence, where it happened) in purple and labelled
    // "idle", any other close in black.
    let idle = ev.settings.idle_timeout;
    for (name, c) in ev.closes.iter().filter(|(_, c)| !c.by_quit) {
        let (at, idle_close) = match crate::runner::expect::session_close(ev, name) {
            Some((at, silent, _)) => (at, silent >= idle.mul_f64(0.9)),
            None => (c.at, false),
        };
        let px = x(at.as_secs_f64());
        let (class, colour, what) = if idle_close {
            ("closed idle", "#7b3fa0", "closed by the idle timeout")
        } else {
            ("closed", "#000", "closed")
        };
        let _ = writeln!(
            s,
            r##"<line class="{class}" x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="{colour}"><title>{} {what}: {}</title></line>"##,
            lanes_bottom - 6.0,
            lanes_bottom + 2.0,
            esc(name),
            esc(&c.how)
        );
        if idle_close {
            let _ = writeln!(
                s,
                r##"<text class="idle-label" x="{:.1}" y="{:.1}" font-size="9" fill="{colour}">idle</text>"##,
                px + 2.0,
                lanes_bottom - 7.0
            );
        }
    }
    let axis_y = lanes_bottom + 5.0;
    let step = tick_step(end, 8);
    let mut k = 0.0;
    while k * step <= end + 1e-9 {
        let secs = k * step;
        let digits = if step >= 1.0 {
            0
        } else {
            (-step.log10()).ceil() as usize
        };
        let _ = writeln!(
            s,
            r#"<text class="x-tick" x="{:.1}" y="{:.1}" text-anchor="middle">{secs:.digits$}</text>"#,
            x(secs),
            axis_y + 12.0
        );
        k += 1.0;
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_at_the_same_moment_go_to_different_rows() {
        let labels = [
            (100.0, 40.0),
            (100.0, 40.0),
            (120.0, 30.0),
            (150.0, 20.0),
            (300.0, 20.0),
        ];
        let rows = label_rows(&labels);
        for i in 0..labels.len() {
            for j in 0..i {
                let (a, b) = (labels[i], labels[j]);
                let overlap = a.0 < b.0 + b.1 && b.0 < a.0 + a.1;
                assert!(
                    !(overlap && rows[i] == rows[j]),
                    "{i} and {j} overlap in row {}",
                    rows[i]
                );
            }
        }
        assert_eq!(rows, vec![0, 1, 2, 0, 0]);
    }

    #[test]
    fn a_one_sample_peak_is_flattened_and_a_lasting_rise_kept() {
        assert_eq!(without_blips(&[2, 2, 4, 2, 2]), vec![2, 2, 2, 2, 2]);
        assert_eq!(without_blips(&[2, 4, 4, 2]), vec![2, 4, 4, 2]);
        assert_eq!(without_blips(&[0, 1, 1]), vec![0, 1, 1]);
        assert_eq!(without_blips(&[3]), vec![3]);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(5.9, 8), 1.0);
        assert_eq!(tick_step(12.0, 8), 2.0);
        assert_eq!(tick_step(30.0, 8), 5.0);
        assert_eq!(tick_step(0.35, 8), 0.05);
        assert_eq!(tick_step(3.0, 3), 1.0);
    }

    #[test]
    fn a_fault_is_labelled_with_what_and_where() {
        assert_eq!(
            mark_label(Mark::Fault, "link of s1 down"),
            "link of s1 down"
        );
        assert!(mark_label(Mark::Fault, &"x".repeat(100)).ends_with('…'));
    }
}

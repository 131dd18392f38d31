//! An SVG timeline: one lane a server with its established sessions over time (kernel
//! samples), and vertical marks for kills, hangs, revivals, health changes and faults.

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

/// Renders the timeline of a run.
pub fn render(ev: &Evidence) -> String {
    let servers = ev.servers.max(1);
    let height = TOP + LANE * servers as f64 + 40.0;
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
        .max(1) as f64;
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
    let colours = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
    ];
    for i in 0..servers {
        let base = TOP + LANE * (i as f64 + 1.0) - 10.0;
        let _ = writeln!(
            s,
            r##"<text x="8" y="{:.1}">{}</text><line x1="{LEFT}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}" stroke="#ccc"/>"##,
            base - 20.0,
            server_name(i),
            WIDTH - 20.0
        );
        let mut points = String::new();
        let mut prev: Option<f64> = None;
        let last = ev.samples.len().saturating_sub(1);
        for (k, sample) in ev.samples.iter().enumerate() {
            let count = sample.per_server.get(i).copied().unwrap_or(0) as f64;
            let y = base - (LANE - 20.0) * count / max_count;
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
    for e in &ev.events {
        let Some(mark) = e.mark else { continue };
        let (colour, dash, label, lane) = match mark {
            Mark::Server(i, ServerAction::Kill) => ("#d62728", "", "kill", Some(i)),
            Mark::Server(i, ServerAction::Stop) => ("#ff9800", "", "stop", Some(i)),
            Mark::Server(i, ServerAction::Cont) => ("#2ca02c", "", "cont", Some(i)),
            Mark::Server(i, ServerAction::Restart) => ("#2ca02c", "", "restart", Some(i)),
            Mark::Down(i) => ("#d62728", "4,3", "down", Some(i)),
            Mark::Up(i) => ("#2ca02c", "4,3", "up", Some(i)),
            Mark::Fault => ("#777", "2,2", "fault", None),
        };
        let px = x(e.at.as_secs_f64());
        let (y1, y2) = match lane {
            Some(i) => (TOP + LANE * i as f64, TOP + LANE * (i as f64 + 1.0) - 10.0),
            None => (TOP, TOP + LANE * servers as f64),
        };
        let _ = writeln!(
            s,
            r#"<line x1="{px:.1}" y1="{y1:.1}" x2="{px:.1}" y2="{y2:.1}" stroke="{colour}" stroke-dasharray="{dash}"><title>{}</title></line><text x="{:.1}" y="{:.1}" fill="{colour}">{label}</text>"#,
            esc(&e.text),
            px + 2.0,
            y1 + 10.0
        );
    }
    let axis_y = TOP + LANE * servers as f64 + 5.0;
    for k in 0..=5 {
        let secs = end * k as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{secs:.1}</text>"#,
            x(secs),
            axis_y + 12.0
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

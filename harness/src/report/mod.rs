//! Reports of runs: Markdown for people, JSON for tools, an SVG timeline, an index, and
//! the deterministic text that `cargo test` snapshots.
//!
//! - [`markdown`]: one run as Markdown.
//! - [`svg`]: sessions per server over time, with kill/revive and health marks.
//! - [`snapshot`]: the deterministic part (placements, verdicts, event order).
//! - [`summary`]: the index over all runs and the terminal table.
//! - [`matrix`]: scenario x balancer, key figures side by side, where they differ.
//! - [`html`]: `index.html`, one self-contained page of every run for a browser.

pub mod html;
pub mod markdown;
pub mod matrix;
pub mod snapshot;
pub mod summary;
pub mod svg;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::runner::RunOutcome;

/// Directory of one run's report under the report root: `<file-stem>/<balancer>`.
pub fn run_dir(root: &Path, outcome: &RunOutcome) -> PathBuf {
    root.join(&outcome.evidence.file_stem)
        .join(outcome.evidence.balancer.as_str())
}

/// Writes `report.md`, `report.json` and `timeline.svg` of one run; returns the directory.
pub fn write_run(root: &Path, outcome: &RunOutcome) -> anyhow::Result<PathBuf> {
    let dir = run_dir(root, outcome);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("report.md", markdown::render(outcome))?;
    write(
        "report.json",
        serde_json::to_string_pretty(&JsonReport::new(&with_lines_shown(outcome)))
            .context("cannot serialise the report")?,
    )?;
    write("timeline.svg", svg::render(&outcome.evidence))?;
    write("snapshot.txt", snapshot::render(outcome))?;
    Ok(dir)
}

/// The outcome with every chat line shortened as the Markdown report shows it
/// ([`markdown::shown`]), so one huge line cannot make a huge JSON report.
fn with_lines_shown(outcome: &RunOutcome) -> RunOutcome {
    let mut o = outcome.clone();
    for say in &mut o.evidence.says {
        say.text = markdown::shown(&say.text);
    }
    for lines in o.evidence.transcripts.values_mut() {
        for (_, line) in lines.iter_mut() {
            *line = markdown::shown(line);
        }
    }
    o
}

/// Writes `index.md` and `index.html` over every run; returns the path of `index.md`.
pub fn write_index(root: &Path, outcomes: &[RunOutcome]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("cannot create the report directory {}", root.display()))?;
    let path = root.join("index.md");
    std::fs::write(&path, summary::index(outcomes))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let page = root.join("index.html");
    std::fs::write(&page, html::render(outcomes))
        .with_context(|| format!("cannot write {}", page.display()))?;
    Ok(path)
}

/// The JSON form of a run: the outcome plus its overall status.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    status: crate::runner::Status,
    #[serde(flatten)]
    outcome: &'a RunOutcome,
}

impl<'a> JsonReport<'a> {
    fn new(outcome: &'a RunOutcome) -> Self {
        Self {
            status: outcome.status(),
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reports_shorten_huge_chat_lines() {
        let s = crate::scenario::parse_str(
            Path::new("x.toml"),
            "name = \"x\"\npurpose = \"y\"\n[[step]]\njoin = [\"a\"]\n",
        )
        .unwrap();
        let mut ev = crate::runner::Evidence::new(&s, crate::scenario::BalancerKind::Proxy);
        let huge = "z".repeat(400_000);
        ev.says.push(crate::runner::SayRecord {
            client: "a".into(),
            text: huge.clone(),
            at: std::time::Duration::ZERO,
        });
        ev.transcripts
            .insert("a".into(), vec![(std::time::Duration::ZERO, huge)]);
        let outcome = RunOutcome {
            file: "x.toml".into(),
            purpose: s.purpose.clone(),
            verdicts: Vec::new(),
            evidence: ev,
        };
        let dir = std::env::temp_dir().join(format!("l4lb-json-{}", std::process::id()));
        let run = write_run(&dir, &outcome).unwrap();
        let json = std::fs::metadata(run.join("report.json")).unwrap().len();
        let md = std::fs::metadata(run.join("report.md")).unwrap().len();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            json < 20_000 && md < 20_000,
            "json {json} B, markdown {md} B"
        );
    }
}

//! The scenario suite: one test per `scenarios/*.toml` (a new file needs no code), run
//! against each of its balancers on a fresh topology, and one test per negative fixture
//! in `tests/bad-scenarios/` (its error message is snapshotted).
//!
//! A scenario test fails if any expectation fails, and if the deterministic part of its
//! report (placements, event order, verdicts) differs from `tests/snapshots/`.
//! Scenarios marked `slow = true` are listed as ignored (run them with `-- --ignored`).
//! Root is required (`sudo -E cargo test`); `L4LB_SKIP_ROOT_TESTS=1` skips them out loud.
//! Reports of these runs go to `target/l4lb-report-test/`.

use std::path::{Path, PathBuf};

use l4lb_harness::report;
use l4lb_harness::runner::{self, RunOptions, Status};
use l4lb_harness::scenario;
use libtest_mimic::{Arguments, Failed, Trial};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path relative to the workspace, for stable messages and snapshot names.
fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(root()).unwrap_or(path).to_path_buf()
}

fn snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(root().join("tests/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

fn scenario_trial(path: PathBuf) -> Trial {
    let rel = relative(&path);
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let loaded = scenario::load(&rel);
    let (ignored, note) = match &loaded {
        Ok(s) if s.slow => (true, Some("slow: outside the fast suite, run with `-- --ignored` or `l4lb run --include-slow`".to_string())),
        _ => (false, None),
    };
    if let Some(note) = &note {
        eprintln!("scenario {stem} is ignored: {note}");
    }
    Trial::test(stem.clone(), move || {
        let scenario = loaded.map_err(|e| Failed::from(e.to_string()))?;
        if !l4lb_harness::privilege::root_or_skip(&format!("scenario {stem}")) {
            return Ok(());
        }
        let opts = RunOptions {
            l4lb: PathBuf::from(env!("CARGO_BIN_EXE_l4lb")),
            pcap: None,
            seed: runner::DEFAULT_SEED,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
        let mut text = String::new();
        let mut failed = Vec::new();
        for b in &scenario.balancers {
            let outcome = rt.block_on(runner::run_one(&scenario, *b, &opts));
            let dir = report::write_run(&root().join("target/l4lb-report-test"), &outcome)
                .map_err(|e| Failed::from(format!("{e:#}")))?;
            text += &report::snapshot::render(&outcome);
            text += "\n";
            if outcome.status() == Status::Fail {
                failed.push(format!("{b} (report: {})", dir.join("report.md").display()));
            }
        }
        snapshot_settings().bind(|| insta::assert_snapshot!(stem.clone(), text));
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("expectations failed against: {}\n{text}", failed.join(", ")).into())
        }
    })
    .with_kind("scenario")
    .with_ignored_flag(ignored)
}

fn bad_trial(path: PathBuf) -> Trial {
    let rel = relative(&path);
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    Trial::test(format!("bad-{stem}"), move || match scenario::load(&rel) {
        Ok(_) => Err(format!(
            "{} was accepted, but it is a negative fixture",
            rel.display()
        )
        .into()),
        Err(e) => {
            let text = e.to_string();
            snapshot_settings().bind(|| insta::assert_snapshot!(format!("bad-{stem}"), text));
            Ok(())
        }
    })
    .with_kind("check")
}

fn main() {
    let args = Arguments::from_args();
    let list = |dir: &str| {
        scenario::discover(&[root().join(dir)]).unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
    };
    let mut trials: Vec<Trial> = list("scenarios").into_iter().map(scenario_trial).collect();
    trials.extend(list("tests/bad-scenarios").into_iter().map(bad_trial));
    libtest_mimic::run(&args, trials).exit();
}

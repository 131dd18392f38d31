//! `l4lb check`: validates scenario files without building anything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::scenario;

/// Arguments of `l4lb check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Scenario files, or directories whose `*.toml` files are checked.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `l4lb check`: prints one line a valid file and every error of an invalid one.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let files = scenario::discover(&args.paths).context("cannot list the scenario files")?;
    if files.is_empty() {
        anyhow::bail!("no scenario file (*.toml) found in the paths given");
    }
    let mut bad = 0;
    for file in &files {
        match scenario::load(file) {
            Ok(s) => println!(
                "ok   {}: \"{}\", {} steps, {} expectations, balancers: {}{}",
                file.display(),
                s.name,
                s.steps.len(),
                s.expectations.len(),
                s.balancers
                    .iter()
                    .map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if s.slow { " (slow)" } else { "" }
            ),
            Err(errors) => {
                bad += 1;
                eprintln!("{errors}\n");
            }
        }
    }
    println!(
        "{} of {} scenario files valid",
        files.len() - bad,
        files.len()
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

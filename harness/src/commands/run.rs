//! `l4lb run`: every scenario file given or found, against each of its balancers, each
//! run in its own topology, in parallel up to `-j`; reports and a final table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::report;
use crate::runner::{self, RunOptions, RunOutcome, Status};
use crate::scenario::{self, BalancerKind, Scenario};

/// Arguments of `l4lb run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files, or directories whose `*.toml` files are run.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Runs at the same time (default: number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Where reports go.
    #[arg(long, value_name = "DIR", default_value = "target/l4lb-report")]
    pub report_dir: PathBuf,
    /// Only these balancers (comma-separated or repeated; default: each scenario's own
    /// list). A peer (haproxy, nginx, nat) runs every scenario that does not list its
    /// balancers; `own` runs those with an `[own_balancer]` table.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub balancer: Vec<BalancerArg>,
    /// Capture the balancer namespace's traffic to `capture.pcap` in each report.
    #[arg(long)]
    pub pcap: bool,
    /// Also run scenarios marked `slow = true`.
    #[arg(long)]
    pub include_slow: bool,
    /// Seed of the impaired links' randomness (loss, jitter, ...): the same seed
    /// reproduces the same pattern. Every report names the seed it ran with.
    #[arg(long, value_name = "N", default_value_t = runner::DEFAULT_SEED)]
    pub seed: u64,
}

/// `--balancer` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BalancerArg {
    /// The raw-socket NAT balancer.
    Raw,
    /// The proxy balancer.
    Proxy,
    /// HAProxy, `mode tcp`, active checks.
    Haproxy,
    /// nginx `stream`, passive checks only.
    Nginx,
    /// Kernel NAT (iptables DNAT round robin), no checks.
    Nat,
    /// The scenario's `[own_balancer]` program.
    Own,
}

impl From<BalancerArg> for BalancerKind {
    fn from(b: BalancerArg) -> Self {
        match b {
            BalancerArg::Raw => BalancerKind::Raw,
            BalancerArg::Proxy => BalancerKind::Proxy,
            BalancerArg::Haproxy => BalancerKind::Haproxy,
            BalancerArg::Nginx => BalancerKind::Nginx,
            BalancerArg::Nat => BalancerKind::Nat,
            BalancerArg::Own => BalancerKind::Own,
        }
    }
}

/// The balancers `scenario` runs against when `asked` (empty: its own list).
pub fn balancers_for(scenario: &Scenario, asked: &[BalancerKind]) -> Vec<BalancerKind> {
    if asked.is_empty() {
        return scenario.balancers.clone();
    }
    BalancerKind::EVERY
        .into_iter()
        .filter(|b| asked.contains(b))
        .filter(|b| {
            scenario.balancers.contains(b)
                || match b {
                    BalancerKind::Own => scenario.own_balancer.is_some(),
                    b => !b.is_ours() && !scenario.balancers_listed,
                }
        })
        .collect()
}

/// Loads every file; all errors are printed before anything runs.
pub fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Scenario>> {
    let files = scenario::discover(paths).context("cannot list the scenario files")?;
    if files.is_empty() {
        anyhow::bail!("no scenario file (*.toml) found in the paths given");
    }
    let mut scenarios = Vec::new();
    let mut bad = 0;
    for f in files {
        match scenario::load(&f) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("{e}\n");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        anyhow::bail!(
            "{bad} scenario file(s) are invalid; nothing was run (see above, or `l4lb check`)"
        );
    }
    Ok(scenarios)
}

/// Runs `l4lb run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenarios = load_all(&args.paths)?;
    if !crate::privilege::is_root() {
        anyhow::bail!("`l4lb run` builds network namespaces and needs root: run it with sudo");
    }
    let mut jobs: Vec<(Arc<Scenario>, BalancerKind)> = Vec::new();
    for s in scenarios {
        if s.slow && !args.include_slow {
            println!(
                "skipping {} (slow; add --include-slow to run it)",
                s.file.display()
            );
            continue;
        }
        let s = Arc::new(s);
        let asked: Vec<BalancerKind> = args.balancer.iter().map(|b| (*b).into()).collect();
        for b in balancers_for(&s, &asked) {
            jobs.push((s.clone(), b));
        }
    }
    if jobs.is_empty() {
        anyhow::bail!("nothing to run with these filters");
    }
    let parallel = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let l4lb = std::env::current_exe().context("cannot find the l4lb binary itself")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(parallel.clamp(2, 8))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(run_jobs(jobs, parallel, l4lb, &args))?;
    let index = report::write_index(&args.report_dir, &outcomes)?;
    println!("\n{}", report::summary::table(&outcomes));
    println!(
        "reports: {} (in a browser: {})",
        index.display(),
        index.with_extension("html").display()
    );
    let failed = outcomes
        .iter()
        .filter(|o| o.status() == Status::Fail)
        .count();
    if failed > 0 {
        println!("{failed} run(s) failed");
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

async fn run_jobs(
    jobs: Vec<(Arc<Scenario>, BalancerKind)>,
    parallel: usize,
    l4lb: PathBuf,
    args: &RunArgs,
) -> anyhow::Result<Vec<RunOutcome>> {
    let _signals = crate::cleanup::install_signal_teardown()?;
    let multi = MultiProgress::new();
    let total = multi.add(ProgressBar::new(jobs.len() as u64));
    total.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs · {elapsed} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut handles = Vec::new();
    for (i, (s, b)) in jobs.into_iter().enumerate() {
        let (semaphore, multi, total) = (semaphore.clone(), multi.clone(), total.clone());
        let report_dir = args.report_dir.clone();
        let opts = RunOptions {
            l4lb: l4lb.clone(),
            pcap: args.pcap.then(|| {
                report_dir
                    .join(s.file_stem())
                    .join(b.as_str())
                    .join("capture.pcap")
            }),
            seed: args.seed,
        };
        handles.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let bar = multi.insert_before(&total, ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message(format!("{} / {b}", s.file_stem()));
            let outcome = runner::run_one(&s, b, &opts).await;
            let written = report::write_run(&report_dir, &outcome);
            bar.finish_and_clear();
            total.inc(1);
            total.set_message(format!(
                "last: {} / {b} {}",
                s.file_stem(),
                outcome.status().label()
            ));
            (i, outcome, written)
        }));
    }
    let mut outcomes = Vec::new();
    for h in handles {
        let (i, outcome, written) = h.await.context("a run panicked")?;
        if let Err(e) = written {
            eprintln!("l4lb: {e:#}");
        }
        outcomes.push((i, outcome));
    }
    total.finish_and_clear();
    outcomes.sort_by_key(|(i, _)| *i);
    Ok(outcomes.into_iter().map(|(_, o)| o).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(balancers: &str, own: bool) -> Scenario {
        let own = if own {
            "[own_balancer]\ncommand = \"exec my-lb {port} {backends}\"\n"
        } else {
            ""
        };
        crate::scenario::parse_str(
            std::path::Path::new("t.toml"),
            &format!("name = \"t\"\npurpose = \"p\"\n{balancers}\n{own}[[step]]\njoin = [\"a\"]\n"),
        )
        .unwrap()
    }

    #[test]
    fn peers_run_every_scenario_that_does_not_list_its_balancers() {
        use BalancerKind::*;
        let plain = scenario("", false);
        assert_eq!(balancers_for(&plain, &[]), vec![Raw, Proxy]);
        assert_eq!(balancers_for(&plain, &[Nat, Haproxy]), vec![Haproxy, Nat]);
        assert_eq!(balancers_for(&plain, &[Proxy, Nginx]), vec![Proxy, Nginx]);
        // No `[own_balancer]`: nothing to start.
        assert!(balancers_for(&plain, &[Own]).is_empty());
        let listed = scenario(
            "balancers = [\"proxy\"]\nbalancers_why = \"least connections\"",
            false,
        );
        assert!(balancers_for(&listed, &[Haproxy]).is_empty());
        assert_eq!(balancers_for(&listed, &[Proxy]), vec![Proxy]);
        let own = scenario("", true);
        assert_eq!(balancers_for(&own, &[Own, Raw]), vec![Raw, Own]);
    }

    #[test]
    fn an_unknown_balancer_is_refused_with_the_list() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let e = <Cli as clap::Parser>::try_parse_from(["l4lb", "x.toml", "--balancer", "envoy"])
            .err()
            .expect("envoy is refused");
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(text.contains("haproxy") && text.contains("own"), "{text}");
        let ok = <Cli as clap::Parser>::try_parse_from(["l4lb", "x.toml", "--balancer", "nat,raw"])
            .expect("a list");
        assert_eq!(ok.run.balancer.len(), 2);
    }
}

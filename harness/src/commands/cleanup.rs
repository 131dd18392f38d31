//! `l4lb cleanup [--all] [--here]`: remove what crashed runs left behind.
//!
//! Without `--all`, only `l4lb-<pid>-*` namespaces whose pid is gone are removed, so it
//! is safe while other runs are live. With `--all`, every `l4lb-` namespace goes. In the
//! `l4lb-` namespaces that stay, the iptables rules of `l4lb raw` balancers that are gone
//! (killed with SIGKILL, say) are removed; `--here` does the same in the namespace
//! `l4lb cleanup` runs in (e.g. `ip netns exec NS l4lb cleanup --here`, or on the host).

use std::process::ExitCode;

use crate::cleanup::{project_namespaces, sweep, SweepScope};
use crate::firewall::remove_stale_rules;
use crate::netns::Namespace;

/// Arguments of `l4lb cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Also remove namespaces of runs that are still alive.
    #[arg(long)]
    all: bool,
    /// Also remove dead `l4lb raw` balancers' iptables rules in the current namespace.
    #[arg(long)]
    here: bool,
}

/// Runs `l4lb cleanup`.
pub fn cleanup(args: CleanupArgs) -> anyhow::Result<ExitCode> {
    let scope = if args.all {
        SweepScope::All
    } else {
        SweepScope::DeadRuns
    };
    let removed = sweep(scope)?;
    let mut rules = Vec::new();
    if args.here {
        rules.extend(remove_stale_rules(None)?.into_iter().map(|r| (None, r)));
    }
    for (name, _, _) in project_namespaces()? {
        let ns = Namespace::named(&name);
        // A namespace whose rules cannot be read is reported, not fatal: others go on.
        match remove_stale_rules(Some(&ns)) {
            Ok(list) => rules.extend(list.into_iter().map(|r| (Some(name.clone()), r))),
            Err(e) => eprintln!("l4lb: {name}: {e:#}"),
        }
    }
    if removed.is_empty() && rules.is_empty() {
        println!("nothing to clean up");
    }
    for (ns, rule) in rules {
        match ns {
            Some(ns) => println!("removed rule {rule} in {ns}"),
            None => println!("removed rule {rule}"),
        }
    }
    for r in removed {
        if r.killed.is_empty() {
            println!("removed {}", r.name);
        } else {
            let pids: Vec<String> = r.killed.iter().map(u32::to_string).collect();
            println!("removed {} (killed pids {})", r.name, pids.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

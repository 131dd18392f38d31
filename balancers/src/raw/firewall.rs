//! The iptables rules the balancer relies on, in its own namespace.
//!
//! The kernel has no socket on port 20000 nor on the NAT ports, so it answers every
//! segment the balancer handles with a RST; `-p tcp --tcp-flags RST RST -j DROP` in OUTPUT
//! silences it. That rule would also drop the RSTs the balancer forwards (sendto fails
//! with EPERM), so the balancer marks its socket with [`MARK`] and inserts an ACCEPT for
//! that mark before it; forwarded RSTs pass, the kernel's own stay dropped.
//!
//! Every rule added here is tagged with its [`Owner`] (`-m comment --comment "l4lb raw
//! pid=1234 port=20000"`). A balancer killed with SIGKILL cannot remove its rules, so each
//! start first removes the rules of owners that are no longer live `l4lb` processes
//! ([`remove_stale`]); a restart therefore never stacks a second copy, and `l4lb cleanup`
//! removes them the same way.

use std::process::Command;

use anyhow::{bail, Context};

pub use l4lb_contract::firewall::MARK;
use l4lb_contract::firewall::{
    has_rst_drop, owner_alive, rst_drop_command, stale_rules, Owner, RST_DROP_ARGS,
};

fn mark_accept_args() -> Vec<String> {
    vec![
        "-m".into(),
        "mark".into(),
        "--mark".into(),
        format!("{MARK:#x}"),
        "-j".into(),
        "ACCEPT".into(),
    ]
}

fn iptables(args: &[String]) -> anyhow::Result<std::process::Output> {
    Command::new("iptables")
        .args(args)
        .output()
        .context("running iptables (is it installed and on PATH?)")
}

fn run_ok(args: &[String]) -> anyhow::Result<()> {
    let out = iptables(args)?;
    if !out.status.success() {
        bail!(
            "`iptables {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

/// Rules this process added; removed again by [`Installed::remove`] (also on drop).
#[derive(Debug)]
pub struct Installed {
    /// Whose tag the rules carry.
    owner: Owner,
    /// (table, chain, rule spec with the owner tag).
    rules: Vec<(String, String, Vec<String>)>,
}

impl Installed {
    fn new(owner: Owner) -> Self {
        Self {
            owner,
            rules: Vec::new(),
        }
    }

    /// Adds `-t table -A|-I chain [position] spec + owner tag` and remembers it.
    fn add(
        &mut self,
        table: &str,
        chain: &str,
        insert_first: bool,
        spec: &[String],
    ) -> anyhow::Result<()> {
        let mut rule = spec.to_vec();
        // The tag goes before the target (`-j ...`), where iptables-save prints it.
        let target = rule.iter().position(|w| w == "-j").unwrap_or(rule.len());
        rule.splice(target..target, self.owner.comment_args());
        let mut args = vec!["-t".to_string(), table.to_string()];
        if insert_first {
            args.extend(strings(&["-I", chain, "1"]));
        } else {
            args.extend(strings(&["-A", chain]));
        }
        args.extend(rule.clone());
        run_ok(&args)?;
        self.rules.push((table.into(), chain.into(), rule));
        Ok(())
    }

    /// Removes every rule this process added, collecting errors and going on.
    pub fn remove(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        while let Some((table, chain, rule)) = self.rules.pop() {
            let mut args = vec!["-t".to_string(), table, "-D".to_string(), chain];
            args.extend(rule);
            if let Err(e) = run_ok(&args) {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("removing firewall rules: {}", errors.join("; "))
        }
    }

    /// Descriptions of what is installed (logs).
    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|(t, c, r)| format!("-t {t} {c} {}", r.join(" ")))
            .collect()
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(error = %e, "could not remove every firewall rule");
        }
    }
}

/// Removes every tagged rule (all tables) whose owner is not a live `l4lb` process, so a
/// balancer killed without teardown leaves nothing behind once one starts again. Returns
/// how many were removed; errors are collected and reported together.
pub fn remove_stale() -> anyhow::Result<usize> {
    let save = Command::new("iptables-save")
        .output()
        .context("running iptables-save (is it installed and on PATH?)")?;
    if !save.status.success() {
        bail!(
            "`iptables-save` failed: {}",
            String::from_utf8_lossy(&save.stderr).trim()
        );
    }
    let stale = stale_rules(
        &String::from_utf8_lossy(&save.stdout),
        std::process::id(),
        owner_alive,
    );
    let mut errors = Vec::new();
    for rule in &stale {
        match run_ok(&rule.delete_args()) {
            Ok(()) => tracing::info!(
                table = %rule.table,
                chain = %rule.chain,
                owner = %rule.owner.comment(),
                "removed a firewall rule left by a balancer that is gone"
            ),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(stale.len())
    } else {
        bail!("removing stale firewall rules: {}", errors.join("; "))
    }
}

/// Removes stale rules ([`remove_stale`]), checks for the RST-drop rule (adds it when
/// `install` is set) and makes the balancer's marked packets pass before it. The rules
/// added are tagged as this process's, balancing `port`.
pub fn prepare(install: bool, port: u16) -> anyhow::Result<Installed> {
    let mut installed = Installed::new(Owner {
        pid: std::process::id(),
        port,
    });
    if let Err(error) = remove_stale() {
        tracing::warn!(error = %format!("{error:#}"), "could not remove stale firewall rules");
    }
    let listing = iptables(&strings(&["-S", "OUTPUT"]))?;
    if !listing.status.success() {
        bail!(
            "`iptables -S OUTPUT` failed: {}",
            String::from_utf8_lossy(&listing.stderr).trim()
        );
    }
    if !has_rst_drop(&String::from_utf8_lossy(&listing.stdout)) {
        if !install {
            bail!(
                "the kernel's RSTs for the balanced ports are not dropped in this namespace, \
                 so every connection would be reset; run `{}` first, or pass \
                 --install-rst-drop to have l4lb add it and remove it on exit",
                rst_drop_command()
            );
        }
        installed.add("filter", "OUTPUT", false, &strings(RST_DROP_ARGS))?;
    }
    // A person's own (untagged) exemption is used as it is; otherwise this process adds
    // its own, so another balancer's exit cannot take it away.
    let accept = mark_accept_args();
    let mut check = strings(&["-C", "OUTPUT"]);
    check.extend(accept.clone());
    if !iptables(&check)?.status.success() {
        installed.add("filter", "OUTPUT", true, &accept)?;
    }
    Ok(installed)
}

/// The `raw`-table PREROUTING rules that keep segments for our ports away from the
/// kernel's own TCP stack (an AF_PACKET capture has already taken its copy).
pub fn prerouting_drop_rules(listen: u16, nat: &std::ops::RangeInclusive<u16>) -> Vec<Vec<String>> {
    [listen.to_string(), format!("{}:{}", nat.start(), nat.end())]
        .into_iter()
        .map(|ports| {
            let mut r = strings(&[
                "-p",
                "tcp",
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "--dport",
            ]);
            r.push(ports);
            r.extend(strings(&["-j", "DROP"]));
            r
        })
        .collect()
}

/// Adds the PREROUTING drops of [`prerouting_drop_rules`] to `installed`.
pub fn add_prerouting_drop(
    installed: &mut Installed,
    listen: u16,
    nat: &std::ops::RangeInclusive<u16>,
) -> anyhow::Result<()> {
    for rule in prerouting_drop_rules(listen, nat) {
        installed.add("raw", "PREROUTING", false, &rule)?;
    }
    Ok(())
}

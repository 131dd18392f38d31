//! The iptables rules the balancer relies on, in its own namespace.
//!
//! The kernel has no socket on port 20000 nor on the NAT ports, so it answers every
//! segment the balancer handles with a RST; `-p tcp --tcp-flags RST RST -j DROP` in OUTPUT
//! silences it. That rule would also drop the RSTs the balancer forwards (sendto fails
//! with EPERM), so the balancer marks its socket with [`MARK`] and inserts an ACCEPT for
//! that mark before it; forwarded RSTs pass, the kernel's own stay dropped.

use std::process::Command;

use anyhow::{bail, Context};

pub use l4lb_contract::firewall::MARK;
use l4lb_contract::firewall::{has_rst_drop, rst_drop_command, RST_DROP_ARGS};

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
#[derive(Debug, Default)]
pub struct Installed {
    /// (table, chain, rule spec).
    rules: Vec<(String, String, Vec<String>)>,
}

impl Installed {
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

/// Checks for the RST-drop rule (adds it when `install` is set) and makes the balancer's
/// marked packets pass before it.
pub fn prepare(install: bool) -> anyhow::Result<Installed> {
    let mut installed = Installed::default();
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
        let mut args = strings(&["-A", "OUTPUT"]);
        args.extend(strings(RST_DROP_ARGS));
        run_ok(&args)?;
        installed
            .rules
            .push(("filter".into(), "OUTPUT".into(), strings(RST_DROP_ARGS)));
    }
    let accept = mark_accept_args();
    let mut check = strings(&["-C", "OUTPUT"]);
    check.extend(accept.clone());
    if !iptables(&check)?.status.success() {
        let mut args = strings(&["-I", "OUTPUT", "1"]);
        args.extend(accept.clone());
        run_ok(&args)?;
        installed
            .rules
            .push(("filter".into(), "OUTPUT".into(), accept));
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
        let mut args = strings(&["-t", "raw", "-A", "PREROUTING"]);
        args.extend(rule.clone());
        run_ok(&args)?;
        installed
            .rules
            .push(("raw".into(), "PREROUTING".into(), rule));
    }
    Ok(())
}

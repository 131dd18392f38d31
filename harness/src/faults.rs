//! Fault injection inside a topology: link down/up, random packet loss, rate limits,
//! and netem (delay/loss) where the kernel has it.
//!
//! Everything happens inside the run's namespaces: links through rtnetlink
//! ([`Topology::set_link`]), loss through iptables in the `lan` bridge ([`crate::firewall`]), rate limits
//! and netem through `tc` run inside the namespace.

use std::sync::OnceLock;

use anyhow::Context;

use crate::netns::Namespace;
use crate::topology::{Host, Topology};

/// Faults that cannot be applied on this machine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    /// The kernel has no netem qdisc (sch_netem not built or not loadable).
    #[error("this kernel has no netem qdisc (sch_netem is not built or cannot be loaded): drop `kernel = true` from the step to run the same netem arguments on the harness's own wire, which needs no qdisc")]
    NetemUnsupported,
    /// A rate of zero.
    #[error("a rate limit must be at least 1 kbit/s")]
    ZeroRate,
}

/// Takes a host's `eth0` down (`up = false`) or up again (waits until traffic flows).
pub async fn set_link(topo: &Topology, host: Host, up: bool) -> anyhow::Result<()> {
    topo.set_link(host, up).await
}

/// Drops `fraction` (0..=1) of the packets on `host`'s `eth0` link, both ways, on the wire:
/// in the `lan` bridge, after the sender's kernel let them go (see
/// [`crate::firewall::drop_rules`] for why never in the host's own chains).
pub async fn drop_fraction(topo: &Topology, host: Host, fraction: f64) -> anyhow::Result<()> {
    crate::firewall::drop_fraction(topo.lan(), lan_port(topo, host)?, fraction).await
}

/// Removes what [`drop_fraction`] added with the same arguments.
pub async fn remove_drop_fraction(
    topo: &Topology,
    host: Host,
    fraction: f64,
) -> anyhow::Result<()> {
    crate::firewall::remove_drop_fraction(topo.lan(), lan_port(topo, host)?, fraction).await
}

/// The bridge port in `lan` of `host`'s `eth0`.
fn lan_port(topo: &Topology, host: Host) -> anyhow::Result<&str> {
    topo.plan()
        .cable(host)
        .map(|(lan_if, _)| lan_if)
        .with_context(|| format!("{host} has no link in this topology"))
}

/// The `tc` arguments of a token-bucket rate limit on `iface`.
pub fn tbf_args(iface: &str, kbit: u32) -> Result<Vec<String>, FaultError> {
    if kbit == 0 {
        return Err(FaultError::ZeroRate);
    }
    // Burst: at least one full-size packet, or 10 ms of traffic at the rate.
    let burst = (kbit as u64 * 1000 / 8 / 100).max(1600);
    Ok([
        "qdisc",
        "replace",
        "dev",
        iface,
        "root",
        "tbf",
        "rate",
        &format!("{kbit}kbit"),
        "burst",
        &burst.to_string(),
        "latency",
        "50ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect())
}

async fn tc(ns: &Namespace, args: &[String]) -> anyhow::Result<()> {
    ns.run_tool("tc", args, "iproute2").await.map(drop)
}

/// Limits egress of `iface` in `ns` to `kbit` kbit/s (tbf as root qdisc).
pub async fn rate_limit(ns: &Namespace, iface: &str, kbit: u32) -> anyhow::Result<()> {
    tc(ns, &tbf_args(iface, kbit)?).await
}

/// Removes the root qdisc of `iface` (rate limit or netem), back to the default.
pub async fn clear_qdisc(ns: &Namespace, iface: &str) -> anyhow::Result<()> {
    let args: Vec<String> = ["qdisc", "del", "dev", iface, "root"]
        .map(String::from)
        .to_vec();
    tc(ns, &args).await
}

/// Adds netem with `params` (e.g. `["delay", "50ms"]`, `["loss", "5%"]`) on `iface`,
/// or [`FaultError::NetemUnsupported`] when the kernel lacks it.
pub async fn netem(ns: &Namespace, iface: &str, params: &[&str]) -> anyhow::Result<()> {
    if !netem_supported() {
        return Err(FaultError::NetemUnsupported.into());
    }
    let mut args: Vec<String> = ["qdisc", "replace", "dev", iface, "root", "netem"]
        .map(String::from)
        .to_vec();
    args.extend(params.iter().map(|p| p.to_string()));
    tc(ns, &args).await
}

/// Whether this kernel has the netem qdisc. Probed once per process: `tc qdisc add dev
/// lo root netem delay 1ms` in a private, unnamed namespace that vanishes with the
/// probe. Any failure (no netem, no tc, no root) reports false; never panics.
pub fn netem_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(probe_netem)
}

fn probe_netem() -> bool {
    crate::netns::private_command("tc")
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbf_arguments_carry_rate_and_a_sane_burst() {
        let args = tbf_args("eth0", 1000).unwrap().join(" ");
        assert_eq!(
            args,
            "qdisc replace dev eth0 root tbf rate 1000kbit burst 1600 latency 50ms"
        );
        let args = tbf_args("eth0", 100_000).unwrap().join(" ");
        assert!(
            args.contains("burst 125000 "),
            "100 Mbit/s for 10 ms: {args}"
        );
        assert_eq!(tbf_args("eth0", 0), Err(FaultError::ZeroRate));
    }
}

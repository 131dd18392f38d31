//! iptables rules inside a namespace (never the host's): the balancer's RST drop, and
//! random packet loss on a link (in the `lan` namespace's bridge, on the wire).
//!
//! Rules are added with the real `iptables` binary run inside the namespace
//! ([`Namespace::command`]), so what a person sees with `ip netns exec <ns> iptables -S`
//! is exactly what the harness did.

use anyhow::Context;

use crate::netns::Namespace;

pub use l4lb_contract::firewall::{has_rst_drop, RST_DROP_ARGS, RST_DROP_RULE};

/// Errors of this module's pure parts.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FirewallError {
    /// A drop fraction outside 0..=1.
    #[error("drop fraction {0} is outside 0.0..=1.0")]
    Fraction(f64),
}

/// Removes the rules of balancers that are gone (tagged with an
/// [`l4lb_contract::firewall::Owner`] whose pid is no longer a live `l4lb`) in `ns`, or in
/// this process's own namespace when `ns` is `None` (`l4lb cleanup --here`). Returns the
/// owners' comments of what it removed.
pub fn remove_stale_rules(ns: Option<&Namespace>) -> anyhow::Result<Vec<String>> {
    use l4lb_contract::firewall::{owner_alive, stale_rules};
    let command = |program: &str| match ns {
        Some(ns) => ns.std_command(program),
        None => std::process::Command::new(program),
    };
    let run = |program: &str, args: &[String]| -> anyhow::Result<String> {
        let out = command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program} (is it installed and on PATH?)"))?;
        anyhow::ensure!(
            out.status.success(),
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let save = run("iptables-save", &[])?;
    let mut removed = Vec::new();
    for rule in stale_rules(&save, std::process::id(), owner_alive) {
        run("iptables", &rule.delete_args())?;
        removed.push(format!(
            "-t {} {} ({})",
            rule.table,
            rule.chain,
            rule.owner.comment()
        ));
    }
    Ok(removed)
}

/// Runs `iptables args...` inside `ns`; returns stdout, or an error with iptables' stderr.
pub async fn iptables(ns: &Namespace, args: &[&str]) -> anyhow::Result<String> {
    ns.run_tool("iptables", args, "iptables").await
}

/// `iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP` inside `ns` (the balancer's
/// namespace: a raw-socket balancer must not let the kernel reset its connections).
pub async fn install_rst_drop(ns: &Namespace) -> anyhow::Result<()> {
    let args: Vec<&str> = ["-A", "OUTPUT"]
        .iter()
        .chain(RST_DROP_ARGS)
        .copied()
        .collect();
    iptables(ns, &args).await.map(drop)
}

/// Whether the RST-drop rule is in `ns`'s OUTPUT chain (parses `iptables -S OUTPUT`).
pub async fn rst_drop_present(ns: &Namespace) -> anyhow::Result<bool> {
    let rules = iptables(ns, &["-S", "OUTPUT"]).await?;
    Ok(has_rst_drop(&rules))
}

/// The rules (arguments after `-A`/`-D`, chain FORWARD of the `lan` namespace) that drop
/// `fraction` of the frames crossing the bridge port `port`, each way: those that came in
/// through it (sent by the host at its other end) and those about to leave through it (to
/// that host).
///
/// Loss is made on the wire, never in the host's own INPUT/OUTPUT chains: a DROP in the
/// sender's OUTPUT chain is a local send error (EPERM), not a lost packet, and TCP treats it
/// differently. Linux discards a half-open connection (SYN_RECV) outright when the
/// retransmission of its SYN-ACK cannot be sent, so a listener on that host lost every
/// client whose final ACK and then first SYN-ACK retransmission fell in the 5% (the client
/// believes it is connected; its first data gets a RST). On a real lossy link the
/// SYN-ACK is sent again after 2 s, 4 s, ... and the client gets in.
pub fn drop_rules(port: &str, fraction: f64) -> Result<[Vec<String>; 2], FirewallError> {
    if !(0.0..=1.0).contains(&fraction) || fraction.is_nan() {
        return Err(FirewallError::Fraction(fraction));
    }
    let rule = |direction: &str| -> Vec<String> {
        [
            "FORWARD",
            "-m",
            "physdev",
            direction,
            port,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &format!("{fraction:.4}"),
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    Ok([rule("--physdev-in"), rule("--physdev-out")])
}

/// br_netfilter's per-namespace switch that passes bridged IPv4 frames through iptables.
const BRIDGE_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
/// All of br_netfilter's switches: while that module is loaded (by anything on the
/// machine), a new namespace's bridges pass every frame through its iptables, ip6tables
/// and arptables hooks.
const BRIDGE_NETFILTER: [&str; 3] = [
    BRIDGE_IPTABLES,
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
    "/proc/sys/net/bridge/bridge-nf-call-arptables",
];

/// Makes `lan`'s bridges forward frames as a plain switch does, without br_netfilter's
/// hooks (a cost on every frame, for every path of the bench alike). Nothing to do when
/// br_netfilter is not loaded (the switches do not exist). [`drop_fraction`] turns the
/// IPv4 one back on.
pub async fn bridges_skip_netfilter(lan: &Namespace) -> anyhow::Result<()> {
    lan.run_async(|| {
        for switch in BRIDGE_NETFILTER {
            match std::fs::write(switch, "0") {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.map_err(|e| anyhow::anyhow!("cannot write {switch}: {e}"))?,
            }
        }
        anyhow::Ok(())
    })
    .await?
    .with_context(|| format!("cannot turn bridge netfilter off in {}", lan.name))
}

/// Makes the bridges of `lan` pass their IPv4 frames through its iptables (the
/// br_netfilter switch, per namespace), which [`drop_rules`] needs.
async fn bridge_frames_through_iptables(lan: &Namespace) -> anyhow::Result<()> {
    lan.run_async(|| std::fs::write(BRIDGE_IPTABLES, "1"))
        .await?
        .with_context(|| {
            format!(
                "cannot write {BRIDGE_IPTABLES} in {}: packet loss on a link needs br_netfilter \
                 (modprobe br_netfilter)",
                lan.name
            )
        })
}

/// Drops `fraction` (0..=1) of the frames crossing bridge port `port` in the `lan`
/// namespace, both ways (see [`drop_rules`] for why on the wire). Undo with
/// [`remove_drop_fraction`].
pub async fn drop_fraction(lan: &Namespace, port: &str, fraction: f64) -> anyhow::Result<()> {
    let rules = drop_rules(port, fraction)?;
    bridge_frames_through_iptables(lan).await?;
    for rule in &rules {
        let mut args = vec!["-A"];
        args.extend(rule.iter().map(String::as_str));
        iptables(lan, &args).await?;
    }
    Ok(())
}

/// Removes the rules [`drop_fraction`] added with the same arguments.
pub async fn remove_drop_fraction(
    lan: &Namespace,
    port: &str,
    fraction: f64,
) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for rule in &drop_rules(port, fraction)? {
        let mut args = vec!["-D"];
        args.extend(rule.iter().map(String::as_str));
        if let Err(e) = iptables(lan, &args).await {
            errors.push(e);
        }
    }
    crate::cleanup::combine_errors("removing packet-drop rules", errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_rules_match_both_directions_of_the_port_and_the_probability() {
        let [from_host, to_host] = drop_rules("p-lb", 0.25).unwrap();
        assert_eq!(
            from_host.join(" "),
            "FORWARD -m physdev --physdev-in p-lb -m statistic --mode random \
             --probability 0.2500 -j DROP"
        );
        assert!(
            to_host
                .join(" ")
                .starts_with("FORWARD -m physdev --physdev-out p-lb "),
            "{to_host:?}"
        );
        assert!(
            !from_host
                .iter()
                .chain(&to_host)
                .any(|w| w == "INPUT" || w == "OUTPUT"),
            "loss must never be a local send error of the host"
        );
        assert_eq!(drop_rules("p-lb", 1.5), Err(FirewallError::Fraction(1.5)));
        assert!(drop_rules("p-lb", f64::NAN).is_err());
    }
}

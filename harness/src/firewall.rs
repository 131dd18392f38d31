//! iptables rules inside a namespace (never the host's): the balancer's RST drop, and
//! random packet loss on an interface.
//!
//! Rules are added with the real `iptables` binary run inside the namespace
//! ([`Namespace::command`]), so what a person sees with `ip netns exec <ns> iptables -S`
//! is exactly what the harness did.

use anyhow::{bail, Context};

use crate::netns::Namespace;

/// The RST-drop rule of the original project, as `iptables` arguments after the chain
/// (`iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP`). The one place it is spelled.
pub const RST_DROP_ARGS: &[&str] = &["-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"];

/// The RST-drop rule as `iptables -S OUTPUT` prints it.
pub const RST_DROP_RULE: &str = "-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -j DROP";

/// Errors of this module's pure parts.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FirewallError {
    /// A drop fraction outside 0..=1.
    #[error("drop fraction {0} is outside 0.0..=1.0")]
    Fraction(f64),
}

/// Runs `iptables args...` inside `ns`; returns stdout, or an error with iptables' stderr.
pub async fn iptables(ns: &Namespace, args: &[&str]) -> anyhow::Result<String> {
    let out = ns
        .command("iptables")
        .args(args)
        .output()
        .await
        .context("cannot run iptables (install it: apt-get install iptables)")?;
    if !out.status.success() {
        bail!(
            "`iptables {}` in {} failed: {}",
            args.join(" "),
            ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

/// Whether `iptables -S` output contains the RST-drop rule.
pub fn has_rst_drop(rules: &str) -> bool {
    rules.lines().any(is_rst_drop)
}

fn is_rst_drop(rule: &str) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let has = |pair: &[&str]| words.windows(pair.len()).any(|w| w == pair);
    words.first() == Some(&"-A")
        && words.get(1) == Some(&"OUTPUT")
        && has(&["-p", "tcp"])
        && has(&["--tcp-flags", "RST", "RST"])
        && has(&["-j", "DROP"])
        && !words.contains(&"!")
}

/// The rule arguments (after `-A`/`-D`) that drop `fraction` of packets on `iface`.
pub fn drop_rule(chain: &str, iface: &str, fraction: f64) -> Result<Vec<String>, FirewallError> {
    if !(0.0..=1.0).contains(&fraction) || fraction.is_nan() {
        return Err(FirewallError::Fraction(fraction));
    }
    let dir = if chain == "INPUT" { "-i" } else { "-o" };
    Ok([
        chain,
        dir,
        iface,
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
    .collect())
}

/// Drops `fraction` (0..=1) of the packets entering and leaving `iface` in `ns`
/// (iptables statistic match on INPUT and OUTPUT). Undo with [`remove_drop_fraction`].
pub async fn drop_fraction(ns: &Namespace, iface: &str, fraction: f64) -> anyhow::Result<()> {
    for chain in ["INPUT", "OUTPUT"] {
        let rule = drop_rule(chain, iface, fraction)?;
        let mut args = vec!["-A"];
        args.extend(rule.iter().map(String::as_str));
        iptables(ns, &args).await?;
    }
    Ok(())
}

/// Removes the rules [`drop_fraction`] added with the same arguments.
pub async fn remove_drop_fraction(
    ns: &Namespace,
    iface: &str,
    fraction: f64,
) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for chain in ["INPUT", "OUTPUT"] {
        let rule = drop_rule(chain, iface, fraction)?;
        let mut args = vec!["-D"];
        args.extend(rule.iter().map(String::as_str));
        if let Err(e) = iptables(ns, &args).await {
            errors.push(e);
        }
    }
    crate::cleanup::combine_errors("removing packet-drop rules", errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rst_drop_rule_in_iptables_s_output() {
        let with = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n\
                    -A OUTPUT -p tcp -m tcp --tcp-flags RST RST -j DROP\n";
        assert!(has_rst_drop(with));
        assert!(has_rst_drop(RST_DROP_RULE));
        let without = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n";
        assert!(!has_rst_drop(without));
        assert!(!has_rst_drop(
            "-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -j ACCEPT"
        ));
        assert!(!has_rst_drop(
            "-A INPUT -p tcp -m tcp --tcp-flags RST RST -j DROP"
        ));
        assert!(!has_rst_drop(
            "-A OUTPUT -p tcp -m tcp --tcp-flags SYN,RST RST -j DROP"
        ));
        assert!(!has_rst_drop(
            "-A OUTPUT -p tcp -m tcp ! --tcp-flags RST RST -j DROP"
        ));
    }

    #[test]
    fn drop_rule_matches_interface_direction_and_probability() {
        let rule = drop_rule("INPUT", "eth0", 0.25).unwrap().join(" ");
        assert_eq!(
            rule,
            "INPUT -i eth0 -m statistic --mode random --probability 0.2500 -j DROP"
        );
        let rule = drop_rule("OUTPUT", "eth0", 1.0).unwrap().join(" ");
        assert!(rule.starts_with("OUTPUT -o eth0 "), "{rule}");
        assert_eq!(
            drop_rule("INPUT", "eth0", 1.5),
            Err(FirewallError::Fraction(1.5))
        );
        assert!(drop_rule("INPUT", "eth0", f64::NAN).is_err());
    }
}

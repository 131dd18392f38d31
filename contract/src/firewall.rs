//! The RST-drop rule and the mark that lets the balancer's own packets pass it.
//!
//! A raw-socket balancer handles TCP in user space, so the kernel, which has no socket on
//! the balanced ports, answers every segment with a RST and kills the session. The
//! original project's remedy is one rule in the balancer host's OUTPUT chain:
//! `iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP`. The balancer marks the packets
//! it sends itself with [`MARK`] (forwarded RSTs and its refusals among them) and accepts
//! that mark before the drop.

/// SO_MARK of the balancer's own sockets ("L4" in ASCII).
pub const MARK: u32 = 0x4c34;

/// The RST-drop rule, as `iptables` arguments after the chain.
pub const RST_DROP_ARGS: &[&str] = &["-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"];

/// The RST-drop rule as `iptables -S OUTPUT` prints it.
pub const RST_DROP_RULE: &str = "-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -j DROP";

/// The command a person runs to add the RST-drop rule.
pub fn rst_drop_command() -> String {
    format!("iptables -A OUTPUT {}", RST_DROP_ARGS.join(" "))
}

/// Whether `iptables -S` output contains the RST-drop rule (in OUTPUT, for TCP, not
/// negated, target DROP).
pub fn has_rst_drop(listing: &str) -> bool {
    listing.lines().any(is_rst_drop)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rule_as_iptables_prints_it() {
        let listing = format!("-P OUTPUT ACCEPT\n{RST_DROP_RULE}\n");
        assert!(has_rst_drop(&listing));
    }

    #[test]
    fn rejects_near_misses() {
        assert!(!has_rst_drop("-P OUTPUT ACCEPT\n"));
        assert!(!has_rst_drop(
            "-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -j ACCEPT\n"
        ));
        assert!(!has_rst_drop(
            "-A OUTPUT -p udp -m udp --tcp-flags RST RST -j DROP\n"
        ));
        assert!(!has_rst_drop(
            "-A OUTPUT -p tcp -m tcp ! --tcp-flags RST RST -j DROP\n"
        ));
        assert!(!has_rst_drop(
            "-A INPUT -p tcp -m tcp --tcp-flags RST RST -j DROP\n"
        ));
        assert!(!has_rst_drop(
            "-A OUTPUT -p tcp -m tcp --tcp-flags SYN,RST RST -j DROP\n"
        ));
    }

    #[test]
    fn command_is_the_documented_one() {
        assert_eq!(
            rst_drop_command(),
            "iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP"
        );
    }
}

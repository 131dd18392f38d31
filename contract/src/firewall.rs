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

/// Who added a rule: every rule `l4lb raw` adds carries an iptables comment naming it,
/// `l4lb raw pid=1234 port=20000`, so a later start (or `l4lb cleanup`) can tell the rules
/// of a balancer that died (`kill -9` runs no teardown) from those of a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Process id of the balancer.
    pub pid: u32,
    /// Its listening port.
    pub port: u16,
}

const OWNER_PREFIX: &str = "l4lb raw ";

impl Owner {
    /// The comment text: `l4lb raw pid=1234 port=20000`.
    pub fn comment(&self) -> String {
        format!("{OWNER_PREFIX}pid={} port={}", self.pid, self.port)
    }

    /// The match that tags a rule, as `iptables` arguments.
    pub fn comment_args(&self) -> Vec<String> {
        vec![
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            self.comment(),
        ]
    }

    /// Parses a comment written by [`Owner::comment`]; anything else is `None`.
    pub fn parse(comment: &str) -> Option<Owner> {
        let rest = comment.strip_prefix(OWNER_PREFIX)?;
        let mut words = rest.split(' ');
        let pid = words.next()?.strip_prefix("pid=")?.parse().ok()?;
        let port = words.next()?.strip_prefix("port=")?.parse().ok()?;
        words.next().is_none().then_some(Owner { pid, port })
    }
}

/// One rule of an `iptables-save` listing that carries an [`Owner`] comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRule {
    /// Table (`filter`, `raw`, ...).
    pub table: String,
    /// Chain.
    pub chain: String,
    /// The rule's words after the chain, unquoted (the comment is one word).
    pub spec: Vec<String>,
    /// Who added it.
    pub owner: Owner,
}

impl OwnedRule {
    /// The `iptables` arguments that delete this rule.
    pub fn delete_args(&self) -> Vec<String> {
        let mut args = vec![
            "-t".to_string(),
            self.table.clone(),
            "-D".to_string(),
            self.chain.clone(),
        ];
        args.extend(self.spec.iter().cloned());
        args
    }

    /// The rule's words with the owner comment left out (to compare rules by what they do).
    pub fn spec_without_owner(&self) -> Vec<String> {
        without_owner(&self.spec)
    }
}

/// `spec` without an `-m comment --comment <owner>` match.
pub fn without_owner(spec: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(spec.len());
    let mut i = 0;
    while i < spec.len() {
        let tag = spec.get(i..i + 4).is_some_and(|w| {
            w[0] == "-m"
                && w[1] == "comment"
                && w[2] == "--comment"
                && Owner::parse(&w[3]).is_some()
        });
        if tag {
            i += 4;
        } else {
            out.push(spec[i].clone());
            i += 1;
        }
    }
    out
}

/// Splits one `iptables-save` line into words: double quotes group, `\"` and `\\` escape.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Every rule of an `iptables-save` listing (all tables, `*table` headers) tagged with an
/// [`Owner`] comment.
pub fn owned_rules(save: &str) -> Vec<OwnedRule> {
    let mut table = String::from("filter");
    let mut rules = Vec::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim().to_string();
            continue;
        }
        let words = split_words(line);
        if words.len() < 2 || words[0] != "-A" {
            continue;
        }
        let owner = words
            .windows(2)
            .find(|w| w[0] == "--comment")
            .and_then(|w| Owner::parse(&w[1]));
        if let Some(owner) = owner {
            rules.push(OwnedRule {
                table: table.clone(),
                chain: words[1].clone(),
                spec: words[2..].to_vec(),
                owner,
            });
        }
    }
    rules
}

/// The owned rules of `save` whose owner is gone: `alive(pid)` says no, and it is not
/// `me` (a process never removes its own rules as stale).
pub fn stale_rules(save: &str, me: u32, alive: impl Fn(u32) -> bool) -> Vec<OwnedRule> {
    owned_rules(save)
        .into_iter()
        .filter(|r| r.owner.pid != me && !alive(r.owner.pid))
        .collect()
}

/// Whether `/proc/<pid>/status` text describes a live `l4lb` process with this pid (not
/// a thread of another process, not a zombie, and named `l4lb`): an owner that is not
/// `l4lb` is a pid reused by something else, so its rules are stale too.
pub fn status_is_live_l4lb(status: &str, pid: u32) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let named = field("Name:").is_some_and(|n| n == "l4lb");
    let tgid_ok = field("Tgid:").is_some_and(|t| t == pid.to_string());
    let zombie = field("State:").is_some_and(|s| s.starts_with('Z') || s.starts_with('X'));
    named && tgid_ok && !zombie
}

/// Whether `pid` is a live `l4lb` process (reads `/proc/<pid>/status`; see
/// [`status_is_live_l4lb`]).
pub fn owner_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| status_is_live_l4lb(&status, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Mon Jan  1 00:00:00 2024
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 20000 -m comment --comment "l4lb raw pid=41 port=20000" -j DROP
-A PREROUTING -p tcp -m tcp --dport 80 -j DROP
COMMIT
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -m mark --mark 0x4c34 -m comment --comment "l4lb raw pid=42 port=20000" -j ACCEPT
-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -m comment --comment "someone else's \"note\"" -j DROP
COMMIT
"#;

    #[test]
    fn owner_comment_round_trips_and_rejects_others() {
        let owner = Owner {
            pid: 1234,
            port: 20000,
        };
        assert_eq!(owner.comment(), "l4lb raw pid=1234 port=20000");
        assert_eq!(Owner::parse(&owner.comment()), Some(owner));
        for other in [
            "",
            "l4lb raw pid=1 port=x",
            "l4lb raw pid=1",
            "l4lb raw pid=1 port=2 extra",
            "l4lb proxy pid=1 port=2",
            "note",
        ] {
            assert_eq!(Owner::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn finds_owned_rules_in_every_table_and_deletes_them_by_spec() {
        let rules = owned_rules(SAVE);
        assert_eq!(rules.len(), 2, "{rules:#?}");
        assert_eq!(rules[0].table, "raw");
        assert_eq!(
            rules[0].owner,
            Owner {
                pid: 41,
                port: 20000
            }
        );
        assert_eq!(
            rules[0].delete_args().join("|"),
            "-t|raw|-D|PREROUTING|-p|tcp|-m|addrtype|--dst-type|LOCAL|-m|tcp|--dport|20000|\
             -m|comment|--comment|l4lb raw pid=41 port=20000|-j|DROP"
        );
        assert_eq!(rules[1].table, "filter");
        assert_eq!(
            rules[1].spec_without_owner().join(" "),
            "-m mark --mark 0x4c34 -j ACCEPT"
        );
    }

    #[test]
    fn stale_rules_are_those_of_dead_owners_never_mine() {
        let stale = stale_rules(SAVE, 42, |pid| pid == 7);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].owner.pid, 41);
        assert!(stale_rules(SAVE, 1, |pid| pid == 41 || pid == 42).is_empty());
    }

    #[test]
    fn words_are_split_with_quotes_and_escapes() {
        assert_eq!(
            split_words(r#"-A X --comment "a \"b\" c" -j DROP"#),
            ["-A", "X", "--comment", "a \"b\" c", "-j", "DROP"]
        );
        assert_eq!(split_words(r#"--comment """#), ["--comment", ""]);
    }

    #[test]
    fn only_a_live_l4lb_owns_rules() {
        let status = |name: &str, state: &str, tgid: u32| {
            format!(
                "Name:	{name}
State:	{state}
Tgid:	{tgid}
Pid:	{tgid}
"
            )
        };
        assert!(status_is_live_l4lb(&status("l4lb", "S (sleeping)", 9), 9));
        assert!(!status_is_live_l4lb(&status("sleep", "S (sleeping)", 9), 9));
        assert!(!status_is_live_l4lb(&status("l4lb", "Z (zombie)", 9), 9));
        assert!(!status_is_live_l4lb(&status("l4lb", "S (sleeping)", 8), 9));
    }

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

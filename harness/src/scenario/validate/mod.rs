//! Stage two: the tables as written -> [`Scenario`], with every problem located in the file.
//!
//! This file holds the whole-file checks (settings, topology, programs, names);
//! `steps.rs` checks the timeline and `expects.rs` the expectations.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

mod expects;
mod faults;
mod home;
mod own;
mod steps;

use crate::scenario::error::{LineIndex, ScenarioError, ScenarioErrors};
use crate::scenario::model::*;
use crate::scenario::written::*;

/// The longest duration a scenario file may write: a scenario runs for seconds, and every
/// bound computed from its durations (interval x fall + timeout, ...) then stays far from
/// overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses and validates one scenario file's text. `file` is only used in messages.
pub fn parse_str(file: &Path, source: &str) -> Result<Scenario, ScenarioErrors> {
    let lines = LineIndex::new(source);
    let written: ScenarioTable = toml::from_str(source).map_err(|e| {
        let msg = e.message().trim().to_string();
        let error = match e.span() {
            Some(span) => {
                let (message, expected) = split_expected(&msg);
                lines.error(file, span, message, expected)
            }
            // toml gives up without a place when keys or values nest deeper than it
            // recurses: point at the line that nests most.
            None => lines.error(
                file,
                most_nested_line(source),
                format!("this line nests too deeply for the parser ({msg})"),
                Some("keys with fewer dotted parts, tables and lists nested less deeply".into()),
            ),
        };
        ScenarioErrors(vec![error])
    })?;
    let mut v = Validator {
        file,
        lines,
        errors: Vec::new(),
    };
    let scenario = v.scenario(written);
    if v.errors.is_empty() {
        Ok(scenario)
    } else {
        Err(ScenarioErrors(v.errors))
    }
}

/// The byte range of the start of the line with the most `.`, `[` and `{` (the nesting
/// characters of TOML keys and values).
fn most_nested_line(source: &str) -> Range<usize> {
    let mut start = 0;
    let mut best = (0, 0..0);
    for line in source.split_inclusive('\n') {
        let depth = line
            .bytes()
            .filter(|b| matches!(b, b'.' | b'[' | b'{'))
            .count();
        if depth > best.0 {
            let text = line.trim_end_matches(['\r', '\n']);
            let shown = text.char_indices().nth(8).map_or(text.len(), |(i, _)| i);
            best = (depth, start..start + shown);
        }
        start += line.len();
    }
    best.1
}

/// serde says "…, expected …": keep the two apart so the display can label them.
fn split_expected(msg: &str) -> (String, Option<String>) {
    let first_line = msg.lines().next().unwrap_or(msg);
    match first_line.split_once(", expected ") {
        Some((what, expected)) => (what.to_string(), Some(plain_type(expected))),
        None => match first_line
            .strip_prefix("missing field `")
            .and_then(|f| f.strip_suffix('`'))
        {
            Some(field) => (
                first_line.to_string(),
                Some(format!("`{field} = ...` in this table")),
            ),
            None => (first_line.to_string(), None),
        },
    }
}

/// serde names Rust types; a person writing TOML wants words.
fn plain_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (no quotes)".into(),
        "f32" | "f64" => "a number (no quotes)".into(),
        "a boolean" | "bool" => "true or false (no quotes)".into(),
        "a string" => "a string in quotes".into(),
        "a sequence" => "a list, e.g. [\"a\", \"b\"]".into(),
        other => other.to_string(),
    }
}

struct Validator<'a> {
    file: &'a Path,
    lines: LineIndex<'a>,
    errors: Vec<ScenarioError>,
}

/// Timeline facts gathered while walking the steps.
#[derive(Default)]
struct Timeline {
    joined: BTreeMap<String, usize>,
    quit: BTreeMap<String, usize>,
    /// Clients that run a bulk transfer, with the line of their first `bulk` step.
    bulk: BTreeMap<String, usize>,
    /// Lines said, in order (for messages), and as a set (for lookups).
    said: Vec<String>,
    said_set: std::collections::HashSet<String>,
    /// Lower bound of elapsed time before the current step.
    elapsed: Duration,
    last_at: Option<(Duration, usize)>,
}

impl<'a> Validator<'a> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, expected: Option<String>) {
        let error = self.lines.error(self.file, span, message, expected);
        self.errors.push(error);
    }

    /// The one key of a table that takes exactly one (a step's action, an expectation's
    /// kind), or an error naming what was given: `words` is (the table's noun, the
    /// message for none, the plural of its keys).
    fn exactly_one<K>(
        &mut self,
        key: Result<K, Vec<&'static str>>,
        span: Range<usize>,
        words: (&str, &str, &str),
        keys: &[&str],
    ) -> Option<K> {
        match key {
            Ok(key) => Some(key),
            Err(present) => {
                let (noun, none, plural) = words;
                let message = if present.is_empty() {
                    none.to_string()
                } else {
                    format!(
                        "this {noun} has {} {plural} ({})",
                        present.len(),
                        present.join(", ")
                    )
                };
                self.err(
                    span,
                    message,
                    Some(format!("exactly one of {}", keys.join(", "))),
                );
                None
            }
        }
    }

    fn duration(&mut self, s: &SStr, what: &str) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref().trim()) {
            Ok(d) if d > MAX_DURATION => {
                self.err(
                    s.span(),
                    format!("{what} = \"{}\" is longer than a day", s.get_ref()),
                    Some("a duration of at most one day, such as \"30s\" or \"2h\"".into()),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    s.span(),
                    format!("`{}` is not a duration for {what} ({e})", s.get_ref()),
                    Some("a duration such as \"200ms\", \"2s\" or \"1m 30s\"".into()),
                );
                None
            }
        }
    }

    fn positive(&mut self, s: &SStr, what: &str) -> Option<Duration> {
        let d = self.duration(s, what)?;
        if d.is_zero() {
            self.err(
                s.span(),
                format!("{what} must be longer than zero"),
                Some("a positive duration".into()),
            );
            return None;
        }
        Some(d)
    }

    fn scenario(&mut self, written: ScenarioTable) -> Scenario {
        if written.name.get_ref().trim().is_empty() {
            self.err(
                written.name.span(),
                "the name is empty",
                Some("a short name".into()),
            );
        }
        if written.purpose.get_ref().trim().is_empty() {
            self.err(
                written.purpose.span(),
                "the purpose is empty",
                Some("a sentence saying what the scenario proves".into()),
            );
        }
        let balancers = self.balancers(&written);
        let own_listed = written.balancers.as_ref().and_then(|l| {
            l.get_ref()
                .iter()
                .find(|b| *b.get_ref() == BalancerKind::Own)
                .map(|b| b.span())
        });
        let own_balancer = self.own_balancer(written.own_balancer.as_ref(), own_listed);
        let algorithm = written
            .balancer
            .as_ref()
            .and_then(|b| b.get_ref().algorithm.as_ref())
            .map(|a| *a.get_ref());
        let topology = self.topology(written.topology.as_ref());
        let mut topology = topology;
        let health = self.health(written.balancer.as_ref());
        if let Some(t) = &written.topology {
            // After [balancer]: the router forwards the balancer's port.
            self.home(t.get_ref(), &mut topology, health.port);
        }
        let programs = self.programs(written.programs.as_ref());
        let mut timeline = Timeline::default();
        if written.steps.is_empty() {
            self.err(
                0..0,
                "the scenario has no `[[step]]`",
                Some(format!(
                    "at least one step, e.g. `[[step]]` with `join = [\"test1\"]`; actions: {}",
                    StepTable::KEYS.join(", ")
                )),
            );
        }
        let steps: Vec<Step> = written
            .steps
            .iter()
            .filter_map(|s| self.step(s, &topology, &health, &mut timeline))
            .collect();
        let expectations = written
            .expects
            .iter()
            .filter_map(|e| self.expect(e, &topology, &timeline, &balancers))
            .collect();
        Scenario {
            file: self.file.to_path_buf(),
            name: written.name.get_ref().trim().to_string(),
            purpose: written
                .purpose
                .get_ref()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            balancers,
            balancers_listed: written.balancers.is_some(),
            algorithm,
            own_balancer,
            balancers_why: written.balancers_why.as_ref().map(|s| s.get_ref().clone()),
            slow: written.slow.unwrap_or(false),
            topology,
            health,
            programs,
            steps,
            expectations,
        }
    }

    fn balancers(&mut self, written: &ScenarioTable) -> Vec<BalancerKind> {
        let Some(list) = &written.balancers else {
            return BalancerKind::OURS.to_vec();
        };
        let mut out = Vec::new();
        for b in list.get_ref() {
            if out.contains(b.get_ref()) {
                self.err(
                    b.span(),
                    format!("balancer `{}` is listed twice", b.get_ref()),
                    None,
                );
            } else {
                out.push(*b.get_ref());
            }
        }
        if out.is_empty() {
            self.err(
                list.span(),
                "no balancer to run against",
                Some(
                    "`raw`, `proxy` or both (leave `balancers` out for both), `haproxy`, `nginx`, \
                     `nat`, `own`"
                        .into(),
                ),
            );
        } else if BalancerKind::OURS.iter().any(|b| !out.contains(b))
            && written.balancers_why.is_none()
        {
            self.err(
                list.span(),
                "one of our balancers (`raw`, `proxy`) is left out, and `balancers_why` does not say why",
                Some(
                    "`balancers_why = \"...\"` explaining why it is left out"
                        .into(),
                ),
            );
        }
        out.sort();
        out
    }

    fn topology(&mut self, written: Option<&Spanned<TopologyTable>>) -> TopologySettings {
        let mut t = TopologySettings {
            clients: 1,
            servers: 3,
            subnet: DEFAULT_SUBNET,
            mtu: None,
            layout: Default::default(),
            offloads: Default::default(),
            server_ports: Vec::new(),
            home: Default::default(),
        };
        let Some(written) = written else {
            t.server_ports = vec![DEFAULT_SERVER_PORT; t.servers];
            return t;
        };
        let r = written.get_ref();
        if let Some(c) = &r.clients {
            if !(1..=16).contains(c.get_ref()) {
                self.err(
                    c.span(),
                    "clients out of range",
                    Some("1 to 16 client hosts".into()),
                );
            }
            t.clients = *c.get_ref() as usize;
        }
        if let Some(s) = &r.servers {
            if !(1..=16).contains(s.get_ref()) {
                self.err(
                    s.span(),
                    "servers out of range",
                    Some("1 to 16 servers".into()),
                );
            }
            t.servers = *s.get_ref() as usize;
        }
        if let Some(s) = &r.subnet {
            match s.get_ref().parse::<Ipv4Addr>() {
                Ok(a) if a.octets()[3] == 0 => t.subnet = a,
                _ => self.err(
                    s.span(),
                    format!("`{}` is not the first address of a /24", s.get_ref()),
                    Some("an IPv4 address ending in .0, e.g. \"192.168.0.0\"".into()),
                ),
            }
        }
        if let Some(m) = &r.mtu {
            if !(576..=65535).contains(m.get_ref()) {
                self.err(m.span(), "mtu out of range", Some("576 to 65535".into()));
            }
            t.mtu = Some(*m.get_ref());
        }
        t.layout = r.layout.unwrap_or_default();
        t.offloads = r.offloads.unwrap_or_default();
        match (&r.server_port, &r.server_ports) {
            (Some(p), Some(_)) => {
                self.err(
                    p.span(),
                    "both `server_port` and `server_ports` are given",
                    Some("one of them".into()),
                );
                t.server_ports = vec![*p.get_ref(); t.servers];
            }
            (Some(p), None) => t.server_ports = vec![*p.get_ref(); t.servers],
            (None, Some(ps)) => {
                if ps.get_ref().len() != t.servers {
                    self.err(
                        ps.span(),
                        format!(
                            "{} server ports for {} servers",
                            ps.get_ref().len(),
                            t.servers
                        ),
                        Some(format!("one port a server ({} ports)", t.servers)),
                    );
                }
                t.server_ports = ps.get_ref().clone();
                t.server_ports.resize(t.servers, DEFAULT_SERVER_PORT);
            }
            (None, None) => t.server_ports = vec![DEFAULT_SERVER_PORT; t.servers],
        }
        t
    }

    fn health(&mut self, written: Option<&Spanned<BalancerTable>>) -> BalancerSettings {
        let mut h = BalancerSettings {
            port: DEFAULT_LB_PORT,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: None,
            health_send: None,
            health_expect: None,
        };
        let Some(written) = written else { return h };
        let r = written.get_ref();
        if let Some(p) = &r.port {
            if *p.get_ref() == 0 {
                self.err(
                    p.span(),
                    "port 0",
                    Some("a TCP port from 1 to 65535".into()),
                );
            }
            h.port = *p.get_ref();
        }
        if let Some(s) = &r.health_interval {
            h.interval = self.positive(s, "health_interval").unwrap_or(h.interval);
        }
        if let Some(s) = &r.health_timeout {
            h.timeout = self.positive(s, "health_timeout").unwrap_or(h.timeout);
            if h.timeout >= h.interval {
                self.err(
                    s.span(),
                    format!(
                        "impossible timing: health_timeout {} is not shorter than health_interval {}",
                        humantime::format_duration(h.timeout),
                        humantime::format_duration(h.interval)
                    ),
                    Some("a check timeout shorter than the interval between checks".into()),
                );
            }
        }
        for (field, value, target) in [
            ("rise", &r.rise, &mut h.rise),
            ("fall", &r.fall, &mut h.fall),
        ] {
            if let Some(v) = value {
                if !(1..=100).contains(v.get_ref()) {
                    self.err(
                        v.span(),
                        format!("{field} out of range"),
                        Some("1 to 100 checks in a row".into()),
                    );
                }
                *target = *v.get_ref();
            }
        }
        if let Some(s) = &r.idle_timeout {
            h.idle_timeout = self.positive(s, "idle_timeout").unwrap_or(h.idle_timeout);
        }
        if let Some(s) = &r.connect_timeout {
            h.connect_timeout = self.positive(s, "connect_timeout");
        }
        h.health_send = r.health_send.as_ref().map(|s| s.get_ref().clone());
        h.health_expect = r.health_expect.as_ref().map(|s| s.get_ref().clone());
        if let (Some(e), None) = (&r.health_expect, &r.health_send) {
            self.err(
                e.span(),
                "`health_expect` without `health_send`",
                Some(
                    "`health_send = \"...\"` too: the check must send something to get a reply"
                        .into(),
                ),
            );
        }
        h
    }

    fn command(&mut self, written: &Spanned<CommandValue>, allowed: &[&str]) -> CommandTemplate {
        let argv = match written.get_ref() {
            CommandValue::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
            CommandValue::Argv(v) => v.clone(),
        };
        if argv.is_empty() || argv[0].trim().is_empty() {
            self.err(
                written.span(),
                "empty command",
                Some("a command line or a list of arguments".into()),
            );
        }
        for arg in &argv {
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let Some(close) = after.find('}') else { break };
                let key = &after[..close];
                if !allowed.contains(&key) {
                    self.err(
                        written.span(),
                        format!("unknown placeholder `{{{key}}}`"),
                        Some(format!(
                            "one of {}",
                            allowed
                                .iter()
                                .map(|k| format!("{{{k}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
                rest = &after[close + 1..];
            }
        }
        CommandTemplate { argv }
    }

    fn programs(&mut self, written: Option<&Spanned<ProgramsTable>>) -> Programs {
        let mut p = Programs {
            server: CommandTemplate::default_server(),
            client: CommandTemplate::default_client(),
            custom: false,
        };
        if let Some(written) = written {
            if let Some(s) = &written.get_ref().server {
                p.server = self.command(s, SERVER_PLACEHOLDERS);
                p.custom = true;
            }
            if let Some(c) = &written.get_ref().client {
                p.client = self.command(c, CLIENT_PLACEHOLDERS);
                p.custom = true;
            }
        }
        p
    }

    fn server(&mut self, s: &SStr, topo: &TopologySettings) -> Option<ServerIdx> {
        let name = s.get_ref();
        let idx = name
            .strip_prefix('s')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=topo.servers).contains(n));
        if idx.is_none() {
            self.err(
                s.span(),
                format!("there is no server `{name}`"),
                Some(format!(
                    "one of {}",
                    (0..topo.servers)
                        .map(server_name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
        idx.map(|n| n - 1)
    }

    fn host(&mut self, s: &SStr, topo: &TopologySettings) -> Option<LinkHost> {
        let name = s.get_ref().as_str();
        let home = topo.layout == crate::topology::Layout::Home;
        let host = if name == "lb" {
            Some(LinkHost::Lb)
        } else if home && name == "router" {
            Some(LinkHost::Router)
        } else if home && name == "wifi" && !topo.home.wifi.is_empty() {
            Some(LinkHost::Wifi)
        } else if name == "client" {
            Some(LinkHost::Client(0))
        } else if let Some(n) = name
            .strip_prefix("client")
            .and_then(|n| n.parse::<usize>().ok())
        {
            (1..=topo.clients)
                .contains(&n)
                .then(|| LinkHost::Client(n - 1))
        } else if let Some(n) = name.strip_prefix('s').and_then(|n| n.parse::<usize>().ok()) {
            (1..=topo.servers)
                .contains(&n)
                .then(|| LinkHost::Server(n - 1))
        } else {
            None
        };
        if host.is_none() {
            self.err(
                s.span(),
                format!("there is no host `{name}`"),
                Some(match (home, topo.home.wifi.is_empty()) {
                    (false, _) => format!(
                        "lb, client (or client1..client{}), or a server s1..s{}",
                        topo.clients, topo.servers
                    ),
                    (true, no_wifi) => format!(
                        "lb, client (or client1..client{}), a server s1..s{}, router{}",
                        topo.clients,
                        topo.servers,
                        if no_wifi { "" } else { ", or wifi" }
                    ),
                }),
            );
        }
        host
    }

    /// A client that has joined before this point and not quit.
    fn active_client(&mut self, s: &SStr, tl: &Timeline) -> Option<String> {
        let name = s.get_ref();
        if let Some(line) = tl.quit.get(name) {
            self.err(
                s.span(),
                format!("client `{name}` already quit (line {line})"),
                Some("a client that is still connected".into()),
            );
            return None;
        }
        if !tl.joined.contains_key(name) {
            self.err(
                s.span(),
                format!("client `{name}` has not joined before this step"),
                Some(known_clients(tl)),
            );
            return None;
        }
        Some(name.clone())
    }
}

fn known_clients(tl: &Timeline) -> String {
    if tl.joined.is_empty() {
        "a client joined by an earlier `join` step (none so far)".into()
    } else {
        let mut v: Vec<(&usize, &String)> = tl.joined.iter().map(|(k, l)| (l, k)).collect();
        v.sort();
        format!(
            "one of the clients joined so far: {}",
            v.iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

//! Stage two: raw serde structs -> [`Scenario`], with every problem located in the file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{ScenarioError, ScenarioErrors};
use super::model::*;
use super::raw::*;

/// Step actions, as written in a file.
pub const STEP_ACTIONS: &[&str] = &[
    "join",
    "say",
    "chat",
    "silent",
    "quit",
    "kill",
    "stop",
    "cont",
    "restart",
    "link_down",
    "link_up",
    "drop",
    "rate",
    "netem",
    "clear_faults",
    "wait",
    "wait_until",
];

/// Expectation kinds, as written in a file.
pub const EXPECT_KINDS: &[&str] = &[
    "placement",
    "balanced",
    "not_on",
    "chat_isolation",
    "heard",
    "failover",
    "recovery",
    "kept",
    "idle_closed",
    "refused",
    "no_refused",
    "open_sessions",
    "balancer_alive",
];

/// Parses and validates one scenario file's text. `file` is only used in messages.
pub fn parse_str(file: &Path, source: &str) -> Result<Scenario, ScenarioErrors> {
    let raw: RawScenario = toml::from_str(source).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim().to_string();
        let (message, expected) = split_expected(&msg);
        ScenarioErrors(vec![ScenarioError::at(
            file, source, span, message, expected,
        )])
    })?;
    let mut v = Validator {
        file,
        source,
        errors: Vec::new(),
    };
    let scenario = v.scenario(raw);
    if v.errors.is_empty() {
        Ok(scenario)
    } else {
        Err(ScenarioErrors(v.errors))
    }
}

/// serde says "…, expected …": keep the two apart so the display can label them.
fn split_expected(msg: &str) -> (String, Option<String>) {
    let first_line = msg.lines().next().unwrap_or(msg);
    match first_line.split_once(", expected ") {
        Some((what, expected)) => (what.to_string(), Some(plain_type(expected))),
        None => (first_line.to_string(), None),
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
    source: &'a str,
    errors: Vec<ScenarioError>,
}

/// Timeline facts gathered while walking the steps.
#[derive(Default)]
struct Timeline {
    joined: BTreeMap<String, usize>,
    quit: BTreeMap<String, usize>,
    said: Vec<String>,
    /// Lower bound of elapsed time before the current step.
    elapsed: Duration,
    last_at: Option<(Duration, usize)>,
}

impl<'a> Validator<'a> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, expected: Option<String>) {
        self.errors.push(ScenarioError::at(
            self.file,
            self.source,
            span,
            message,
            expected,
        ));
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.source[..span.start.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn duration(&mut self, s: &SStr, what: &str) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref().trim()) {
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

    fn scenario(&mut self, raw: RawScenario) -> Scenario {
        if raw.name.get_ref().trim().is_empty() {
            self.err(
                raw.name.span(),
                "the name is empty",
                Some("a short name".into()),
            );
        }
        if raw.purpose.get_ref().trim().is_empty() {
            self.err(
                raw.purpose.span(),
                "the purpose is empty",
                Some("a sentence saying what the scenario proves".into()),
            );
        }
        let balancers = self.balancers(&raw);
        let topology = self.topology(raw.topology.as_ref());
        let health = self.health(raw.balancer.as_ref());
        let programs = self.programs(raw.programs.as_ref());
        let mut timeline = Timeline::default();
        if raw.steps.is_empty() {
            self.err(
                0..0,
                "the scenario has no `[[step]]`",
                Some(format!(
                    "at least one step, e.g. `[[step]]` with `join = [\"test1\"]`; actions: {}",
                    STEP_ACTIONS.join(", ")
                )),
            );
        }
        let steps: Vec<Step> = raw
            .steps
            .iter()
            .filter_map(|s| self.step(s, &topology, &health, &mut timeline))
            .collect();
        let expectations = raw
            .expects
            .iter()
            .filter_map(|e| self.expect(e, &topology, &timeline, &balancers))
            .collect();
        Scenario {
            file: self.file.to_path_buf(),
            name: raw.name.get_ref().trim().to_string(),
            purpose: raw
                .purpose
                .get_ref()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            balancers,
            balancers_why: raw.balancers_why.as_ref().map(|s| s.get_ref().clone()),
            slow: raw.slow.unwrap_or(false),
            topology,
            health,
            programs,
            steps,
            expectations,
        }
    }

    fn balancers(&mut self, raw: &RawScenario) -> Vec<BalancerKind> {
        let Some(list) = &raw.balancers else {
            return BalancerKind::ALL.to_vec();
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
                Some("`raw`, `proxy` or both (leave `balancers` out for both)".into()),
            );
        } else if out.len() < BalancerKind::ALL.len() && raw.balancers_why.is_none() {
            self.err(
                list.span(),
                "only one balancer is listed, and `balancers_why` does not say why",
                Some(
                    "`balancers_why = \"...\"` explaining why the other balancer is left out"
                        .into(),
                ),
            );
        }
        out.sort();
        out
    }

    fn topology(&mut self, raw: Option<&Spanned<RawTopology>>) -> TopologySettings {
        let mut t = TopologySettings {
            clients: 1,
            servers: 3,
            subnet: DEFAULT_SUBNET,
            mtu: None,
            layout: Default::default(),
            offloads: Default::default(),
            server_ports: Vec::new(),
        };
        let Some(raw) = raw else {
            t.server_ports = vec![DEFAULT_SERVER_PORT; t.servers];
            return t;
        };
        let r = raw.get_ref();
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

    fn health(&mut self, raw: Option<&Spanned<RawBalancer>>) -> BalancerSettings {
        let mut h = BalancerSettings {
            port: DEFAULT_LB_PORT,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            health_send: None,
            health_expect: None,
        };
        let Some(raw) = raw else { return h };
        let r = raw.get_ref();
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
        h.health_send = r.health_send.as_ref().map(|s| s.get_ref().clone());
        h.health_expect = r.health_expect.as_ref().map(|s| s.get_ref().clone());
        if let (Some(e), None) = (&r.health_expect, &r.health_send) {
            self.err(
                e.span(),
                "`health_expect` without `health_send`",
                Some("`health_send = \"...\"` too: the check must send something to get a reply".into()),
            );
        }
        h
    }

    fn command(&mut self, raw: &Spanned<RawCommand>, allowed: &[&str]) -> CommandTemplate {
        let argv = match raw.get_ref() {
            RawCommand::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
            RawCommand::Argv(v) => v.clone(),
        };
        if argv.is_empty() || argv[0].trim().is_empty() {
            self.err(
                raw.span(),
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
                        raw.span(),
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

    fn programs(&mut self, raw: Option<&Spanned<RawPrograms>>) -> Programs {
        let mut p = Programs {
            server: CommandTemplate::default_server(),
            client: CommandTemplate::default_client(),
            custom: false,
        };
        if let Some(raw) = raw {
            if let Some(s) = &raw.get_ref().server {
                p.server = self.command(s, SERVER_PLACEHOLDERS);
                p.custom = true;
            }
            if let Some(c) = &raw.get_ref().client {
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
        let host = if name == "lb" {
            Some(LinkHost::Lb)
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
                Some(format!(
                    "lb, client (or client1..client{}), or a server s1..s{}",
                    topo.clients, topo.servers
                )),
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

    fn step(
        &mut self,
        raw: &Spanned<RawStep>,
        topo: &TopologySettings,
        health: &BalancerSettings,
        tl: &mut Timeline,
    ) -> Option<Step> {
        let r = raw.get_ref();
        let span = raw.span();
        let line = self.line_of(&span);
        let present: Vec<&str> = [
            ("join", r.join.is_some()),
            ("say", r.say.is_some()),
            ("chat", r.chat.is_some()),
            ("silent", r.silent.is_some()),
            ("quit", r.quit.is_some()),
            ("kill", r.kill.is_some()),
            ("stop", r.stop.is_some()),
            ("cont", r.cont.is_some()),
            ("restart", r.restart.is_some()),
            ("link_down", r.link_down.is_some()),
            ("link_up", r.link_up.is_some()),
            ("drop", r.drop.is_some()),
            ("rate", r.rate.is_some()),
            ("netem", r.netem.is_some()),
            ("clear_faults", r.clear_faults.is_some()),
            ("wait", r.wait.is_some()),
            ("wait_until", r.wait_until.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.then_some(k))
        .collect();
        if present.len() != 1 {
            let message = if present.is_empty() {
                "this step has no action".to_string()
            } else {
                format!(
                    "this step has {} actions ({})",
                    present.len(),
                    present.join(", ")
                )
            };
            self.err(
                span,
                message,
                Some(format!("exactly one of {}", STEP_ACTIONS.join(", "))),
            );
            return None;
        }
        let action_name = present[0];
        // Modifiers that belong to one action only.
        let modifiers: [(&str, Option<Range<usize>>, &[&str]); 6] = [
            ("client", r.client.as_ref().map(|s| s.span()), &["say"]),
            ("clients", r.clients.as_ref().map(|s| s.span()), &["say"]),
            ("every", r.every.as_ref().map(|s| s.span()), &["chat"]),
            (
                "link",
                r.link.as_ref().map(|s| s.span()),
                &["drop", "rate", "netem"],
            ),
            (
                "deadline",
                r.deadline.as_ref().map(|s| s.span()),
                &["wait_until"],
            ),
            ("at", None, &[]),
        ];
        for (key, mspan, owners) in modifiers {
            if let Some(mspan) = mspan {
                if !owners.contains(&action_name) {
                    self.err(
                        mspan,
                        format!("`{key}` does not belong to a `{action_name}` step"),
                        Some(format!("`{key}` only with {}", owners.join(" or "))),
                    );
                }
            }
        }
        let at = match &r.at {
            Some(s) => {
                let d = self.duration(s, "at")?;
                if let Some((prev, prev_line)) = tl.last_at {
                    if d < prev {
                        self.err(
                            s.span(),
                            format!(
                                "impossible timing: at = {} comes before the step at line {prev_line} (at = {})",
                                humantime::format_duration(d),
                                humantime::format_duration(prev)
                            ),
                            Some("steps in time order".into()),
                        );
                    }
                }
                if d < tl.elapsed {
                    self.err(
                        s.span(),
                        format!(
                            "impossible timing: at = {}, but the steps before it take at least {}",
                            humantime::format_duration(d),
                            humantime::format_duration(tl.elapsed)
                        ),
                        Some(format!(
                            "at = \"{}\" or later",
                            humantime::format_duration(tl.elapsed)
                        )),
                    );
                }
                tl.last_at = Some((d, line));
                tl.elapsed = tl.elapsed.max(d);
                Some(d)
            }
            None => None,
        };
        let link_host = |v: &mut Self| -> Option<LinkHost> {
            match &r.link {
                Some(l) => v.host(l, topo),
                None => {
                    v.err(
                        span.clone(),
                        format!("a `{action_name}` step needs `link`"),
                        Some("`link = \"lb\"` (or a client or server host)".into()),
                    );
                    None
                }
            }
        };
        let action = match action_name {
            "join" => {
                let list = r.join.as_ref()?;
                if list.get_ref().is_empty() {
                    self.err(
                        list.span(),
                        "nobody joins",
                        Some("one or more nicknames".into()),
                    );
                }
                let mut names = Vec::new();
                for n in list.get_ref() {
                    let name = n.get_ref();
                    if name.is_empty() || name.contains(char::is_whitespace) || name.len() > 32 {
                        self.err(
                            n.span(),
                            format!("`{name}` is not a nickname"),
                            Some("1 to 32 characters, no spaces".into()),
                        );
                    } else if let Some(prev) = tl.joined.get(name) {
                        self.err(
                            n.span(),
                            format!("client `{name}` already joined at line {prev}"),
                            Some("a new nickname for each joining client".into()),
                        );
                    } else {
                        tl.joined.insert(name.clone(), line);
                        names.push(name.clone());
                    }
                }
                Action::Join(names)
            }
            "say" => {
                let text = r.say.as_ref()?;
                let mut who = Vec::new();
                match (&r.client, &r.clients) {
                    (Some(c), None) => who.push(c),
                    (None, Some(cs)) => who.extend(cs.get_ref().iter()),
                    _ => {
                        self.err(
                            span.clone(),
                            "a `say` step needs `client` or `clients` (one of them)",
                            Some(
                                "`client = \"test1\"` or `clients = [\"test1\", \"test2\"]`".into(),
                            ),
                        );
                        return None;
                    }
                }
                let clients: Vec<String> = who
                    .into_iter()
                    .filter_map(|c| self.active_client(c, tl))
                    .collect();
                if text.get_ref().contains('\n') || text.get_ref().trim() == "q" {
                    self.err(
                        text.span(),
                        "this line cannot be said",
                        Some("one line, other than `q`".into()),
                    );
                }
                tl.said.push(text.get_ref().clone());
                Action::Say {
                    clients,
                    text: text.get_ref().clone(),
                }
            }
            "chat" => {
                let c = r.chat.as_ref()?;
                let client = self.active_client(c, tl)?;
                let every = match &r.every {
                    Some(e) => self.positive(e, "every")?,
                    None => {
                        self.err(
                            span.clone(),
                            "a `chat` step needs `every`",
                            Some("`every = \"500ms\"`".into()),
                        );
                        return None;
                    }
                };
                Action::Chat { client, every }
            }
            "silent" => Action::Silent(self.active_client(r.silent.as_ref()?, tl)?),
            "quit" => {
                let list = r.quit.as_ref()?;
                let mut names = Vec::new();
                for n in list.get_ref() {
                    if let Some(name) = self.active_client(n, tl) {
                        tl.quit.insert(name.clone(), line);
                        names.push(name);
                    }
                }
                Action::Quit(names)
            }
            "kill" | "stop" | "cont" | "restart" => {
                let (s, action) = match action_name {
                    "kill" => (r.kill.as_ref()?, ServerAction::Kill),
                    "stop" => (r.stop.as_ref()?, ServerAction::Stop),
                    "cont" => (r.cont.as_ref()?, ServerAction::Cont),
                    _ => (r.restart.as_ref()?, ServerAction::Restart),
                };
                Action::Server {
                    server: self.server(s, topo)?,
                    action,
                }
            }
            "link_down" => Action::Link {
                host: self.host(r.link_down.as_ref()?, topo)?,
                up: false,
            },
            "link_up" => Action::Link {
                host: self.host(r.link_up.as_ref()?, topo)?,
                up: true,
            },
            "drop" => {
                let f = r.drop.as_ref()?;
                if !(*f.get_ref() > 0.0 && *f.get_ref() < 1.0) {
                    self.err(
                        f.span(),
                        format!("drop = {} is not a fraction", f.get_ref()),
                        Some("a number between 0 and 1, e.g. 0.05 for 5%".into()),
                    );
                }
                Action::Drop {
                    host: link_host(self)?,
                    fraction: *f.get_ref(),
                }
            }
            "rate" => {
                let rate = r.rate.as_ref()?;
                let ok = rate
                    .get_ref()
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .parse::<u64>()
                    .is_ok_and(|n| n > 0)
                    && ["kbit", "mbit", "gbit", "bit"]
                        .iter()
                        .any(|u| rate.get_ref().ends_with(u));
                if !ok {
                    self.err(
                        rate.span(),
                        format!("`{}` is not a rate", rate.get_ref()),
                        Some("a tc rate such as \"512kbit\", \"10mbit\"".into()),
                    );
                }
                Action::Rate {
                    host: link_host(self)?,
                    rate: rate.get_ref().clone(),
                }
            }
            "netem" => {
                let args = r.netem.as_ref()?;
                if args.get_ref().trim().is_empty() {
                    self.err(
                        args.span(),
                        "empty netem arguments",
                        Some("e.g. \"delay 50ms\" or \"loss 5%\"".into()),
                    );
                }
                Action::Netem {
                    host: link_host(self)?,
                    args: args.get_ref().clone(),
                }
            }
            "clear_faults" => Action::ClearFaults(self.host(r.clear_faults.as_ref()?, topo)?),
            "wait" => {
                let d = self.positive(r.wait.as_ref()?, "wait")?;
                tl.elapsed += d;
                Action::Wait(d)
            }
            "wait_until" => {
                let c = r.wait_until.as_ref()?;
                let condition = self.condition(c, topo, tl)?;
                let Some(deadline_s) = &r.deadline else {
                    self.err(
                        span.clone(),
                        "a `wait_until` step needs `deadline`",
                        Some("`deadline = \"3s\"`: the longest wait".into()),
                    );
                    return None;
                };
                let deadline = self.positive(deadline_s, "deadline")?;
                let bound = match condition {
                    Condition::ServerDown(_) => Some((
                        "detection bound (interval x fall + timeout)",
                        health.detection_bound(),
                    )),
                    Condition::ServerUp(_) => Some((
                        "recovery bound (interval x rise + timeout)",
                        health.recovery_bound(),
                    )),
                    _ => None,
                };
                if let Some((what, bound)) = bound {
                    if deadline < bound {
                        self.err(
                            deadline_s.span(),
                            format!(
                                "impossible timing: deadline {} is shorter than the {what}, {}",
                                humantime::format_duration(deadline),
                                humantime::format_duration(bound)
                            ),
                            Some(format!(
                                "a deadline of at least {}",
                                humantime::format_duration(bound)
                            )),
                        );
                    }
                }
                Action::WaitUntil {
                    condition,
                    deadline,
                }
            }
            _ => unreachable!("every action name is handled"),
        };
        Some(Step {
            line,
            at,
            action,
            note: r.note.clone(),
        })
    }

    fn condition(
        &mut self,
        raw: &Spanned<RawCondition>,
        topo: &TopologySettings,
        tl: &Timeline,
    ) -> Option<Condition> {
        let c = raw.get_ref();
        let n = [
            c.server_down.is_some(),
            c.server_up.is_some(),
            c.closed.is_some(),
            c.sessions.is_some(),
        ]
        .iter()
        .filter(|p| **p)
        .count();
        if n != 1 {
            self.err(
                raw.span(),
                format!("a condition needs exactly one key, this one has {n}"),
                Some("one of server_down, server_up, closed, sessions".into()),
            );
            return None;
        }
        if let Some(s) = &c.server_down {
            return Some(Condition::ServerDown(self.server(s, topo)?));
        }
        if let Some(s) = &c.server_up {
            return Some(Condition::ServerUp(self.server(s, topo)?));
        }
        if let Some(s) = &c.closed {
            if !tl.joined.contains_key(s.get_ref()) {
                self.err(
                    s.span(),
                    format!("client `{}` has not joined before this step", s.get_ref()),
                    Some(known_clients(tl)),
                );
                return None;
            }
            return Some(Condition::Closed(s.get_ref().clone()));
        }
        c.sessions
            .as_ref()
            .map(|s| Condition::Sessions(*s.get_ref()))
    }

    fn any_client(&mut self, s: &SStr, tl: &Timeline) -> Option<String> {
        if tl.joined.contains_key(s.get_ref()) {
            Some(s.get_ref().clone())
        } else {
            self.err(
                s.span(),
                format!("there is no client `{}` (no step joins it)", s.get_ref()),
                Some(known_clients(tl)),
            );
            None
        }
    }

    fn clients(&mut self, list: &[SStr], tl: &Timeline) -> Vec<String> {
        list.iter().filter_map(|c| self.any_client(c, tl)).collect()
    }

    fn server_map(
        &mut self,
        map: &BTreeMap<SStr, Vec<SStr>>,
        topo: &TopologySettings,
        tl: &Timeline,
    ) -> Vec<(ServerIdx, Vec<String>)> {
        let mut out: Vec<(ServerIdx, Vec<String>)> = map
            .iter()
            .filter_map(|(server, clients)| {
                let idx = self.server(server, topo)?;
                Some((idx, self.clients(clients, tl)))
            })
            .collect();
        out.sort_by_key(|(i, _)| *i);
        out
    }

    fn expect(
        &mut self,
        raw: &Spanned<RawExpect>,
        topo: &TopologySettings,
        tl: &Timeline,
        balancers: &[BalancerKind],
    ) -> Option<Expectation> {
        let r = raw.get_ref();
        let span = raw.span();
        let line = self.line_of(&span);
        let present: Vec<&str> = [
            ("placement", r.placement.is_some()),
            ("balanced", r.balanced.is_some()),
            ("not_on", r.not_on.is_some()),
            ("chat_isolation", r.chat_isolation.is_some()),
            ("heard", r.heard.is_some()),
            ("failover", r.failover.is_some()),
            ("recovery", r.recovery.is_some()),
            ("kept", r.kept.is_some()),
            ("idle_closed", r.idle_closed.is_some()),
            ("refused", r.refused.is_some()),
            ("no_refused", r.no_refused.is_some()),
            ("open_sessions", r.open_sessions.is_some()),
            ("balancer_alive", r.balancer_alive.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.then_some(k))
        .collect();
        if present.len() != 1 {
            let message = if present.is_empty() {
                "this expectation checks nothing".to_string()
            } else {
                format!(
                    "this expectation has {} kinds ({})",
                    present.len(),
                    present.join(", ")
                )
            };
            self.err(
                span,
                message,
                Some(format!("exactly one of {}", EXPECT_KINDS.join(", "))),
            );
            return None;
        }
        let kind_name = present[0];
        if (r.by.is_some() || r.not_by.is_some()) && kind_name != "heard" {
            self.err(
                span.clone(),
                "`by` and `not_by` belong to a `heard` expectation",
                Some("`heard = \"line\"` with `by`/`not_by`".into()),
            );
        }
        if r.tolerance.is_some() && kind_name != "idle_closed" {
            self.err(
                span.clone(),
                "`tolerance` belongs to an `idle_closed` expectation",
                None,
            );
        }
        let only = r.balancer.as_ref().map(|b| *b.get_ref());
        if let (Some(b), Some(bs)) = (only, r.balancer.as_ref()) {
            if !balancers.contains(&b) {
                self.err(
                    bs.span(),
                    format!("this scenario does not run against `{b}`"),
                    Some(format!(
                        "one of the scenario's balancers: {}",
                        balancers
                            .iter()
                            .map(|b| b.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
        }
        for (flag, value) in [
            ("chat_isolation", &r.chat_isolation),
            ("no_refused", &r.no_refused),
            ("balancer_alive", &r.balancer_alive),
        ] {
            if let Some(v) = value {
                if !*v.get_ref() {
                    self.err(
                        v.span(),
                        format!("`{flag} = false` checks nothing"),
                        Some(format!("`{flag} = true`, or leave it out")),
                    );
                }
            }
        }
        let kind = match kind_name {
            "placement" => {
                ExpectKind::Placement(self.server_map(r.placement.as_ref()?.get_ref(), topo, tl))
            }
            "balanced" => ExpectKind::Balanced(*r.balanced.as_ref()?.get_ref()),
            "not_on" => ExpectKind::NotOn(self.server_map(r.not_on.as_ref()?.get_ref(), topo, tl)),
            "chat_isolation" => ExpectKind::ChatIsolation,
            "heard" => {
                let text = r.heard.as_ref()?;
                if !tl.said.contains(text.get_ref()) {
                    self.err(
                        text.span(),
                        format!("no step says `{}`", text.get_ref()),
                        Some(format!(
                            "one of the lines said: {}",
                            tl.said
                                .iter()
                                .map(|s| format!("\"{s}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
                let by = self.clients(r.by.as_deref().unwrap_or_default(), tl);
                let not_by = self.clients(r.not_by.as_deref().unwrap_or_default(), tl);
                if by.is_empty() && not_by.is_empty() {
                    self.err(
                        span.clone(),
                        "`heard` without `by` or `not_by` checks nothing",
                        Some("`by = [...]` and/or `not_by = [...]`".into()),
                    );
                }
                ExpectKind::Heard {
                    text: text.get_ref().clone(),
                    by,
                    not_by,
                }
            }
            "failover" => ExpectKind::Failover(self.server(r.failover.as_ref()?, topo)?),
            "recovery" => ExpectKind::Recovery(self.server(r.recovery.as_ref()?, topo)?),
            "kept" => ExpectKind::Kept(self.clients(r.kept.as_ref()?, tl)),
            "idle_closed" => {
                let tolerance = match &r.tolerance {
                    Some(t) => self.positive(t, "tolerance")?,
                    None => Duration::from_millis(500),
                };
                ExpectKind::IdleClosed {
                    clients: self.clients(r.idle_closed.as_ref()?, tl),
                    tolerance,
                }
            }
            "refused" => ExpectKind::Refused(self.clients(r.refused.as_ref()?, tl)),
            "no_refused" => ExpectKind::NoRefused,
            "open_sessions" => ExpectKind::OpenSessions(*r.open_sessions.as_ref()?.get_ref()),
            "balancer_alive" => ExpectKind::BalancerAlive,
            _ => unreachable!("every expectation kind is handled"),
        };
        Some(Expectation {
            line,
            only,
            why: r.why.clone(),
            kind,
        })
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

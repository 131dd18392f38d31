//! Timeline checks: one action a step, known names, possible timing.

use std::ops::Range;

use toml::Spanned;

use super::{known_clients, Timeline, Validator, STEP_ACTIONS};
use crate::scenario::model::*;
use crate::scenario::raw::*;

/// A modifier key, where it was written, and the actions it belongs to.
type Modifier<'k> = (&'k str, Option<Range<usize>>, &'k [&'k str]);

impl Validator<'_> {
    pub(super) fn step(
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
        let modifiers: [Modifier; 6] = [
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
}

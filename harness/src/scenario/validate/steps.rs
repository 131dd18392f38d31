//! Timeline checks: one action a step, known names, possible timing.

use toml::Spanned;

use super::{known_clients, Timeline, Validator};
use crate::scenario::model::*;
use crate::scenario::written::*;

impl Validator<'_> {
    pub(super) fn step(
        &mut self,
        written: &Spanned<StepTable>,
        topo: &TopologySettings,
        health: &BalancerSettings,
        tl: &mut Timeline,
    ) -> Option<Step> {
        let r = written.get_ref();
        let span = written.span();
        let line = self.lines.line_of(span.start);
        // `rate` is an action of its own and, beside `impair`, one of its keys.
        let given = match (r.key(), &r.impair) {
            (Err(keys), Some(impair)) if keys == ["rate", "impair"] => Ok(StepKey::Impair(impair)),
            (given, _) => given,
        };
        let key = self.exactly_one(
            given,
            span.clone(),
            ("step", "this step has no action", "actions"),
            StepTable::KEYS,
        )?;
        let action_name = key.name();
        let mut modifiers = r.owned_modifiers_given();
        if let (StepKey::Impair(_), Some(rate)) = (key, &r.rate) {
            modifiers.push(("rate", rate.span(), &["impair"]));
        }
        for (modifier, mspan, owners) in modifiers {
            if !owners.contains(&action_name) {
                self.err(
                    mspan,
                    format!("`{modifier}` does not belong to a `{action_name}` step"),
                    Some(format!("`{modifier}` only with {}", owners.join(" or "))),
                );
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
        let action = match key {
            StepKey::Join(list) => {
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
                match &r.together {
                    Some(t) if *t.get_ref() => Action::JoinTogether(names),
                    _ => Action::Join(names),
                }
            }
            StepKey::Rejoin(list) => {
                if list.get_ref().is_empty() {
                    self.err(
                        list.span(),
                        "nobody rejoins",
                        Some("one or more clients that joined before".into()),
                    );
                }
                let mut names: Vec<String> = Vec::new();
                for n in list.get_ref() {
                    let Some(name) = self.active_client(n, tl) else {
                        continue;
                    };
                    if names.contains(&name) {
                        self.err(
                            n.span(),
                            format!("`{name}` rejoins twice in one step"),
                            Some(
                                "each client once; a second `rejoin` step for another reboot"
                                    .into(),
                            ),
                        );
                    } else {
                        names.push(name);
                    }
                }
                Action::Rejoin(names)
            }
            StepKey::Bulk(c) => {
                let client = self.active_client(c, tl)?;
                let Some(bytes) = &r.bytes else {
                    self.err(
                        span.clone(),
                        "a `bulk` step needs `bytes`",
                        Some("`bytes = 1000000` (how many bytes it sends and reads back)".into()),
                    );
                    return None;
                };
                let n = *bytes.get_ref();
                if n == 0 || n > BULK_MAX {
                    self.err(
                        bytes.span(),
                        format!("a bulk transfer of {n} bytes"),
                        Some(format!("1 to {BULK_MAX} bytes")),
                    );
                    return None;
                }
                tl.bulk.entry(client.clone()).or_insert(line);
                Action::Bulk { client, bytes: n }
            }
            StepKey::Say(text) => {
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
                tl.said_set.insert(text.get_ref().clone());
                Action::Say {
                    clients,
                    text: text.get_ref().clone(),
                }
            }
            StepKey::Chat(c) => {
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
            StepKey::Silent(c) => Action::Silent(self.active_client(c, tl)?),
            StepKey::Quit(list) => {
                let mut names = Vec::new();
                for n in list.get_ref() {
                    if let Some(name) = self.active_client(n, tl) {
                        tl.quit.insert(name.clone(), line);
                        names.push(name);
                    }
                }
                Action::Quit(names)
            }
            StepKey::Kill(s) => self.server_action(s, topo, ServerAction::Kill)?,
            StepKey::Stop(s) => self.server_action(s, topo, ServerAction::Stop)?,
            StepKey::Cont(s) => self.server_action(s, topo, ServerAction::Cont)?,
            StepKey::Restart(s) => self.server_action(s, topo, ServerAction::Restart)?,
            StepKey::LinkDown(h) => Action::Link {
                host: self.host(h, topo)?,
                up: false,
            },
            StepKey::LinkUp(h) => Action::Link {
                host: self.host(h, topo)?,
                up: true,
            },
            StepKey::Drop(f) => {
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
            StepKey::Rate(rate) => {
                if let Err(why) = rate_kbit(rate.get_ref()) {
                    self.err(
                        rate.span(),
                        why,
                        Some("a tc rate such as \"512kbit\", \"10mbit\"".into()),
                    );
                }
                let host = link_host(self)?;
                if host == LinkHost::Wifi {
                    self.err(
                        r.link.as_ref().map(|l| l.span()).unwrap_or(span.clone()),
                        "`rate` shapes a host's own interface, and the Wi-Fi is no host",
                        Some("`impair = \"wifi\"` with `rate = \"...\"`".into()),
                    );
                }
                Action::Rate {
                    host,
                    rate: rate.get_ref().clone(),
                }
            }
            StepKey::Netem(args) => {
                let impairment = match crate::link::spec::parse_netem(args.get_ref()) {
                    Ok(i) => i,
                    Err(e) => {
                        // The string's text starts after its opening quote.
                        let span = args.span();
                        let at = (span.start + 1 + e.offset).min(span.end.saturating_sub(1));
                        self.err(
                            at..(at + 1).min(span.end),
                            format!("netem arguments {:?} are not understood", args.get_ref()),
                            Some(e.expected),
                        );
                        Default::default()
                    }
                };
                let direction = self.direction(r);
                if r.kernel.as_ref().is_some_and(|k| *k.get_ref()) {
                    let host = link_host(self)?;
                    if direction != LinkDirection::Up || host == LinkHost::Wifi {
                        self.err(
                            r.kernel.as_ref().map(|k| k.span()).unwrap_or(span.clone()),
                            "the kernel's netem acts on what a host sends, on its own eth0",
                            Some(
                                "`kernel = true` with no `direction` (or \"up\") on a host \
                                 with a namespace, or no `kernel` for the harness's wire"
                                    .into(),
                            ),
                        );
                    }
                    Action::KernelNetem {
                        host,
                        args: args.get_ref().trim().to_string(),
                    }
                } else {
                    Action::Impair {
                        host: link_host(self)?,
                        direction,
                        impairment,
                        text: format!("netem {}", args.get_ref()),
                    }
                }
            }
            StepKey::Impair(h) => {
                let host = self.host(h, topo);
                let direction = self.direction(r);
                let (impairment, text) = self.impairment(r, span.clone())?;
                Action::Impair {
                    host: host?,
                    direction,
                    impairment,
                    text,
                }
            }
            StepKey::ClearFaults(h) => Action::ClearFaults(self.host(h, topo)?),
            StepKey::Wait(w) => {
                let d = self.positive(w, "wait")?;
                tl.elapsed = tl.elapsed.saturating_add(d);
                Action::Wait(d)
            }
            StepKey::WaitUntil(c) => {
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
        };
        let (lasts, every) = self.fault_timing(r, &action, span)?;
        Some(Step {
            line,
            at,
            action,
            note: r.note.clone(),
            lasts,
            every,
        })
    }

    fn condition(
        &mut self,
        written: &Spanned<ConditionTable>,
        topo: &TopologySettings,
        tl: &Timeline,
    ) -> Option<Condition> {
        let key = match written.get_ref().key() {
            Ok(key) => key,
            Err(present) => {
                self.err(
                    written.span(),
                    format!(
                        "a condition needs exactly one key, this one has {}",
                        present.len()
                    ),
                    Some(format!("one of {}", ConditionTable::KEYS.join(", "))),
                );
                return None;
            }
        };
        Some(match key {
            ConditionKey::ServerDown(s) => Condition::ServerDown(self.server(s, topo)?),
            ConditionKey::ServerUp(s) => Condition::ServerUp(self.server(s, topo)?),
            ConditionKey::Closed(s) => {
                if !tl.joined.contains_key(s.get_ref()) {
                    self.err(
                        s.span(),
                        format!("client `{}` has not joined before this step", s.get_ref()),
                        Some(known_clients(tl)),
                    );
                    return None;
                }
                Condition::Closed(s.get_ref().clone())
            }
            ConditionKey::Sessions(n) => Condition::Sessions(*n.get_ref()),
        })
    }

    fn server_action(
        &mut self,
        s: &SStr,
        topo: &TopologySettings,
        action: ServerAction,
    ) -> Option<Action> {
        Some(Action::Server {
            server: self.server(s, topo)?,
            action,
        })
    }
}

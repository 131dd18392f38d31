//! Expectation checks: one kind an expectation, known clients, servers and lines.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::{known_clients, Timeline, Validator};
use crate::scenario::model::*;
use crate::scenario::written::*;

impl Validator<'_> {
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

    pub(super) fn expect(
        &mut self,
        written: &Spanned<ExpectTable>,
        topo: &TopologySettings,
        tl: &Timeline,
        balancers: &[BalancerKind],
    ) -> Option<Expectation> {
        let r = written.get_ref();
        let span = written.span();
        let line = self.lines.line_of(span.start);
        let key = self.exactly_one(
            r.key(),
            span.clone(),
            ("expectation", "this expectation checks nothing", "kinds"),
            ExpectTable::KEYS,
        )?;
        if (r.by.is_some() || r.not_by.is_some()) && !matches!(key, ExpectKey::Heard(_)) {
            self.err(
                span.clone(),
                "`by` and `not_by` belong to a `heard` expectation",
                Some("`heard = \"line\"` with `by`/`not_by`".into()),
            );
        }
        for (modifier, mspan, owners) in r.owned_modifiers_given() {
            if !owners.contains(&key.name()) {
                self.err(
                    mspan,
                    format!(
                        "`{modifier}` does not belong to a `{}` expectation",
                        key.name()
                    ),
                    Some(format!("`{modifier}` only with {}", owners.join(" or "))),
                );
            }
        }
        if r.tolerance.is_some() && !matches!(key, ExpectKey::IdleClosed(_)) {
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
        if let ExpectKey::ChatIsolation(v) | ExpectKey::NoRefused(v) | ExpectKey::BalancerAlive(v) =
            key
        {
            if !*v.get_ref() {
                let flag = key.name();
                self.err(
                    v.span(),
                    format!("`{flag} = false` checks nothing"),
                    Some(format!("`{flag} = true`, or leave it out")),
                );
            }
        }
        let kind = match key {
            ExpectKey::Placement(map) => {
                ExpectKind::Placement(self.server_map(map.get_ref(), topo, tl))
            }
            ExpectKey::Balanced(n) => ExpectKind::Balanced(*n.get_ref()),
            ExpectKey::NotOn(map) => ExpectKind::NotOn(self.server_map(map.get_ref(), topo, tl)),
            ExpectKey::ChatIsolation(_) => ExpectKind::ChatIsolation,
            ExpectKey::Heard(text) => {
                if !tl.said_set.contains(text.get_ref()) {
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
                let within = match &r.within {
                    Some(w) => {
                        let d = self.positive(w, "within")?;
                        if by.is_empty() {
                            self.err(
                                w.span(),
                                "`within` bounds the delay of `by`, and this expectation has none",
                                Some("`by = [...]`: who must receive the line in time".into()),
                            );
                        }
                        Some(d)
                    }
                    None => None,
                };
                ExpectKind::Heard {
                    text: text.get_ref().clone(),
                    by,
                    not_by,
                    within,
                }
            }
            ExpectKey::Failover(s) => ExpectKind::Failover(self.server(s, topo)?),
            ExpectKey::Recovery(s) => ExpectKind::Recovery(self.server(s, topo)?),
            ExpectKey::Kept(list) => ExpectKind::Kept(self.clients(list, tl)),
            ExpectKey::StayedUp(list) => {
                ExpectKind::StayedUp(list.iter().filter_map(|s| self.server(s, topo)).collect())
            }
            ExpectKey::IdleClosed(list) => {
                let tolerance = match &r.tolerance {
                    Some(t) => self.positive(t, "tolerance")?,
                    None => Duration::from_millis(500),
                };
                ExpectKind::IdleClosed {
                    clients: self.clients(list, tl),
                    tolerance,
                }
            }
            ExpectKey::ToldClosed(t) => {
                let t = t.get_ref();
                let client = self.any_client(&t.client, tl);
                let within = self.positive(&t.within, "within");
                ExpectKind::ToldClosed {
                    client: client?,
                    within: within?,
                }
            }
            ExpectKey::BulkDone(list) => {
                let mut clients = Vec::new();
                for c in list {
                    let Some(name) = self.any_client(c, tl) else {
                        continue;
                    };
                    if tl.bulk.contains_key(&name) {
                        clients.push(name);
                    } else {
                        self.err(
                            c.span(),
                            format!("`{name}` makes no bulk transfer (no `bulk` step names it)"),
                            Some(if tl.bulk.is_empty() {
                                "a `bulk = \"client\"` step with `bytes` first".into()
                            } else {
                                format!(
                                    "one of the clients with a bulk transfer: {}",
                                    tl.bulk.keys().cloned().collect::<Vec<_>>().join(", ")
                                )
                            }),
                        );
                    }
                }
                if list.is_empty() {
                    self.err(
                        span.clone(),
                        "`bulk_done = []` checks nothing",
                        Some("one or more clients with a `bulk` step".into()),
                    );
                }
                let within = match &r.within {
                    Some(w) => Some(self.positive(w, "within")?),
                    None => None,
                };
                ExpectKind::BulkDone { clients, within }
            }
            ExpectKey::Refused(list) => ExpectKind::Refused(self.clients(list, tl)),
            ExpectKey::NoRefused(_) => ExpectKind::NoRefused,
            ExpectKey::OpenSessions(n) => ExpectKind::OpenSessions(*n.get_ref()),
            ExpectKey::BalancerAlive(_) => ExpectKind::BalancerAlive,
        };
        Some(Expectation {
            line,
            only,
            algorithm: r.algorithm.as_ref().map(|a| *a.get_ref()),
            why: r.why.clone(),
            kind,
        })
    }
}

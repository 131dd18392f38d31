//! Expectation checks: one kind an expectation, known clients, servers and lines.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::{known_clients, Timeline, Validator, EXPECT_KINDS};
use crate::scenario::model::*;
use crate::scenario::raw::*;

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

//! Waiting for a health change the balancer cannot show (kernel NAT, nginx, a program
//! without a health view): the run waits the bound the scenario allows instead, so the
//! steps after it happen when they would have against a balancer that shows it.

use std::time::Duration;

use super::Run;
use crate::scenario::{server_name, Condition, Step};

impl Run<'_> {
    /// For `server_down`/`server_up` with no health view: waits the detection (or
    /// recovery) bound plus margin, at most `deadline`, records why, and returns true.
    /// Returns false (nothing done) when the balancer has a view or the condition is
    /// another one. With no idle timeout at all (kernel NAT), `sessions` is waited for as
    /// usual, and not reaching it by the deadline is recorded as not applicable instead
    /// of failing the step.
    pub(super) async fn waited_without_view(
        &mut self,
        step: &Step,
        condition: &Condition,
        deadline: Duration,
    ) -> anyhow::Result<bool> {
        if let (Condition::Sessions(n), Some(reason)) =
            (condition, self.ev.traits.no_idle_timeout.clone())
        {
            return self
                .sessions_or_not_applicable(step, *n, deadline, &reason)
                .await;
        }
        if self.ev.traits.no_health_view.is_none() {
            return Ok(false);
        }
        let h = &self.scenario.health;
        let (server, bound, word) = match condition {
            Condition::ServerDown(s) => (*s, h.detection_bound(), "down"),
            Condition::ServerUp(s) => (*s, h.recovery_bound(), "up"),
            _ => return Ok(false),
        };
        let wait = bound.saturating_add(h.margin()).min(deadline);
        let until = self.now() + wait;
        self.sleep_serving(until).await?;
        self.event(
            Some(step),
            format!(
                "cannot see {} {word} (no health view): waited the bound instead",
                server_name(server)
            ),
            None,
        );
        Ok(true)
    }

    async fn sessions_or_not_applicable(
        &mut self,
        step: &Step,
        n: u32,
        deadline: Duration,
        reason: &str,
    ) -> anyhow::Result<bool> {
        let end = self.now() + deadline;
        loop {
            let held = self
                .observer()?
                .lock()
                .stats
                .as_ref()
                .and_then(|s| s.sessions);
            if held == Some(n) {
                self.event(
                    Some(step),
                    format!("the balancer holds {n} session(s)"),
                    None,
                );
                return Ok(true);
            }
            if self.now() > end {
                self.event(
                    Some(step),
                    format!(
                        "not {n} session(s) within {}: not applicable ({reason})",
                        humantime::format_duration(deadline)
                    ),
                    None,
                );
                return Ok(true);
            }
            let until = self.now() + crate::runner::observer::POLL;
            self.sleep_serving(until).await?;
        }
    }
}

//! Link faults: the native `impair` form, the way of a link a fault acts on, and how long
//! a fault lasts and how often it comes back (`for`, `every`).

use std::ops::Range;
use std::time::Duration;

use super::Validator;
use crate::link::spec::{self, Distribution, Impairment, Loss};
use crate::scenario::model::*;
use crate::scenario::written::*;

impl Validator<'_> {
    /// `direction` of a `netem` or `impair` step (default: up).
    pub(super) fn direction(&mut self, r: &StepTable) -> LinkDirection {
        match r.direction.as_ref().map(|d| (d, d.get_ref().as_str())) {
            None | Some((_, "up")) => LinkDirection::Up,
            Some((_, "down")) => LinkDirection::Down,
            Some((_, "both")) => LinkDirection::Both,
            Some((d, other)) => {
                self.err(
                    d.span(),
                    format!("unknown direction {other:?}"),
                    Some("\"up\", \"down\" or \"both\"".into()),
                );
                LinkDirection::Up
            }
        }
    }

    /// A value of an `impair` key, parsed by `parse` or an error at the value.
    fn impair_value<T>(
        &mut self,
        s: &SStr,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        self.value_at(s.get_ref(), s.span(), key, parse, expected)
    }

    /// `text` parsed by `parse`, or an error at `span`.
    fn value_at<T>(
        &mut self,
        text: &str,
        span: Range<usize>,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        let parsed = parse(text.trim());
        if parsed.is_none() {
            self.err(
                span,
                format!("{key} = {text:?} is not understood"),
                Some(expected.into()),
            );
        }
        parsed
    }

    /// The keys of an `impair` step as an [`Impairment`], with its description.
    pub(super) fn impairment(
        &mut self,
        r: &StepTable,
        span: Range<usize>,
    ) -> Option<(Impairment, String)> {
        const TIME: &str = "a time such as \"15ms\" or \"1.5s\" (at most 60 s)";
        let mut imp = Impairment::default();
        let mut words: Vec<String> = Vec::new();
        let mut ok = true;
        if let Some(d) = &r.delay {
            match self.impair_value(d, "delay", spec::parse_time, TIME) {
                Some(v) => imp.delay = v,
                None => ok = false,
            }
        }
        if let Some(j) = &r.jitter {
            match self.impair_value(j, "jitter", spec::parse_time, TIME) {
                Some(v) => imp.jitter = v,
                None => ok = false,
            }
            if r.delay.is_none() {
                self.err(
                    j.span(),
                    "`jitter` spreads a `delay`, and this step has none",
                    Some("`delay = \"20ms\"` beside it".into()),
                );
                ok = false;
            }
        }
        if let Some(d) = &r.distribution {
            let parse = |w: &str| {
                Some(match w {
                    "uniform" => Distribution::Uniform,
                    "normal" => Distribution::Normal,
                    "pareto" => Distribution::Pareto,
                    "paretonormal" => Distribution::ParetoNormal,
                    _ => return None,
                })
            };
            match self.impair_value(
                d,
                "distribution",
                parse,
                "\"uniform\", \"normal\", \"pareto\" or \"paretonormal\"",
            ) {
                Some(v) => imp.distribution = v,
                None => ok = false,
            }
            if r.jitter.is_none() {
                self.err(
                    d.span(),
                    "`distribution` shapes a `jitter`, and this step has none",
                    Some("`jitter = \"10ms\"` beside it".into()),
                );
                ok = false;
            }
        }
        if r.delay.is_some() {
            let mut w = format!("delay {}", r.delay.as_ref().map_or("", |d| d.get_ref()));
            if let Some(j) = &r.jitter {
                w += &format!(" ± {}", j.get_ref());
            }
            if let Some(d) = &r.distribution {
                w += &format!(" {}", d.get_ref());
            }
            words.push(w);
        }
        if let Some(l) = &r.loss {
            match self.loss(l) {
                Some((loss, w)) => {
                    imp.loss = loss;
                    words.push(w);
                }
                None => ok = false,
            }
        }
        if let Some(rate) = &r.rate {
            match self.impair_value(
                rate,
                "rate",
                spec::parse_rate,
                "a rate such as \"1mbit\" or \"512kbit\" (8 kbit/s to 100 gbit/s)",
            ) {
                Some(v) => imp.rate_bps = Some(v),
                None => ok = false,
            }
            words.push(format!("rate {}", rate.get_ref()));
        }
        if let Some(q) = &r.queue {
            match self.impair_value(
                q,
                "queue",
                spec::parse_queue,
                "frames (\"100\"), bytes (\"64kb\", \"1500b\") or a time (\"50ms\")",
            ) {
                Some(v) => imp.limit = v,
                None => ok = false,
            }
            words.push(format!("queue {}", q.get_ref()));
        }
        if r.delay.is_none() && r.loss.is_none() && r.rate.is_none() {
            self.err(
                span,
                "an `impair` step needs `delay`, `loss` or `rate`",
                Some("`delay = \"20ms\"`, `loss = \"2%\"` or `rate = \"1mbit\"`".into()),
            );
            ok = false;
        }
        ok.then(|| (imp, format!("impair {}", words.join(", "))))
    }

    /// `loss` of an `impair` step: a percentage or a table of bursts.
    fn loss(&mut self, l: &toml::Spanned<LossValue>) -> Option<(Loss, String)> {
        const PERCENT: &str = "a percentage such as \"2%\" or \"50%\"";
        const TIME: &str = "a time such as \"2s\" or \"200ms\" (at most 60 s)";
        let span = l.span();
        match l.get_ref() {
            LossValue::Percent(p) => {
                let v = self.value_at(p, span, "loss", spec::parse_percent, PERCENT)?;
                Some((
                    Loss::Random {
                        p: v,
                        correlation: 0.0,
                    },
                    format!("loss {p}"),
                ))
            }
            LossValue::Model(t) => {
                if t.model != "bursts" {
                    self.err(
                        span,
                        format!("unknown loss model {:?}", t.model),
                        Some("\"bursts\" (or a percentage instead of a table)".into()),
                    );
                    return None;
                }
                let positive = |w: &str| spec::parse_time(w).filter(|d| !d.is_zero());
                let good = self.value_at(&t.good, span.clone(), "good", positive, TIME);
                let bad = self.value_at(&t.bad, span.clone(), "bad", positive, TIME);
                let percent = |v: &mut Self, w: &Option<String>, key, default| match w {
                    Some(p) => v.value_at(p, span.clone(), key, spec::parse_percent, PERCENT),
                    None => Some(default),
                };
                let bad_loss = percent(self, &t.bad_loss, "bad_loss", 1.0);
                let good_loss = percent(self, &t.good_loss, "good_loss", 0.0);
                let (good, bad, bad_loss, good_loss) = (good?, bad?, bad_loss?, good_loss?);
                Some((
                    Loss::Bursts {
                        good,
                        bad,
                        good_loss,
                        bad_loss,
                    },
                    format!(
                        "loss bursts of {:.0}% for {} every {} ({:.0}% between)",
                        bad_loss * 100.0,
                        humantime::format_duration(bad),
                        humantime::format_duration(good),
                        good_loss * 100.0
                    ),
                ))
            }
        }
    }

    /// `for` and `every` of a fault step (not of `chat`, whose `every` is its period).
    pub(super) fn fault_timing(
        &mut self,
        r: &StepTable,
        action: &Action,
        span: Range<usize>,
    ) -> Option<(Option<Duration>, Option<Duration>)> {
        if matches!(action, Action::Chat { .. }) {
            return Some((None, None));
        }
        let lasts = match &r.r#for {
            Some(f) => Some(self.positive(f, "for")?),
            None => None,
        };
        let every = match &r.every {
            Some(e) => Some((self.positive(e, "every")?, e)),
            None => None,
        };
        match (lasts, every) {
            (None, Some(_)) => {
                self.err(
                    span,
                    "a fault that comes back `every` needs `for`: how long each time",
                    Some("`for = \"2s\"` beside `every`".into()),
                );
                None
            }
            (Some(f), Some((e, written))) if e <= f => {
                self.err(
                    written.span(),
                    format!(
                        "impossible timing: every = {} is not longer than for = {}",
                        humantime::format_duration(e),
                        humantime::format_duration(f)
                    ),
                    Some(format!(
                        "every longer than {}, so the fault ends before it comes back",
                        humantime::format_duration(f)
                    )),
                );
                None
            }
            (lasts, every) => Some((lasts, every.map(|(e, _)| e))),
        }
    }
}

//! The goals of issue 18, checked against one run (pure): each of ours against the
//! strongest peer of its kind on each measure, round by round, claimed only when the lead
//! is larger than the rounds' spread.
//!
//! A goal is a bound on the ratio ours / peer (e.g. kept req/s at least 1.0x of the best
//! of HAProxy and nginx). The peer is the one with the best median on that measure. The
//! ratio is taken within each round (both paths ran back to back, under the same other
//! load), and the verdict uses the median of those per-round ratios and their
//! interquartile range (IQR): *met* only when the median is past the bound by more than
//! the IQR, *missed* only when it falls short by more than the IQR, *unclear* otherwise,
//! and never from fewer than [`MIN_ROUNDS`] rounds.

use super::paths::PathKind;
use super::results::{Metric, PathResult};
use super::stats::{best, paired_ratios_all};

/// Fewest paired rounds a verdict (met or missed) is drawn from: with fewer, the spread
/// of the rounds says nothing.
pub const MIN_ROUNDS: usize = 3;

/// Which side of `ratio` ours / peer must lie on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// ours / peer >= the value (rates, throughput).
    AtLeast(f64),
    /// ours / peer <= the value (latency, CPU cost).
    AtMost(f64),
}

impl Bound {
    /// How far `ratio` is past the bound on the good side (negative: short of it).
    pub fn lead(self, ratio: f64) -> f64 {
        match self {
            Bound::AtLeast(b) => ratio - b,
            Bound::AtMost(b) => b - ratio,
        }
    }

    fn text(self) -> String {
        match self {
            Bound::AtLeast(b) => format!("at least {b:.2}×"),
            Bound::AtMost(b) => format!("at most {b:.2}×"),
        }
    }
}

/// The outcome of one goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The median ratio is past the bound by more than the spread of the rounds.
    Met,
    /// The median ratio falls short of the bound by more than the spread.
    Missed,
    /// Within the spread, or too few rounds to tell: no claim either way.
    Unclear,
    /// Ours or every peer was not measured in this run.
    NotMeasured,
}

impl Verdict {
    /// The mark in the Markdown report.
    pub fn mark(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Unclear => "unclear",
            Verdict::NotMeasured => "n/a",
        }
    }
}

/// The per-round ratios ours / peer, summarised for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RoundRatios {
    /// Median of the per-round ratios.
    pub median: f64,
    /// First quartile (linear interpolation between the sorted ratios).
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
    /// Rounds paired.
    pub n: usize,
}

impl RoundRatios {
    /// Summarises per-round ratios; `None` when there are none.
    pub fn of(ratios: &[f64]) -> Option<RoundRatios> {
        let mut v: Vec<f64> = ratios.iter().copied().filter(|r| r.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let pos = p * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        Some(RoundRatios {
            median: q(0.5),
            q1: q(0.25),
            q3: q(0.75),
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }

    /// The spread a lead must beat: the interquartile range.
    pub fn spread(&self) -> f64 {
        self.q3 - self.q1
    }

    /// Met, missed or unclear against `bound` (see the module documentation).
    pub fn verdict(&self, bound: Bound) -> Verdict {
        let lead = bound.lead(self.median);
        if self.n < MIN_ROUNDS {
            Verdict::Unclear
        } else if lead > self.spread() {
            Verdict::Met
        } else if -lead > self.spread() {
            Verdict::Missed
        } else {
            Verdict::Unclear
        }
    }
}

/// One goal, checked against this run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Goal {
    /// What is claimed.
    pub claim: String,
    /// The outcome.
    pub verdict: Verdict,
    /// The strongest peer on this measure (by median), when one was measured.
    pub peer: Option<&'static str>,
    /// The per-round ratios ours / that peer, when the rounds line up.
    pub rounds: Option<RoundRatios>,
    /// The figures behind the verdict.
    pub detail: String,
}

/// `ours` against the strongest of `peers` on `m`: which peer, the per-round ratios and
/// the verdict for `bound`. `kinds` names ours and the peers wanted, so the claim reads
/// the same whether or not they ran; `peers` are the peer paths' results (any that did
/// not measure `m` are skipped); `fmt` writes a figure of `m` for the detail.
pub fn versus_best(
    kinds: (PathKind, &[PathKind]),
    ours: Option<&PathResult>,
    peers: &[&PathResult],
    m: Metric,
    bound: Bound,
    fmt: impl Fn(f64) -> String,
) -> Goal {
    let (ours_kind, peer_kinds) = kinds;
    let names: Vec<&str> = peer_kinds.iter().map(|k| k.name()).collect();
    let ours_name = ours_kind.name();
    let against = match names.as_slice() {
        [one] => format!("{one}'s"),
        many => format!("the best of {}", many.join(", ")),
    };
    let claim = format!("{ours_name} {} {} {against}", m.header(), bound.text());
    let not_measured = |claim: String, peer| Goal {
        claim,
        verdict: Verdict::NotMeasured,
        peer,
        rounds: None,
        detail: "not measured in this run".into(),
    };
    let Some(o) = ours.and_then(|o| Some((o, o.summary(m)?))) else {
        return not_measured(claim, None);
    };
    let medians = peers
        .iter()
        .filter_map(|p| Some((p.path.name(), p.summary(m)?.median)));
    let Some((peer_name, peer_median)) = best(medians, m.higher_is_better()) else {
        return not_measured(claim, None);
    };
    let (ours, ours_summary) = o;
    let peer = peers
        .iter()
        .find(|p| p.path.name() == peer_name)
        .expect("the best is one of them");
    let ratio_of_medians = ours_summary.median / peer_median;
    let rounds = rounds_lined_up(ours, peer, m).and_then(|r| RoundRatios::of(&r));
    let figures = format!(
        "{ours_name} {} vs {peer_name} {} (medians {:.2}×)",
        fmt(ours_summary.median),
        fmt(peer_median),
        ratio_of_medians
    );
    let (verdict, detail) = match rounds {
        Some(r) => {
            let verdict = r.verdict(bound);
            let why = match verdict {
                _ if r.n < MIN_ROUNDS => format!("; fewer than {MIN_ROUNDS} rounds: no claim"),
                Verdict::Unclear => format!(
                    "; lead {:+.2} within the spread {:.2}: no claim",
                    bound.lead(r.median),
                    r.spread()
                ),
                _ => format!(
                    "; lead {:+.2}, spread {:.2}",
                    bound.lead(r.median),
                    r.spread()
                ),
            };
            (
                verdict,
                format!(
                    "{figures}; round by round {:.2}× (IQR {:.2}–{:.2}, range {:.2}–{:.2}, {} rounds){why}",
                    r.median, r.q1, r.q3, r.min, r.max, r.n
                ),
            )
        }
        None => (
            Verdict::Unclear,
            format!("{figures}; the rounds do not line up (a round failed): no claim"),
        ),
    };
    Goal {
        claim,
        verdict,
        peer: Some(peer_name),
        rounds,
        detail,
    }
}

/// The per-round ratios `ours` / `peer` on `m`, when both ran every round without a
/// problem (otherwise a missed round would pair one round's sample with another's).
pub fn rounds_lined_up(ours: &PathResult, peer: &PathResult, m: Metric) -> Option<Vec<f64>> {
    if !ours.problems.is_empty() || !peer.problems.is_empty() {
        return None;
    }
    paired_ratios_all(ours.samples.get(&m)?, peer.samples.get(&m)?)
}

/// The peers of `kind` for its goals: kernel NAT for the raw balancer (both forward
/// packets in the kernel's path, no process terminating TCP); HAProxy in both modes and
/// nginx for the proxy.
pub fn peers_of(kind: PathKind) -> &'static [PathKind] {
    match kind {
        PathKind::Raw => &[PathKind::Nat],
        _ => &[PathKind::HaproxyRr, PathKind::HaproxyLc, PathKind::Nginx],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::PathStatus;

    /// [`versus_best`] with the kinds taken from the results given (ours: the proxy when
    /// absent).
    fn vs(
        ours: Option<&PathResult>,
        peers: &[&PathResult],
        m: Metric,
        bound: Bound,
        fmt: fn(f64) -> String,
    ) -> Goal {
        let ours_kind = ours.map_or(PathKind::Proxy, |o| o.path);
        let kinds: Vec<PathKind> = peers.iter().map(|p| p.path).collect();
        versus_best((ours_kind, &kinds), ours, peers, m, bound, fmt)
    }

    fn path(kind: PathKind, m: Metric, samples: &[f64]) -> PathResult {
        let mut p = PathResult::new(kind, PathStatus::Measured);
        p.samples.insert(m, samples.to_vec());
        p
    }

    fn fmt(v: f64) -> String {
        format!("{v:.0}")
    }

    const KEEP: Metric = Metric::KeepReqPerSec;

    #[test]
    fn quartiles_interpolate() {
        let r = RoundRatios::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(
            (r.median, r.q1, r.q3, r.min, r.max, r.n),
            (3.0, 2.0, 4.0, 1.0, 5.0, 5)
        );
        let r = RoundRatios::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((r.median, r.q1, r.q3), (2.5, 1.75, 3.25));
        assert_eq!(RoundRatios::of(&[]), None);
        assert_eq!(RoundRatios::of(&[f64::NAN]), None);
    }

    #[test]
    fn the_best_peer_is_named_and_nginx_counts() {
        // nginx is stronger than either HAProxy mode on kept requests.
        let ours = path(PathKind::Proxy, KEEP, &[105.0, 104.0, 106.0, 103.0, 105.0]);
        let rr = path(PathKind::HaproxyRr, KEEP, &[90.0, 90.0, 90.0, 90.0, 90.0]);
        let lc = path(PathKind::HaproxyLc, KEEP, &[95.0, 95.0, 95.0, 95.0, 95.0]);
        let ng = path(PathKind::Nginx, KEEP, &[100.0, 100.0, 100.0, 100.0, 100.0]);
        let g = vs(
            Some(&ours),
            &[&rr, &lc, &ng],
            KEEP,
            Bound::AtLeast(1.0),
            fmt,
        );
        assert_eq!(g.peer, Some("nginx"));
        assert_eq!(g.verdict, Verdict::Met, "{}", g.detail);
        assert!(g.claim.contains("best of haproxy-rr, haproxy-lc, nginx"));
        assert!(
            g.detail
                .contains("round by round 1.05× (IQR 1.04–1.05, range 1.03–1.06, 5 rounds)"),
            "{}",
            g.detail
        );
        // Against HAProxy alone the same run would be a bigger lead; nginx decides.
        let g = vs(Some(&ours), &[&rr, &lc], KEEP, Bound::AtLeast(1.1), fmt);
        assert_eq!(g.peer, Some("haproxy-lc"));
        assert_eq!(g.verdict, Verdict::Unclear, "1.10× lead 0.00: {}", g.detail);
    }

    #[test]
    fn a_lead_smaller_than_the_spread_is_not_claimed() {
        let peer = path(PathKind::Nginx, KEEP, &[100.0; 5]);
        // Median 1.02×, but the rounds spread from 0.90× to 1.15× (IQR 0.95–1.10).
        let ours = path(PathKind::Proxy, KEEP, &[90.0, 95.0, 102.0, 110.0, 115.0]);
        let g = vs(Some(&ours), &[&peer], KEEP, Bound::AtLeast(1.0), fmt);
        assert_eq!(g.verdict, Verdict::Unclear, "{}", g.detail);
        assert!(g.detail.contains("within the spread"), "{}", g.detail);
        // Clearly behind: missed.
        let ours = path(PathKind::Proxy, KEEP, &[80.0, 81.0, 82.0, 83.0, 84.0]);
        let g = vs(Some(&ours), &[&peer], KEEP, Bound::AtLeast(1.0), fmt);
        assert_eq!(g.verdict, Verdict::Missed, "{}", g.detail);
    }

    #[test]
    fn lower_is_better_bounds_invert_the_lead() {
        let m = Metric::CpuUsPerReq;
        let peer = path(PathKind::Nginx, m, &[25.0, 26.0, 25.0]);
        let ours = path(PathKind::Proxy, m, &[20.0, 20.5, 20.0]);
        let g = vs(Some(&ours), &[&peer], m, Bound::AtMost(1.0), fmt);
        assert_eq!(g.verdict, Verdict::Met, "{}", g.detail);
        let g = vs(Some(&ours), &[&peer], m, Bound::AtMost(0.7), fmt);
        assert_eq!(g.verdict, Verdict::Missed, "{}", g.detail);
        // For a cost, the best peer is the cheapest.
        let dear = path(PathKind::HaproxyLc, m, &[40.0, 40.0, 40.0]);
        let g = vs(Some(&ours), &[&dear, &peer], m, Bound::AtMost(1.0), fmt);
        assert_eq!(g.peer, Some("nginx"));
    }

    #[test]
    fn too_few_rounds_or_misaligned_rounds_claim_nothing() {
        let peer = path(PathKind::Nat, KEEP, &[100.0, 100.0]);
        let ours = path(PathKind::Raw, KEEP, &[200.0, 200.0]);
        let g = vs(Some(&ours), &[&peer], KEEP, Bound::AtLeast(1.0), fmt);
        assert_eq!(g.verdict, Verdict::Unclear, "two rounds: {}", g.detail);
        let mut peer = path(PathKind::Nat, KEEP, &[100.0, 100.0, 100.0]);
        let ours = path(PathKind::Raw, KEEP, &[200.0, 200.0, 200.0]);
        peer.problem("round 2: start failed".into());
        let g = vs(Some(&ours), &[&peer], KEEP, Bound::AtLeast(1.0), fmt);
        assert_eq!(g.verdict, Verdict::Unclear);
        assert!(g.detail.contains("do not line up"), "{}", g.detail);
        let g = vs(None, &[&peer], KEEP, Bound::AtLeast(1.0), fmt);
        assert_eq!(g.verdict, Verdict::NotMeasured);
        let g = vs(Some(&ours), &[], KEEP, Bound::AtLeast(1.0), fmt);
        assert_eq!(g.verdict, Verdict::NotMeasured);
    }

    #[test]
    fn a_goal_not_measured_still_names_both_sides() {
        let g = versus_best(
            (PathKind::Raw, peers_of(PathKind::Raw)),
            None,
            &[],
            Metric::LatP50Us,
            Bound::AtMost(1.5),
            fmt,
        );
        assert_eq!(g.verdict, Verdict::NotMeasured);
        assert_eq!(g.claim, "raw p50 µs at most 1.50× nat's");
        let g = versus_best(
            (PathKind::Proxy, peers_of(PathKind::Proxy)),
            None,
            &[],
            KEEP,
            Bound::AtLeast(1.0),
            fmt,
        );
        assert!(
            g.claim
                .ends_with("at least 1.00× the best of haproxy-rr, haproxy-lc, nginx"),
            "{}",
            g.claim
        );
    }
}

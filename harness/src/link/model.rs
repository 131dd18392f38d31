//! The impairment of one direction of a link as a pure, seeded state machine: a frame of
//! `len` bytes arrives at time `now`; [`Direction::admit`] says whether it is lost and,
//! if not, when each of its copies leaves and whether it is corrupted.
//!
//! Order of the stages, as on a real link: loss at the entry (random, Gilbert-Elliott per
//! frame or on the clock), then the rate-limited queue (a frame is serialized once the
//! ones ahead of it are; past the queue bound it is dropped at the tail, so a full uplink
//! shows bufferbloat: delay grows with the queue, then frames are dropped), then the
//! propagation delay with its jitter. Frames keep their order unless `reorder` lets one
//! skip the delay (jitter alone never reorders: a link is a FIFO). Time is a parameter
//! and randomness comes from a seed, so every rule is tested without a clock or a network
//! and a run is reproduced by its seed.

use std::collections::VecDeque;
use std::time::Duration;

use super::spec::{Distribution, Impairment, Loss, QueueLimit};

/// Why a frame did not get through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropCause {
    /// The loss model lost it.
    Loss,
    /// The queue was full (tail drop).
    QueueFull,
}

/// One copy of an admitted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    /// When it leaves the wire.
    pub at: Duration,
    /// Whether one bit of it is to be flipped.
    pub corrupt: bool,
}

/// What happens to one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Lost, and why.
    Dropped(DropCause),
    /// Sent once, or twice when duplicated.
    Sent(Vec<Departure>),
}

/// A correlated uniform random source (netem's `get_crandom`): each draw is
/// `(1 - ρ) · U + ρ · previous`.
#[derive(Debug, Clone)]
struct Correlated {
    rho: f64,
    last: f64,
}

impl Correlated {
    fn new(rho: f64) -> Self {
        Correlated { rho, last: 0.5 }
    }

    fn draw(&mut self, rng: &mut fastrand::Rng) -> f64 {
        let u = rng.f64();
        self.last = if self.rho <= 0.0 {
            u
        } else {
            (1.0 - self.rho) * u + self.rho * self.last
        };
        self.last
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelState {
    Good,
    Bad,
}

/// The impairment of one direction, with its state.
#[derive(Debug, Clone)]
pub struct Direction {
    spec: Impairment,
    rng: fastrand::Rng,
    jitter_rand: Correlated,
    loss_rand: Correlated,
    reorder_rand: Correlated,
    state: ChannelState,
    /// For [`Loss::Bursts`]: when the current state ends.
    state_until: Duration,
    /// When the rate-limited queue is empty again.
    busy_until: Duration,
    /// Frames in the queue: (time its serialization ends, bytes).
    queued: VecDeque<(Duration, u64)>,
    queued_bytes: u64,
    /// Departure of the last frame that kept its place (FIFO order).
    last_departure: Duration,
}

impl Direction {
    /// A direction impaired by `spec`, its randomness from `seed`.
    pub fn new(spec: Impairment, seed: u64) -> Self {
        let (reorder_corr, _) = spec.reorder.map(|(p, c)| (c, p)).unwrap_or((0.0, 0.0));
        let loss_corr = match spec.loss {
            Loss::Random { correlation, .. } => correlation,
            _ => 0.0,
        };
        Direction {
            rng: fastrand::Rng::with_seed(seed),
            jitter_rand: Correlated::new(spec.jitter_correlation),
            loss_rand: Correlated::new(loss_corr),
            reorder_rand: Correlated::new(reorder_corr),
            state: ChannelState::Good,
            state_until: Duration::ZERO,
            busy_until: Duration::ZERO,
            queued: VecDeque::new(),
            queued_bytes: 0,
            last_departure: Duration::ZERO,
            spec,
        }
    }

    /// The impairment in force.
    pub fn spec(&self) -> &Impairment {
        &self.spec
    }

    /// Changes the impairment mid-run; frames already admitted keep their departures,
    /// and the queue and channel state carry over.
    pub fn set_spec(&mut self, spec: Impairment) {
        self.jitter_rand.rho = spec.jitter_correlation;
        self.spec = spec;
    }

    /// Decides the fate of a frame of `len` bytes arriving at `now` (monotonic).
    pub fn admit(&mut self, now: Duration, len: usize) -> Fate {
        if self.lost(now) {
            return Fate::Dropped(DropCause::Loss);
        }
        let len = len as u64;
        let serialized = match self.spec.rate_bps {
            Some(bps) => match self.enqueue(now, len, bps) {
                Some(end) => end,
                None => return Fate::Dropped(DropCause::QueueFull),
            },
            None => {
                if self.held_over_limit(now) {
                    return Fate::Dropped(DropCause::QueueFull);
                }
                now
            }
        };
        let reordered = match self.spec.reorder {
            Some((p, _)) => self.reorder_rand.draw(&mut self.rng) < p,
            None => false,
        };
        let at = if reordered {
            serialized
        } else {
            let at = (serialized + self.propagation()).max(self.last_departure);
            self.last_departure = at;
            at
        };
        if self.spec.rate_bps.is_none() {
            self.queued.push_back((at, len));
            self.queued_bytes += len;
        }
        let mut copies = vec![Departure {
            at,
            corrupt: self.chance(self.spec.corrupt),
        }];
        if self.chance(self.spec.duplicate) {
            copies.push(Departure {
                at,
                corrupt: self.chance(self.spec.corrupt),
            });
        }
        Fate::Sent(copies)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    fn lost(&mut self, now: Duration) -> bool {
        match self.spec.loss {
            Loss::None => false,
            Loss::Random { p, .. } => p > 0.0 && self.loss_rand.draw(&mut self.rng) < p,
            Loss::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss,
            } => {
                let flip = match self.state {
                    ChannelState::Good => p,
                    ChannelState::Bad => r,
                };
                if self.rng.f64() < flip {
                    self.state = match self.state {
                        ChannelState::Good => ChannelState::Bad,
                        ChannelState::Bad => ChannelState::Good,
                    };
                }
                let loss = match self.state {
                    ChannelState::Good => good_loss,
                    ChannelState::Bad => bad_loss,
                };
                self.chance(loss)
            }
            Loss::Bursts {
                good,
                bad,
                good_loss,
                bad_loss,
            } => {
                while self.state_until <= now {
                    let (next, mean) = match self.state {
                        ChannelState::Good if self.state_until.is_zero() => {
                            (ChannelState::Good, good)
                        }
                        ChannelState::Good => (ChannelState::Bad, bad),
                        ChannelState::Bad => (ChannelState::Good, good),
                    };
                    self.state = next;
                    let start = self.state_until.max(now.saturating_sub(mean * 4));
                    self.state_until = start + self.exponential(mean).max(Duration::from_micros(1));
                }
                let loss = match self.state {
                    ChannelState::Good => good_loss,
                    ChannelState::Bad => bad_loss,
                };
                self.chance(loss)
            }
        }
    }

    /// An exponentially distributed duration with mean `mean`.
    fn exponential(&mut self, mean: Duration) -> Duration {
        let u = 1.0 - self.rng.f64(); // (0, 1]
        Duration::from_secs_f64((-u.ln() * mean.as_secs_f64()).min(3600.0))
    }

    /// Serializes a frame behind the queue; `None` when the queue bound forbids it.
    fn enqueue(&mut self, now: Duration, len: u64, bps: u64) -> Option<Duration> {
        self.drain(now);
        let start = self.busy_until.max(now);
        let full = match self.spec.limit {
            QueueLimit::Frames(n) => self.queued.len() as u64 >= n,
            QueueLimit::Bytes(n) => self.queued_bytes + len > n && !self.queued.is_empty(),
            QueueLimit::Time(t) => start - now > t,
        };
        if full {
            return None;
        }
        let end = start + Duration::from_secs_f64(len as f64 * 8.0 / bps as f64);
        self.busy_until = end;
        self.queued.push_back((end, len));
        self.queued_bytes += len;
        Some(end)
    }

    /// Without a rate, the limit bounds the frames held for their delay.
    fn held_over_limit(&mut self, now: Duration) -> bool {
        self.drain(now);
        match self.spec.limit {
            QueueLimit::Frames(n) => self.queued.len() as u64 >= n,
            QueueLimit::Bytes(n) => self.queued_bytes >= n,
            QueueLimit::Time(_) => false,
        }
    }

    fn drain(&mut self, now: Duration) {
        while let Some(&(end, len)) = self.queued.front() {
            if end > now {
                break;
            }
            self.queued.pop_front();
            self.queued_bytes -= len;
        }
    }

    /// Delay plus jitter from the configured distribution, never negative.
    fn propagation(&mut self) -> Duration {
        let delay = self.spec.delay.as_secs_f64();
        let jitter = self.spec.jitter.as_secs_f64();
        if jitter == 0.0 {
            return self.spec.delay;
        }
        let u = self
            .jitter_rand
            .draw(&mut self.rng)
            .clamp(1e-12, 1.0 - 1e-12);
        let z = match self.spec.distribution {
            Distribution::Uniform => 2.0 * u - 1.0,
            Distribution::Normal => normal_quantile(u),
            Distribution::Pareto => pareto_standard(u),
            Distribution::ParetoNormal => 0.25 * normal_quantile(u) + 0.75 * pareto_standard(u),
        };
        Duration::from_secs_f64(
            (delay + jitter * z).clamp(0.0, 2.0 * super::spec::MAX_DELAY.as_secs_f64()),
        )
    }
}

/// The standard normal quantile of `u` (Acklam's rational approximation, |error| < 1.2e-9),
/// so a correlated uniform draw maps to a correlated normal one.
fn normal_quantile(u: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239e0,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838e0,
        -2.549732539343734e0,
        4.374664141464968e0,
        2.938163982698783e0,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996e0,
        3.754408661907416e0,
    ];
    let low = 0.02425;
    if u < low {
        let q = (-2.0 * u.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if u <= 1.0 - low {
        let q = u - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - u)
    }
}

/// A Pareto draw (shape 3) shifted and scaled to mean 0 and standard deviation 1: a long
/// tail above the delay, a short one below.
fn pareto_standard(u: f64) -> f64 {
    const SHAPE: f64 = 3.0;
    let mean = SHAPE / (SHAPE - 1.0);
    let sd = (SHAPE / ((SHAPE - 1.0).powi(2) * (SHAPE - 2.0))).sqrt();
    let x = (1.0 - u).powf(-1.0 / SHAPE);
    (x - mean) / sd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::spec::parse_netem;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn departures(
        dir: &mut Direction,
        frames: usize,
        gap: Duration,
        len: usize,
    ) -> Vec<Option<Duration>> {
        (0..frames)
            .map(|i| match dir.admit(gap * i as u32, len) {
                Fate::Sent(c) => Some(c[0].at - gap * i as u32),
                Fate::Dropped(_) => None,
            })
            .collect()
    }

    fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    #[test]
    fn a_plain_delay_is_exact_and_keeps_order() {
        let mut d = Direction::new(parse_netem("delay 20ms").unwrap(), 1);
        for i in 0..100u32 {
            assert_eq!(
                d.admit(ms(i as u64), 1500),
                Fate::Sent(vec![Departure {
                    at: ms(i as u64 + 20),
                    corrupt: false
                }])
            );
        }
    }

    #[test]
    fn jitter_spreads_around_the_delay_in_every_distribution() {
        for dist in ["uniform", "normal", "pareto", "paretonormal"] {
            let spec = parse_netem(&format!("delay 20ms 5ms distribution {dist}")).unwrap();
            let mut d = Direction::new(spec, 7);
            // Frames far apart, so FIFO order never holds one back.
            let delays: Vec<Duration> = departures(&mut d, 20_000, ms(100), 100)
                .into_iter()
                .flatten()
                .collect();
            let mean = delays.iter().map(|d| d.as_secs_f64()).sum::<f64>() / delays.len() as f64;
            assert!((mean - 0.020).abs() < 0.0005, "{dist}: mean {mean}");
            let p50 = percentile(delays.clone(), 0.5).as_secs_f64();
            let spread = percentile(delays.clone(), 0.9).as_secs_f64()
                - percentile(delays, 0.1).as_secs_f64();
            assert!(spread > 0.004 && spread < 0.02, "{dist}: p10..p90 {spread}");
            if dist == "pareto" {
                assert!(
                    p50 < mean,
                    "pareto's median sits below its mean: {p50} vs {mean}"
                );
            }
        }
    }

    #[test]
    fn correlated_jitter_changes_slowly() {
        let step = |corr: &str| {
            let mut d = Direction::new(parse_netem(&format!("delay 20ms 5ms {corr}")).unwrap(), 3);
            let v: Vec<f64> = departures(&mut d, 5000, ms(100), 100)
                .into_iter()
                .flatten()
                .map(|d| d.as_secs_f64())
                .collect();
            v.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / v.len() as f64
        };
        assert!(step("90%") < step("0%") / 3.0);
    }

    #[test]
    fn random_loss_is_within_the_binomial_interval() {
        let mut d = Direction::new(parse_netem("loss 5%").unwrap(), 11);
        let n = 100_000;
        let lost = departures(&mut d, n, ms(1), 100)
            .iter()
            .filter(|x| x.is_none())
            .count() as f64;
        // 99% interval of a binomial(100000, 0.05): ± 2.576 · sqrt(n p (1-p)) ≈ ± 178.
        assert!((lost - 5000.0).abs() < 178.0, "lost {lost}");
    }

    #[test]
    fn gilbert_elliott_loses_in_bursts_of_the_expected_length() {
        // p = 1%, r = 20%: bad bursts of mean 5 frames, all lost; stationary loss
        // p / (p + r) = 4.76%.
        let mut d = Direction::new(parse_netem("loss gemodel 1% 20% 100% 0%").unwrap(), 5);
        let fates = departures(&mut d, 200_000, ms(1), 100);
        let lost = fates.iter().filter(|x| x.is_none()).count() as f64 / fates.len() as f64;
        assert!((lost - 0.0476).abs() < 0.005, "loss {lost}");
        let mut bursts = Vec::new();
        let mut run = 0;
        for f in &fates {
            if f.is_none() {
                run += 1;
            } else if run > 0 {
                bursts.push(run);
                run = 0;
            }
        }
        let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
        assert!((mean - 5.0).abs() < 0.4, "mean burst {mean}");
    }

    #[test]
    fn clocked_bursts_lose_during_bad_periods() {
        let spec = Impairment {
            loss: Loss::Bursts {
                good: ms(900),
                bad: ms(100),
                good_loss: 0.0,
                bad_loss: 1.0,
            },
            ..Impairment::default()
        };
        let mut d = Direction::new(spec, 9);
        let fates = departures(&mut d, 600_000, Duration::from_micros(500), 100);
        let lost = fates.iter().filter(|x| x.is_none()).count() as f64 / fates.len() as f64;
        assert!((lost - 0.10).abs() < 0.03, "loss {lost}");
        let runs: Vec<usize> = fates
            .split(|f| f.is_some())
            .map(|r| r.len())
            .filter(|&l| l > 0)
            .collect();
        let mean_ms = runs.iter().sum::<usize>() as f64 / runs.len() as f64 * 0.5;
        assert!(
            (mean_ms - 100.0).abs() < 30.0,
            "mean bad period {mean_ms} ms"
        );
    }

    #[test]
    fn a_rate_limit_paces_frames_and_its_full_queue_drops_at_the_tail() {
        // 1 Mbit/s: a 1250-byte frame takes 10 ms. 50 frames at once, queue of 20.
        let mut d = Direction::new(parse_netem("rate 1mbit limit 20").unwrap(), 1);
        let fates: Vec<Fate> = (0..50).map(|_| d.admit(Duration::ZERO, 1250)).collect();
        let sent: Vec<Duration> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Sent(c) => Some(c[0].at),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 20);
        assert_eq!(sent[0], ms(10));
        assert_eq!(sent[19], ms(200), "delay grows with the queue");
        assert_eq!(fates[20], Fate::Dropped(DropCause::QueueFull));
        // Once drained, the queue takes frames again.
        assert!(matches!(d.admit(ms(200), 1250), Fate::Sent(_)));
    }

    #[test]
    fn queue_bounds_in_bytes_and_time() {
        let spec = |q| Impairment {
            rate_bps: Some(1_000_000),
            limit: q,
            ..Impairment::default()
        };
        let mut bytes = Direction::new(spec(QueueLimit::Bytes(5000)), 1);
        let n = (0..10)
            .filter(|_| matches!(bytes.admit(Duration::ZERO, 1250), Fate::Sent(_)))
            .count();
        assert_eq!(n, 4);
        let mut time = Direction::new(spec(QueueLimit::Time(ms(45))), 1);
        let n = (0..10)
            .filter(|_| matches!(time.admit(Duration::ZERO, 1250), Fate::Sent(_)))
            .count();
        assert_eq!(n, 5, "starts at 0, 10, 20, 30, 40 ms wait at most 45 ms");
    }

    #[test]
    fn reorder_lets_frames_skip_the_delay_and_duplicate_sends_twice() {
        let mut d = Direction::new(
            parse_netem("delay 10ms reorder 30% duplicate 10% corrupt 5%").unwrap(),
            2,
        );
        let (mut early, mut dup, mut bad, n) = (0, 0, 0, 10_000);
        for i in 0..n {
            if let Fate::Sent(c) = d.admit(ms(i), 100) {
                early += usize::from(c[0].at == ms(i));
                dup += usize::from(c.len() == 2);
                bad += c.iter().filter(|c| c.corrupt).count();
            }
        }
        assert!((2700..3300).contains(&early), "{early}");
        assert!((800..1200).contains(&dup), "{dup}");
        assert!((400..700).contains(&bad), "{bad}");
    }

    #[test]
    fn the_same_seed_gives_the_same_pattern() {
        let spec = parse_netem("delay 5ms 2ms loss 10% duplicate 5%").unwrap();
        let run = |seed| {
            let mut d = Direction::new(spec, seed);
            (0..1000).map(|i| d.admit(ms(i), 100)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}

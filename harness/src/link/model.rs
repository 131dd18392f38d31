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
mod tests;

//! What an impaired link does to the frames of one direction, and the `netem` syntax
//! that says it (`delay 15ms 10ms distribution normal loss 2% rate 1mbit limit 100`).
//!
//! Pure: parsing gives an [`Impairment`] or a [`SpecError`] with the byte offset of the
//! word that is wrong, so a scenario file's error can point at the column.

use std::fmt;
use std::time::Duration;

/// The longest delay, jitter or queue time a link may be given.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// netem's default queue bound, in frames.
pub const DEFAULT_LIMIT_FRAMES: u64 = 1000;

/// How jitter is spread around the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distribution {
    /// Evenly within delay ± jitter.
    #[default]
    Uniform,
    /// Normal, jitter is the standard deviation.
    Normal,
    /// Pareto (heavy tail above the delay), scaled to a standard deviation of jitter.
    Pareto,
    /// netem's mix: a quarter normal, three quarters Pareto.
    ParetoNormal,
}

/// Which frames are lost before they enter the link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Loss {
    /// None.
    #[default]
    None,
    /// Each frame with probability `p` (0..=1); `correlation` (0..=1) ties a frame's draw
    /// to the previous one's, as netem's correlated random numbers do.
    Random {
        /// Loss probability.
        p: f64,
        /// Correlation with the previous draw.
        correlation: f64,
    },
    /// Gilbert-Elliott, counted in frames (netem's `loss gemodel p r 1-h 1-k`): from good
    /// to bad with probability `p` per frame, back with `r`; lost with `bad_loss` in the
    /// bad state and `good_loss` in the good one.
    GilbertElliott {
        /// Good -> bad per frame.
        p: f64,
        /// Bad -> good per frame.
        r: f64,
        /// Loss in the bad state (netem's 1-h).
        bad_loss: f64,
        /// Loss in the good state (netem's 1-k).
        good_loss: f64,
    },
    /// Gilbert-Elliott on the clock: good and bad periods of exponentially distributed
    /// length with the given means, each state with its own loss probability (a power-line
    /// adapter that loses bursts of a few hundred milliseconds).
    Bursts {
        /// Mean length of a good period.
        good: Duration,
        /// Mean length of a bad period.
        bad: Duration,
        /// Loss in the good state.
        good_loss: f64,
        /// Loss in the bad state.
        bad_loss: f64,
    },
}

/// The bound of a rate-limited link's queue: past it, frames are dropped at the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// Frames waiting.
    Frames(u64),
    /// Bytes waiting.
    Bytes(u64),
    /// Time the newest frame would wait before it is sent.
    Time(Duration),
}

impl Default for QueueLimit {
    fn default() -> Self {
        QueueLimit::Frames(DEFAULT_LIMIT_FRAMES)
    }
}

/// Everything done to one direction of a link. The default does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Spread around the delay (see `distribution`).
    pub jitter: Duration,
    /// Correlation (0..=1) of a frame's jitter with the previous frame's.
    pub jitter_correlation: f64,
    /// The shape of the jitter.
    pub distribution: Distribution,
    /// Which frames are lost.
    pub loss: Loss,
    /// Probability that a frame is sent twice.
    pub duplicate: f64,
    /// Probability (and correlation) that a frame skips the delay and so overtakes the
    /// frames ahead of it (netem's `reorder`).
    pub reorder: Option<(f64, f64)>,
    /// Probability that one bit of a frame is flipped.
    pub corrupt: f64,
    /// Rate limit in bits per second.
    pub rate_bps: Option<u64>,
    /// Bound of the rate-limited queue (or of the frames held for delay, without a rate).
    pub limit: QueueLimit,
}

impl Impairment {
    /// Whether this does nothing at all (a plain link).
    pub fn is_none(&self) -> bool {
        *self == Impairment::default()
    }
}

/// A netem string that is not understood: the byte offset of the offending word and
/// what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Byte offset in the parsed string.
    pub offset: usize,
    /// What was expected, in words.
    pub expected: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: expected {}", self.offset, self.expected)
    }
}

impl std::error::Error for SpecError {}

struct Words<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Words { text, pos: 0 }
    }

    /// The next word and its offset, without taking it.
    fn peek(&self) -> Option<(usize, &'a str)> {
        let rest = &self.text[self.pos..];
        let skipped = rest.len() - rest.trim_start().len();
        let start = self.pos + skipped;
        let word = self.text[start..].split_whitespace().next()?;
        Some((start, word))
    }

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let (start, word) = self.peek()?;
        self.pos = start + word.len();
        Some((start, word))
    }

    fn end(&self) -> usize {
        self.text.len()
    }

    /// Takes the next word if `parse` accepts it.
    fn optional<T>(&mut self, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let (_, w) = self.peek()?;
        let v = parse(w)?;
        self.next();
        Some(v)
    }

    fn required<T>(
        &mut self,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, SpecError> {
        match self.next() {
            Some((at, w)) => parse(w).ok_or_else(|| SpecError {
                offset: at,
                expected: format!("{what}, found `{w}`"),
            }),
            None => Err(SpecError {
                offset: self.end(),
                expected: format!("{what} at the end"),
            }),
        }
    }
}

/// A duration with a unit (`15ms`, `1.5s`, `200us`), at most [`MAX_DELAY`].
pub fn parse_time(word: &str) -> Option<Duration> {
    let split = word.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = word.split_at(split);
    let value: f64 = num.parse().ok()?;
    let scale = match unit {
        "s" | "sec" | "secs" => 1.0,
        "ms" | "msec" | "msecs" => 1e-3,
        "us" | "usec" | "usecs" | "µs" => 1e-6,
        "ns" | "nsec" | "nsecs" => 1e-9,
        _ => return None,
    };
    let secs = value * scale;
    (secs.is_finite() && secs <= MAX_DELAY.as_secs_f64()).then(|| Duration::from_secs_f64(secs))
}

/// A percentage (`2%`, `0.1%`, or a bare number meaning percent, as tc reads it) as a
/// probability in 0..=1.
pub fn parse_percent(word: &str) -> Option<f64> {
    let value: f64 = word.strip_suffix('%').unwrap_or(word).parse().ok()?;
    (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(value / 100.0)
}

/// A rate in tc's units: `bit`, `kbit`, `mbit`, `gbit` (powers of 1000), `bps`, `kbps`,
/// `mbps`, `gbps` (bytes per second), in bits per second; at least 8 kbit/s and at most
/// 100 gbit/s.
pub fn parse_rate(word: &str) -> Option<u64> {
    let lower = word.to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = lower.split_at(split);
    let value: f64 = num.parse().ok()?;
    let bits = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    let bps = value * bits;
    (bps.is_finite() && (8_000.0..=100e9).contains(&bps)).then_some(bps as u64)
}

/// A queue bound: frames (`100`), bytes (`64kb`, `1mb`, `1500b`) or time (`50ms`).
pub fn parse_queue(word: &str) -> Option<QueueLimit> {
    if let Ok(n) = word.parse::<u64>() {
        return (1..=1_000_000)
            .contains(&n)
            .then_some(QueueLimit::Frames(n));
    }
    if let Some(t) = parse_time(word) {
        return (!t.is_zero()).then_some(QueueLimit::Time(t));
    }
    let lower = word.to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = lower.split_at(split);
    let n: u64 = num.parse().ok()?;
    let scale = match unit {
        "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        _ => return None,
    };
    let bytes = n.checked_mul(scale)?;
    (1..=1_000_000_000)
        .contains(&bytes)
        .then_some(QueueLimit::Bytes(bytes))
}

fn parse_distribution(word: &str) -> Option<Distribution> {
    Some(match word {
        "uniform" => Distribution::Uniform,
        "normal" => Distribution::Normal,
        "pareto" => Distribution::Pareto,
        "paretonormal" => Distribution::ParetoNormal,
        _ => return None,
    })
}

/// Parses netem's arguments (the words after `tc qdisc add ... netem`).
///
/// Supported: `delay TIME [JITTER [CORRELATION]] [distribution NAME]`, `loss [random]
/// PERCENT [CORRELATION]`, `loss gemodel P [R [1-H [1-K]]]`, `duplicate PERCENT
/// [CORRELATION]`, `reorder PERCENT [CORRELATION]` (needs a delay), `corrupt PERCENT
/// [CORRELATION]`, `rate RATE`, `limit FRAMES`. `slot`, `loss state`, `reorder ... gap`
/// and `ecn` are refused with that reason, not ignored.
pub fn parse_netem(text: &str) -> Result<Impairment, SpecError> {
    let mut spec = Impairment::default();
    let mut w = Words::new(text);
    let mut reorder_at = None;
    if w.peek().is_none() {
        return Err(SpecError {
            offset: 0,
            expected: "netem arguments, e.g. `delay 15ms 5ms` or `loss 2%`".into(),
        });
    }
    while let Some((at, word)) = w.next() {
        match word {
            "delay" | "latency" => {
                spec.delay = w.required("a delay with a unit, e.g. 15ms", parse_time)?;
                if let Some(j) = w.optional(parse_time) {
                    spec.jitter = j;
                    if let Some(c) = w.optional(parse_percent) {
                        spec.jitter_correlation = c;
                    }
                }
            }
            "distribution" => {
                spec.distribution = w.required(
                    "a distribution: uniform, normal, pareto or paretonormal",
                    parse_distribution,
                )?;
            }
            "loss" => spec.loss = parse_loss(&mut w)?,
            "duplicate" => {
                spec.duplicate = w.required("a percentage, e.g. 1%", parse_percent)?;
                w.optional(parse_percent);
            }
            "reorder" => {
                let p = w.required("a percentage, e.g. 25%", parse_percent)?;
                let c = w.optional(parse_percent).unwrap_or(0.0);
                spec.reorder = Some((p, c));
                reorder_at = Some(at);
                if let Some((gap_at, "gap")) = w.peek() {
                    return Err(SpecError {
                        offset: gap_at,
                        expected: "no `gap`: reordering by distance is not supported".into(),
                    });
                }
            }
            "corrupt" => {
                spec.corrupt = w.required("a percentage, e.g. 0.1%", parse_percent)?;
                w.optional(parse_percent);
            }
            "rate" => {
                spec.rate_bps = Some(w.required(
                    "a rate of 8kbit to 100gbit, e.g. 1mbit or 500kbit",
                    parse_rate,
                )?);
            }
            "limit" => {
                let n = w.required("a number of frames from 1 to 1000000", |s| {
                    s.parse::<u64>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                })?;
                spec.limit = QueueLimit::Frames(n);
            }
            "slot" | "ecn" => {
                return Err(SpecError {
                    offset: at,
                    expected: format!("a supported netem word (`{word}` is not supported here)"),
                })
            }
            other => {
                return Err(SpecError {
                    offset: at,
                    expected: format!(
                        "one of delay, distribution, loss, duplicate, reorder, corrupt, rate, \
                         limit; found `{other}`"
                    ),
                })
            }
        }
    }
    if let (Some(at), true) = (reorder_at, spec.delay.is_zero()) {
        return Err(SpecError {
            offset: at,
            expected: "a delay before reorder (a reordered frame is one that skips the delay)"
                .into(),
        });
    }
    Ok(spec)
}

fn parse_loss(w: &mut Words) -> Result<Loss, SpecError> {
    match w.peek() {
        Some((_, "random")) => {
            w.next();
        }
        Some((_, "gemodel")) => {
            w.next();
            let p = w.required("a percentage p (good to bad)", parse_percent)?;
            let r = w.optional(parse_percent).unwrap_or(1.0 - p);
            let bad_loss = w.optional(parse_percent).unwrap_or(1.0);
            let good_loss = w.optional(parse_percent).unwrap_or(0.0);
            return Ok(Loss::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss,
            });
        }
        Some((at, "state")) => {
            return Err(SpecError {
                offset: at,
                expected: "`random` or `gemodel` (the 4-state model is not supported)".into(),
            })
        }
        _ => {}
    }
    let p = w.required("a loss percentage, e.g. 2%", parse_percent)?;
    let correlation = w.optional(parse_percent).unwrap_or(0.0);
    Ok(Loss::Random { p, correlation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_netem_words_people_write() {
        let s = parse_netem("delay 15ms 10ms 25% distribution normal loss 2% duplicate 1% corrupt 0.1% rate 1mbit limit 100").unwrap();
        assert_eq!(s.delay, Duration::from_millis(15));
        assert_eq!(s.jitter, Duration::from_millis(10));
        assert!((s.jitter_correlation - 0.25).abs() < 1e-9);
        assert_eq!(s.distribution, Distribution::Normal);
        assert_eq!(
            s.loss,
            Loss::Random {
                p: 0.02,
                correlation: 0.0
            }
        );
        assert!((s.duplicate - 0.01).abs() < 1e-9);
        assert!((s.corrupt - 0.001).abs() < 1e-9);
        assert_eq!(s.rate_bps, Some(1_000_000));
        assert_eq!(s.limit, QueueLimit::Frames(100));
        let r = parse_netem("delay 10ms reorder 25% 50%").unwrap();
        assert_eq!(r.reorder, Some((0.25, 0.5)));
        let ge = parse_netem("loss gemodel 1% 10% 70% 0.1%").unwrap();
        assert!(
            matches!(ge.loss, Loss::GilbertElliott { p, r, bad_loss, good_loss }
            if (p - 0.01).abs() < 1e-9 && (r - 0.1).abs() < 1e-9
            && (bad_loss - 0.7).abs() < 1e-9 && (good_loss - 0.001).abs() < 1e-9)
        );
        assert_eq!(
            parse_netem("rate 8mbps").unwrap().rate_bps,
            Some(64_000_000)
        );
        assert_eq!(
            parse_netem("delay 1.5ms").unwrap().delay,
            Duration::from_micros(1500)
        );
    }

    #[test]
    fn points_at_the_word_that_is_wrong() {
        let e = parse_netem("delay banana").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.expected.contains("a delay with a unit"), "{e}");
        assert!(e.expected.contains("`banana`"), "{e}");
        assert_eq!(parse_netem("delay 5ms  wobble").unwrap_err().offset, 11);
        assert_eq!(parse_netem("loss").unwrap_err().offset, 4);
        assert_eq!(parse_netem("loss 200%").unwrap_err().offset, 5);
        assert_eq!(parse_netem("rate 0kbit").unwrap_err().offset, 5);
        assert!(parse_netem("slot 10ms")
            .unwrap_err()
            .expected
            .contains("not supported"));
        assert!(parse_netem("reorder 5%")
            .unwrap_err()
            .expected
            .contains("delay"));
        assert_eq!(parse_netem("").unwrap_err().offset, 0);
        assert_eq!(
            parse_netem("delay 10ms reorder 5% gap 3")
                .unwrap_err()
                .offset,
            22
        );
    }

    #[test]
    fn huge_numbers_are_refused_not_overflowed() {
        for text in [
            "delay 99999999999999999999s",
            "delay 1e308s",
            "delay 61s",
            "rate 99999999999999999999999gbit",
            "limit 99999999999999999999",
            "loss 1e400%",
            "delay nan",
            "delay infs",
        ] {
            assert!(parse_netem(text).is_err(), "{text}");
        }
        assert_eq!(parse_queue("99999999999999999999mb"), None);
        assert_eq!(parse_queue("64kb"), Some(QueueLimit::Bytes(64_000)));
        assert_eq!(
            parse_queue("50ms"),
            Some(QueueLimit::Time(Duration::from_millis(50)))
        );
        assert_eq!(parse_queue("20"), Some(QueueLimit::Frames(20)));
    }
}

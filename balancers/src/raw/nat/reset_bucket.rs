//! A token bucket on the core's clock, bounding the resets the balancer generates itself.
//!
//! A flood of SYNs while every backend is down must not become a flood of RSTs towards
//! whatever address the SYNs claim to come from: refusals beyond the bucket's rate are
//! not sent (and counted); the SYNs are dropped and counted either way. The same bucket
//! bounds the answers to segments of unknown flows and the resets of idle-evicted rows.

use std::time::Duration;

/// Refusals per second allowed on average.
pub const REFUSALS_PER_SEC: u32 = 2_000;
/// Refusals allowed at once after a quiet while.
pub const REFUSAL_BURST: u32 = 500;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket refilled at `rate` a second, holding at most `burst` (at least 1).
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: Duration::ZERO,
        }
    }

    /// Takes one token at `now` (the core's monotonic clock); false when none is left.
    /// A clock that goes backwards adds nothing.
    pub fn take(&mut self, now: Duration) -> bool {
        if now > self.last {
            let refill = (now - self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut b = TokenBucket::new(1_000, 10);
        let t0 = Duration::from_secs(5);
        let passed = (0..50).filter(|_| b.take(t0)).count();
        assert_eq!(passed, 10, "the burst, then nothing at the same instant");
        // 20 ms at 1000/s refills 20 tokens, capped at the burst of 10.
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!((0..50).filter(|_| b.take(t1)).count(), 10);
        // 3 ms refills 3.
        let t2 = t1 + Duration::from_millis(3);
        assert_eq!((0..50).filter(|_| b.take(t2)).count(), 3);
        // Over one simulated second of steady demand, about the rate passes.
        let mut passed = 0;
        for ms in 1..=1000u64 {
            let now = t2 + Duration::from_millis(ms);
            passed += (0..5).filter(|_| b.take(now)).count();
        }
        assert!((995..=1005).contains(&passed), "{passed} in one second");
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(1_000, 1);
        assert!(b.take(Duration::from_secs(2)));
        assert!(!b.take(Duration::from_secs(1)));
        assert!(!b.take(Duration::from_secs(2)));
    }
}

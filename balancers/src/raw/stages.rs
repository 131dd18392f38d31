//! Where a packet's time goes inside `l4lb raw` (`--stage-times FILE`): three latency
//! histograms, written as JSON when the balancer stops.
//!
//! - `queued`, per datagram: from the kernel's arrival time (`SO_TIMESTAMPNS`, taken as
//!   the frame enters the balancer's host) to the moment the forwarding loop's receive
//!   returned it. The wait in the socket queue, and for a sleeping loop its wake-up.
//! - `rewrite`, per batch: from that receive's return to the first send (NAT table and
//!   rewrite of every datagram of the batch).
//! - `send`, per batch: the send calls. On a veth this includes the receiving end's own
//!   stack, which the kernel runs inside the sender's call.
//!
//! A pass through the balancer is about `queued` + `rewrite` + `send`; a round trip's
//! latency minus two passes is the time spent outside the balancer (the endpoints, their
//! wake-ups). Off by default: it reads the clock three times a batch and asks the kernel
//! for a timestamp per datagram.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest time a histogram holds (longer ones are counted at this value).
const MAX_NS: u64 = 60_000_000_000;

/// The three histograms, in nanoseconds.
#[derive(Debug, Clone)]
pub struct StageTimes {
    queued: Histogram<u64>,
    rewrite: Histogram<u64>,
    send: Histogram<u64>,
    /// Datagrams whose arrival time was unknown (0) or later than their receive, so no
    /// `queued` time was taken (a clock step, a device without timestamps).
    unstamped: u64,
}

/// One stage's figures, as written to the file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSummary {
    /// `queued`, `rewrite` or `send`.
    pub stage: &'static str,
    /// What one sample is.
    pub per: &'static str,
    /// Samples taken.
    pub count: u64,
    /// Percentiles and the largest sample, in microseconds.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest sample, µs.
    pub max_us: f64,
}

/// The whole file: every stage, and the datagrams with no arrival time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// The stages in the order a packet meets them.
    pub stages: Vec<StageSummary>,
    /// Datagrams with no usable arrival time (not in `queued`).
    pub unstamped: u64,
}

impl Default for StageTimes {
    fn default() -> Self {
        Self::new()
    }
}

impl StageTimes {
    /// Empty histograms from 1 ns to 60 s, 3 significant digits.
    pub fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds");
        Self {
            queued: h(),
            rewrite: h(),
            send: h(),
            unstamped: 0,
        }
    }

    /// A datagram that arrived at `arrived_ns` and was received at `received_ns` (both
    /// `CLOCK_REALTIME` nanoseconds; an arrival of 0 is unknown).
    pub fn datagram(&mut self, arrived_ns: u64, received_ns: u64) {
        if arrived_ns == 0 || arrived_ns > received_ns {
            self.unstamped += 1;
            return;
        }
        self.queued.saturating_record(received_ns - arrived_ns);
    }

    /// A batch that took `rewrite` from its receive to its first send, then `send`.
    pub fn batch(&mut self, rewrite: Duration, send: Duration) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.rewrite.saturating_record(ns(rewrite));
        self.send.saturating_record(ns(send));
    }

    /// The figures of every stage.
    pub fn report(&self) -> StageReport {
        let summary = |stage, per, h: &Histogram<u64>| {
            let us = |ns: u64| ns as f64 / 1000.0;
            StageSummary {
                stage,
                per,
                count: h.len(),
                p50_us: us(h.value_at_quantile(0.5)),
                p90_us: us(h.value_at_quantile(0.9)),
                p99_us: us(h.value_at_quantile(0.99)),
                p999_us: us(h.value_at_quantile(0.999)),
                max_us: us(h.max()),
            }
        };
        StageReport {
            stages: vec![
                summary("queued", "datagram", &self.queued),
                summary("rewrite", "batch", &self.rewrite),
                summary("send", "batch", &self.send),
            ],
            unstamped: self.unstamped,
        }
    }
}

/// The current `CLOCK_REALTIME` in nanoseconds, the clock of the kernel's arrival times.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage<'a>(r: &'a StageReport, name: &str) -> &'a StageSummary {
        r.stages.iter().find(|s| s.stage == name).unwrap()
    }

    #[test]
    fn queued_times_are_receive_minus_arrival_and_bad_stamps_are_counted_apart() {
        let mut t = StageTimes::new();
        let mut rng = fastrand::Rng::with_seed(18);
        let base = 1_700_000_000_000_000_000u64;
        for _ in 0..999 {
            let wait = rng.u64(1_000..3_000); // 1-3 µs
            t.datagram(base, base + wait);
        }
        t.datagram(base, base + 2_000_000); // one of 2 ms
        t.datagram(0, base); // no stamp
        t.datagram(base + 5, base); // arrival after receive: a clock step
        let r = t.report();
        let q = stage(&r, "queued");
        assert_eq!(q.count, 1000);
        assert!((1.9..2.1).contains(&q.p50_us), "{q:?}");
        assert!(q.p99_us < 3.1, "{q:?}");
        assert!((1999.0..2003.0).contains(&q.max_us), "{q:?}");
        assert_eq!(r.unstamped, 2);
        assert_eq!(stage(&r, "send").count, 0);
    }

    #[test]
    fn batches_fill_rewrite_and_send_and_huge_durations_saturate() {
        let mut t = StageTimes::new();
        for k in 1..=100u64 {
            t.batch(Duration::from_nanos(100 * k), Duration::from_micros(k));
        }
        t.batch(Duration::from_secs(u64::MAX), Duration::ZERO);
        let r = t.report();
        let (rw, send) = (stage(&r, "rewrite"), stage(&r, "send"));
        assert_eq!((rw.count, send.count), (101, 101));
        assert!((4.9..5.2).contains(&rw.p50_us), "{rw:?}");
        assert!((49.0..52.0).contains(&send.p50_us), "{send:?}");
        assert!(rw.max_us >= 59_000_000.0, "saturated at 60 s: {rw:?}");
    }

    #[test]
    fn the_report_is_json_in_the_order_a_packet_meets_the_stages() {
        let json = serde_json::to_value(StageTimes::new().report()).unwrap();
        let names: Vec<&str> = json["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stage"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["queued", "rewrite", "send"]);
        assert_eq!(json["unstamped"], 0);
    }
}

//! The wire's schedule, both directions of one link: frames are offered as they arrive,
//! held until their departure time, and taken out in departure order (pure, no I/O).
//!
//! The I/O side (the wire) offers every frame it reads, sleeps until
//! [`Shaper::next_due`], and sends what [`Shaper::pop_due`] returns. A binary heap keyed
//! by (departure, arrival number) keeps frames of equal departure in arrival order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::model::{Direction, DropCause, Fate};
use super::spec::Impairment;

/// Which way a frame crosses the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Way {
    /// From the host towards the switch (the host's upload).
    Up,
    /// From the switch towards the host (the host's download).
    Down,
}

impl Way {
    /// Both, in report order.
    pub const BOTH: [Way; 2] = [Way::Up, Way::Down];

    fn index(self) -> usize {
        match self {
            Way::Up => 0,
            Way::Down => 1,
        }
    }

    /// `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Way::Up => "up",
            Way::Down => "down",
        }
    }
}

/// What happened to the frames of one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WayCounters {
    /// Frames read from the wire's input.
    pub offered: u64,
    /// Frames the loss model lost.
    pub lost: u64,
    /// Frames dropped at the tail of a full queue.
    pub queue_full: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Frames sent with a flipped bit.
    pub corrupted: u64,
    /// Frames handed back for sending.
    pub delivered: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    at: Duration,
    seq: u64,
    way: Way,
    corrupt: bool,
    frame: Vec<u8>,
}

/// A frame due for sending.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    /// The way it goes.
    pub way: Way,
    /// The frame as read.
    pub frame: Vec<u8>,
    /// Whether one bit is to be flipped before it is sent.
    pub corrupt: bool,
}

/// Both ways of one link, their models and the frames held.
#[derive(Debug)]
pub struct Shaper {
    ways: [Direction; 2],
    counters: [WayCounters; 2],
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
}

impl Shaper {
    /// A link impaired by `up` and `down`, seeded (each way gets its own stream).
    pub fn new(up: Impairment, down: Impairment, seed: u64) -> Self {
        Shaper {
            ways: [
                Direction::new(up, seed),
                Direction::new(down, seed ^ 0x9e37_79b9_7f4a_7c15),
            ],
            counters: [WayCounters::default(); 2],
            held: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Changes one way's impairment (mid-run; frames held keep their times).
    pub fn set(&mut self, way: Way, spec: Impairment) {
        self.ways[way.index()].set_spec(spec);
    }

    /// The impairment of `way`.
    pub fn spec(&self, way: Way) -> &Impairment {
        self.ways[way.index()].spec()
    }

    /// Counters of `way`.
    pub fn counters(&self, way: Way) -> WayCounters {
        self.counters[way.index()]
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// A frame read at `now` going `way`.
    pub fn offer(&mut self, way: Way, now: Duration, frame: Vec<u8>) {
        let i = way.index();
        self.counters[i].offered += 1;
        match self.ways[i].admit(now, frame.len()) {
            Fate::Dropped(DropCause::Loss) => self.counters[i].lost += 1,
            Fate::Dropped(DropCause::QueueFull) => self.counters[i].queue_full += 1,
            Fate::Sent(copies) => {
                self.counters[i].duplicated += copies.len() as u64 - 1;
                let last = copies.len() - 1;
                let mut frame = Some(frame);
                for (k, d) in copies.into_iter().enumerate() {
                    let f = if k == last {
                        frame.take().unwrap_or_default()
                    } else {
                        frame.clone().unwrap_or_default()
                    };
                    self.seq += 1;
                    self.held.push(Reverse(Held {
                        at: d.at,
                        seq: self.seq,
                        way,
                        corrupt: d.corrupt,
                        frame: f,
                    }));
                }
            }
        }
    }

    /// When the next held frame is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.held.peek().map(|Reverse(h)| h.at)
    }

    /// The next frame due at or before `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<Due> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(h) = self.held.pop()?;
        let c = &mut self.counters[h.way.index()];
        c.delivered += 1;
        c.corrupted += u64::from(h.corrupt);
        Some(Due {
            way: h.way,
            frame: h.frame,
            corrupt: h.corrupt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::spec::parse_netem;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn each_way_has_its_own_impairment_and_frames_leave_in_time_order() {
        let mut s = Shaper::new(
            parse_netem("delay 30ms").unwrap(),
            parse_netem("delay 10ms").unwrap(),
            1,
        );
        s.offer(Way::Up, ms(0), vec![1]);
        s.offer(Way::Down, ms(1), vec![2]);
        s.offer(Way::Down, ms(2), vec![3]);
        assert_eq!(s.next_due(), Some(ms(11)));
        assert_eq!(s.pop_due(ms(10)), None);
        assert_eq!(s.pop_due(ms(11)).unwrap().frame, vec![2]);
        assert_eq!(s.pop_due(ms(40)).unwrap().frame, vec![3]);
        let up = s.pop_due(ms(40)).unwrap();
        assert_eq!((up.way, up.frame), (Way::Up, vec![1]));
        assert_eq!(s.held(), 0);
        assert_eq!(s.counters(Way::Down).delivered, 2);
    }

    #[test]
    fn a_plain_way_passes_at_once_and_counts() {
        let mut s = Shaper::new(Impairment::default(), parse_netem("loss 100%").unwrap(), 1);
        s.offer(Way::Up, ms(5), vec![9; 60]);
        s.offer(Way::Down, ms(5), vec![9; 60]);
        assert_eq!(s.pop_due(ms(5)).map(|d| d.way), Some(Way::Up));
        assert_eq!(s.pop_due(ms(5)), None);
        assert_eq!(
            s.counters(Way::Down),
            WayCounters {
                offered: 1,
                lost: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn duplicates_are_held_as_two_frames_and_a_change_applies_to_later_frames() {
        let mut s = Shaper::new(
            parse_netem("duplicate 100%").unwrap(),
            Impairment::default(),
            1,
        );
        s.offer(Way::Up, ms(0), vec![7]);
        assert_eq!(s.held(), 2);
        assert_eq!(s.counters(Way::Up).duplicated, 1);
        s.set(Way::Up, parse_netem("delay 5ms").unwrap());
        s.offer(Way::Up, ms(1), vec![8]);
        assert_eq!(s.pop_due(ms(0)).unwrap().frame, vec![7]);
        assert_eq!(s.pop_due(ms(0)).unwrap().frame, vec![7]);
        assert_eq!(s.pop_due(ms(5)), None);
        assert_eq!(s.pop_due(ms(6)).unwrap().frame, vec![8]);
    }
}

//! Backend health as a pure state machine with hysteresis (rise/fall).
//!
//! ```text
//!            success                      success x rise
//!   Unknown ---------> Up <----------------------------------- Down
//!      |                |  ^                                      ^
//!      | failure        |  | success                              |
//!      |        failure v  |            failure x fall (in a row) |
//!      |             Suspect -------------------------------------+
//!      +-----------------------------------------------------------+
//! ```
//! - `Unknown` (before the first result) and `Suspect` are still usable: the seed's
//!   "bad" state. A backend never heard of is tried optimistically; the balancers' passive
//!   health (a failed connect) and the first active check settle it quickly.
//! - The first failure of an `Up` backend makes it `Suspect`; `fall` failures in a row make
//!   it `Down` (skipped by selection). With `fall = 1` an `Up` backend goes `Down` at once.
//! - The first result of an `Unknown` backend decides: failure means `Down` (a backend that
//!   is down at start is simply down until it passes), success means `Up`.
//! - A `Down` backend needs `rise` successes in a row to be `Up` again; a failure in
//!   between starts the count again.

use std::fmt;

/// The health of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// No check result yet; usable.
    Unknown,
    /// Passing checks; usable.
    Up,
    /// At least one failure in a row but fewer than `fall`; still usable.
    Suspect,
    /// `fall` failures in a row (or failed its first check); not used until it rises.
    Down,
}

impl Health {
    /// Whether selection may hand this backend new sessions.
    pub fn is_usable(self) -> bool {
        !matches!(self, Health::Down)
    }

    /// Lower-case name, as used in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Suspect => "suspect",
            Health::Down => "down",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many results in a row flip the state: `rise` successes bring a `Down` backend up,
/// `fall` failures bring an `Up` one down. A zero is treated as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes in a row that bring a `Down` backend back `Up`.
    pub rise: u32,
    /// Failures in a row that take an `Up` backend `Down`.
    pub fall: u32,
}

impl Default for Thresholds {
    /// The original raw balancer's: one success revives, three failures kill.
    fn default() -> Self {
        Self { rise: 1, fall: 3 }
    }
}

/// A change of [`Health`], returned by the state machine when the state flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before the result.
    pub from: Health,
    /// State after the result.
    pub to: Health,
}

impl Transition {
    /// Whether the backend went from usable to not usable or back (not just `Up`/`Suspect`).
    pub fn usability_changed(&self) -> bool {
        self.from.is_usable() != self.to.is_usable()
    }
}

/// Health state of one backend with the counts of results in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    health: Health,
    successes_in_row: u32,
    failures_in_row: u32,
}

impl Default for HealthState {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthState {
    /// A backend with no results yet ([`Health::Unknown`], usable).
    pub fn new() -> Self {
        Self {
            health: Health::Unknown,
            successes_in_row: 0,
            failures_in_row: 0,
        }
    }

    /// A backend starting in the given state (counts at zero).
    pub fn starting(health: Health) -> Self {
        Self {
            health,
            ..Self::new()
        }
    }

    /// The current state.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records a passed check; returns the transition if the state flipped.
    pub fn record_success(&mut self, thresholds: Thresholds) -> Option<Transition> {
        self.failures_in_row = 0;
        self.successes_in_row = self.successes_in_row.saturating_add(1);
        let next = match self.health {
            Health::Unknown | Health::Suspect => Health::Up,
            Health::Up => Health::Up,
            Health::Down if self.successes_in_row >= thresholds.rise.max(1) => Health::Up,
            Health::Down => Health::Down,
        };
        self.move_to(next)
    }

    /// Records a failed check (or failed connect); returns the transition if it flipped.
    pub fn record_failure(&mut self, thresholds: Thresholds) -> Option<Transition> {
        self.successes_in_row = 0;
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        let next = match self.health {
            Health::Unknown | Health::Down => Health::Down,
            Health::Up | Health::Suspect if self.failures_in_row >= thresholds.fall.max(1) => {
                Health::Down
            }
            Health::Up | Health::Suspect => Health::Suspect,
        };
        self.move_to(next)
    }

    fn move_to(&mut self, next: Health) -> Option<Transition> {
        let from = self.health;
        if from == next {
            return None;
        }
        self.health = next;
        Some(Transition { from, to: next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: Thresholds = Thresholds { rise: 1, fall: 3 };

    fn flip(from: Health, to: Health) -> Option<Transition> {
        Some(Transition { from, to })
    }

    #[test]
    fn first_result_decides_an_unknown_backend() {
        let mut up = HealthState::new();
        assert!(up.health().is_usable());
        assert_eq!(up.record_success(SEED), flip(Health::Unknown, Health::Up));
        let mut down = HealthState::new();
        assert_eq!(
            down.record_failure(SEED),
            flip(Health::Unknown, Health::Down)
        );
        assert!(!down.health().is_usable());
    }

    #[test]
    fn seed_semantics_first_failure_suspect_then_down_after_fall() {
        let mut s = HealthState::starting(Health::Up);
        assert_eq!(s.record_failure(SEED), flip(Health::Up, Health::Suspect));
        assert!(s.health().is_usable(), "suspect is still used");
        assert_eq!(s.record_failure(SEED), None);
        assert_eq!(s.health(), Health::Suspect);
        let t = s.record_failure(SEED).expect("third failure flips");
        assert_eq!(
            t,
            Transition {
                from: Health::Suspect,
                to: Health::Down
            }
        );
        assert!(t.usability_changed());
        assert_eq!(s.record_failure(SEED), None, "down stays down");
        assert_eq!(s.record_success(SEED), flip(Health::Down, Health::Up));
    }

    #[test]
    fn fall_one_goes_down_at_once() {
        let mut s = HealthState::starting(Health::Up);
        let t = Thresholds { rise: 1, fall: 1 };
        assert_eq!(s.record_failure(t), flip(Health::Up, Health::Down));
    }

    #[test]
    fn rise_needs_successes_in_a_row() {
        let t = Thresholds { rise: 3, fall: 2 };
        let mut s = HealthState::starting(Health::Down);
        assert_eq!(s.record_success(t), None);
        assert_eq!(s.record_success(t), None);
        assert_eq!(s.record_failure(t), None, "a failure restarts the count");
        assert_eq!(s.record_success(t), None);
        assert_eq!(s.record_success(t), None);
        assert_eq!(s.health(), Health::Down);
        assert_eq!(s.record_success(t), flip(Health::Down, Health::Up));
    }

    #[test]
    fn flapping_below_fall_never_goes_down() {
        let mut s = HealthState::starting(Health::Up);
        for _ in 0..10 {
            assert_eq!(s.record_failure(SEED), flip(Health::Up, Health::Suspect));
            assert_eq!(s.record_failure(SEED), None);
            assert_eq!(s.record_success(SEED), flip(Health::Suspect, Health::Up));
        }
        assert_eq!(s.health(), Health::Up);
    }

    #[test]
    fn flapping_around_rise_stays_down() {
        let t = Thresholds { rise: 2, fall: 3 };
        let mut s = HealthState::starting(Health::Down);
        for _ in 0..10 {
            assert_eq!(s.record_success(t), None);
            assert_eq!(s.record_failure(t), None);
        }
        assert_eq!(s.health(), Health::Down);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let t = Thresholds { rise: 0, fall: 0 };
        let mut s = HealthState::starting(Health::Up);
        assert_eq!(s.record_failure(t), flip(Health::Up, Health::Down));
        assert_eq!(s.record_success(t), flip(Health::Down, Health::Up));
    }

    #[test]
    fn up_to_suspect_keeps_usability() {
        let t = Transition {
            from: Health::Up,
            to: Health::Suspect,
        };
        assert!(!t.usability_changed());
        assert_eq!(Health::Suspect.to_string(), "suspect");
    }
}

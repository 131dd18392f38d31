//! The descriptor budget: each session holds two sockets (plus two pipes with splice), so
//! `--max-sessions` needs a matching RLIMIT_NOFILE; a reserve besides sessions covers
//! health checks and the stats endpoint's bounded connections. The soft limit is raised to the hard
//! one at start. If that still holds too few, the default session limit is lowered to fit
//! (a default should work as it is), while one the user gave is kept and a warning says
//! what to change.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use super::forward::Mode;

/// Descriptors for listeners, the runtimes' epoll and wake-up descriptors, stdio, logs.
const BASE: u64 = 40;

/// Descriptors kept for health checks (one per check in flight), so a full session
/// table never makes a check fail with EMFILE (a local error, which would not change
/// health, but would leave it unchecked).
pub const HEALTH_CHECKS: u64 = 8;

/// Descriptors the process needs besides sessions: [`BASE`], [`HEALTH_CHECKS`] and the
/// stats endpoint's connection limit ([`crate::admin::MAX_CONNECTIONS`]).
const RESERVE: u64 = BASE + HEALTH_CHECKS + crate::admin::MAX_CONNECTIONS as u64;

/// Descriptors one session holds with the given forwarding mode.
pub fn per_session(mode: Mode) -> u64 {
    match mode {
        Mode::Copy => 2,
        Mode::Splice => 6,
    }
}

/// Descriptors needed for `max_sessions` sessions.
pub fn needed(max_sessions: usize, mode: Mode) -> u64 {
    max_sessions as u64 * per_session(mode) + RESERVE
}

/// Sessions that `descriptors` can hold (at least one).
pub fn fits(descriptors: u64, mode: Mode) -> usize {
    let n = descriptors.saturating_sub(RESERVE) / per_session(mode);
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}

/// The session limit to run with, given `descriptors` available: `max_sessions` if it
/// fits or was `given`, else the most that fit.
pub fn session_limit(max_sessions: usize, given: bool, descriptors: u64, mode: Mode) -> usize {
    if given || needed(max_sessions, mode) <= descriptors {
        max_sessions
    } else {
        fits(descriptors, mode).min(max_sessions)
    }
}

/// Raises the soft descriptor limit to the hard one if `max_sessions` needs more, and
/// returns the session limit to run with (see [`session_limit`]): a default that still
/// does not fit is lowered (logged at info), a given one is kept with a warning (sessions
/// beyond the descriptors would fail to accept or connect).
pub fn ensure_descriptors(max_sessions: usize, given: bool, mode: Mode) -> usize {
    let need = needed(max_sessions, mode);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit");
            return max_sessions;
        }
    };
    let mut have = soft;
    if soft < need && hard > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => have = hard,
            Err(error) => tracing::warn!(%error, "cannot raise the descriptor limit"),
        }
    }
    let limit = session_limit(max_sessions, given, have, mode);
    if limit < max_sessions {
        tracing::info!(
            max_sessions = limit,
            descriptor_limit = have,
            "the default session limit is lowered to what the descriptor limit holds; raise `ulimit -n` for more"
        );
    } else if have < need {
        let fits = fits(have, mode);
        tracing::warn!(
            max_sessions,
            descriptor_limit = have,
            needed = need,
            fits,
            "--max-sessions does not fit the descriptor limit: lower --max-sessions to {fits} or raise `ulimit -n`"
        );
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_descriptors_for_health_checks_and_the_stats_endpoint() {
        assert!(RESERVE >= HEALTH_CHECKS + crate::admin::MAX_CONNECTIONS as u64 + BASE);
        assert_eq!(RESERVE, 64);
    }

    #[test]
    fn budget_counts_sockets_and_pipes() {
        assert_eq!(needed(100, Mode::Copy), 264);
        assert_eq!(needed(100, Mode::Splice), 664);
        assert_eq!(fits(264, Mode::Copy), 100);
        assert_eq!(fits(10, Mode::Copy), 1, "at least one");
    }

    #[test]
    fn a_default_limit_is_lowered_to_fit_and_a_given_one_is_kept() {
        // 20,000 descriptors: 9,968 sessions in copy mode, 3,322 with splice.
        assert_eq!(session_limit(10_000, false, 20_000, Mode::Copy), 9_968);
        assert_eq!(session_limit(10_000, false, 20_000, Mode::Splice), 3_322);
        assert_eq!(session_limit(10_000, true, 20_000, Mode::Copy), 10_000);
        // Enough descriptors: unchanged either way, never raised.
        assert_eq!(session_limit(10_000, false, 1 << 20, Mode::Copy), 10_000);
        assert_eq!(session_limit(5, false, 20_000, Mode::Copy), 5);
    }
}

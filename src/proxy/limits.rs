//! The descriptor budget: each session holds two sockets (plus two pipes with splice), so
//! `--max-sessions` needs a matching RLIMIT_NOFILE. The soft limit is raised to the hard
//! one at start; if that is still too low, a warning says what to change.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use super::forward::Mode;

/// Descriptors the process needs besides sessions (listeners, health checks, logs...).
const RESERVE: u64 = 64;

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

/// Raises the soft descriptor limit to the hard one and warns if `max_sessions` still
/// does not fit (sessions beyond it would fail to accept or connect).
pub fn ensure_descriptors(max_sessions: usize, mode: Mode) {
    let need = needed(max_sessions, mode);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit");
            return;
        }
    };
    let mut have = soft;
    if soft < need && hard > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => have = hard,
            Err(error) => tracing::warn!(%error, "cannot raise the descriptor limit"),
        }
    }
    if have < need {
        let fits = have.saturating_sub(RESERVE) / per_session(mode);
        tracing::warn!(
            max_sessions,
            descriptor_limit = have,
            needed = need,
            fits,
            "--max-sessions does not fit the descriptor limit: lower --max-sessions to {fits} or raise `ulimit -n`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_sockets_and_pipes() {
        assert_eq!(needed(100, Mode::Copy), 264);
        assert_eq!(needed(100, Mode::Splice), 664);
    }
}

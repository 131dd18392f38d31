//! Busy polling (`--busy-poll`): after a batch, the forwarding loop keeps taking what is
//! queued on its socket, without sleeping, for a short budget before it sleeps in the
//! kernel again.
//!
//! A sleeping thread pays a wake-up for the next packet: on another core, an
//! inter-processor interrupt and, in a virtual machine, the exit from the idle halt,
//! which costs more than the whole rewrite. Polling for about a round trip after the
//! last packet keeps a request-response flow from ever waking the loop, and an idle
//! balancer still sleeps.

use std::io;
use std::time::{Duration, Instant};

use l4lb_rawsock::mmsg::Wait;

/// Receives through `recv`: first without sleeping, again and again for up to `budget`,
/// then sleeping up to the socket's timeout. A zero budget sleeps at once. Returns what
/// the last call returned (an error at once).
pub fn receive(
    budget: Duration,
    mut recv: impl FnMut(Wait) -> io::Result<usize>,
) -> io::Result<usize> {
    if budget.is_zero() {
        return recv(Wait::UpToTimeout);
    }
    let until = Instant::now() + budget;
    let mut tries: u32 = 0;
    loop {
        let got = recv(Wait::No)?;
        if got > 0 {
            return Ok(got);
        }
        tries = tries.wrapping_add(1);
        if tries % CLOCK_EVERY == 0 && Instant::now() >= until {
            return recv(Wait::UpToTimeout);
        }
        std::hint::spin_loop();
    }
}

/// The clock is read after every this many empty tries, not after each: a read cost as
/// much as a third of a try (`perf`), and the budget may run over by a few tries.
const CLOCK_EVERY: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_budget_sleeps_at_once() {
        let mut calls = Vec::new();
        let got = receive(Duration::ZERO, |w| {
            calls.push(w);
            Ok(3)
        })
        .unwrap();
        assert_eq!((got, calls), (3, vec![Wait::UpToTimeout]));
    }

    #[test]
    fn polling_returns_the_first_batch_found_without_sleeping() {
        let mut calls = Vec::new();
        let got = receive(Duration::from_secs(10), |w| {
            calls.push(w);
            Ok(if calls.len() == 5 { 2 } else { 0 })
        })
        .unwrap();
        assert_eq!(got, 2);
        assert_eq!(calls, vec![Wait::No; 5]);
    }

    #[test]
    fn polling_sleeps_once_its_budget_is_spent() {
        let budget = Duration::from_millis(20);
        let start = Instant::now();
        let mut calls = Vec::new();
        let got = receive(budget, |w| {
            calls.push(w);
            Ok(if w == Wait::UpToTimeout { 1 } else { 0 })
        })
        .unwrap();
        assert_eq!(got, 1);
        assert!(
            start.elapsed() >= budget,
            "slept before the budget was spent"
        );
        assert_eq!(calls.last(), Some(&Wait::UpToTimeout));
        assert_eq!(calls.iter().filter(|&&w| w == Wait::UpToTimeout).count(), 1);
        assert!(calls.len() > 2, "polled only {} times", calls.len() - 1);
    }

    #[test]
    fn an_error_ends_polling_at_once() {
        let mut calls = 0;
        let err = receive(Duration::from_secs(10), |_| {
            calls += 1;
            Err(io::Error::other("gone"))
        })
        .unwrap_err();
        assert_eq!((calls, err.to_string()), (1, "gone".to_string()));
    }
}

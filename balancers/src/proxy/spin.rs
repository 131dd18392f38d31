//! Busy polling for a worker (`--busy-poll`, 20 µs by default): for a short budget after
//! the last byte a worker moved, it keeps asking the kernel for events without sleeping,
//! so the next request does not pay a wake-up of the worker's thread (on another core an
//! inter-processor interrupt and, in a virtual machine, the exit from the idle halt).
//! HAProxy's `busy-polling` is the same idea without the budget (it never sleeps).
//!
//! A task per worker yields again and again while bytes moved within the budget: each
//! yield makes the worker's single-threaded runtime poll its event queue with a zero
//! timeout (`epoll_wait(.., 0)`) instead of blocking in it. Once the budget passes with
//! no bytes, the task sleeps until the next byte wakes it, and the worker sleeps in the
//! kernel as before. Everything here is per thread: no atomics, no cross-thread wake-ups.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// How many times this worker has moved bytes: the polling task compares it with
    /// what it saw last, so the data path does not read the clock.
    static MOVES: Cell<u64> = const { Cell::new(0) };
    /// The polling task, when it sleeps until the next activity.
    static SLEEPING: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// Whether this thread runs a polling task (activity is not counted otherwise).
    static POLLING: Cell<bool> = const { Cell::new(false) };
}

/// Notes that this worker just moved bytes, and wakes its polling task if it sleeps.
/// Costs one thread-local read when polling is off, and a count when it is on.
pub fn activity() {
    if !POLLING.get() {
        return;
    }
    MOVES.set(MOVES.get().wrapping_add(1));
    if let Some(waker) = SLEEPING.take() {
        waker.wake();
    }
}

/// The polling task of this worker: spawn it on the worker's own runtime. Never returns;
/// the runtime's end drops it.
pub async fn poll_while_busy(budget: Duration) {
    POLLING.set(true);
    // The moves seen last, and when the task first saw them (`None`: not since sleeping).
    let mut seen = MOVES.get();
    let mut since: Option<Instant> = None;
    loop {
        let now = MOVES.get();
        if now != seen {
            (seen, since) = (now, Some(Instant::now()));
        }
        if since.is_some_and(|t| t.elapsed() < budget) {
            tokio::task::yield_now().await;
            continue;
        }
        since = None;
        let mut asked = false;
        poll_fn(|cx| {
            if asked || MOVES.get() != seen {
                return Poll::Ready(());
            }
            asked = true;
            SLEEPING.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polling_task_sleeps() -> bool {
        SLEEPING.with_borrow(|w| w.is_some())
    }

    async fn yield_a_few() {
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_task_polls_within_the_budget_then_sleeps_until_the_next_bytes() {
        let budget = Duration::from_millis(30);
        let task = tokio::spawn(poll_while_busy(budget));
        yield_a_few().await;
        assert!(POLLING.get(), "activity is timed once the task runs");
        assert!(polling_task_sleeps(), "no bytes yet: it sleeps");
        activity();
        assert!(!polling_task_sleeps(), "bytes wake it");
        yield_a_few().await;
        assert!(!polling_task_sleeps(), "within the budget it keeps polling");
        tokio::time::sleep(budget * 2).await;
        yield_a_few().await;
        assert!(polling_task_sleeps(), "past the budget it sleeps again");
        activity();
        assert!(!polling_task_sleeps());
        task.abort();
    }
}

//! Backends, their health state (rise/fall) and selection. Pure logic, no I/O.
//!
//! - [`state`]: health as a pure state machine with hysteresis ([`HealthState`]).
//! - [`select`]: round robin and weighted least connections as pure functions.
//! - [`Pool`] (this file): the thread-safe set both balancers share. The health checker
//!   feeds results in; the balancers pick backends out. Selection sees only usable
//!   backends. Least-connections selection returns a [`SessionGuard`] that counts the
//!   session and uncounts it on drop, so live counts can never leak.
//!
//! Locking: one mutex holds the health states and the round-robin cursors; it is held only
//! to read/update those (a few comparisons). Counters are atomics read without the lock.

pub mod select;
pub mod state;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use select::Load;
pub use state::{Health, HealthState, Thresholds, Transition};

/// Position of a backend in the configuration (0-based). Stable for the pool's life.
pub type BackendId = usize;

/// A configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Relative capacity for weighted least connections (at least 1).
    pub weight: u32,
}

impl Backend {
    /// A backend of weight 1.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, weight: 1 }
    }
}

/// Per-backend counters, updated without locks.
#[derive(Debug, Default)]
struct Counters {
    live: AtomicU64,
    total: AtomicU64,
    check_failures: AtomicU64,
    connect_failures: AtomicU64,
    local_check_errors: AtomicU64,
    bytes_to_backend: AtomicU64,
    bytes_from_backend: AtomicU64,
}

/// A consistent-enough copy of one backend's state and counters, for the stats endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStats {
    /// Configuration position.
    pub id: BackendId,
    /// Address.
    pub addr: SocketAddr,
    /// Weight.
    pub weight: u32,
    /// Current health.
    pub health: Health,
    /// Live sessions.
    pub live: u64,
    /// Sessions ever opened.
    pub total: u64,
    /// Active health checks that failed.
    pub check_failures: u64,
    /// Connects by a balancer that failed (passive health).
    pub connect_failures: u64,
    /// Health checks that failed on this host (out of descriptors...), not counted
    /// against the backend.
    pub local_check_errors: u64,
    /// Bytes forwarded client -> backend.
    pub bytes_to_backend: u64,
    /// Bytes forwarded backend -> client.
    pub bytes_from_backend: u64,
}

/// The pool's mutable state, under one lock: each backend's health and each
/// selector's last choice.
#[derive(Debug)]
struct PoolState {
    health: Vec<HealthState>,
    last_round_robin: Option<BackendId>,
    last_least_connections: Option<BackendId>,
}

/// The thread-safe backend set shared by a balancer and its health checker.
#[derive(Debug)]
pub struct Pool {
    backends: Vec<Backend>,
    thresholds: Thresholds,
    counters: Vec<Counters>,
    shared: Mutex<PoolState>,
}

impl Pool {
    /// A pool of backends, all [`Health::Unknown`] (usable until a result says otherwise).
    pub fn new(backends: Vec<Backend>, thresholds: Thresholds) -> Self {
        let n = backends.len();
        Self {
            counters: (0..n).map(|_| Counters::default()).collect(),
            shared: Mutex::new(PoolState {
                health: vec![HealthState::new(); n],
                last_round_robin: None,
                last_least_connections: None,
            }),
            backends,
            thresholds,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the state half-updated (each update
        // is one assignment), so a poisoned lock is still good to use.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured backends, in configuration order (index = [`BackendId`]).
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// One backend by id. Panics if `id` is out of range (ids come from this pool).
    pub fn backend(&self, id: BackendId) -> &Backend {
        &self.backends[id]
    }

    /// The rise/fall thresholds results are judged with.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Current health of one backend.
    pub fn health(&self, id: BackendId) -> Health {
        self.lock().health[id].health()
    }

    /// How many backends may take new sessions now.
    pub fn usable_count(&self) -> usize {
        self.lock()
            .health
            .iter()
            .filter(|h| h.health().is_usable())
            .count()
    }

    /// Records a passed active check; returns the transition if the state flipped.
    pub fn record_success(&self, id: BackendId) -> Option<Transition> {
        let thresholds = self.thresholds;
        self.lock().health[id].record_success(thresholds)
    }

    /// Records a failed active check; returns the transition if the state flipped.
    pub fn record_failure(&self, id: BackendId) -> Option<Transition> {
        self.counters[id]
            .check_failures
            .fetch_add(1, Ordering::Relaxed);
        let thresholds = self.thresholds;
        self.lock().health[id].record_failure(thresholds)
    }

    /// A health check of the backend failed for a local reason (see
    /// [`crate::health::is_local_error`]): counted, health unchanged.
    pub fn record_local_check_error(&self, id: BackendId) {
        self.counters[id]
            .local_check_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Passive health: a balancer's connect to the backend failed. Counts as a failure
    /// of the state machine; returns the transition if the state flipped.
    pub fn record_connect_failure(&self, id: BackendId) -> Option<Transition> {
        self.counters[id]
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        let thresholds = self.thresholds;
        self.lock().health[id].record_failure(thresholds)
    }

    /// Round robin: the next usable backend after the last one this returned, in
    /// configuration order. Does not count a session (see [`Pool::open_session`]).
    pub fn next_round_robin(&self) -> Option<BackendId> {
        let mut shared = self.lock();
        let usable: Vec<bool> = shared
            .health
            .iter()
            .map(|h| h.health().is_usable())
            .collect();
        let chosen = select::round_robin(&usable, shared.last_round_robin)?;
        shared.last_round_robin = Some(chosen);
        Some(chosen)
    }

    /// Weighted least connections over usable backends not in `exclude` (ties round
    /// robin, see [`select`]); the returned guard counts the session until dropped.
    pub fn least_connections(self: &Arc<Self>, exclude: &[BackendId]) -> Option<SessionGuard> {
        let mut shared = self.lock();
        let loads: Vec<Load> = (0..self.backends.len())
            .map(|i| Load {
                usable: shared.health[i].health().is_usable() && !exclude.contains(&i),
                live: self.counters[i].live.load(Ordering::Relaxed),
                weight: self.backends[i].weight,
            })
            .collect();
        let chosen = select::least_connections(&loads, shared.last_least_connections)?;
        shared.last_least_connections = Some(chosen);
        // Counted while the lock is held, so two racing selections see each other.
        Some(self.open_session(chosen))
    }

    /// Counts a session on a backend chosen by other means (e.g. round robin); the
    /// returned guard uncounts it on drop.
    pub fn open_session(self: &Arc<Self>, id: BackendId) -> SessionGuard {
        let counters = &self.counters[id];
        counters.live.fetch_add(1, Ordering::Relaxed);
        counters.total.fetch_add(1, Ordering::Relaxed);
        SessionGuard {
            pool: Arc::clone(self),
            id,
        }
    }

    /// Adds forwarded bytes to a backend's counters.
    pub fn add_bytes(&self, id: BackendId, to_backend: u64, from_backend: u64) {
        let counters = &self.counters[id];
        counters
            .bytes_to_backend
            .fetch_add(to_backend, Ordering::Relaxed);
        counters
            .bytes_from_backend
            .fetch_add(from_backend, Ordering::Relaxed);
    }

    /// Live sessions on one backend.
    pub fn live(&self, id: BackendId) -> u64 {
        self.counters[id].live.load(Ordering::Relaxed)
    }

    /// State and counters of every backend, in configuration order.
    pub fn stats(&self) -> Vec<BackendStats> {
        let health: Vec<Health> = self.lock().health.iter().map(|h| h.health()).collect();
        self.backends
            .iter()
            .zip(&self.counters)
            .zip(health)
            .enumerate()
            .map(|(id, ((backend, c), health))| BackendStats {
                id,
                addr: backend.addr,
                weight: backend.weight,
                health,
                live: c.live.load(Ordering::Relaxed),
                total: c.total.load(Ordering::Relaxed),
                check_failures: c.check_failures.load(Ordering::Relaxed),
                connect_failures: c.connect_failures.load(Ordering::Relaxed),
                local_check_errors: c.local_check_errors.load(Ordering::Relaxed),
                bytes_to_backend: c.bytes_to_backend.load(Ordering::Relaxed),
                bytes_from_backend: c.bytes_from_backend.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// One counted session on a backend; dropping it uncounts the session.
#[derive(Debug)]
pub struct SessionGuard {
    pool: Arc<Pool>,
    id: BackendId,
}

impl SessionGuard {
    /// Which backend the session is on.
    pub fn id(&self) -> BackendId {
        self.id
    }

    /// The backend the session is on.
    pub fn backend(&self) -> &Backend {
        self.pool.backend(self.id)
    }

    /// The pool the session is counted in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.pool.counters[self.id]
            .live
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Arc<Pool> {
        let backends = (0..n)
            .map(|i| Backend::new(SocketAddr::from(([127, 0, 0, 1], 8090 + i as u16))))
            .collect();
        Arc::new(Pool::new(backends, Thresholds::default()))
    }

    fn lives(p: &Pool) -> Vec<u64> {
        (0..p.backends().len()).map(|i| p.live(i)).collect()
    }

    #[test]
    fn guards_spread_two_two_two_and_uncount_on_drop() {
        let p = pool(3);
        let guards: Vec<SessionGuard> = (0..6).map(|_| p.least_connections(&[]).unwrap()).collect();
        let ids: Vec<_> = guards.iter().map(|g| g.id()).collect();
        assert_eq!(ids, [0, 1, 2, 0, 1, 2]);
        assert_eq!(lives(&p), [2, 2, 2]);
        drop(guards);
        assert_eq!(lives(&p), [0, 0, 0]);
        assert!(p.stats().iter().all(|s| s.total == 2));
    }

    #[test]
    fn leaving_client_frees_its_slot() {
        let p = pool(3);
        let mut guards: Vec<SessionGuard> =
            (0..6).map(|_| p.least_connections(&[]).unwrap()).collect();
        guards.remove(4); // second client of backend 1 leaves
        assert_eq!(p.least_connections(&[]).unwrap().id(), 1);
    }

    #[test]
    fn down_backends_are_skipped_and_revived() {
        let p = pool(3);
        for _ in 0..3 {
            p.record_failure(1);
        }
        assert_eq!(p.health(1), Health::Down);
        assert_eq!(p.usable_count(), 2);
        let guards: Vec<_> = (0..4).map(|_| p.least_connections(&[]).unwrap()).collect();
        let ids: Vec<_> = guards.iter().map(|g| g.id()).collect();
        assert_eq!(ids, [0, 2, 0, 2], "down backend chosen");
        assert_eq!(
            p.record_success(1),
            Some(Transition {
                from: Health::Down,
                to: Health::Up
            })
        );
        assert_eq!(
            p.least_connections(&[]).unwrap().id(),
            1,
            "revived, emptiest"
        );
    }

    #[test]
    fn unknown_backend_failing_its_first_check_is_down() {
        let p = pool(2);
        assert_eq!(
            p.record_failure(0),
            Some(Transition {
                from: Health::Unknown,
                to: Health::Down
            })
        );
        assert_eq!(p.next_round_robin(), Some(1));
        assert_eq!(p.next_round_robin(), Some(1));
    }

    #[test]
    fn passive_failures_count_and_exclusion_retries_elsewhere() {
        let p = pool(2);
        p.record_success(0);
        p.record_success(1);
        assert_eq!(
            p.record_connect_failure(0),
            Some(Transition {
                from: Health::Up,
                to: Health::Suspect
            })
        );
        let g = p.least_connections(&[0]).unwrap();
        assert_eq!(g.id(), 1);
        assert_eq!(p.least_connections(&[0, 1]).map(|g| g.id()), None);
        assert_eq!(p.stats()[0].connect_failures, 1);
        assert_eq!(p.stats()[0].check_failures, 0);
    }

    #[test]
    fn no_usable_backend_gives_none() {
        let p = pool(2);
        p.record_failure(0);
        p.record_failure(1);
        assert!(p.least_connections(&[]).is_none());
        assert_eq!(p.next_round_robin(), None);
        assert_eq!(lives(&p), [0, 0]);
    }

    #[test]
    fn round_robin_sessions_and_bytes_are_counted() {
        let p = pool(3);
        let order: Vec<_> = (0..4).map(|_| p.next_round_robin().unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 0]);
        let g = p.open_session(2);
        p.add_bytes(2, 10, 20);
        let s = &p.stats()[2];
        assert_eq!(
            (s.live, s.total, s.bytes_to_backend, s.bytes_from_backend),
            (1, 1, 10, 20)
        );
        assert_eq!(g.backend().addr.port(), 8092);
        drop(g);
        assert_eq!(p.live(2), 0);
    }

    #[test]
    fn concurrent_selection_never_leaks_counts() {
        let p = pool(3);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let a = p.least_connections(&[]).unwrap();
                        let b = p.least_connections(&[]).unwrap();
                        drop(a);
                        drop(b);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(lives(&p), [0, 0, 0]);
        assert_eq!(p.stats().iter().map(|s| s.total).sum::<u64>(), 8000);
    }
}

//! The active health checker shared by both balancers.
//!
//! One tokio task per backend: every `interval` (the first check at once) it runs a
//! [`Probe`] bounded by `timeout` and feeds the result into the pool's state machine
//! ([`crate::pool::HealthState`]); every transition is logged (backend, from, to, reason).
//! The probe only probes: hysteresis lives in the pool. Timers are tokio's, so tests can
//! run under `#[tokio::test(start_paused = true)]` with a scripted probe.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::pool::{BackendId, Pool, Transition};

/// Settings of the active checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// Time between the starts of two checks of one backend.
    pub interval: Duration,
    /// Longest a check may take (connect, and send/expect if set).
    pub timeout: Duration,
    /// Bytes to send after connecting (optional).
    pub send: Option<Vec<u8>>,
    /// Prefix the reply must start with (optional; read after `send`).
    pub expect: Option<Vec<u8>>,
}

impl Default for CheckConfig {
    /// The original raw balancer's: a TCP connect every 5 s with a 2 s timeout.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            send: None,
            expect: None,
        }
    }
}

/// Whether an I/O error is this host's, not the backend's: out of descriptors (EMFILE,
/// ENFILE), of buffer space or memory (ENOBUFS, ENOMEM), or of local addresses/ports
/// (EADDRNOTAVAIL). Such a failure says nothing about the backend's health.
pub fn is_local_error(error: &std::io::Error) -> bool {
    use nix::errno::Errno;
    error.raw_os_error().is_some_and(|code| {
        [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOBUFS,
            Errno::EADDRNOTAVAIL,
            Errno::ENOMEM,
        ]
        .contains(&Errno::from_raw(code))
    })
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The check could not run on this host (see [`is_local_error`]); not the backend's
    /// fault, so it leaves health unchanged.
    #[error("local error, backend not judged: {0}")]
    Local(std::io::Error),
    /// The TCP connect failed (refused, unreachable...).
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// The check did not finish within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Sending the payload or reading the reply failed.
    #[error("exchange failed: {0}")]
    Exchange(std::io::Error),
    /// The reply did not start with the expected bytes.
    #[error("reply {got:?} does not start with {expected:?}")]
    Mismatch {
        /// What was expected (lossy UTF-8).
        expected: String,
        /// What arrived (lossy UTF-8).
        got: String,
    },
}

impl ProbeError {
    /// A connect error: [`ProbeError::Local`] if it is this host's, else
    /// [`ProbeError::Connect`].
    pub fn from_connect(error: std::io::Error) -> Self {
        if is_local_error(&error) {
            Self::Local(error)
        } else {
            Self::Connect(error)
        }
    }
}

/// Something that can tell whether a backend is alive.
pub trait Probe: Send + Sync + 'static {
    /// Checks one backend once. Should bound its own duration.
    fn probe(&self, addr: SocketAddr) -> impl Future<Output = Result<(), ProbeError>> + Send;
}

/// The real probe: TCP connect, then optionally send a payload and expect a reply prefix,
/// all within the timeout.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    timeout: Duration,
    send: Option<Vec<u8>>,
    expect: Option<Vec<u8>>,
}

impl TcpProbe {
    /// A probe with the config's timeout and payloads.
    pub fn new(config: &CheckConfig) -> Self {
        Self {
            timeout: config.timeout,
            send: config.send.clone(),
            expect: config.expect.clone(),
        }
    }

    async fn exchange(&self, addr: SocketAddr) -> Result<(), ProbeError> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(ProbeError::from_connect)?;
        if let Some(payload) = &self.send {
            stream
                .write_all(payload)
                .await
                .map_err(ProbeError::Exchange)?;
        }
        if let Some(expected) = &self.expect {
            let mut got = Vec::with_capacity(expected.len());
            while got.len() < expected.len() && expected.starts_with(&got) {
                let mut chunk = vec![0u8; expected.len() - got.len()];
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(ProbeError::Exchange)?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            if !got.starts_with(expected) {
                return Err(ProbeError::Mismatch {
                    expected: String::from_utf8_lossy(expected).into_owned(),
                    got: String::from_utf8_lossy(&got).into_owned(),
                });
            }
        }
        Ok(())
    }
}

impl Probe for TcpProbe {
    async fn probe(&self, addr: SocketAddr) -> Result<(), ProbeError> {
        tokio::time::timeout(self.timeout, self.exchange(addr))
            .await
            .map_err(|_| ProbeError::Timeout(self.timeout))?
    }
}

/// The running checker tasks; dropping it (or [`HealthChecker::shutdown`]) stops them.
#[derive(Debug)]
pub struct HealthChecker {
    tasks: JoinSet<()>,
}

impl HealthChecker {
    /// Starts one TCP checker task per backend of `pool` (needs a tokio runtime).
    pub fn spawn(pool: Arc<Pool>, config: &CheckConfig) -> Self {
        Self::spawn_with_probe(pool, config.interval, Arc::new(TcpProbe::new(config)))
    }

    /// Starts one checker task per backend with any probe (tests use a scripted one).
    pub fn spawn_with_probe<P: Probe>(pool: Arc<Pool>, interval: Duration, probe: Arc<P>) -> Self {
        let mut tasks = JoinSet::new();
        for id in 0..pool.backends().len() {
            tasks.spawn(check_loop(
                Arc::clone(&pool),
                id,
                interval,
                Arc::clone(&probe),
            ));
        }
        Self { tasks }
    }

    /// Stops every checker task and waits for them to end.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn check_loop<P: Probe>(pool: Arc<Pool>, id: BackendId, interval: Duration, probe: Arc<P>) {
    let addr = pool.backend(id).addr;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match probe.probe(addr).await {
            Ok(()) => {
                if let Some(t) = pool.record_success(id) {
                    log_transition(addr, t, "check passed");
                }
            }
            Err(ProbeError::Local(error)) => {
                pool.record_local_check_error(id);
                tracing::warn!(backend = %addr, %error, "health check could not run here; health unchanged");
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::debug!(backend = %addr, reason, "health check failed");
                if let Some(t) = pool.record_failure(id) {
                    log_transition(addr, t, &reason);
                }
            }
        }
    }
}

/// Logs a health transition (warn when a backend stops being usable, info otherwise).
/// Balancers call it too for passive-health transitions.
pub fn log_transition(backend: SocketAddr, t: Transition, reason: &str) {
    let (from, to) = (t.from.as_str(), t.to.as_str());
    if t.usability_changed() && !t.to.is_usable() {
        tracing::warn!(%backend, from, to, reason, "backend health changed");
    } else {
        tracing::info!(%backend, from, to, reason, "backend health changed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Backend, Health, Thresholds};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::time::{advance, Instant};

    /// A probe that answers from a script, then keeps repeating the last answer.
    struct Scripted {
        answers: Mutex<VecDeque<bool>>,
        calls: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(answers: &[bool]) -> Arc<Self> {
            Arc::new(Self {
                answers: Mutex::new(answers.iter().copied().collect()),
                calls: Mutex::new(Vec::new()),
            })
        }
    }

    impl Probe for Scripted {
        async fn probe(&self, _addr: SocketAddr) -> Result<(), ProbeError> {
            self.calls.lock().unwrap().push(Instant::now());
            let mut answers = self.answers.lock().unwrap();
            let ok = if answers.len() > 1 {
                answers.pop_front().unwrap()
            } else {
                answers[0]
            };
            if ok {
                Ok(())
            } else {
                Err(ProbeError::Timeout(Duration::from_secs(2)))
            }
        }
    }

    fn one_backend(thresholds: Thresholds) -> Arc<Pool> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        Arc::new(Pool::new(vec![Backend::new(addr)], thresholds))
    }

    /// Lets the checker run its check due now, then moves time on by `d`.
    async fn step(d: Duration) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        advance(d).await;
    }

    #[tokio::test(start_paused = true)]
    async fn goes_down_after_fall_failures_and_up_after_rise() {
        let pool = one_backend(Thresholds { rise: 2, fall: 3 });
        let probe = Scripted::new(&[true, false, false, false, true, true]);
        let interval = Duration::from_secs(5);
        let checker =
            HealthChecker::spawn_with_probe(Arc::clone(&pool), interval, Arc::clone(&probe));
        let mut seen = Vec::new();
        for _ in 0..6 {
            step(Duration::ZERO).await;
            seen.push(pool.health(0));
            step(interval).await;
        }
        use Health::*;
        assert_eq!(seen, [Up, Suspect, Suspect, Down, Down, Up]);
        let calls = probe.calls.lock().unwrap().clone();
        assert_eq!(
            calls[1] - calls[0],
            interval,
            "checks are an interval apart"
        );
        checker.shutdown().await;
    }

    #[test]
    fn local_errors_are_told_from_the_backend_s() {
        use nix::errno::Errno;
        for local in [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOBUFS,
            Errno::EADDRNOTAVAIL,
            Errno::ENOMEM,
        ] {
            let e = std::io::Error::from_raw_os_error(local as i32);
            assert!(is_local_error(&e), "{local}");
            assert!(matches!(ProbeError::from_connect(e), ProbeError::Local(_)));
        }
        for remote in [
            Errno::ECONNREFUSED,
            Errno::EHOSTUNREACH,
            Errno::ENETUNREACH,
            Errno::ETIMEDOUT,
        ] {
            let e = std::io::Error::from_raw_os_error(remote as i32);
            assert!(!is_local_error(&e), "{remote}");
            assert!(matches!(
                ProbeError::from_connect(e),
                ProbeError::Connect(_)
            ));
        }
        assert!(!is_local_error(&std::io::Error::other("no errno")));
    }

    /// A probe that always fails locally (as under EMFILE).
    struct OutOfDescriptors;

    impl Probe for OutOfDescriptors {
        async fn probe(&self, _addr: SocketAddr) -> Result<(), ProbeError> {
            Err(ProbeError::Local(std::io::Error::from_raw_os_error(
                nix::errno::Errno::EMFILE as i32,
            )))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn local_errors_are_counted_and_leave_health_alone() {
        let pool = one_backend(Thresholds::default());
        let interval = Duration::from_secs(5);
        let checker = HealthChecker::spawn_with_probe(
            Arc::clone(&pool),
            interval,
            Arc::new(OutOfDescriptors),
        );
        for _ in 0..4 {
            step(interval).await;
        }
        assert_eq!(pool.health(0), Health::Unknown);
        let stats = &pool.stats()[0];
        assert!(stats.local_check_errors >= 4, "{stats:?}");
        assert_eq!(stats.check_failures, 0);
        checker.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn first_failure_of_a_fresh_backend_is_down() {
        let pool = one_backend(Thresholds::default());
        let checker = HealthChecker::spawn_with_probe(
            Arc::clone(&pool),
            Duration::from_secs(5),
            Scripted::new(&[false]),
        );
        step(Duration::ZERO).await;
        assert_eq!(pool.health(0), Health::Down);
        checker.shutdown().await;
    }

    #[tokio::test]
    async fn tcp_probe_passes_on_listener_and_fails_on_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let probe = TcpProbe::new(&CheckConfig::default());
        probe.probe(open).await.expect("listener accepts");
        let err = probe.probe(closed).await.unwrap_err();
        assert!(matches!(err, ProbeError::Connect(_)), "{err}");
    }

    #[tokio::test]
    async fn tcp_probe_checks_the_reply_prefix() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.unwrap();
                let reply: &[u8] = if &buf == b"PING" {
                    b"PONG ok"
                } else {
                    b"what?"
                };
                s.write_all(reply).await.unwrap();
            }
        });
        let config = |send: &[u8], expect: &[u8]| CheckConfig {
            timeout: Duration::from_secs(2),
            send: Some(send.to_vec()),
            expect: Some(expect.to_vec()),
            ..CheckConfig::default()
        };
        TcpProbe::new(&config(b"PING", b"PONG"))
            .probe(addr)
            .await
            .unwrap();
        let err = TcpProbe::new(&config(b"PONG", b"PONG"))
            .probe(addr)
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::Mismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn tcp_probe_times_out_on_a_silent_backend() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = CheckConfig {
            timeout: Duration::from_millis(100),
            send: None,
            expect: Some(b"HELLO".to_vec()),
            ..CheckConfig::default()
        };
        let err = TcpProbe::new(&config).probe(addr).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout(_)), "{err}");
        drop(listener);
    }
}

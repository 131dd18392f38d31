//! `l4lb proxy` arguments and their validation into a [`ProxyConfig`].

use l4lb_contract::flags;
use std::net::SocketAddr;
use std::time::Duration;

use crate::args::{parse_addr, parse_duration, AdminArgs, BackendArgs, HealthArgs, LogArgs};
use crate::health::CheckConfig;
use crate::pool::{Backend, Thresholds};
use crate::usage::UsageError;

use super::forward::Mode;

/// Default listen address: the original's port 20000 on all addresses.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:20000";
/// `--max-sessions` when none is given (lowered if the descriptor limit holds fewer).
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Largest `--max-sessions` accepted.
pub const MAX_SESSIONS_LIMIT: usize = 1_000_000;

/// `l4lb proxy` arguments.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Original positional form: `IP PORT IP PORT ...` (same as repeated --backend).
    #[arg(value_name = "IP PORT")]
    pub positional: Vec<String>,
    /// Backends.
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Address to accept clients on.
    #[arg(long = flags::LISTEN, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Longest wait for a backend to accept a connection before trying another one.
    #[arg(long = flags::CONNECT_TIMEOUT, value_name = "DURATION", default_value = "2s")]
    pub connect_timeout: String,
    /// Backends tried per client, each at most once (bounded by the number of backends).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub connect_attempts: u32,
    /// Close both sides of a session after this long without a byte in either direction.
    #[arg(long = flags::IDLE_TIMEOUT, value_name = "DURATION", default_value = "60s")]
    pub idle_timeout: String,
    /// Most concurrent sessions; further clients are accepted and closed at once.
    /// Default: 10000, or fewer if the descriptor limit (`ulimit -n`, raised to its hard
    /// limit at start) holds fewer: 2 descriptors a session, 6 with splice.
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// On SIGTERM/SIGINT, how long open sessions may go on before they are closed.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub grace: String,
    /// How bytes are forwarded: a user-space buffer (measured faster here) or splice(2).
    #[arg(long, value_enum, default_value_t = Mode::Copy)]
    pub forward: Mode,
    /// Worker threads, each with its own event loop (default: one per two CPUs, at least
    /// one: most of a proxy's time is the kernel's TCP work, which needs CPUs of its own).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// For this long after a worker last moved bytes, it polls for events without
    /// sleeping (0s: sleep at once): the next request saves the wake-up, for up to this
    /// much CPU time per quiet gap; an idle proxy still sleeps.
    #[arg(long, value_name = "DURATION", default_value = "20us", value_parser = crate::args::parse_busy_poll)]
    pub busy_poll: Duration,
    /// Active health checks.
    #[command(flatten)]
    pub health: Box<HealthArgs>,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// An access log: one info line per closed session (client, backend, bytes, duration).
    /// Without it only unusual closes (idle timeout, error, shutdown) are logged at info,
    /// ordinary ones at debug: formatting a line per session costs about 3% of the CPU
    /// per connection.
    #[arg(long)]
    pub log_sessions: bool,
    /// Stats endpoint.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// A validated proxy configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Backends in configuration order.
    pub backends: Vec<Backend>,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Per-attempt upstream connect timeout.
    pub connect_timeout: Duration,
    /// Backends tried per client (at least 1).
    pub connect_attempts: usize,
    /// Idle timeout of a session.
    pub idle_timeout: Duration,
    /// Concurrent session limit (the default is lowered at start if the descriptor limit
    /// holds fewer, see [`super::descriptors`]).
    pub max_sessions: usize,
    /// Drain time on shutdown.
    pub grace: Duration,
    /// Forwarding method.
    pub forward: Mode,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// How long a worker polls after its last bytes before it sleeps.
    pub busy_poll: Duration,
    /// Active checker settings.
    pub check: CheckConfig,
    /// Rise/fall thresholds.
    pub thresholds: Thresholds,
    /// Stats endpoint address, if any.
    pub admin: Option<SocketAddr>,
    /// Every session's close is logged at info, not only unusual ones.
    pub log_sessions: bool,
}

impl ProxyArgs {
    /// Validates every flag; the error is one line for the user (exit code 2).
    pub fn resolve(&self) -> Result<ProxyConfig, UsageError> {
        let backends = self.backends.resolve(&self.positional)?;
        let (check, thresholds) = self.health.resolve()?;
        if self.connect_attempts == 0 || self.connect_attempts > 100 {
            return Err(UsageError::new(format!(
                "--connect-attempts must be from 1 to 100, got {}",
                self.connect_attempts
            )));
        }
        let max_sessions = self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 || max_sessions > MAX_SESSIONS_LIMIT {
            return Err(UsageError::new(format!(
                "--max-sessions must be from 1 to {MAX_SESSIONS_LIMIT}, got {max_sessions}"
            )));
        }
        let workers = match self.workers {
            None => default_workers(std::thread::available_parallelism().map_or(1, |n| n.get())),
            Some(n) if (1..=1024).contains(&n) => n,
            Some(n) => {
                return Err(UsageError::new(format!(
                    "--workers must be from 1 to 1024, got {n}"
                )))
            }
        };
        Ok(ProxyConfig {
            workers,
            listen: parse_addr("--listen", &self.listen)?,
            connect_timeout: parse_duration("--connect-timeout", &self.connect_timeout)?,
            connect_attempts: (self.connect_attempts as usize).min(backends.len()),
            idle_timeout: parse_duration("--idle-timeout", &self.idle_timeout)?,
            max_sessions,
            grace: parse_duration("--grace", &self.grace)?,
            busy_poll: self.busy_poll,
            forward: self.forward,
            admin: self.admin.resolve()?,
            log_sessions: self.log_sessions,
            backends,
            check,
            thresholds,
        })
    }
}

/// Workers when `--workers` is not given: one per two CPUs, at least one. Most of the
/// proxy's time is in the kernel, sending and receiving for it, so the other half of the
/// CPUs is left to that work (and to the peers sharing the host).
pub fn default_workers(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    fn resolve(args: &[&str]) -> Result<ProxyConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("proxy").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.proxy.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn default_workers_leave_half_the_cpus_to_the_kernel() {
        let got: Vec<usize> = [1, 2, 3, 4, 16].into_iter().map(default_workers).collect();
        assert_eq!(got, [1, 1, 1, 2, 8]);
    }

    #[test]
    fn defaults() {
        let c = resolve(&["10.0.0.2", "8090", "10.0.0.3", "8091"]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:20000".parse().unwrap());
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.connect_attempts, 2, "bounded by the number of backends");
        assert_eq!(c.forward, Mode::Copy);
        assert!(c.workers >= 1);
        assert_eq!(c.admin, None);
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.max_sessions, DEFAULT_MAX_SESSIONS);
        assert_eq!(c.busy_poll, Duration::from_micros(20));
    }

    #[test]
    fn flags() {
        let c = resolve(&[
            "--backend",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "250ms",
            "--max-sessions",
            "5",
            "--grace",
            "1s",
            "--forward",
            "splice",
            "--workers",
            "3",
            "--admin",
            "127.0.0.1:9",
        ])
        .unwrap();
        assert_eq!(c.idle_timeout, Duration::from_millis(250));
        assert_eq!((c.max_sessions, c.forward, c.workers), (5, Mode::Splice, 3));
        assert_eq!(c.grace, Duration::from_secs(1));
    }

    #[test]
    fn bad_values() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--backend", "127.0.0.1:1", "--max-sessions", "0"],
                "--max-sessions must be",
            ),
            (
                &["--backend", "127.0.0.1:1", "--connect-attempts", "0"],
                "--connect-attempts",
            ),
            (
                &["--backend", "127.0.0.1:1", "--idle-timeout", "0ms"],
                "--idle-timeout must be more than zero",
            ),
            (
                &["--backend", "127.0.0.1:1", "--grace", "3 weeks"],
                "at most 1 day",
            ),
            (
                &["--backend", "127.0.0.1:1", "--listen", "20000"],
                "--listen",
            ),
            (&["--listen", "127.0.0.1:0"], "no backends"),
            (
                &["--backend", "127.0.0.1:1", "--workers", "0"],
                "--workers must be",
            ),
        ];
        for (args, want) in cases {
            let e = resolve(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}

//! Which balancers a scenario runs against: ours (`raw`, `proxy`), the peers (`haproxy`,
//! `nginx`, `nat`) and a user's own program (`own`, described by `[own_balancer]`), with
//! the algorithm each one balances by.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::model::CommandTemplate;

/// Which balancer a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BalancerKind {
    /// `l4lb raw`: full NAT on a raw socket, round robin.
    Raw,
    /// `l4lb proxy`: a proxy, least connections.
    Proxy,
    /// HAProxy in `mode tcp`, active health checks, the scenario's algorithm.
    Haproxy,
    /// nginx `stream` proxy: passive checks only (`max_fails`/`fail_timeout`).
    Nginx,
    /// Kernel NAT: iptables DNAT round robin, no health checks at all.
    Nat,
    /// The user's own program, started from the scenario's `[own_balancer]` command.
    Own,
}

impl BalancerKind {
    /// Ours, in report order: the default list of a scenario.
    pub const OURS: [BalancerKind; 2] = [BalancerKind::Raw, BalancerKind::Proxy];

    /// Every balancer, in report order.
    pub const EVERY: [BalancerKind; 6] = [
        BalancerKind::Raw,
        BalancerKind::Proxy,
        BalancerKind::Haproxy,
        BalancerKind::Nginx,
        BalancerKind::Nat,
        BalancerKind::Own,
    ];

    /// Its name in scenario files, on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancerKind::Raw => "raw",
            BalancerKind::Proxy => "proxy",
            BalancerKind::Haproxy => "haproxy",
            BalancerKind::Nginx => "nginx",
            BalancerKind::Nat => "nat",
            BalancerKind::Own => "own",
        }
    }

    /// Whether it is one of ours (`l4lb raw` or `l4lb proxy`).
    pub fn is_ours(self) -> bool {
        Self::OURS.contains(&self)
    }

    /// The algorithm it balances by in `scenario`: ours have a fixed one, HAProxy and
    /// nginx take the scenario's `[balancer] algorithm` (round robin by default, as
    /// theirs), kernel NAT is round robin, the user's own program says in `[own_balancer]`.
    pub fn algorithm(self, scenario: &super::Scenario) -> Algorithm {
        match self {
            BalancerKind::Raw | BalancerKind::Nat => Algorithm::RoundRobin,
            BalancerKind::Proxy => Algorithm::LeastConnections,
            BalancerKind::Haproxy | BalancerKind::Nginx => {
                scenario.algorithm.unwrap_or(Algorithm::RoundRobin)
            }
            BalancerKind::Own => scenario
                .own_balancer
                .as_ref()
                .map_or(Algorithm::RoundRobin, |o| o.algorithm),
        }
    }
}

impl std::fmt::Display for BalancerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a balancer picks the server of a new client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each healthy server in turn.
    RoundRobin,
    /// The healthy server with the fewest sessions.
    LeastConnections,
}

impl Algorithm {
    /// `round_robin` or `least_connections`, as written in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastConnections => "least_connections",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Placeholders an `[own_balancer]` command may use.
pub const OWN_PLACEHOLDERS: &[&str] = &[
    "l4lb",
    "addr",
    "port",
    "listen",
    "backends",
    "health_interval",
    "health_timeout",
    "rise",
    "fall",
    "idle_timeout",
    "dir",
];

/// A user's own balancer: how to start it and how to read its view of the backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnBalancer {
    /// Name shown in reports beside `own`.
    pub name: String,
    /// The command, with placeholders ([`OWN_PLACEHOLDERS`]).
    pub command: CommandTemplate,
    /// The algorithm it balances by (which algorithm's expectations apply to it).
    pub algorithm: Algorithm,
    /// Where its health view is read.
    pub health: OwnHealth,
}

/// Where a user's own balancer tells its view of backend health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnHealth {
    /// It tells nothing: the run uses evidence alone.
    None,
    /// Prometheus text at `http://ADDR/PATH` inside the balancer's namespace.
    Prometheus {
        /// Address of the endpoint.
        addr: SocketAddr,
        /// Path of the endpoint (`/metrics`).
        path: String,
        /// Metric whose value is 1 for a backend in use, 0 for one taken out.
        up_metric: String,
        /// Label naming the backend as `ip:port`.
        backend_label: String,
        /// Metric of live sessions per backend (summed), if it has one.
        sessions_metric: Option<String>,
    },
    /// HAProxy's stats socket (`show stat`) at this path (placeholders allowed: `{dir}`).
    HaproxySocket(String),
}

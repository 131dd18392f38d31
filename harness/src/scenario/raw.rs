//! Stage one: the file as written, deserialized with serde (unknown keys rejected).
//!
//! Every value that a later check may need to point at is wrapped in [`Spanned`], so a
//! semantic error (unknown client, impossible timing) names the line and column too.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::model::BalancerKind;

/// Spanned string.
pub type SStr = Spanned<String>;

/// A whole scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    /// Short name.
    pub name: SStr,
    /// One or two sentences of purpose.
    pub purpose: SStr,
    /// Which balancers to run against (default: both).
    pub balancers: Option<Spanned<Vec<Spanned<BalancerKind>>>>,
    /// Why not both, when only one is listed.
    pub balancers_why: Option<SStr>,
    /// Outside the fast suite (run with `--include-slow`).
    pub slow: Option<bool>,
    /// The network.
    pub topology: Option<Spanned<RawTopology>>,
    /// Balancer settings.
    pub balancer: Option<Spanned<RawBalancer>>,
    /// Programs replacing the default chat server/client.
    pub programs: Option<Spanned<RawPrograms>>,
    /// The timeline, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<RawStep>>,
    /// What must hold.
    #[serde(default, rename = "expect")]
    pub expects: Vec<Spanned<RawExpect>>,
}

/// `[topology]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    /// Client hosts.
    pub clients: Option<Spanned<u32>>,
    /// Server hosts.
    pub servers: Option<Spanned<u32>>,
    /// First address of a /24.
    pub subnet: Option<SStr>,
    /// MTU of every veth.
    pub mtu: Option<Spanned<u32>>,
    /// `lan` or `routed`.
    pub layout: Option<crate::topology::Layout>,
    /// `default` or `off`.
    pub offloads: Option<crate::topology::Offloads>,
    /// One port for every server.
    pub server_port: Option<Spanned<u16>>,
    /// One port a server.
    pub server_ports: Option<Spanned<Vec<u16>>>,
}

/// `[balancer]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalancer {
    /// Port the balancer listens on.
    pub port: Option<Spanned<u16>>,
    /// Time between two health checks of one server.
    pub health_interval: Option<SStr>,
    /// Time a check may take.
    pub health_timeout: Option<SStr>,
    /// Successes in a row that bring a server back.
    pub rise: Option<Spanned<u32>>,
    /// Failures in a row that take a server out.
    pub fall: Option<Spanned<u32>>,
    /// Silence after which a session is closed (proxy) or its row freed (raw).
    pub idle_timeout: Option<SStr>,
    /// Proxy only: longest wait for a server to accept before trying another one.
    pub connect_timeout: Option<SStr>,
    /// Text a health check sends after connecting (an application-level check).
    pub health_send: Option<SStr>,
    /// Prefix the server's reply to `health_send` must start with.
    pub health_expect: Option<SStr>,
}

/// A command: a string (run by `sh -c`) or a list of arguments.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCommand {
    /// `sh -c` command line.
    Shell(String),
    /// argv.
    Argv(Vec<String>),
}

/// `[programs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrograms {
    /// Server command template.
    pub server: Option<Spanned<RawCommand>>,
    /// Client command template.
    pub client: Option<Spanned<RawCommand>>,
}

/// One `[[step]]`: exactly one action key plus its modifiers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Start no earlier than this time after the scenario began.
    pub at: Option<SStr>,
    /// Clients join, one after the other.
    pub join: Option<Spanned<Vec<SStr>>>,
    /// A chat line.
    pub say: Option<SStr>,
    /// Who says it.
    pub client: Option<SStr>,
    /// Several clients say it, one after the other.
    pub clients: Option<Spanned<Vec<SStr>>>,
    /// A client starts talking periodically.
    pub chat: Option<SStr>,
    /// Period of `chat`.
    pub every: Option<SStr>,
    /// A client stops talking.
    pub silent: Option<SStr>,
    /// Clients quit (`q`).
    pub quit: Option<Spanned<Vec<SStr>>>,
    /// SIGKILL a server.
    pub kill: Option<SStr>,
    /// SIGSTOP a server.
    pub stop: Option<SStr>,
    /// SIGCONT a server.
    pub cont: Option<SStr>,
    /// Start a server again (killing it first if it runs).
    pub restart: Option<SStr>,
    /// Take a host's link down.
    pub link_down: Option<SStr>,
    /// Bring a host's link up.
    pub link_up: Option<SStr>,
    /// Drop this fraction of packets on `link`.
    pub drop: Option<Spanned<f64>>,
    /// Rate limit on `link`, e.g. "1mbit".
    pub rate: Option<SStr>,
    /// netem arguments on `link`, e.g. "delay 50ms".
    pub netem: Option<SStr>,
    /// Remove every fault from a link.
    pub clear_faults: Option<SStr>,
    /// Host whose link `drop`/`rate`/`netem` act on.
    pub link: Option<SStr>,
    /// Sleep.
    pub wait: Option<SStr>,
    /// Wait until a condition holds.
    pub wait_until: Option<Spanned<RawCondition>>,
    /// Longest wait for `wait_until`.
    pub deadline: Option<SStr>,
    /// Free text for the report.
    pub note: Option<String>,
}

/// Conditions of `wait_until` (exactly one key).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// The balancer reports this server down.
    pub server_down: Option<SStr>,
    /// The balancer reports this server up.
    pub server_up: Option<SStr>,
    /// This client's session has been closed.
    pub closed: Option<SStr>,
    /// The balancer holds exactly this many sessions (raw: NAT rows).
    pub sessions: Option<Spanned<u32>>,
}

/// One `[[expect]]`: exactly one kind key plus its modifiers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// Only for this balancer.
    pub balancer: Option<Spanned<BalancerKind>>,
    /// Why this expectation holds (free text for the report).
    pub why: Option<String>,
    /// Exact placement: server -> clients.
    pub placement: Option<Spanned<BTreeMap<SStr, Vec<SStr>>>>,
    /// Most and least loaded server differ by at most this.
    pub balanced: Option<Spanned<u32>>,
    /// These clients must not be on this server: server -> clients.
    pub not_on: Option<Spanned<BTreeMap<SStr, Vec<SStr>>>>,
    /// Every line reaches exactly the clients of the sender's server.
    pub chat_isolation: Option<Spanned<bool>>,
    /// A chat line (with `by` / `not_by`).
    pub heard: Option<SStr>,
    /// Clients that must have received `heard`.
    pub by: Option<Vec<SStr>>,
    /// Clients that must not have received `heard`.
    pub not_by: Option<Vec<SStr>>,
    /// The balancer noticed this server failing within the bound and sent no client there after.
    pub failover: Option<SStr>,
    /// The balancer noticed this server back within the bound and sent clients there again.
    pub recovery: Option<SStr>,
    /// Sessions still open at the end.
    pub kept: Option<Vec<SStr>>,
    /// Sessions closed by the idle timeout, on time.
    pub idle_closed: Option<Vec<SStr>>,
    /// Tolerance around the idle timeout.
    pub tolerance: Option<SStr>,
    /// Joins refused cleanly (`connect() error`, exit 1).
    pub refused: Option<Vec<SStr>>,
    /// No join was refused.
    pub no_refused: Option<Spanned<bool>>,
    /// Sessions the balancer holds at the end (raw: NAT rows; proxy: live sessions).
    pub open_sessions: Option<Spanned<u32>>,
    /// The balancer process is still running at the end.
    pub balancer_alive: Option<Spanned<bool>>,
}

//! Stage two: the validated scenario the runner executes. Every name is resolved,
//! every duration parsed, every default filled in (defaults are the constants below).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topology::{Layout, Offloads};

/// Port the balancer listens on unless the file says otherwise (the original's).
pub const DEFAULT_LB_PORT: u16 = 20000;
/// Port of every server unless the file says otherwise.
pub const DEFAULT_SERVER_PORT: u16 = 9000;
/// Default health-check interval (short, so the suite is fast).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(200);
/// Default health-check timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_millis(100);
/// Default successes in a row that bring a server back.
pub const DEFAULT_RISE: u32 = 1;
/// Default failures in a row that take a server out.
pub const DEFAULT_FALL: u32 = 3;
/// Default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default subnet of the home LAN.
pub const DEFAULT_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);

/// Which way of a host's link an impairment acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkDirection {
    /// What the host sends (its upload).
    Up,
    /// What the host receives (its download).
    Down,
    /// Both.
    Both,
}

impl LinkDirection {
    /// Whether the host's sending way is impaired.
    pub fn up(self) -> bool {
        matches!(self, LinkDirection::Up | LinkDirection::Both)
    }

    /// Whether the host's receiving way is impaired.
    pub fn down(self) -> bool {
        matches!(self, LinkDirection::Down | LinkDirection::Both)
    }
}

pub use super::balancers::{Algorithm, BalancerKind, OwnBalancer, OwnHealth};

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// The file it came from.
    pub file: PathBuf,
    /// Short name.
    pub name: String,
    /// What it proves.
    pub purpose: String,
    /// Balancers it runs against.
    pub balancers: Vec<BalancerKind>,
    /// Whether the file lists its balancers (if not, any peer may run it too).
    pub balancers_listed: bool,
    /// Why not both (when only one).
    pub balancers_why: Option<String>,
    /// The algorithm HAProxy and nginx balance by (`[balancer] algorithm`; None: round robin).
    pub algorithm: Option<Algorithm>,
    /// The user's own balancer (`[own_balancer]`), when the file describes one.
    pub own_balancer: Option<OwnBalancer>,
    /// Outside the fast suite.
    pub slow: bool,
    /// The network.
    pub topology: TopologySettings,
    /// Balancer settings.
    pub health: BalancerSettings,
    /// Server and client programs.
    pub programs: Programs,
    /// Timeline.
    pub steps: Vec<Step>,
    /// What must hold.
    pub expectations: Vec<Expectation>,
}

impl Scenario {
    /// Clients in the order they first join.
    pub fn clients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for step in &self.steps {
            if let Action::Join(names) | Action::JoinTogether(names) = &step.action {
                for n in names {
                    if !out.contains(n) {
                        out.push(n.clone());
                    }
                }
            }
        }
        out
    }

    /// The file name without directory (for reports and test names).
    pub fn file_stem(&self) -> String {
        self.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone())
    }
}

/// The network of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologySettings {
    /// Client hosts.
    pub clients: usize,
    /// Server hosts (named s1..sN).
    pub servers: usize,
    /// First address of the /24.
    pub subnet: Ipv4Addr,
    /// MTU of every veth.
    pub mtu: Option<u32>,
    /// Layout.
    pub layout: Layout,
    /// Offloads.
    pub offloads: Offloads,
    /// Port of each server (one entry a server).
    pub server_ports: Vec<u16>,
    /// The home around the LAN (layout `home` only).
    #[serde(skip)]
    pub home: crate::topology::home::HomeSpec,
}

/// Health and timeout settings handed to the balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalancerSettings {
    /// Port the balancer listens on.
    pub port: u16,
    /// Time between two checks of one server.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Time one check may take.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Successes in a row that bring a server back.
    pub rise: u32,
    /// Failures in a row that take a server out.
    pub fall: u32,
    /// Silence after which a session is closed.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// Proxy only: longest wait for a server to accept (None: the proxy's own default).
    #[serde(skip)]
    pub connect_timeout: Option<Duration>,
    /// Text a health check sends after connecting (None: a plain TCP connect check).
    pub health_send: Option<String>,
    /// Prefix the reply must start with.
    pub health_expect: Option<String>,
}

impl BalancerSettings {
    /// Longest time from a failure to the balancer noticing it: every check of the
    /// `fall` in a row may start up to one interval apart and take up to `timeout`.
    pub fn detection_bound(&self) -> Duration {
        self.interval
            .saturating_mul(self.fall)
            .saturating_add(self.timeout)
    }

    /// Longest time from a server's return to the balancer using it again.
    pub fn recovery_bound(&self) -> Duration {
        self.interval
            .saturating_mul(self.rise)
            .saturating_add(self.timeout)
    }

    /// Slack added to measured bounds for polling (25 ms) and scheduling on a busy
    /// machine (a 2-core host running other builds): one more interval, at least 500 ms.
    pub fn margin(&self) -> Duration {
        self.interval.max(Duration::from_millis(500))
    }
}

/// Serialises durations as humantime strings ("1s 500ms").
pub mod humantime_serde_compat {
    use std::time::Duration;

    /// Serialises a duration as a humantime string.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// A command template: argv whose items may hold placeholders (`{port}`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandTemplate {
    /// Arguments, the program first. A shell string is stored as `sh -c <string>`.
    pub argv: Vec<String>,
}

/// Placeholders a server command may use.
pub const SERVER_PLACEHOLDERS: &[&str] = &["l4lb", "port", "addr", "server"];
/// Placeholders a client command may use.
pub const CLIENT_PLACEHOLDERS: &[&str] = &["l4lb", "host", "port", "nick"];

impl CommandTemplate {
    /// The default server: our chat server.
    pub fn default_server() -> Self {
        Self {
            argv: vec!["{l4lb}".into(), "chat-server".into(), "{port}".into()],
        }
    }

    /// The default client: our chat client.
    pub fn default_client() -> Self {
        Self {
            argv: vec![
                "{l4lb}".into(),
                "chat-client".into(),
                "{host}".into(),
                "{port}".into(),
                "{nick}".into(),
            ],
        }
    }

    /// Replaces every `{key}` by its value.
    pub fn expand(&self, vars: &[(&str, String)]) -> Vec<String> {
        self.argv
            .iter()
            .map(|arg| {
                let mut out = arg.clone();
                for (k, v) in vars {
                    out = out.replace(&format!("{{{k}}}"), v);
                }
                out
            })
            .collect()
    }
}

/// The programs a scenario runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Programs {
    /// Server command.
    pub server: CommandTemplate,
    /// Client command.
    pub client: CommandTemplate,
    /// Whether both are the defaults.
    pub custom: bool,
}

/// A server, by 0-based index (named `s{index+1}`).
pub type ServerIdx = usize;

/// A host a link fault may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum LinkHost {
    /// Client host (0-based).
    Client(usize),
    /// The balancer.
    Lb,
    /// Server (0-based).
    Server(usize),
    /// Home layout: the router's uplink (`up` is the home's upload).
    Router,
    /// Home layout: the Wi-Fi medium, between the access point and the wired LAN
    /// (`up` is from the Wi-Fi hosts).
    Wifi,
}

impl std::fmt::Display for LinkHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkHost::Client(i) => write!(f, "client{}", i + 1),
            LinkHost::Lb => f.write_str("lb"),
            LinkHost::Server(i) => write!(f, "s{}", i + 1),
            LinkHost::Router => f.write_str("router"),
            LinkHost::Wifi => f.write_str("wifi"),
        }
    }
}

/// What is done to a server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerAction {
    /// SIGKILL.
    Kill,
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Cont,
    /// Start again (SIGKILL first if it runs).
    Restart,
}

/// A condition `wait_until` waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The balancer reports the server down.
    ServerDown(ServerIdx),
    /// The balancer reports the server up.
    ServerUp(ServerIdx),
    /// The client's session was closed.
    Closed(String),
    /// The balancer holds exactly this many sessions.
    Sessions(u32),
}

/// One action of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Clients join one after the other; each placement is observed before the next.
    Join(Vec<String>),
    /// Clients join all at once; placements are observed when every one has settled.
    JoinTogether(Vec<String>),
    /// Clients end their session (the process is killed, as by a reboot) and join again
    /// under the same name, one after the other.
    Rejoin(Vec<String>),
    /// A client sends `bytes` in lines of [`BULK_LINE`] bytes and reads their echo back.
    Bulk {
        /// Who.
        client: String,
        /// How many bytes it sends.
        bytes: u64,
    },
    /// Each client says `text` (sent as `[nick] text`).
    Say {
        /// Who.
        clients: Vec<String>,
        /// What.
        text: String,
    },
    /// A client starts talking every `every`.
    Chat {
        /// Who.
        client: String,
        /// Period.
        every: Duration,
    },
    /// A client stops talking.
    Silent(String),
    /// Clients quit with `q`.
    Quit(Vec<String>),
    /// Something is done to a server.
    Server {
        /// Which.
        server: ServerIdx,
        /// What.
        action: ServerAction,
    },
    /// A host's link goes down or up.
    Link {
        /// Which host.
        host: LinkHost,
        /// Up or down.
        up: bool,
    },
    /// Drop a fraction of packets on a host's link.
    Drop {
        /// Which host.
        host: LinkHost,
        /// 0 < fraction < 1.
        fraction: f64,
    },
    /// Rate-limit a host's link.
    Rate {
        /// Which host.
        host: LinkHost,
        /// tc rate, e.g. "1mbit".
        rate: String,
    },
    /// Impairments on a host's link (`netem` or `impair`), carried out by a user-space wire.
    Impair {
        /// Which host.
        host: LinkHost,
        /// Which way of the link they act on.
        direction: LinkDirection,
        /// What is done to each impaired way.
        #[serde(skip)]
        impairment: crate::link::spec::Impairment,
        /// In words, as events and fault windows name it: `netem delay 50ms` (the netem
        /// arguments as written) or `impair delay 15ms, loss 2%`.
        text: String,
    },
    /// netem arguments on the kernel's netem qdisc of a host's `eth0` (asked for with
    /// `kernel = true`).
    KernelNetem {
        /// Which host.
        host: LinkHost,
        /// The arguments after `netem`, as written.
        args: String,
    },
    /// Remove every fault from a host's link.
    ClearFaults(LinkHost),
    /// Sleep.
    Wait(Duration),
    /// Wait for a condition.
    WaitUntil {
        /// What.
        condition: Condition,
        /// How long at most.
        deadline: Duration,
    },
}

impl Action {
    /// The host whose link a fault action acts on (`link_down`, `link_up`, `drop`, `rate`,
    /// `netem`, `impair`, `clear_faults`).
    pub fn link_host(&self) -> Option<LinkHost> {
        match self {
            Action::Link { host, .. }
            | Action::Drop { host, .. }
            | Action::Rate { host, .. }
            | Action::Impair { host, .. }
            | Action::KernelNetem { host, .. } => Some(*host),
            Action::ClearFaults(host) => Some(*host),
            _ => None,
        }
    }
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Line in the file.
    pub line: usize,
    /// Earliest start, from the scenario's start.
    pub at: Option<Duration>,
    /// What happens.
    pub action: Action,
    /// Free text.
    pub note: Option<String>,
    /// A fault's length (`for`): the runner clears it this long after it began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lasts: Option<Duration>,
    /// A fault's period (`every`, with `for`): it begins again this long after it began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
}

/// What an expectation checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectKind {
    /// Exact placement: for each server (index), its clients; unlisted servers get none.
    Placement(Vec<(ServerIdx, Vec<String>)>),
    /// Most and least loaded server differ by at most this many clients.
    Balanced(u32),
    /// These clients are not on this server.
    NotOn(Vec<(ServerIdx, Vec<String>)>),
    /// Every line reached exactly the clients on the sender's server at the time.
    ChatIsolation,
    /// Who heard a line and who did not.
    Heard {
        /// The text as said.
        text: String,
        /// Must have received it.
        by: Vec<String>,
        /// Must not have received it.
        not_by: Vec<String>,
        /// Each of `by` received it within this of it being said.
        #[serde(skip_serializing_if = "Option::is_none")]
        within: Option<Duration>,
    },
    /// Failure noticed within the detection bound; no client placed there after.
    Failover(ServerIdx),
    /// Return noticed within the recovery bound; clients placed there again.
    Recovery(ServerIdx),
    /// Sessions still open at the end.
    Kept(Vec<String>),
    /// The balancer never reported these servers down.
    StayedUp(Vec<ServerIdx>),
    /// The client was told its session ended (its disconnect line or exit) within
    /// `within` of the first line it said into the ended session.
    ToldClosed {
        /// Who.
        client: String,
        /// The bound.
        within: Duration,
    },
    /// Every byte of these clients' bulk transfers came back (within `within` of the start).
    BulkDone {
        /// Whose transfers.
        clients: Vec<String>,
        /// Optional bound on each transfer's time.
        #[serde(skip_serializing_if = "Option::is_none")]
        within: Option<Duration>,
    },
    /// Sessions closed by the idle timeout, within `tolerance` of it.
    IdleClosed {
        /// Which.
        clients: Vec<String>,
        /// Allowed deviation.
        tolerance: Duration,
    },
    /// Joins refused cleanly.
    Refused(Vec<String>),
    /// No join refused.
    NoRefused,
    /// Sessions the balancer holds at the end.
    OpenSessions(u32),
    /// The balancer still runs at the end.
    BalancerAlive,
}

/// One expectation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    /// Line in the file.
    pub line: usize,
    /// Only for this balancer (None: both).
    pub only: Option<BalancerKind>,
    /// Only for balancers that use this algorithm (None: any).
    pub algorithm: Option<Algorithm>,
    /// Why it should hold (for the report).
    pub why: Option<String>,
    /// What.
    pub kind: ExpectKind,
}

/// A tc rate ("512kbit", "10mbit", "1gbit", "8000bit") in kbit/s, or why it is none;
/// validation and the run read a rate through this one function.
pub fn rate_kbit(rate: &str) -> Result<u32, String> {
    let digits = rate.len() - rate.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let n: u64 = rate[..digits]
        .parse()
        .map_err(|_| format!("`{rate}` is not a rate"))?;
    if n == 0 {
        return Err(format!("`{rate}` is not a rate"));
    }
    let k = match &rate[digits..] {
        "kbit" => Some(n),
        "mbit" => n.checked_mul(1000),
        "gbit" => n.checked_mul(1_000_000),
        "bit" => Some((n / 1000).max(1)),
        other => return Err(format!("unknown rate unit `{other}` in `{rate}`")),
    };
    k.and_then(|k| u32::try_from(k).ok())
        .ok_or_else(|| format!("rate `{rate}` is too large"))
}

/// Bytes of one line of a bulk transfer as it travels, newline included: `[nick] bulk `,
/// a sequence number, then filler up to this length.
pub const BULK_LINE: usize = 1000;

/// Most bytes one `bulk` step may send (64 MiB): the echo is read back through the chat
/// client's output, and every other client on that server receives it too.
pub const BULK_MAX: u64 = 64 << 20;

/// Name of server `i` (0-based).
pub fn server_name(i: ServerIdx) -> String {
    format!("s{}", i + 1)
}

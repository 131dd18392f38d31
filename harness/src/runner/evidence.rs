//! What a run observed: plain data, filled by the live runner and read by the
//! expectation checks and the reports (so both are testable on synthetic evidence).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::scenario::{server_name, BalancerKind, BalancerSettings, ServerAction, ServerIdx};

/// How a join ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum JoinOutcome {
    /// A new established socket appeared on exactly this server.
    Placed {
        /// Server index.
        server: ServerIdx,
    },
    /// The client could not connect, or was closed before any server saw it.
    Refused {
        /// What the client printed or how it ended.
        how: String,
    },
    /// No server saw the client in time, and the client did not end either.
    Unplaced {
        /// What was seen instead.
        why: String,
    },
}

/// As a reader of a report wants it: `placed on s2`, `refused: connection refused`,
/// `not placed: ...`.
impl std::fmt::Display for JoinOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinOutcome::Placed { server } => write!(f, "placed on {}", server_name(*server)),
            JoinOutcome::Refused { how } => write!(f, "refused: {how}"),
            JoinOutcome::Unplaced { why } => write!(f, "not placed: {why}"),
        }
    }
}

/// One join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinRecord {
    /// Nickname.
    pub client: String,
    /// When the client process started, from the run's start.
    pub at: Duration,
    /// When the server's socket appeared (placed), or when the harness stopped waiting.
    pub settled: Duration,
    /// What happened.
    pub outcome: JoinOutcome,
    /// When the session's socket on its server went away (sock_diag), from the run's
    /// start: where a balancer's close (an idle timeout, a reset) really happened, however
    /// late the client learns of it. None: still open at the end, or never placed.
    pub socket_closed: Option<Duration>,
}

/// One chat line sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SayRecord {
    /// Sender.
    pub client: String,
    /// Text as given (sent as `[client] text`).
    pub text: String,
    /// When it was written to the client's stdin.
    pub at: Duration,
}

impl SayRecord {
    /// The line as it travels and as receivers print it.
    pub fn wire(&self) -> String {
        format!("[{}] {}", self.client, self.text)
    }
}

/// A bulk transfer: a client sent `lines` lines of `line_bytes` bytes (wire form,
/// newline included) and read their echo back from its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkRecord {
    /// Sender.
    pub client: String,
    /// Lines sent (or to send, if the client's input closed first).
    pub lines: u64,
    /// Bytes of each line as it travels, newline included.
    pub line_bytes: u64,
    /// When the first line was written, from the run's start.
    pub started: Duration,
    /// When the last line was written (None: the client stopped taking input first).
    pub sent_done: Option<Duration>,
    /// Lines of it the sender printed back (its echo), read at the end.
    pub echoed: u64,
    /// When the last echoed line was printed.
    pub echo_done: Option<Duration>,
}

impl BulkRecord {
    /// The text of line `seq` as said (the chat client prefixes `[nick] `): `bulk`, the
    /// sequence number and filler, so the wire line is exactly `line_bytes` long.
    pub fn line_text(client: &str, seq: u64, line_bytes: u64) -> String {
        let head = format!("bulk {seq:08} ");
        let used = client.len() + 3 + head.len() + 1;
        let fill = (line_bytes as usize).saturating_sub(used);
        format!("{head}{}", "x".repeat(fill))
    }

    /// The start of every wire line of `client`'s bulk transfers: `[client] bulk `.
    pub fn wire_prefix(client: &str) -> String {
        format!("[{client}] bulk ")
    }

    /// Bytes sent (and to come back).
    pub fn bytes(&self) -> u64 {
        self.lines * self.line_bytes
    }
}

/// A session that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseRecord {
    /// When the client printed its disconnect line or exited.
    pub at: Duration,
    /// Its last own activity (join, or last line sent) before that.
    pub last_activity: Duration,
    /// Whether the harness asked for it (`quit`).
    pub by_quit: bool,
    /// What the client printed or its exit status.
    pub how: String,
}

/// The balancer's view of a server changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthMark {
    /// Server index.
    pub server: ServerIdx,
    /// Up (true) or down (false).
    pub up: bool,
    /// When it was seen.
    pub at: Duration,
}

/// Established sessions per server at one moment (kernel view, sock_diag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When.
    pub at: Duration,
    /// Count per server, by index.
    pub per_server: Vec<usize>,
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When, from the run's start.
    pub at: Duration,
    /// Line of the step that caused it (None: observed in the background).
    pub step_line: Option<usize>,
    /// What happened, in words (no times, ports or pids).
    pub text: String,
    /// Kind for the SVG marks.
    pub mark: Option<Mark>,
}

/// Marks drawn on the SVG timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// Something was done to a server.
    Server(ServerIdx, ServerAction),
    /// The balancer reported a server down.
    Down(ServerIdx),
    /// The balancer reported a server up.
    Up(ServerIdx),
    /// A link or packet fault.
    Fault,
}

/// The kinds of link fault a window can record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `link_down` (ended by `link_up`).
    LinkDown,
    /// `drop` of a fraction of the packets.
    Drop,
    /// A `rate` limit (tc on the host's interface).
    Rate,
    /// An impairment on the user-space wire (`netem` or `impair`).
    Impair,
    /// `netem` on the kernel's qdisc (`kernel = true`).
    KernelNetem,
}

/// A fault on a link as it really happened: from the moment it was applied to the moment
/// it was cleared (or the end of the run), so a report can shade it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    /// The host whose link it was on (`lb`, `client1`, `s2`, ...).
    pub host: String,
    /// Which kind of fault, so a later step ends the right windows.
    pub kind: FaultKind,
    /// For an impairment, which way of the link (None for the other kinds, which act on
    /// both).
    pub direction: Option<crate::scenario::LinkDirection>,
    /// What it was, in words (`netem delay 50ms (sending)`, `link down`, `drop 5%`).
    pub what: String,
    /// When it began, from the run's start.
    pub from: Duration,
    /// When it ended (None: still in force at the end of the run).
    pub until: Option<Duration>,
}

/// What was left after teardown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// Namespaces of this run still present.
    pub namespaces_left: Vec<String>,
    /// Processes of this run still alive.
    pub processes_left: Vec<String>,
    /// Teardown errors.
    pub errors: Vec<String>,
}

/// Everything one run (scenario x balancer) observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file stem.
    pub file_stem: String,
    /// Balancer.
    pub balancer: BalancerKind,
    /// What it can do by design (algorithm, checks, health view, idle closes).
    pub traits: crate::peers::Traits,
    /// Health settings used.
    pub settings: BalancerSettings,
    /// Number of servers.
    pub servers: usize,
    /// Topology in words (addresses, ports).
    pub topology: Vec<String>,
    /// Timeline.
    pub events: Vec<Event>,
    /// Joins in order.
    pub joins: Vec<JoinRecord>,
    /// Lines sent in order.
    pub says: Vec<SayRecord>,
    /// Batches of clients that joined together (`join` with `together = true`).
    pub together: Vec<Vec<String>>,
    /// Roll-call lines that told which server socket was whose after a joint join: a
    /// client's own activity, not chat (no chat expectation reads them).
    pub roll_calls: Vec<SayRecord>,
    /// Sessions the harness ended to rejoin: who, and when.
    pub rejoins: Vec<(String, Duration)>,
    /// Bulk transfers.
    pub bulks: Vec<BulkRecord>,
    /// Lines each client printed (received), with times; bulk lines are left out (counted
    /// in [`Evidence::bulk_lines_received`]), a rejoined client's earlier sessions are in.
    pub transcripts: BTreeMap<String, Vec<(Duration, String)>>,
    /// Bulk lines each client printed (its own echo and others' transfers).
    pub bulk_lines_received: BTreeMap<String, u64>,
    /// Sessions that ended.
    pub closes: BTreeMap<String, CloseRecord>,
    /// Health changes seen.
    pub health: Vec<HealthMark>,
    /// Sessions per server over time.
    pub samples: Vec<Sample>,
    /// Link faults, each with its real start and end.
    pub fault_windows: Vec<FaultWindow>,
    /// Seed of the impaired links' randomness (`l4lb run --seed`).
    pub seed: u64,
    /// Sessions the balancer reported at the end (raw: NAT rows).
    pub open_sessions_end: Option<u32>,
    /// The balancer's stats at the end (Prometheus text), for the report.
    pub stats_end: Option<String>,
    /// Whether the balancer process still ran at the end.
    pub balancer_alive_end: bool,
    /// Steps that failed (deadline passed, process failed to start, ...).
    pub step_failures: Vec<String>,
    /// Set when the run could not be carried out here (e.g. netem missing).
    pub skipped: Option<String>,
    /// Teardown.
    pub cleanup: Cleanup,
    /// Wall time of the whole run.
    pub duration: Duration,
}

impl Evidence {
    /// An empty record for a run about to start.
    pub fn new(scenario: &crate::scenario::Scenario, balancer: BalancerKind) -> Self {
        Self {
            scenario: scenario.name.clone(),
            file_stem: scenario.file_stem(),
            balancer,
            traits: crate::peers::traits(balancer, scenario),
            settings: scenario.health.clone(),
            servers: scenario.topology.servers,
            topology: Vec::new(),
            events: Vec::new(),
            joins: Vec::new(),
            says: Vec::new(),
            together: Vec::new(),
            roll_calls: Vec::new(),
            rejoins: Vec::new(),
            bulks: Vec::new(),
            transcripts: BTreeMap::new(),
            bulk_lines_received: BTreeMap::new(),
            closes: BTreeMap::new(),
            health: Vec::new(),
            samples: Vec::new(),
            fault_windows: Vec::new(),
            seed: crate::runner::DEFAULT_SEED,
            open_sessions_end: None,
            stats_end: None,
            balancer_alive_end: false,
            step_failures: Vec::new(),
            skipped: None,
            cleanup: Cleanup::default(),
            duration: Duration::ZERO,
        }
    }

    /// The client's current session: its last join, if that was placed.
    pub fn session_of(&self, client: &str) -> Option<&JoinRecord> {
        self.joins
            .iter()
            .rev()
            .find(|j| j.client == client)
            .filter(|j| matches!(j.outcome, JoinOutcome::Placed { .. }))
    }

    /// The client's last own activity in `join`'s session no later than `t`: the join
    /// itself, or the last line it said (chat, roll call) in between.
    pub fn last_activity_before(&self, join: &JoinRecord, t: Duration) -> Duration {
        self.says
            .iter()
            .chain(&self.roll_calls)
            .filter(|s| s.client == join.client && s.at >= join.at && s.at <= t)
            .map(|s| s.at)
            .fold(join.settled, Duration::max)
    }

    /// The client's session at `t`: its last placed join settled by then, unless the
    /// harness ended that session (to rejoin) before `t`.
    pub fn session_at(&self, client: &str, t: Duration) -> Option<&JoinRecord> {
        let j = self
            .joins
            .iter()
            .rev()
            .find(|j| j.client == client && j.at <= t)?;
        let ended = self
            .rejoins
            .iter()
            .any(|(c, at)| c == client && *at >= j.at && *at <= t);
        (!ended && j.settled <= t && matches!(j.outcome, JoinOutcome::Placed { .. })).then_some(j)
    }

    /// Where a client is placed (its current session), if it is.
    pub fn placement_of(&self, client: &str) -> Option<ServerIdx> {
        self.session_of(client).and_then(|j| match j.outcome {
            JoinOutcome::Placed { server } => Some(server),
            _ => None,
        })
    }

    /// Clients placed on each server, in join order: each client's current session (a
    /// client that rejoined counts where its last join put it).
    pub fn placements(&self) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); self.servers];
        for (i, j) in self.joins.iter().enumerate() {
            let superseded = self.joins[i + 1..]
                .iter()
                .any(|later| later.client == j.client);
            if let (JoinOutcome::Placed { server }, false) = (&j.outcome, superseded) {
                if let Some(list) = out.get_mut(*server) {
                    list.push(j.client.clone());
                }
            }
        }
        out
    }

    /// Whether `client` joined in a batch with `together = true`.
    pub fn joined_together(&self, client: &str) -> bool {
        self.together.iter().any(|b| b.iter().any(|c| c == client))
    }

    /// Clients who printed `line` (the wire form) at any time: a transcript line that ends
    /// with it (a program may print a prompt before it), so `[a] chat 1` is not taken for
    /// `[a] chat 10`.
    pub fn receivers(&self, say: &SayRecord) -> Vec<String> {
        let wire = say.wire();
        self.transcripts
            .iter()
            .filter(|(_, lines)| lines.iter().any(|(_, l)| l.trim_end().ends_with(&wire)))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Records an event.
    pub fn event(
        &mut self,
        at: Duration,
        step_line: Option<usize>,
        text: impl Into<String>,
        mark: Option<Mark>,
    ) {
        self.events.push(Event {
            at,
            step_line,
            text: text.into(),
            mark,
        });
    }

    /// Name of server `i`.
    pub fn server_name(&self, i: ServerIdx) -> String {
        server_name(i)
    }
}

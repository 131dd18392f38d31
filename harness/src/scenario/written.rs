//! Stage one: the file as written, deserialized with serde (unknown keys rejected).
//!
//! Every value that a later check may need to point at is wrapped in [`Spanned`], so a
//! semantic error (unknown client, impossible timing) names the line and column too.
//!
//! A `[[step]]` has exactly one action key and an `[[expect]]` exactly one kind key; both
//! tables are declared with `one_of_table!`, which derives from the one list of fields
//! the names a file may use, which of them are present, and an enum of the present one
//! that validation matches on (so a new action is a new line here, and the compiler then
//! asks for its validation and its execution).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::model::{Algorithm, BalancerKind};

/// Spanned string.
pub type SStr = Spanned<String>;

/// A whole scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTable {
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
    pub topology: Option<Spanned<TopologyTable>>,
    /// Balancer settings.
    pub balancer: Option<Spanned<BalancerTable>>,
    /// Programs replacing the default chat server/client.
    pub programs: Option<Spanned<ProgramsTable>>,
    /// The user's own balancer (`own` in `balancers`).
    pub own_balancer: Option<Spanned<OwnBalancerTable>>,
    /// The timeline, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<StepTable>>,
    /// What must hold.
    #[serde(default, rename = "expect")]
    pub expects: Vec<Spanned<ExpectTable>>,
}

/// `[topology]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyTable {
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
    /// Home layout: where each client host sits (`outside`, `inside`, ...).
    pub sites: Option<Spanned<Vec<SStr>>>,
    /// Home layout: whether the router forwards the balancer's port to the lb.
    pub forward: Option<Spanned<bool>>,
    /// Home layout: whether LAN clients may use the public address.
    pub hairpin: Option<Spanned<bool>>,
    /// Home layout: MTU of the uplink (1492 for PPPoE).
    pub uplink_mtu: Option<Spanned<u32>>,
    /// Home layout: whether the router and isp drop ICMP "fragmentation needed".
    pub pmtu_black_hole: Option<Spanned<bool>>,
    /// Home layout: whether the router clamps the MSS of forwarded SYNs.
    pub clamp_mss: Option<Spanned<bool>>,
    /// Home layout: how long the carrier-grade NAT keeps an idle TCP mapping.
    pub carrier_timeout: Option<SStr>,
    /// Home layout: hosts on the Wi-Fi segment.
    pub wifi: Option<Spanned<Vec<SStr>>>,
}

/// `[balancer]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerTable {
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
    /// The algorithm of HAProxy and nginx (ours have a fixed one).
    pub algorithm: Option<Spanned<Algorithm>>,
}

/// `[own_balancer]`: a user's own balancer program.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnBalancerTable {
    /// Name shown in reports.
    pub name: Option<SStr>,
    /// The command (placeholders `{port}`, `{backends}`, ...).
    pub command: Spanned<CommandValue>,
    /// The algorithm it balances by.
    pub algorithm: Option<Spanned<Algorithm>>,
    /// Its health view: `none` (default), `prometheus` or `haproxy`.
    pub health: Option<SStr>,
    /// `prometheus`: the endpoint, `http://127.0.0.1:PORT/PATH` in the balancer's namespace.
    pub metrics_url: Option<SStr>,
    /// `prometheus`: the metric that is 1 for a backend in use and 0 for one taken out.
    pub up_metric: Option<SStr>,
    /// `prometheus`: the label naming the backend as `ip:port` (default `backend`).
    pub backend_label: Option<SStr>,
    /// `prometheus`: a metric of live sessions per backend.
    pub sessions_metric: Option<SStr>,
    /// `haproxy`: the stats socket's path (`{dir}` allowed).
    pub stats_socket: Option<SStr>,
}
/// A command: a string (run by `sh -c`) or a list of arguments.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CommandValue {
    /// `sh -c` command line.
    Shell(String),
    /// argv.
    Argv(Vec<String>),
}

/// `[programs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramsTable {
    /// Server command template.
    pub server: Option<Spanned<CommandValue>>,
    /// Client command template.
    pub client: Option<Spanned<CommandValue>>,
}

/// Declares a table of which exactly one *key* field may be given (`name => Variant:
/// Type`), beside *modifier* fields (`name: Type`, or `name for [key, ...]: Type` when it
/// belongs to some keys only). Every field is optional; serde lists them, in this order,
/// when a file uses an unknown one. Besides the struct it declares `$key_enum`, the key
/// given with its value, and on the table:
/// - `KEYS`: the key names, as written in a file;
/// - `key()`: the one key given, or the names of all given when that is not exactly one;
/// - `owned_modifiers_given()`: the modifiers given that belong to some keys only, with
///   where they were written and the keys they belong to.
macro_rules! one_of_table {
    (
        $(#[$meta:meta])*
        pub struct $table:ident, key $key_enum:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident $(=> $variant:ident)? $(for $owners:tt)? : $ty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $table {
            $( $(#[$field_meta])* pub $field: Option<$ty>, )*
        }

        #[doc = concat!("The one key a [`", stringify!($table), "`] gives, with its value.")]
        #[derive(Debug, Clone, Copy)]
        pub enum $key_enum<'a> {
            $( $(
                #[doc = concat!("`", stringify!($field), "`")]
                $variant(&'a $ty),
            )? )*
        }

        impl $key_enum<'_> {
            /// The key as written in a file.
            pub fn name(&self) -> &'static str {
                match self {
                    $( $( Self::$variant(_) => stringify!($field), )? )*
                }
            }
        }

        impl $table {
            /// The key names, as written in a file, in declaration order.
            pub const KEYS: &'static [&'static str] =
                &[$( $( one_of_table!(@name $field $variant), )? )*];

            /// The one key given; otherwise the names of every key given (none or several).
            pub fn key(&self) -> Result<$key_enum<'_>, Vec<&'static str>> {
                let mut given = Vec::new();
                $( $(
                    if let Some(value) = &self.$field {
                        given.push($key_enum::$variant(value));
                    }
                )? )*
                match given.as_slice() {
                    [one] => Ok(*one),
                    _ => Err(given.iter().map(|k| k.name()).collect()),
                }
            }

            /// Modifiers given that belong to some keys only: (name, where, the keys).
            #[allow(dead_code)]
            pub fn owned_modifiers_given(
                &self,
            ) -> Vec<(&'static str, std::ops::Range<usize>, &'static [&'static str])> {
                #[allow(unused_mut)]
                let mut given = Vec::new();
                $( $(
                    if let Some(value) = &self.$field {
                        // A field named like a Rust keyword (`r#for`) is written without `r#`.
                        let name = stringify!($field).trim_start_matches("r#");
                        given.push((name, value.span(), one_of_table!(@names $owners)));
                    }
                )? )*
                given
            }

            /// The keys each owned modifier names (a test checks they are keys).
            #[cfg(test)]
            pub const MODIFIER_OWNERS: &'static [&'static [&'static str]] =
                &[$( $( one_of_table!(@names $owners), )? )*];
        }
    };
    (@name $field:ident $variant:ident) => { stringify!($field) };
    (@names [$($owner:ident),+]) => { &[$(stringify!($owner)),+] as &[&str] };
}

one_of_table! {
    /// One `[[step]]`: exactly one action key plus its modifiers.
    pub struct StepTable, key StepKey {
        /// Start no earlier than this time after the scenario began.
        at: SStr,
        /// Clients join, one after the other (or all at once with `together`).
        join => Join: Spanned<Vec<SStr>>,
        /// `join` starts every client at once (a party) instead of one after the other.
        together for [join]: Spanned<bool>,
        /// Clients that joined before end their session and join again under the same name
        /// (a Pi or phone that rebooted).
        rejoin => Rejoin: Spanned<Vec<SStr>>,
        /// A client sends `bytes` in lines and reads their echo back (a bulk transfer).
        bulk => Bulk: SStr,
        /// Bytes a `bulk` step sends (and so reads back).
        bytes for [bulk]: Spanned<u64>,
        /// A chat line.
        say => Say: SStr,
        /// Who says it.
        client for [say]: SStr,
        /// Several clients say it, one after the other.
        clients for [say]: Spanned<Vec<SStr>>,
        /// A client starts talking periodically.
        chat => Chat: SStr,
        /// Period of `chat`; for a fault (with `for`), how often it comes back.
        every for [chat, impair, netem, drop, rate, link_down]: SStr,
        /// A client stops talking.
        silent => Silent: SStr,
        /// Clients quit (`q`).
        quit => Quit: Spanned<Vec<SStr>>,
        /// SIGKILL a server.
        kill => Kill: SStr,
        /// SIGSTOP a server.
        stop => Stop: SStr,
        /// SIGCONT a server.
        cont => Cont: SStr,
        /// Start a server again (killing it first if it runs).
        restart => Restart: SStr,
        /// Take a host's link down.
        link_down => LinkDown: SStr,
        /// Bring a host's link up.
        link_up => LinkUp: SStr,
        /// Drop this fraction of packets on `link`.
        drop => Drop: Spanned<f64>,
        /// Rate limit on `link`, e.g. "1mbit".
        rate => Rate: SStr,
        /// netem arguments on `link`, e.g. "delay 50ms".
        netem => Netem: SStr,
        /// Remove every fault from a link.
        clear_faults => ClearFaults: SStr,
        /// Host whose link `drop`/`rate`/`netem` act on.
        link for [drop, rate, netem]: SStr,
        /// Which way of the link `netem`/`impair` acts on: "up" (what the host sends, as tc
        /// netem on its eth0 would; the default), "down" (what it receives) or "both".
        direction for [netem, impair]: SStr,
        /// Run `netem` on the kernel's netem qdisc on the host's `eth0` (what it sends)
        /// instead of the harness's wire; the step fails, saying so, where the kernel
        /// has no netem.
        kernel for [netem]: Spanned<bool>,
        /// Impair this host's link with the keys below (the native form of `netem`).
        impair => Impair: SStr,
        /// Fixed one-way delay of `impair`, e.g. "15ms".
        delay for [impair]: SStr,
        /// Spread around `delay`, e.g. "10ms".
        jitter for [impair]: SStr,
        /// Shape of `jitter`: "uniform", "normal", "pareto" or "paretonormal".
        distribution for [impair]: SStr,
        /// Loss of `impair`: "2%", or a table of bursts on the clock.
        loss for [impair]: Spanned<LossValue>,
        /// Bound of `impair`'s queue: "100" frames, "64kb" bytes or "50ms".
        queue for [impair]: SStr,
        /// How long a fault lasts before the runner clears it, e.g. "2s".
        r#for for [impair, netem, drop, rate, link_down]: SStr,
        /// Sleep.
        wait => Wait: SStr,
        /// Wait until a condition holds.
        wait_until => WaitUntil: Spanned<ConditionTable>,
        /// Longest wait for `wait_until`.
        deadline for [wait_until]: SStr,
        /// Free text for the report.
        note: String,
    }
}

/// `loss` of an `impair` step: a percentage, or bursts on the clock. (Untagged, so its
/// parts cannot be spanned: errors point at the whole value.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LossValue {
    /// Random loss, e.g. "2%".
    Percent(String),
    /// `{ model = "bursts", good = "2s", bad = "200ms", bad_loss = "50%", good_loss = "0%" }`.
    Model(LossTable),
}

/// The table form of `loss`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossTable {
    /// "bursts" (the only model).
    pub model: String,
    /// Mean length of a good period.
    pub good: String,
    /// Mean length of a bad period.
    pub bad: String,
    /// Loss in the bad state (default 100%).
    pub bad_loss: Option<String>,
    /// Loss in the good state (default 0%).
    pub good_loss: Option<String>,
}

/// `told_closed = { client = "phone", within = "1s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToldClosedTable {
    /// The client whose session ended.
    pub client: SStr,
    /// Longest time from its next line to it being told.
    pub within: SStr,
}

one_of_table! {
    /// Conditions of `wait_until` (exactly one key).
    pub struct ConditionTable, key ConditionKey {
        /// The balancer reports this server down.
        server_down => ServerDown: SStr,
        /// The balancer reports this server up.
        server_up => ServerUp: SStr,
        /// This client's session has been closed.
        closed => Closed: SStr,
        /// The balancer holds exactly this many sessions (raw: NAT rows).
        sessions => Sessions: Spanned<u32>,
    }
}

one_of_table! {
    /// One `[[expect]]`: exactly one kind key plus its modifiers.
    pub struct ExpectTable, key ExpectKey {
        /// Only for this balancer.
        balancer: Spanned<BalancerKind>,
        /// Only for balancers that use this algorithm.
        algorithm: Spanned<Algorithm>,
        /// Why this expectation holds (free text for the report).
        why: String,
        /// Exact placement: server -> clients.
        placement => Placement: Spanned<BTreeMap<SStr, Vec<SStr>>>,
        /// Most and least loaded server differ by at most this.
        balanced => Balanced: Spanned<u32>,
        /// These clients must not be on this server: server -> clients.
        not_on => NotOn: Spanned<BTreeMap<SStr, Vec<SStr>>>,
        /// Every line reaches exactly the clients of the sender's server.
        chat_isolation => ChatIsolation: Spanned<bool>,
        /// A chat line (with `by` / `not_by`).
        heard => Heard: SStr,
        /// Clients that must have received `heard`.
        by: Vec<SStr>,
        /// Clients that must not have received `heard`.
        not_by: Vec<SStr>,
        /// Each of `by` received `heard` within this of it being said; each `bulk_done`
        /// transfer came back within this of its start.
        within for [heard, bulk_done]: SStr,
        /// The balancer noticed this server failing within the bound and sent no client there after.
        failover => Failover: SStr,
        /// The balancer noticed this server back within the bound and sent clients there again.
        recovery => Recovery: SStr,
        /// Sessions still open at the end.
        kept => Kept: Vec<SStr>,
        /// The balancer never took these servers out (no false failover under loss or
        /// jitter).
        stayed_up => StayedUp: Vec<SStr>,
        /// A client learned its session had ended (FIN or RST) within a bound of its next
        /// line: `{ client = "phone", within = "1s" }`.
        told_closed => ToldClosed: Spanned<ToldClosedTable>,
        /// Every byte of these clients' bulk transfers came back.
        bulk_done => BulkDone: Vec<SStr>,
        /// Sessions closed by the idle timeout, on time.
        idle_closed => IdleClosed: Vec<SStr>,
        /// Tolerance around the idle timeout.
        tolerance: SStr,
        /// Joins refused cleanly (`connect() error`, exit 1).
        refused => Refused: Vec<SStr>,
        /// No join was refused.
        no_refused => NoRefused: Spanned<bool>,
        /// Sessions the balancer holds at the end (raw: NAT rows; proxy: live sessions).
        open_sessions => OpenSessions: Spanned<u32>,
        /// The balancer process is still running at the end.
        balancer_alive => BalancerAlive: Spanned<bool>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifiers_belong_to_keys_that_exist() {
        for owners in StepTable::MODIFIER_OWNERS {
            for owner in *owners {
                assert!(StepTable::KEYS.contains(owner), "{owner}");
            }
        }
        assert_eq!(StepTable::KEYS.len(), 20);
        assert_eq!(ExpectTable::KEYS.len(), 16);
    }

    #[test]
    fn the_one_key_given_is_found_and_several_are_named() {
        let step: StepTable = toml::from_str("kill = \"s1\"\nnote = \"x\"").unwrap();
        assert_eq!(step.key().unwrap().name(), "kill");
        let step: StepTable = toml::from_str("kill = \"s1\"\nstop = \"s1\"").unwrap();
        assert_eq!(step.key().unwrap_err(), vec!["kill", "stop"]);
        let none = StepTable::default();
        assert!(none.key().unwrap_err().is_empty());
    }
}

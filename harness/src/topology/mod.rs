//! Network topologies of namespaces joined by veth links (rtnetlink, own namespaces).
//!
//! Default layout, a home LAN: namespaces `client1..clientN`, `lb`, `s1..sM`, each with
//! one veth (`eth0`) whose peer (`p-<role>`) sits in a `lan` namespace, enslaved to
//! bridge `br0` there (the home switch). Both ends of every veth are created directly
//! inside their namespaces (one netlink request from `lan` with the peer's target
//! namespace), so nothing is ever created in, or linked to, the host namespace.
//! Every namespace name starts with the run's prefix (`l4lb-<pid>-<n>-`), so parallel
//! runs never collide and [`crate::cleanup`] can tell a live run from a crashed one.
//!
//! Routed layout: clients on `br0` (subnet), servers on `br1` (the next /24), the `lb`
//! namespace has `eth0` on `br0` and `eth1` on `br1`, forwards, and every other host has
//! a default route through it.
//!
//! API contract (callers: runner, bench, tests):
//! - [`TopologySpec`] says what to build; [`Topology::build`] builds it;
//!   [`Topology::teardown`] (also run by `Drop`) removes every namespace it created.
//! - [`Topology::namespace`] gives the [`crate::netns::Namespace`] of a [`Host`].
//! - Addresses: [`Topology::addr`] of a host; the balancer's is `addr(Host::Lb)`.
//! - Faults: [`Topology::set_link`] takes a host's `eth0` down or up.

mod build;
pub mod diagram;
pub mod home;
mod interpose;
pub mod plan;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::netns::{Namespace, NetlinkHandle};
pub use plan::{Plan, PlanError};

/// One host of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// Client host `i` (0-based; namespace `client{i+1}`).
    Client(usize),
    /// The balancer host.
    Lb,
    /// Server host `i` (0-based; namespace `s{i+1}`).
    Server(usize),
    /// Home layout: the home router between the home LAN and its uplink.
    Router,
    /// Home layout: the provider's router at the far end of the uplink, on the internet.
    Isp,
    /// Home layout: a carrier-grade NAT between the internet and the clients behind it.
    Carrier,
    /// Home layout: client `i`'s own router (double NAT: it sits behind the carrier).
    ClientRouter(usize),
    /// Home layout: the Wi-Fi access point. Not a namespace but a cable in the switch
    /// between the wired LAN and the Wi-Fi segment: the medium its hosts share, which
    /// link steps (`impair`, `drop`, `link_down`) act on.
    WifiAp,
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&plan::role(*self))
    }
}

/// How hosts are joined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Every host on one bridge in a `lan` namespace, one subnet (a home network).
    #[default]
    Lan,
    /// Clients on one subnet, servers on another, the `lb` namespace routes between them.
    Routed,
    /// A home: LAN behind a NAT router with an uplink to the internet ([`home`]).
    Home,
}

/// Offload settings applied to every veth of the topology.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offloads {
    /// Whatever a fresh veth has (GRO/GSO/TSO on).
    #[default]
    Default,
    /// GRO, GSO, TSO and checksum offload off on every veth.
    Off,
}

/// The name a scenario file uses (`layout = "lan"`), so a report reads like the file.
impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Lan => "lan",
            Layout::Routed => "routed",
            Layout::Home => "home",
        })
    }
}

/// The name a scenario file uses (`offloads = "off"`), so a report reads like the file.
impl std::fmt::Display for Offloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Offloads::Default => "default",
            Offloads::Off => "off",
        })
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySpec {
    /// Number of client hosts (at least 1).
    pub clients: usize,
    /// Number of server hosts (at least 1).
    pub servers: usize,
    /// Layout of the links.
    pub layout: Layout,
    /// First address of the LAN subnet (a /24), e.g. 10.0.0.0 or 192.168.0.0.
    /// Lan layout: lb = .1, servers = .11.., clients = .101...
    /// Routed layout: servers (and lb's `eth1`, .1) on the next /24.
    pub subnet: Ipv4Addr,
    /// MTU of every veth (None: kernel default, 1500).
    pub mtu: Option<u32>,
    /// Offload settings of every veth.
    pub offloads: Offloads,
    /// Whether to install the RST-drop rule in the `lb` namespace.
    pub rst_drop: bool,
    /// The home around the LAN (used by [`Layout::Home`] only).
    pub home: home::HomeSpec,
}

impl Default for TopologySpec {
    fn default() -> Self {
        Self {
            clients: 1,
            servers: 3,
            layout: Layout::Lan,
            subnet: Ipv4Addr::new(10, 0, 0, 0),
            mtu: None,
            offloads: Offloads::Default,
            rst_drop: true,
            home: home::HomeSpec::default(),
        }
    }
}

/// One namespace of a topology and the netlink socket opened inside it.
#[derive(Debug)]
struct Member {
    ns: Namespace,
    netlink: Option<NetlinkHandle>,
}

/// A built topology. Dropping it tears it down.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    spec: TopologySpec,
    plan: Plan,
    /// Hosts in plan order (clients, lb, servers), then `lan` last.
    members: Vec<Member>,
    registry_id: u64,
    torn_down: bool,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh prefix `l4lb-<pid>-<n>-` that no existing namespace uses.
fn fresh_prefix() -> String {
    let pid = std::process::id();
    let taken = crate::cleanup::list_namespaces().unwrap_or_default();
    loop {
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = plan::prefix(pid, n);
        if !taken.iter().any(|name| name.starts_with(&prefix)) {
            return prefix;
        }
    }
}

impl Topology {
    /// Builds the topology described by `spec` under a fresh per-run prefix.
    ///
    /// Must be called inside a tokio runtime (any flavour). On error, everything
    /// created so far is removed before returning.
    pub async fn build(spec: &TopologySpec) -> anyhow::Result<Topology> {
        let plan = Plan::new(spec).context("invalid topology spec")?;
        let prefix = fresh_prefix();
        let mut names: Vec<String> = plan
            .hosts
            .iter()
            .map(|&h| format!("{prefix}{}", plan::role(h)))
            .collect();
        names.push(format!("{prefix}{}", plan::LAN_ROLE));
        let members: Vec<Member> = names
            .iter()
            .map(|n| Member {
                ns: Namespace::named(n),
                netlink: None,
            })
            .collect();
        let registry_id =
            crate::cleanup::registry::register(members.iter().map(|m| m.ns.clone()).collect());
        let mut topo = Topology {
            prefix,
            spec: spec.clone(),
            plan,
            members,
            registry_id,
            torn_down: false,
        };
        build::build(&mut topo).await.with_context(|| {
            format!(
                "building topology {}* failed (it was removed again)",
                topo.prefix
            )
        })?;
        Ok(topo)
    }

    /// The per-run prefix every name of this topology starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The spec this topology was built from.
    pub fn spec(&self) -> &TopologySpec {
        &self.spec
    }

    /// Names, links and addresses of this topology.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Every host, in order: clients, lb, servers.
    pub fn hosts(&self) -> &[Host] {
        &self.plan.hosts
    }

    fn index(&self, host: Host) -> Option<usize> {
        self.plan.hosts.iter().position(|&h| h == host)
    }

    /// The namespace of a host. Panics if the host is not part of the spec (e.g.
    /// `Host::Server(5)` with 3 servers): that is a bug in the caller.
    pub fn namespace(&self, host: Host) -> &Namespace {
        match self.index(host) {
            Some(i) => &self.members[i].ns,
            None => panic!(
                "{host} is not part of topology {} ({} clients, {} servers)",
                self.prefix, self.spec.clients, self.spec.servers
            ),
        }
    }

    /// The namespace of a host, or None if the spec has no such host.
    pub fn try_namespace(&self, host: Host) -> Option<&Namespace> {
        self.index(host).map(|i| &self.members[i].ns)
    }

    /// The `lan` namespace (the switch: bridges and the hosts' peers).
    pub fn lan(&self) -> &Namespace {
        &self.members.last().expect("lan member").ns
    }

    /// Every namespace of this topology (hosts, then `lan`).
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.members.iter().map(|m| &m.ns)
    }

    /// The address of a host on its (first) link. Panics for a host not in the spec.
    pub fn addr(&self, host: Host) -> Ipv4Addr {
        match self.plan.link(host) {
            Some(link) => link.addr,
            None => panic!("{host} is not part of topology {}", self.prefix),
        }
    }

    /// The address client host `i` dials to reach the balancer: the lb's own on a LAN,
    /// the router's public address for a client outside a home (or hairpinning).
    pub fn entry(&self, client: usize) -> Ipv4Addr {
        self.plan
            .entries
            .get(client)
            .copied()
            .unwrap_or_else(|| self.addr(Host::Lb))
    }

    /// The topology drawn as text lines (a home's diagram; empty for other layouts).
    pub fn diagram(&self) -> Vec<String> {
        diagram::home_lines(&self.spec, &self.plan)
    }

    /// The balancer's address on the servers' side (its `eth1` in the routed layout,
    /// the same as `addr(Host::Lb)` on a LAN).
    pub fn lb_backend_addr(&self) -> Ipv4Addr {
        self.plan.lb_backend_addr()
    }

    /// The rtnetlink handle of the switch's namespace.
    fn lan_netlink(&self) -> anyhow::Result<&rtnetlink::Handle> {
        self.members
            .last()
            .and_then(|m| m.netlink.as_ref())
            .map(|n| &n.handle)
            .context("topology has been torn down")
    }

    /// An rtnetlink handle bound to a host's namespace (usable from any task).
    pub fn netlink(&self, host: Host) -> anyhow::Result<&rtnetlink::Handle> {
        let i = self
            .index(host)
            .with_context(|| format!("{host} is not part of topology {}", self.prefix))?;
        self.members[i]
            .netlink
            .as_ref()
            .map(|n| &n.handle)
            .context("topology has been torn down")
    }

    /// Takes a host's `eth0` administratively down (`up = false`) or up again.
    /// Bringing it up waits until the link is operationally up (traffic flows).
    pub async fn set_link(&self, host: Host, up: bool) -> anyhow::Result<()> {
        self.set_link_named(host, "eth0", up).await
    }

    /// Like [`Topology::set_link`] for any interface of the host (`eth1` of a routed lb).
    /// The Wi-Fi access point's cable is in the switch: there `ifname` is not used.
    pub async fn set_link_named(&self, host: Host, ifname: &str, up: bool) -> anyhow::Result<()> {
        if host == Host::WifiAp {
            let (wired_if, _) = self
                .plan
                .cable(host)
                .context("this topology has no Wi-Fi")?;
            let wired_if = wired_if.to_string();
            return build::set_link(self.lan_netlink()?, &wired_if, up)
                .await
                .with_context(|| format!("cannot set the Wi-Fi access point's {wired_if}"));
        }
        let handle = self.netlink(host)?;
        build::set_link(handle, ifname, up).await.with_context(|| {
            format!(
                "cannot set {ifname} of {host} {}",
                if up { "up" } else { "down" }
            )
        })?;
        // The kernel drops a link's routes when it goes down and does not bring them
        // back: a host with a gateway would stay cut off, as a router would without
        // its PPP or DHCP client. Put the plan's default route back.
        if up {
            let gateway = self
                .plan
                .links_of(host)
                .find(|l| l.host_if == ifname)
                .and_then(|l| l.gateway);
            if let Some(gw) = gateway {
                build::default_route(handle, ifname, gw)
                    .await
                    .with_context(|| format!("cannot restore the default route of {host}"))?;
            }
        }
        Ok(())
    }

    /// Removes every namespace (and so every link) this topology created; kills
    /// processes still running inside them. Collects errors and keeps going.
    pub async fn teardown(mut self) -> anyhow::Result<()> {
        self.teardown_now()
    }

    /// The synchronous teardown behind [`Topology::teardown`] and `Drop`.
    fn teardown_now(&mut self) -> anyhow::Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        // Close our own netlink sockets first: they hold the namespaces alive.
        for m in &mut self.members {
            m.netlink = None;
        }
        let namespaces: Vec<Namespace> = self.members.iter().map(|m| m.ns.clone()).collect();
        let errors = crate::cleanup::remove_namespaces(&namespaces);
        crate::cleanup::registry::unregister(self.registry_id);
        crate::cleanup::combine_errors(&format!("tearing down topology {}*", self.prefix), errors)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_now() {
            eprintln!("l4lb: {e:#}");
        }
    }
}

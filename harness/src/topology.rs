//! Network topologies of namespaces joined by veth links (rtnetlink, netns-rs).
//!
//! Default layout, a home LAN: namespaces `client1..clientN`, `lb`, `s1..sM`, each with
//! one veth (`eth0`) whose peer sits in a `lan` namespace, enslaved to bridge `br0`
//! there (the home switch). Both ends of every veth are created directly inside their
//! namespaces, so nothing is ever created in, or linked to, the host namespace.
//! Every namespace name starts with the run's prefix (`l4lb-<pid>-<n>-`), so parallel
//! runs never collide and `cleanup` can tell a live run from a crashed one.
//!
//! API contract (implemented in this module; callers: runner, bench, tests):
//! - [`TopologySpec`] says what to build; [`Topology::build`] builds it;
//!   [`Topology::teardown`] (also run by `Drop`) removes every namespace it created.
//! - [`Topology::namespace`] gives the [`crate::netns::Namespace`] of a [`Host`].
//! - Addresses: [`Topology::addr`] of a host; the balancer's is `addr(Host::Lb)`.
//! - Faults: [`Topology::set_link`] takes a host's `eth0` down or up.

use std::net::Ipv4Addr;

use crate::netns::Namespace;

/// One host of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// Client host `i` (0-based; namespace `client{i+1}`).
    Client(usize),
    /// The balancer host.
    Lb,
    /// Server host `i` (0-based; namespace `s{i+1}`).
    Server(usize),
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
    pub subnet: Ipv4Addr,
    /// MTU of every veth (None: kernel default, 1500).
    pub mtu: Option<u32>,
    /// Offload settings of every veth.
    pub offloads: Offloads,
    /// Whether to install the RST-drop rule in the `lb` namespace.
    pub rst_drop: bool,
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
        }
    }
}

/// A built topology. Dropping it tears it down.
#[derive(Debug)]
pub struct Topology {
    _private: (),
}

impl Topology {
    /// Builds the topology described by `spec` under a fresh per-run prefix.
    pub async fn build(_spec: &TopologySpec) -> anyhow::Result<Topology> {
        todo!("topology build")
    }

    /// The per-run prefix every name of this topology starts with.
    pub fn prefix(&self) -> &str {
        todo!()
    }

    /// The namespace of a host.
    pub fn namespace(&self, _host: Host) -> &Namespace {
        todo!()
    }

    /// The address of a host on its link.
    pub fn addr(&self, _host: Host) -> Ipv4Addr {
        todo!()
    }

    /// Takes a host's `eth0` administratively down (`up = false`) or up again.
    pub async fn set_link(&self, _host: Host, _up: bool) -> anyhow::Result<()> {
        todo!()
    }

    /// Removes every namespace (and so every link) this topology created; kills
    /// processes still running inside them. Collects errors and keeps going.
    pub async fn teardown(self) -> anyhow::Result<()> {
        todo!()
    }
}

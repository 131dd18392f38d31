//! The pure part of a topology: names, links and addresses, computed from a spec
//! without touching the kernel (unit-tested anywhere).

use std::net::Ipv4Addr;

use super::{Host, Layout, TopologySpec};

/// Role of the switch namespace that holds the bridges.
pub const LAN_ROLE: &str = "lan";
/// Prefix length of every subnet.
pub const PREFIX_LEN: u8 = 24;
/// Last octet of the balancer's address on each subnet.
pub const LB_OCTET: u8 = 1;
/// Last octet of the first server (servers are .11, .12, ...).
pub const FIRST_SERVER_OCTET: u8 = 11;
/// Last octet of the first client (clients are .101, .102, ...).
pub const FIRST_CLIENT_OCTET: u8 = 101;
/// At most this many servers (.11 to .100).
pub const MAX_SERVERS: usize = (FIRST_CLIENT_OCTET - FIRST_SERVER_OCTET) as usize;
/// At most this many clients (.101 to .254).
pub const MAX_CLIENTS: usize = (255 - FIRST_CLIENT_OCTET) as usize;

/// A spec that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// Zero clients or zero servers.
    #[error("a topology needs at least one {0}; ask for 1 or more")]
    Empty(&'static str),
    /// More hosts than the address plan has room for.
    #[error("{count} {what} do not fit the address plan (at most {max})")]
    TooMany {
        /// "clients" or "servers".
        what: &'static str,
        /// How many were asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The subnet is not the first address of a /24.
    #[error("subnet {0} is not the start of a /24: use an address ending in .0, e.g. 10.0.0.0")]
    Unaligned(Ipv4Addr),
    /// A routed layout needs a second /24 after the first.
    #[error("routed layout puts servers on the /24 after {0}, which does not exist; pick a lower subnet")]
    NoServerSubnet(Ipv4Addr),
    /// The MTU is outside what a veth accepts.
    #[error("MTU {0} is outside 68..=65535")]
    Mtu(u32),
    /// A home's settings do not fit its hosts (see [`super::home`]).
    #[error("{0}")]
    Home(String),
}

/// One veth: `host_if` inside the host's namespace, `lan_if` in `lan`, enslaved to `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    /// The host at one end.
    pub host: Host,
    /// Interface name inside the host's namespace (`eth0`, `eth1`).
    pub host_if: String,
    /// Interface name inside `lan` (`p-<role>`, ≤ 15 bytes).
    pub lan_if: String,
    /// Bridge in `lan` the port joins (`br0`, `br1`).
    pub bridge: String,
    /// Address of `host_if`.
    pub addr: Ipv4Addr,
    /// Default gateway of the host through this link, if any (routed and home layouts).
    pub gateway: Option<Ipv4Addr>,
    /// MTU of both ends (None: the kernel's default, 1500).
    pub mtu: Option<u32>,
}

/// A veth with both ends in the switch's namespace, joining two of its bridges: the
/// Wi-Fi access point between the wired home LAN and the Wi-Fi segment. The wire that
/// impairs the shared medium sits on `wired_if`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkPlan {
    /// End on the wired bridge (`p-wifi`), where an impairment's wire goes.
    pub wired_if: String,
    /// The wired bridge (`br0`).
    pub wired_bridge: String,
    /// End on the other bridge (`w-wifi`).
    pub far_if: String,
    /// The other bridge (`br-wifi`).
    pub far_bridge: String,
    /// MTU of both ends.
    pub mtu: Option<u32>,
}

/// What a host does beyond addresses and routes: kernel settings and firewall rules
/// (a router's NAT, a port forward, an MSS clamp, a PMTU black hole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSetup {
    /// Paths under `/proc/sys/` and the value written there, in order.
    pub sysctls: Vec<(String, String)>,
    /// `iptables` argument lists, run in order (after the sysctls that need no
    /// conntrack, before those under `net/netfilter/`, which exist once a rule loads it).
    pub iptables: Vec<Vec<String>>,
}

/// Everything to build, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Hosts in order: clients, lb, servers.
    pub hosts: Vec<Host>,
    /// Bridges in `lan`.
    pub bridges: Vec<String>,
    /// Veth links.
    pub links: Vec<LinkPlan>,
    /// Veths between two bridges of the switch (the Wi-Fi access point).
    pub trunks: Vec<TrunkPlan>,
    /// Hosts that forward between their links, with what else they set up.
    pub setups: Vec<(Host, HostSetup)>,
    /// The address each client dials to reach the balancer (one entry a client host):
    /// the lb itself on a LAN, the router's public address from outside a home.
    pub entries: Vec<Ipv4Addr>,
}

/// The role part of a host's namespace name.
pub fn role(host: Host) -> String {
    match host {
        Host::Client(i) => format!("client{}", i + 1),
        Host::Lb => "lb".to_string(),
        Host::Server(i) => format!("s{}", i + 1),
        Host::Router => "router".to_string(),
        Host::Isp => "isp".to_string(),
        Host::Carrier => "carrier".to_string(),
        Host::ClientRouter(i) => format!("crouter{}", i + 1),
        Host::WifiAp => "wifi".to_string(),
    }
}

/// The sysctl that makes a host forward IPv4.
pub fn forwarding() -> (String, String) {
    ("net/ipv4/ip_forward".into(), "1".into())
}

/// Names are spelt where namespaces are swept (`crate::cleanup::names`), below both.
pub use crate::cleanup::names::{parse_name, prefix};

fn with_octets(subnet: Ipv4Addr, third_offset: u8, last: u8) -> Ipv4Addr {
    let [a, b, c, _] = subnet.octets();
    Ipv4Addr::new(a, b, c + third_offset, last)
}

impl Plan {
    /// Computes names and addresses for `spec`, or says why it cannot be built.
    pub fn new(spec: &TopologySpec) -> Result<Plan, PlanError> {
        if spec.clients == 0 {
            return Err(PlanError::Empty("client"));
        }
        if spec.servers == 0 {
            return Err(PlanError::Empty("server"));
        }
        if spec.clients > MAX_CLIENTS {
            return Err(PlanError::TooMany {
                what: "clients",
                count: spec.clients,
                max: MAX_CLIENTS,
            });
        }
        if spec.servers > MAX_SERVERS {
            return Err(PlanError::TooMany {
                what: "servers",
                count: spec.servers,
                max: MAX_SERVERS,
            });
        }
        if spec.subnet.octets()[3] != 0 {
            return Err(PlanError::Unaligned(spec.subnet));
        }
        if let Some(mtu) = spec.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(PlanError::Mtu(mtu));
            }
        }
        if spec.layout == Layout::Home {
            return super::home::plan(spec);
        }
        let routed = spec.layout == Layout::Routed;
        if routed && spec.subnet.octets()[2] == 255 {
            return Err(PlanError::NoServerSubnet(spec.subnet));
        }
        let server_net = if routed { 1 } else { 0 };
        let mut hosts: Vec<Host> = (0..spec.clients).map(Host::Client).collect();
        hosts.push(Host::Lb);
        hosts.extend((0..spec.servers).map(Host::Server));

        let lb_client = with_octets(spec.subnet, 0, LB_OCTET);
        let lb_server = with_octets(spec.subnet, server_net, LB_OCTET);
        let server_bridge = if routed { "br1" } else { "br0" };
        let mut links = Vec::new();
        for &host in &hosts {
            let (addr, gateway, bridge) = match host {
                Host::Client(i) => (
                    with_octets(spec.subnet, 0, FIRST_CLIENT_OCTET + i as u8),
                    routed.then_some(lb_client),
                    "br0",
                ),
                Host::Lb => (lb_client, None, "br0"),
                Host::Server(i) => (
                    with_octets(spec.subnet, server_net, FIRST_SERVER_OCTET + i as u8),
                    routed.then_some(lb_server),
                    server_bridge,
                ),
                _ => unreachable!("lan and routed layouts have only clients, lb and servers"),
            };
            links.push(LinkPlan {
                host,
                host_if: "eth0".into(),
                lan_if: format!("p-{}", role(host)),
                bridge: bridge.into(),
                addr,
                gateway,
                mtu: spec.mtu,
            });
            if host == Host::Lb && routed {
                links.push(LinkPlan {
                    host,
                    host_if: "eth1".into(),
                    lan_if: "p-lb-s".into(),
                    bridge: "br1".into(),
                    addr: lb_server,
                    gateway: None,
                    mtu: spec.mtu,
                });
            }
        }
        let bridges = if routed {
            vec!["br0".into(), "br1".into()]
        } else {
            vec!["br0".into()]
        };
        let setups = if routed {
            vec![(
                Host::Lb,
                HostSetup {
                    sysctls: vec![forwarding()],
                    iptables: Vec::new(),
                },
            )]
        } else {
            Vec::new()
        };
        let entries = vec![lb_client; spec.clients];
        Ok(Plan {
            hosts,
            bridges,
            links,
            trunks: Vec::new(),
            setups,
            entries,
        })
    }

    /// The first link of `host` (its `eth0`).
    pub fn link(&self, host: Host) -> Option<&LinkPlan> {
        self.links.iter().find(|l| l.host == host)
    }

    /// The balancer's address on the servers' subnet (same as its client address in Lan).
    pub fn lb_backend_addr(&self) -> Ipv4Addr {
        self.links
            .iter()
            .rev()
            .find(|l| l.host == Host::Lb)
            .map(|l| l.addr)
            .expect("a plan always has an lb link")
    }

    /// The switch's end of `host`'s cable and the bridge it is a port of: its first
    /// link's `p-<role>`, or for the Wi-Fi access point the trunk's wired end. Link
    /// faults and wires act here.
    pub fn cable(&self, host: Host) -> Option<(&str, &str)> {
        if host == Host::WifiAp {
            return self
                .trunks
                .first()
                .map(|t| (t.wired_if.as_str(), t.wired_bridge.as_str()));
        }
        self.link(host)
            .map(|l| (l.lan_if.as_str(), l.bridge.as_str()))
    }

    /// Every link of `host`, in interface order.
    pub fn links_of(&self, host: Host) -> impl Iterator<Item = &LinkPlan> {
        self.links.iter().filter(move |l| l.host == host)
    }

    /// Whether `host` forwards between its links.
    pub fn forwards(&self, host: Host) -> bool {
        self.setups
            .iter()
            .any(|(h, s)| *h == host && s.sysctls.contains(&forwarding()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(clients: usize, servers: usize, layout: Layout) -> TopologySpec {
        TopologySpec {
            clients,
            servers,
            layout,
            subnet: Ipv4Addr::new(192, 168, 0, 0),
            ..TopologySpec::default()
        }
    }

    #[test]
    fn lan_plan_puts_everyone_on_one_bridge_and_subnet() {
        let plan = Plan::new(&spec(2, 3, Layout::Lan)).unwrap();
        assert_eq!(plan.bridges, vec!["br0"]);
        let addrs: Vec<(String, Ipv4Addr, &str)> = plan
            .links
            .iter()
            .map(|l| (role(l.host), l.addr, l.lan_if.as_str()))
            .collect();
        assert_eq!(
            addrs,
            vec![
                (
                    "client1".into(),
                    Ipv4Addr::new(192, 168, 0, 101),
                    "p-client1"
                ),
                (
                    "client2".into(),
                    Ipv4Addr::new(192, 168, 0, 102),
                    "p-client2"
                ),
                ("lb".into(), Ipv4Addr::new(192, 168, 0, 1), "p-lb"),
                ("s1".into(), Ipv4Addr::new(192, 168, 0, 11), "p-s1"),
                ("s2".into(), Ipv4Addr::new(192, 168, 0, 12), "p-s2"),
                ("s3".into(), Ipv4Addr::new(192, 168, 0, 13), "p-s3"),
            ]
        );
        assert!(plan
            .links
            .iter()
            .all(|l| l.gateway.is_none() && l.bridge == "br0"));
        assert!(!plan.forwards(Host::Lb));
        assert_eq!(plan.entries, vec![Ipv4Addr::new(192, 168, 0, 1); 2]);
        assert_eq!(plan.lb_backend_addr(), Ipv4Addr::new(192, 168, 0, 1));
    }

    #[test]
    fn routed_plan_splits_subnets_and_routes_via_lb() {
        let plan = Plan::new(&spec(1, 2, Layout::Routed)).unwrap();
        assert_eq!(plan.bridges, vec!["br0", "br1"]);
        assert!(plan.forwards(Host::Lb));
        let lb: Vec<_> = plan.links.iter().filter(|l| l.host == Host::Lb).collect();
        assert_eq!(lb.len(), 2);
        assert_eq!(
            (lb[1].host_if.as_str(), lb[1].bridge.as_str()),
            ("eth1", "br1")
        );
        assert_eq!(plan.lb_backend_addr(), Ipv4Addr::new(192, 168, 1, 1));
        let s1 = plan.link(Host::Server(0)).unwrap();
        assert_eq!(s1.addr, Ipv4Addr::new(192, 168, 1, 11));
        assert_eq!(s1.gateway, Some(Ipv4Addr::new(192, 168, 1, 1)));
        let c1 = plan.link(Host::Client(0)).unwrap();
        assert_eq!(c1.gateway, Some(Ipv4Addr::new(192, 168, 0, 1)));
        assert_eq!(c1.bridge, "br0");
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        assert_eq!(
            Plan::new(&spec(0, 1, Layout::Lan)),
            Err(PlanError::Empty("client"))
        );
        assert_eq!(
            Plan::new(&spec(1, 0, Layout::Lan)),
            Err(PlanError::Empty("server"))
        );
        assert!(matches!(
            Plan::new(&spec(MAX_CLIENTS + 1, 1, Layout::Lan)),
            Err(PlanError::TooMany {
                what: "clients",
                ..
            })
        ));
        assert!(matches!(
            Plan::new(&spec(1, MAX_SERVERS + 1, Layout::Lan)),
            Err(PlanError::TooMany {
                what: "servers",
                ..
            })
        ));
        let mut s = spec(1, 1, Layout::Lan);
        s.subnet = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(Plan::new(&s), Err(PlanError::Unaligned(s.subnet)));
        s.subnet = Ipv4Addr::new(10, 0, 255, 0);
        assert!(Plan::new(&s).is_ok());
        s.layout = Layout::Routed;
        assert_eq!(Plan::new(&s), Err(PlanError::NoServerSubnet(s.subnet)));
        s.subnet = Ipv4Addr::new(10, 0, 0, 0);
        s.mtu = Some(10);
        assert_eq!(Plan::new(&s), Err(PlanError::Mtu(10)));
    }

    #[test]
    fn largest_plan_fits_and_names_fit_ifnamsiz() {
        let plan = Plan::new(&spec(MAX_CLIENTS, MAX_SERVERS, Layout::Routed)).unwrap();
        assert_eq!(
            plan.link(Host::Client(MAX_CLIENTS - 1)).unwrap().addr,
            Ipv4Addr::new(192, 168, 0, 254)
        );
        assert_eq!(
            plan.link(Host::Server(MAX_SERVERS - 1)).unwrap().addr,
            Ipv4Addr::new(192, 168, 1, 100)
        );
        assert!(plan
            .links
            .iter()
            .all(|l| l.lan_if.len() <= 15 && l.host_if.len() <= 15));
    }
}

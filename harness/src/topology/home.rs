//! The home layout: a LAN behind a NAT router, as people have at home (pure planning).
//!
//! ```text
//!  clients outside ─┐                         home LAN (subnet, e.g. 192.168.1.0/24)
//!                   │ internet     uplink     ┌──────────────────────────────────┐
//!  carrier ─────────┼── isp ════════════ router .1 ── lb .2, servers .11.., inside
//!  (CGNAT) clients  │ 198.51.100/24  203.0.113/24  clients .101.., and a Wi-Fi AP
//!  crouterN (double NAT) clients                   to hosts on the Wi-Fi segment
//! ```
//!
//! - `router` (eth0 = the uplink, eth1 = the LAN at `.1`) masquerades the LAN behind
//!   its public address, forwards the balancer's port to the lb (`.2`) and, with
//!   hairpin NAT on, lets LAN clients use the public address too. It may clamp the TCP
//!   MSS to the path MTU, as PPPoE routers do.
//! - `isp` routes between the uplink (its MTU is the uplink's, 1492 for PPPoE) and the
//!   internet. With a PMTU black hole, `router` and `isp` drop the ICMP "fragmentation
//!   needed" they would send, so an oversized packet vanishes without a word.
//! - `carrier` is a carrier-grade NAT on the internet: clients behind it (phones on
//!   mobile data) share its address, and its mappings expire after a set silence; a
//!   packet of an expired mapping is dropped, not re-mapped (loose pickup off).
//! - `crouterN` is client N's own home router behind the carrier: a double NAT.
//!
//! The addresses outside the home are documentation ranges (RFC 5737, RFC 6598), so
//! nothing in a report looks like a real network.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::plan::{forwarding, role, HostSetup, LinkPlan, Plan, PlanError, TrunkPlan};
use super::{Host, TopologySpec};

/// The uplink between `router` and `isp` (TEST-NET-3).
pub const UPLINK_NET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 0);
/// The internet: `isp`, outside clients, the carrier's public side (TEST-NET-2).
pub const INTERNET_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
/// The carrier's shared address space, behind its NAT (RFC 6598).
pub const CARRIER_NET: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// Client `i`'s LAN behind its own router is `172.16.(i+1).0/24`.
pub const CLIENT_LAN_BASE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 0);
/// Last octet of the balancer in a home (the router is the gateway, `.1`).
pub const HOME_LB_OCTET: u8 = 2;
/// Most client hosts in a home (client routers take `.11..` of the carrier's /24).
pub const MAX_HOME_CLIENTS: usize = 80;
/// Smallest MTU the harness builds (IPv4's minimum datagram every host must accept).
pub const MIN_MTU: u32 = 576;

/// Where a client host sits in a home layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// On the internet, dialing the router's public address (the port forward).
    #[default]
    Outside,
    /// On the home LAN, dialing the lb's LAN address.
    Inside,
    /// On the home LAN, dialing the router's public address (works only with hairpin NAT).
    Hairpin,
    /// Behind the carrier-grade NAT (a phone on mobile data).
    Carrier,
    /// Behind its own router, itself behind the carrier-grade NAT.
    DoubleNat,
}

impl Site {
    /// Every site, with the name a scenario file uses.
    pub const ALL: [(&'static str, Site); 5] = [
        ("outside", Site::Outside),
        ("inside", Site::Inside),
        ("hairpin", Site::Hairpin),
        ("carrier", Site::Carrier),
        ("double_nat", Site::DoubleNat),
    ];

    /// The name a scenario file uses.
    pub fn name(self) -> &'static str {
        Site::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map(|(n, _)| *n)
            .expect("every site is listed")
    }

    /// Whether hosts at this site are on the home LAN (and may be on its Wi-Fi).
    pub fn at_home(self) -> bool {
        matches!(self, Site::Inside | Site::Hairpin)
    }
}

/// What a home has around its LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeSpec {
    /// Where each client host sits (one entry a client host; missing ones are outside).
    pub sites: Vec<Site>,
    /// The port the router forwards to the same port on the lb (None: no forward).
    pub forward: Option<u16>,
    /// Whether LAN clients may use the public address (hairpin NAT).
    pub hairpin: bool,
    /// MTU of the uplink between router and isp (None: 1500).
    pub uplink_mtu: Option<u32>,
    /// Whether the router and the isp drop the ICMP "fragmentation needed" they send.
    pub pmtu_black_hole: bool,
    /// Whether the router clamps the MSS of SYNs it forwards to the path MTU.
    pub clamp_mss: bool,
    /// How long the carrier keeps an idle TCP mapping (None: the kernel's 5 days).
    pub carrier_timeout: Option<Duration>,
    /// Hosts on the Wi-Fi segment (lb, servers or clients at home).
    pub wifi: Vec<Host>,
}

impl Default for HomeSpec {
    fn default() -> Self {
        Self {
            sites: Vec::new(),
            forward: Some(20000),
            hairpin: true,
            uplink_mtu: None,
            pmtu_black_hole: false,
            clamp_mss: false,
            carrier_timeout: None,
            wifi: Vec::new(),
        }
    }
}

impl HomeSpec {
    /// Where client host `i` sits.
    pub fn site(&self, i: usize) -> Site {
        self.sites.get(i).copied().unwrap_or_default()
    }
}

fn on(net: Ipv4Addr, third: u8, last: u8) -> Ipv4Addr {
    let [a, b, c, _] = net.octets();
    Ipv4Addr::new(a, b, c.wrapping_add(third), last)
}

fn argv(words: &str) -> Vec<String> {
    words.split_whitespace().map(str::to_string).collect()
}

/// The /24s the home layout itself uses, which the home LAN must not be.
fn reserved(clients: usize) -> Vec<Ipv4Addr> {
    let mut nets = vec![UPLINK_NET, INTERNET_NET, CARRIER_NET];
    nets.extend((0..clients).map(|i| on(CLIENT_LAN_BASE, i as u8 + 1, 0)));
    nets
}

/// A link of `host` named like every other (`eth<n>` inside, `p-<role>[-<tag>]` outside).
fn link(
    host: Host,
    n: usize,
    tag: &str,
    bridge: &str,
    addr: Ipv4Addr,
    gateway: Option<Ipv4Addr>,
    mtu: Option<u32>,
) -> LinkPlan {
    let lan_if = if tag.is_empty() {
        format!("p-{}", role(host))
    } else {
        format!("p-{}-{tag}", role(host))
    };
    LinkPlan {
        host,
        host_if: format!("eth{n}"),
        lan_if,
        bridge: bridge.into(),
        addr,
        gateway,
        mtu,
    }
}

/// Plans a home for `spec` (called by [`Plan::new`] for [`super::Layout::Home`]).
pub fn plan(spec: &TopologySpec) -> Result<Plan, PlanError> {
    let home = &spec.home;
    let bad = |m: String| Err(PlanError::Home(m));
    if spec.clients > MAX_HOME_CLIENTS {
        return bad(format!(
            "{} client hosts do not fit a home (at most {MAX_HOME_CLIENTS}); \
             several clients can share a host",
            spec.clients
        ));
    }
    if home.sites.len() > spec.clients {
        return bad(format!(
            "{} client sites for {} client hosts: give one site a client host",
            home.sites.len(),
            spec.clients
        ));
    }
    if reserved(spec.clients).contains(&spec.subnet) {
        return bad(format!(
            "the home LAN {} is a network the home layout uses outside the home; \
             pick another, e.g. 192.168.1.0",
            spec.subnet
        ));
    }
    for mtu in [spec.mtu, home.uplink_mtu].into_iter().flatten() {
        if !(MIN_MTU..=65535).contains(&mtu) {
            return bad(format!("MTU {mtu} is outside {MIN_MTU}..=65535"));
        }
    }
    for &host in &home.wifi {
        let at_home = match host {
            Host::Lb => true,
            Host::Server(i) => i < spec.servers,
            Host::Client(i) => i < spec.clients && home.site(i).at_home(),
            _ => false,
        };
        if !at_home {
            return bad(format!(
                "{host} cannot be on the Wi-Fi: only the lb, servers and clients at home \
                 (inside or hairpin) are"
            ));
        }
    }
    let lan = spec.subnet;
    let gateway = on(lan, 0, 1);
    let lb = on(lan, 0, HOME_LB_OCTET);
    let public = on(UPLINK_NET, 0, 2);
    let wifi = !home.wifi.is_empty();
    let home_bridge = |h: Host| {
        if home.wifi.contains(&h) {
            "br-wifi"
        } else {
            "br0"
        }
    };
    let mut hosts: Vec<Host> = (0..spec.clients).map(Host::Client).collect();
    hosts.push(Host::Lb);
    hosts.extend((0..spec.servers).map(Host::Server));
    hosts.extend([Host::Router, Host::Isp]);
    let sites: Vec<Site> = (0..spec.clients).map(|i| home.site(i)).collect();
    let carrier = sites
        .iter()
        .any(|s| matches!(s, Site::Carrier | Site::DoubleNat));
    if carrier {
        hosts.push(Host::Carrier);
    }
    let mut bridges: Vec<String> = vec!["br0".into(), "br-up".into(), "br-net".into()];
    if wifi {
        bridges.push("br-wifi".into());
    }
    if carrier {
        bridges.push("br-cg".into());
    }

    let mut links = Vec::new();
    let mut entries = Vec::new();
    let mut setups = Vec::new();
    let mtu = spec.mtu;
    for (i, &site) in sites.iter().enumerate() {
        let c = Host::Client(i);
        let octet = super::plan::FIRST_CLIENT_OCTET + i as u8;
        let (addr, gw, bridge) = match site {
            Site::Outside => (
                on(INTERNET_NET, 0, octet),
                on(INTERNET_NET, 0, 1),
                "br-net".to_string(),
            ),
            Site::Inside | Site::Hairpin => (on(lan, 0, octet), gateway, home_bridge(c).into()),
            Site::Carrier => (
                on(CARRIER_NET, 0, octet),
                on(CARRIER_NET, 0, 1),
                "br-cg".into(),
            ),
            Site::DoubleNat => {
                let r = Host::ClientRouter(i);
                let net = on(CLIENT_LAN_BASE, i as u8 + 1, 0);
                let bridge = format!("br-c{}", i + 1);
                hosts.push(r);
                bridges.push(bridge.clone());
                links.push(link(
                    r,
                    0,
                    "",
                    "br-cg",
                    on(CARRIER_NET, 0, 11 + i as u8),
                    Some(on(CARRIER_NET, 0, 1)),
                    mtu,
                ));
                links.push(link(r, 1, "l", &bridge, on(net, 0, 1), None, mtu));
                setups.push((
                    r,
                    HostSetup {
                        sysctls: vec![forwarding()],
                        iptables: vec![argv("-t nat -A POSTROUTING -o eth0 -j MASQUERADE")],
                    },
                ));
                (on(net, 0, 101), on(net, 0, 1), bridge)
            }
        };
        links.push(link(c, 0, "", &bridge, addr, Some(gw), mtu));
        entries.push(if site == Site::Inside { lb } else { public });
    }
    links.push(link(
        Host::Lb,
        0,
        "",
        home_bridge(Host::Lb),
        lb,
        Some(gateway),
        mtu,
    ));
    for i in 0..spec.servers {
        let s = Host::Server(i);
        let addr = on(lan, 0, super::plan::FIRST_SERVER_OCTET + i as u8);
        links.push(link(s, 0, "", home_bridge(s), addr, Some(gateway), mtu));
    }
    let uplink_mtu = home.uplink_mtu;
    links.push(link(
        Host::Router,
        0,
        "",
        "br-up",
        public,
        Some(on(UPLINK_NET, 0, 1)),
        uplink_mtu,
    ));
    links.push(link(Host::Router, 1, "l", "br0", gateway, None, mtu));
    links.push(link(
        Host::Isp,
        0,
        "",
        "br-net",
        on(INTERNET_NET, 0, 1),
        None,
        None,
    ));
    links.push(link(
        Host::Isp,
        1,
        "u",
        "br-up",
        on(UPLINK_NET, 0, 1),
        None,
        uplink_mtu,
    ));
    if carrier {
        links.push(link(
            Host::Carrier,
            0,
            "",
            "br-net",
            on(INTERNET_NET, 0, 2),
            Some(on(INTERNET_NET, 0, 1)),
            None,
        ));
        links.push(link(
            Host::Carrier,
            1,
            "c",
            "br-cg",
            on(CARRIER_NET, 0, 1),
            None,
            None,
        ));
    }

    setups.push((Host::Router, router_setup(spec, public, lb)));
    let mut isp = HostSetup {
        sysctls: vec![forwarding()],
        iptables: Vec::new(),
    };
    if home.pmtu_black_hole {
        isp.iptables.extend(black_hole());
    }
    setups.push((Host::Isp, isp));
    if carrier {
        setups.push((Host::Carrier, carrier_setup(home.carrier_timeout)));
    }
    let trunks = if wifi {
        vec![TrunkPlan {
            wired_if: "p-wifi".into(),
            wired_bridge: "br0".into(),
            far_if: "w-wifi".into(),
            far_bridge: "br-wifi".into(),
            mtu,
        }]
    } else {
        Vec::new()
    };
    Ok(Plan {
        hosts,
        bridges,
        links,
        trunks,
        setups,
        entries,
    })
}

/// Rules that drop the ICMP "fragmentation needed" a host sends or passes on.
fn black_hole() -> Vec<Vec<String>> {
    vec![
        argv("-A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP"),
        argv("-A FORWARD -p icmp --icmp-type fragmentation-needed -j DROP"),
    ]
}

/// The home router: masquerade, port forward, hairpin, MSS clamp, black hole.
fn router_setup(spec: &TopologySpec, public: Ipv4Addr, lb: Ipv4Addr) -> HostSetup {
    let home = &spec.home;
    let mut rules = vec![argv("-t nat -A POSTROUTING -o eth0 -j MASQUERADE")];
    if let Some(port) = home.forward {
        // Without hairpin only what arrives from the uplink is forwarded; a LAN client
        // dialing the public address reaches the router itself, which refuses it.
        let from = if home.hairpin { "" } else { "-i eth0 " };
        rules.push(argv(&format!(
            "-t nat -A PREROUTING {from}-d {public} -p tcp --dport {port} \
             -j DNAT --to-destination {lb}:{port}"
        )));
        if home.hairpin {
            // The lb must answer through the router, so hairpinned clients are
            // masqueraded behind the router's LAN address.
            rules.push(argv(&format!(
                "-t nat -A POSTROUTING -o eth1 -s {}/24 -d {lb} -p tcp --dport {port} \
                 -j MASQUERADE",
                spec.subnet
            )));
        }
    }
    if home.clamp_mss {
        rules.push(argv(
            "-t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        ));
    }
    if home.pmtu_black_hole {
        rules.extend(black_hole());
    }
    HostSetup {
        sysctls: vec![forwarding()],
        iptables: rules,
    }
}

/// The carrier-grade NAT: masquerade, drop what no mapping explains, expire mappings.
fn carrier_setup(timeout: Option<Duration>) -> HostSetup {
    let mut sysctls = vec![forwarding()];
    if let Some(t) = timeout {
        sysctls.push((
            "net/netfilter/nf_conntrack_tcp_timeout_established".into(),
            t.as_secs().max(1).to_string(),
        ));
        sysctls.push(("net/netfilter/nf_conntrack_tcp_loose".into(), "0".into()));
    }
    HostSetup {
        sysctls,
        iptables: vec![
            argv("-t nat -A POSTROUTING -o eth0 -j MASQUERADE"),
            argv("-A FORWARD -m conntrack --ctstate INVALID -j DROP"),
            // Unsolicited packets from the internet vanish, as at a real carrier: no
            // reset tells the far end that a mapping is gone.
            argv("-A INPUT -i eth0 -m conntrack ! --ctstate ESTABLISHED,RELATED -j DROP"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Layout;

    fn spec(sites: &[Site]) -> TopologySpec {
        TopologySpec {
            clients: sites.len(),
            servers: 2,
            layout: Layout::Home,
            subnet: Ipv4Addr::new(192, 168, 1, 0),
            home: HomeSpec {
                sites: sites.to_vec(),
                ..HomeSpec::default()
            },
            ..TopologySpec::default()
        }
    }

    fn rules(plan: &Plan, host: Host) -> Vec<String> {
        plan.setups
            .iter()
            .filter(|(h, _)| *h == host)
            .flat_map(|(_, s)| s.iptables.iter().map(|r| r.join(" ")))
            .collect()
    }

    #[test]
    fn the_router_takes_the_gateway_and_forwards_the_port_to_the_lb() {
        let plan = Plan::new(&spec(&[Site::Outside, Site::Inside, Site::Hairpin])).unwrap();
        let lb = plan.link(Host::Lb).unwrap();
        assert_eq!(lb.addr, Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(lb.gateway, Some(Ipv4Addr::new(192, 168, 1, 1)));
        let router: Vec<_> = plan.links_of(Host::Router).collect();
        assert_eq!(router[0].addr, Ipv4Addr::new(203, 0, 113, 2));
        assert_eq!(router[1].addr, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(
            plan.entries,
            vec![
                Ipv4Addr::new(203, 0, 113, 2),
                Ipv4Addr::new(192, 168, 1, 2),
                Ipv4Addr::new(203, 0, 113, 2),
            ]
        );
        let r = rules(&plan, Host::Router);
        assert!(r.contains(
            &"-t nat -A PREROUTING -d 203.0.113.2 -p tcp --dport 20000 -j DNAT \
              --to-destination 192.168.1.2:20000"
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ));
        assert!(r.iter().any(|l| l.contains("-o eth1 -s 192.168.1.0/24")));
        assert!(plan.forwards(Host::Router) && plan.forwards(Host::Isp));
        assert!(!plan.forwards(Host::Lb));
        assert!(!plan.hosts.contains(&Host::Carrier));
    }

    #[test]
    fn without_hairpin_only_the_uplink_is_forwarded() {
        let mut s = spec(&[Site::Hairpin]);
        s.home.hairpin = false;
        let r = rules(&Plan::new(&s).unwrap(), Host::Router);
        assert!(r
            .iter()
            .any(|l| l.contains("PREROUTING -i eth0 -d 203.0.113.2")));
        assert!(!r.iter().any(|l| l.contains("-o eth1")));
        s.home.forward = None;
        let r = rules(&Plan::new(&s).unwrap(), Host::Router);
        assert_eq!(r, vec!["-t nat -A POSTROUTING -o eth0 -j MASQUERADE"]);
    }

    #[test]
    fn carrier_and_double_nat_clients_sit_behind_their_nats() {
        let mut s = spec(&[Site::Carrier, Site::DoubleNat]);
        s.home.carrier_timeout = Some(Duration::from_secs(4));
        let plan = Plan::new(&s).unwrap();
        assert!(plan.hosts.contains(&Host::Carrier));
        assert!(plan.hosts.contains(&Host::ClientRouter(1)));
        assert!(!plan.hosts.contains(&Host::ClientRouter(0)));
        assert_eq!(
            plan.link(Host::Client(0)).unwrap().addr,
            Ipv4Addr::new(100, 64, 0, 101)
        );
        let c2 = plan.link(Host::Client(1)).unwrap();
        assert_eq!(c2.addr, Ipv4Addr::new(172, 16, 2, 101));
        assert_eq!(c2.bridge, "br-c2");
        assert_eq!(
            plan.link(Host::ClientRouter(1)).unwrap().gateway,
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
        let carrier = &plan
            .setups
            .iter()
            .find(|(h, _)| *h == Host::Carrier)
            .unwrap()
            .1;
        assert!(carrier.sysctls.contains(&(
            "net/netfilter/nf_conntrack_tcp_timeout_established".into(),
            "4".into()
        )));
        assert!(rules(&plan, Host::Carrier)
            .iter()
            .any(|r| r.contains("INVALID -j DROP")));
    }

    #[test]
    fn the_uplink_has_its_own_mtu_and_the_black_hole_drops_frag_needed() {
        let mut s = spec(&[Site::Outside]);
        s.home.uplink_mtu = Some(1492);
        s.home.pmtu_black_hole = true;
        s.home.clamp_mss = true;
        let plan = Plan::new(&s).unwrap();
        let uplink: Vec<_> = plan.links.iter().filter(|l| l.bridge == "br-up").collect();
        assert_eq!(uplink.len(), 2);
        assert!(uplink.iter().all(|l| l.mtu == Some(1492)));
        assert!(plan
            .links
            .iter()
            .filter(|l| l.bridge != "br-up")
            .all(|l| l.mtu.is_none()));
        for host in [Host::Router, Host::Isp] {
            assert!(rules(&plan, host)
                .iter()
                .any(|r| r.contains("fragmentation-needed -j DROP")));
        }
        assert!(rules(&plan, Host::Router)
            .iter()
            .any(|r| r.contains("--clamp-mss-to-pmtu")));
    }

    #[test]
    fn wifi_hosts_sit_behind_one_access_point() {
        let mut s = spec(&[Site::Inside, Site::Outside]);
        s.home.wifi = vec![Host::Server(1), Host::Client(0)];
        let plan = Plan::new(&s).unwrap();
        assert_eq!(plan.trunks.len(), 1);
        assert_eq!(plan.link(Host::Server(1)).unwrap().bridge, "br-wifi");
        assert_eq!(plan.link(Host::Client(0)).unwrap().bridge, "br-wifi");
        assert_eq!(plan.link(Host::Server(0)).unwrap().bridge, "br0");
        s.home.wifi = vec![Host::Client(1)];
        assert!(matches!(Plan::new(&s), Err(PlanError::Home(m)) if m.contains("client2")));
    }

    #[test]
    fn a_home_that_cannot_be_built_says_why() {
        let mut s = spec(&[Site::Outside]);
        s.subnet = INTERNET_NET;
        assert!(matches!(Plan::new(&s), Err(PlanError::Home(m)) if m.contains("198.51.100.0")));
        let mut s = spec(&[Site::Outside]);
        s.home.uplink_mtu = Some(500);
        assert!(matches!(Plan::new(&s), Err(PlanError::Home(m)) if m.contains("576")));
        let mut s = spec(&[Site::Outside]);
        s.home.sites = vec![Site::Outside; 2];
        assert!(matches!(Plan::new(&s), Err(PlanError::Home(_))));
    }

    #[test]
    fn names_fit_ifnamsiz_with_the_most_clients() {
        let sites = vec![Site::DoubleNat; MAX_HOME_CLIENTS];
        let plan = Plan::new(&spec(&sites)).unwrap();
        assert!(plan
            .links
            .iter()
            .all(|l| l.lan_if.len() <= 15 && l.host_if.len() <= 15));
        assert!(plan.bridges.iter().all(|b| b.len() <= 15));
    }
}

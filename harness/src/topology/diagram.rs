//! A home topology drawn as text, for the report's Topology section and `l4lb topo up`
//! (pure: from the spec and its plan).

use super::home::Site;
use super::plan::Plan;
use super::{Host, Layout, TopologySpec};

fn addr_of(plan: &Plan, host: Host, n: usize) -> String {
    plan.links_of(host)
        .nth(n)
        .map(|l| l.addr.to_string())
        .unwrap_or_else(|| "?".into())
}

fn names(hosts: &[(Host, String)]) -> String {
    if hosts.is_empty() {
        return "none".into();
    }
    hosts
        .iter()
        .map(|(h, a)| format!("{h} {a}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines of a home's diagram, outside in: internet, uplink, router, home LAN, Wi-Fi.
/// Empty for the other layouts, whose report lines already say everything.
pub fn home_lines(spec: &TopologySpec, plan: &Plan) -> Vec<String> {
    if spec.layout != Layout::Home {
        return Vec::new();
    }
    let home = &spec.home;
    let clients = |pick: &dyn Fn(Site) -> bool| -> Vec<(Host, String)> {
        (0..spec.clients)
            .filter(|&i| pick(home.site(i)))
            .map(|i| (Host::Client(i), addr_of(plan, Host::Client(i), 0)))
            .collect()
    };
    let mtu = |m: Option<u32>| m.map(|m| format!("mtu {m}")).unwrap_or("mtu 1500".into());
    let public = addr_of(plan, Host::Router, 0);
    let mut out = vec![
        format!(
            "internet 198.51.100.0/24: isp {}; outside clients: {}",
            addr_of(plan, Host::Isp, 0),
            names(&clients(&|s| s == Site::Outside))
        ),
        format!(
            "uplink 203.0.113.0/24, {}: isp {} == router {public} (the home's public address)",
            mtu(home.uplink_mtu),
            addr_of(plan, Host::Isp, 1),
        ),
    ];
    if plan.hosts.contains(&Host::Carrier) {
        let timeout = home
            .carrier_timeout
            .map(|t| {
                format!(
                    "idle mappings expire after {}",
                    humantime::format_duration(t)
                )
            })
            .unwrap_or_else(|| "mappings kept".into());
        out.push(format!(
            "carrier-grade NAT {} ({timeout}) on the internet; behind it on 100.64.0.0/24: {}",
            addr_of(plan, Host::Carrier, 0),
            names(&clients(&|s| s == Site::Carrier))
        ));
        for i in (0..spec.clients).filter(|&i| home.site(i) == Site::DoubleNat) {
            let r = Host::ClientRouter(i);
            out.push(format!(
                "  double NAT: {r} {} behind the carrier; behind it: client{} {}",
                addr_of(plan, r, 0),
                i + 1,
                addr_of(plan, Host::Client(i), 0)
            ));
        }
    }
    let forward = match home.forward {
        Some(p) => format!(
            "forwards {public}:{p} to lb {}:{p}, hairpin NAT {}",
            addr_of(plan, Host::Lb, 0),
            if home.hairpin { "on" } else { "off" }
        ),
        None => "no port forward".into(),
    };
    out.push(format!(
        "router: NAT behind {public}, {forward}, MSS clamp {}, ICMP frag-needed {}",
        if home.clamp_mss { "on" } else { "off" },
        if home.pmtu_black_hole {
            "dropped (PMTU black hole)"
        } else {
            "sent"
        }
    ));
    let lan_hosts = |wifi: bool| -> Vec<(Host, String)> {
        let mut hosts = vec![Host::Lb];
        hosts.extend((0..spec.servers).map(Host::Server));
        hosts.extend(
            (0..spec.clients)
                .filter(|&i| home.site(i).at_home())
                .map(Host::Client),
        );
        hosts
            .into_iter()
            .filter(|h| home.wifi.contains(h) == wifi)
            .map(|h| {
                let mut a = addr_of(plan, h, 0);
                if let Host::Client(i) = h {
                    a = format!("{a} ({})", home.site(i).name());
                }
                (h, a)
            })
            .collect()
    };
    out.push(format!(
        "home LAN {}/24, {}: router {}, wired: {}",
        spec.subnet,
        mtu(spec.mtu),
        addr_of(plan, Host::Router, 1),
        names(&lan_hosts(false))
    ));
    if !home.wifi.is_empty() {
        out.push(format!(
            "Wi-Fi (one shared medium behind the access point, impair it as `wifi`): {}",
            names(&lan_hosts(true))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::home::HomeSpec;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    #[test]
    fn a_home_is_drawn_outside_in_with_every_host_and_setting() {
        let spec = TopologySpec {
            clients: 4,
            servers: 2,
            layout: Layout::Home,
            subnet: Ipv4Addr::new(192, 168, 1, 0),
            home: HomeSpec {
                sites: vec![Site::Outside, Site::Carrier, Site::DoubleNat, Site::Hairpin],
                uplink_mtu: Some(1492),
                carrier_timeout: Some(Duration::from_secs(5)),
                wifi: vec![Host::Server(1), Host::Client(3)],
                ..HomeSpec::default()
            },
            ..TopologySpec::default()
        };
        let plan = Plan::new(&spec).unwrap();
        let text = home_lines(&spec, &plan).join("\n");
        for needle in [
            "outside clients: client1 198.51.100.101",
            "uplink 203.0.113.0/24, mtu 1492",
            "router 203.0.113.2 (the home's public address)",
            "idle mappings expire after 5s",
            "client2 100.64.0.102",
            "double NAT: crouter3 100.64.0.13 behind the carrier; behind it: client3 172.16.3.101",
            "forwards 203.0.113.2:20000 to lb 192.168.1.2:20000, hairpin NAT on",
            "ICMP frag-needed sent",
            "wired: lb 192.168.1.2, s1 192.168.1.11",
            "Wi-Fi (one shared medium behind the access point, impair it as `wifi`): \
             s2 192.168.1.12, client4 192.168.1.104 (hairpin)",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        let lan = TopologySpec::default();
        assert!(home_lines(&lan, &Plan::new(&lan).unwrap()).is_empty());
    }
}

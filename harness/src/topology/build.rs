//! Building a topology through rtnetlink: namespaces in parallel, then bridges, then
//! every veth in one request each (both ends placed and brought up at creation), then
//! addresses and routes, each namespace's requests pipelined on its own socket.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::try_join_all;
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage, State};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{Host, Offloads, Topology};
use crate::netns::{self, Namespace};

/// How long a link may take to become operationally up before the build fails.
const OPER_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// Index of `lo` in every network namespace (LOOPBACK_IFINDEX in the kernel).
const LOOPBACK_IFINDEX: u32 = 1;

pub(super) async fn build(topo: &mut Topology) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    // 1. Namespaces, each with its own netlink socket, all in parallel.
    let created = try_join_all(topo.members.iter().map(|m| {
        let ns = m.ns.clone();
        let rt = runtime.clone();
        async move { spawn_create(ns, rt).await }
    }))
    .await?;
    for (m, handle) in topo.members.iter_mut().zip(created) {
        m.netlink = Some(handle);
    }
    let handles: Vec<rtnetlink::Handle> = topo
        .members
        .iter()
        .map(|m| m.netlink.as_ref().expect("just created").handle.clone())
        .collect();
    let lan = handles.last().expect("lan handle").clone();

    // 2. Loopback up everywhere, bridges in lan: independent, so concurrently.
    let loopbacks = try_join_all(handles.iter().map(|h| async move {
        h.link()
            .set(LinkUnspec::new_with_index(LOOPBACK_IFINDEX).up().build())
            .execute()
            .await
            .context("cannot bring lo up")
    }));
    let bridges = try_join_all(topo.plan.bridges.iter().map(|name| {
        let lan = lan.clone();
        async move {
            lan.link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
                .with_context(|| format!("cannot create bridge {name} in lan"))?;
            link_index(&lan, name).await
        }
    }));
    let ((), bridge_indexes) = futures::try_join!(async { loopbacks.await.map(|_| ()) }, bridges)?;
    crate::firewall::bridges_skip_netfilter(topo.lan()).await?;

    // 3. Veths: `p-<role>` in lan (enslaved, up), peer `ethX` straight into the host's
    //    namespace. One request each, pipelined on lan's socket.
    let bridge_of = |name: &str| -> u32 {
        let i = topo
            .plan
            .bridges
            .iter()
            .position(|b| b == name)
            .expect("a plan's links name its bridges");
        bridge_indexes[i]
    };
    let veths = topo.plan.links.iter().map(|link| {
        let host_i = topo.index(link.host).expect("host");
        let ns = topo.members[host_i].ns.clone();
        let master = bridge_of(&link.bridge);
        let lan = lan.clone();
        async move {
            let fd = ns.open()?;
            let msg = veth_message(&link.lan_if, &link.host_if, master, link.mtu, &fd);
            lan.link().add(msg).execute().await.with_context(|| {
                format!(
                    "cannot create veth {} (lan) <-> {} ({})",
                    link.lan_if, link.host_if, ns.name
                )
            })?;
            drop(fd);
            anyhow::Ok(())
        }
    });
    try_join_all(veths).await?;
    for trunk in &topo.plan.trunks {
        trunk_add(
            &lan,
            trunk,
            bridge_of(&trunk.wired_bridge),
            bridge_of(&trunk.far_bridge),
        )
        .await?;
    }

    // 4. Addresses and routes inside every host namespace, concurrently.
    let configure = topo.plan.links.iter().map(|link| {
        let host_i = topo.index(link.host).expect("host");
        let handle = handles[host_i].clone();
        async move {
            let index = link_index(&handle, &link.host_if).await?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .with_context(|| format!("cannot bring {} of {} up", link.host_if, link.host))?;
            handle
                .address()
                .add(index, IpAddr::V4(link.addr), super::plan::PREFIX_LEN)
                .execute()
                .await
                .with_context(|| {
                    format!(
                        "cannot add {} to {} of {}",
                        link.addr, link.host_if, link.host
                    )
                })?;
            if let Some(gw) = link.gateway {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(index)
                    .build();
                handle.route().add(route).execute().await.with_context(|| {
                    format!("cannot add default route via {gw} in {}", link.host)
                })?;
            }
            wait_oper_up(&handle, index, &link.host_if).await
        }
    });
    let lan_ports = topo.plan.links.iter().map(|link| {
        let lan = lan.clone();
        async move {
            let index = link_index(&lan, &link.lan_if).await?;
            wait_oper_up(&lan, index, &link.lan_if).await
        }
    });
    futures::try_join!(try_join_all(configure), try_join_all(lan_ports))?;

    // 5. Forwarding, NAT and other rules, offloads, firewall: only when asked for.
    try_join_all(topo.plan.setups.iter().map(|(host, setup)| {
        let ns = topo.namespace(*host).clone();
        async move { apply_setup(&ns, setup).await }
    }))
    .await?;
    if topo.spec.offloads == Offloads::Off {
        let mut jobs = Vec::new();
        for link in &topo.plan.links {
            let host_ns = topo.namespace(link.host).clone();
            jobs.push(offloads_off(host_ns, link.host_if.clone()));
            jobs.push(offloads_off(topo.lan().clone(), link.lan_if.clone()));
        }
        for trunk in &topo.plan.trunks {
            jobs.push(offloads_off(topo.lan().clone(), trunk.wired_if.clone()));
            jobs.push(offloads_off(topo.lan().clone(), trunk.far_if.clone()));
        }
        try_join_all(jobs).await?;
    }
    if topo.spec.rst_drop {
        crate::firewall::install_rst_drop(topo.namespace(Host::Lb)).await?;
    }
    Ok(())
}

/// A veth with both ends in the switch, each enslaved to its bridge, up.
async fn trunk_add(
    lan: &rtnetlink::Handle,
    trunk: &super::plan::TrunkPlan,
    wired_bridge: u32,
    far_bridge: u32,
) -> anyhow::Result<()> {
    let mut pair = LinkVeth::new(&trunk.wired_if, &trunk.far_if)
        .up()
        .controller(wired_bridge);
    if let Some(mtu) = trunk.mtu {
        pair = pair.mtu(mtu);
    }
    lan.link()
        .add(pair.build())
        .execute()
        .await
        .with_context(|| {
            format!(
                "cannot create veth {} <-> {} in lan",
                trunk.wired_if, trunk.far_if
            )
        })?;
    let far = link_index(lan, &trunk.far_if).await?;
    let mut far_msg = LinkUnspec::new_with_index(far).up().controller(far_bridge);
    if let Some(mtu) = trunk.mtu {
        far_msg = far_msg.mtu(mtu);
    }
    lan.link()
        .set(far_msg.build())
        .execute()
        .await
        .with_context(|| format!("cannot put {} on {}", trunk.far_if, trunk.far_bridge))?;
    wait_oper_up(lan, far, &trunk.far_if).await?;
    let wired = link_index(lan, &trunk.wired_if).await?;
    wait_oper_up(lan, wired, &trunk.wired_if).await
}

/// Writes a host's sysctls and adds its iptables rules: first the sysctls that need
/// no conntrack, then the rules (the first NAT or conntrack rule loads conntrack into
/// the namespace), then the conntrack sysctls that exist from then on.
async fn apply_setup(ns: &Namespace, setup: &super::plan::HostSetup) -> anyhow::Result<()> {
    let (late, early): (Vec<_>, Vec<_>) = setup
        .sysctls
        .iter()
        .cloned()
        .partition(|(path, _)| path.starts_with("net/netfilter/"));
    write_sysctls(ns, early).await?;
    for rule in &setup.iptables {
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        crate::firewall::iptables(ns, &args).await?;
    }
    write_sysctls(ns, late).await
}

async fn write_sysctls(ns: &Namespace, sysctls: Vec<(String, String)>) -> anyhow::Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let name = ns.name.clone();
    ns.run_async(move || {
        for (path, value) in &sysctls {
            std::fs::write(format!("/proc/sys/{path}"), value)
                .with_context(|| format!("cannot set {path} = {value} in {name}"))?;
        }
        anyhow::Ok(())
    })
    .await?
}

/// Creates a namespace on a throwaway thread and returns its netlink handle.
async fn spawn_create(
    ns: Namespace,
    rt: tokio::runtime::Handle,
) -> anyhow::Result<netns::NetlinkHandle> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("l4lb-mkns".into())
        .spawn(move || {
            let _ = tx.send(netns::create(&ns, &rt));
        })
        .context("cannot spawn a thread to create a namespace")?;
    rx.await.context("namespace creation thread vanished")?
}

/// A veth request: `local` (enslaved to `master`, up) here, `peer` in `peer_ns`.
/// The peer cannot be brought up in the same request (the kernel answers ENOTCONN when
/// the peer lives in another namespace), so its own namespace does that next.
fn veth_message(
    local: &str,
    peer: &str,
    master: u32,
    mtu: Option<u32>,
    peer_ns: &std::fs::File,
) -> LinkMessage {
    use std::os::fd::AsRawFd;
    let mut peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer.to_string())
        .setns_by_fd(peer_ns.as_raw_fd());
    let mut local_msg = LinkVeth::new(local, peer).up().controller(master);
    if let Some(mtu) = mtu {
        peer_msg = peer_msg.mtu(mtu);
        local_msg = local_msg.mtu(mtu);
    }
    local_msg
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
        .build()
}

/// The index of interface `name` in the handle's namespace.
pub(super) async fn link_index(handle: &rtnetlink::Handle, name: &str) -> anyhow::Result<u32> {
    let msg = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .with_context(|| format!("cannot look up interface {name}"))?
        .with_context(|| format!("no interface {name}"))?;
    Ok(msg.header.index)
}

async fn oper_state(handle: &rtnetlink::Handle, index: u32) -> anyhow::Result<Option<State>> {
    let msg = handle
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await?
        .context("interface vanished")?;
    Ok(msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::OperState(s) => Some(*s),
        _ => None,
    }))
}

/// Polls until the link is operationally up: before that the kernel has not yet
/// activated its queues and drops what is sent, so a first SYN would be lost and retried
/// a second later. Polls every 0.1-1 ms (cheap netlink gets), not a fixed sleep.
pub(super) async fn wait_oper_up(
    handle: &rtnetlink::Handle,
    index: u32,
    name: &str,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        if oper_state(handle, index).await? == Some(State::Up) {
            return Ok(());
        }
        if start.elapsed() > OPER_UP_TIMEOUT {
            bail!("{name} did not come up within {OPER_UP_TIMEOUT:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// Sets `ifname` up or down; up waits for operational state up.
pub(super) async fn set_link(
    handle: &rtnetlink::Handle,
    ifname: &str,
    up: bool,
) -> anyhow::Result<()> {
    let index = link_index(handle, ifname).await?;
    let msg = LinkUnspec::new_with_index(index);
    let msg = if up { msg.up() } else { msg.down() };
    handle.link().set(msg.build()).execute().await?;
    if up {
        wait_oper_up(handle, index, ifname).await?;
    }
    Ok(())
}

/// Adds (or replaces) the default route via `gw` out of `ifname`.
pub(super) async fn default_route(
    handle: &rtnetlink::Handle,
    ifname: &str,
    gw: Ipv4Addr,
) -> anyhow::Result<()> {
    let index = link_index(handle, ifname).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gw)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .with_context(|| format!("cannot add default route via {gw}"))
}

/// `ethtool -K <if> gro off gso off tso off tx off rx off` inside `ns`.
pub(super) async fn offloads_off(ns: Namespace, ifname: String) -> anyhow::Result<()> {
    let args = [
        "-K", &ifname, "gro", "off", "gso", "off", "tso", "off", "tx", "off", "rx", "off",
    ];
    ns.run_tool("ethtool", &args, "ethtool").await.map(drop)
}

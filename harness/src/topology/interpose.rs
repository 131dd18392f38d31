//! Putting a user-space wire on a host's link and taking it off again.
//!
//! On a plain link the host's cable `p-<role>` is a port of the bridge. To impair it,
//! `p-<role>` leaves the bridge, a veth pair `q-<role>` / `r-<role>` is created in the
//! switch's namespace with `r-<role>` on the bridge in its place, and a [`Wire`] carries
//! frames between `p-<role>` and `q-<role>`. Taking it off deletes the pair and puts
//! `p-<role>` back on the bridge. Links nobody impairs never pay for a wire.

use anyhow::Context;
use rtnetlink::{LinkUnspec, LinkVeth};

use super::build::{link_index, offloads_off, wait_oper_up};
use super::{Host, Offloads, Topology};
use crate::link::spec::Impairment;
use crate::link::wire::Wire;

/// The two interfaces in the switch's namespace that stand in for a host's bridge port.
fn stand_in_names(lan_if: &str) -> (String, String) {
    let role = lan_if.strip_prefix("p-").unwrap_or(lan_if);
    (format!("q-{role}"), format!("r-{role}"))
}

/// A host's bridge port in the switch and the bridge it belongs to.
struct Cable {
    lan_if: String,
    bridge: String,
}

impl Topology {
    /// `host`'s link, the switch's netlink handle, and the indexes of the link's bridge
    /// and of the host's cable (`p-<role>`) there.
    async fn cable(&self, host: Host) -> anyhow::Result<(Cable, &rtnetlink::Handle, u32, u32)> {
        let (lan_if, bridge) = self
            .plan
            .cable(host)
            .with_context(|| format!("{host} has no link in this topology"))?;
        let link = Cable {
            lan_if: lan_if.to_string(),
            bridge: bridge.to_string(),
        };
        let lan = self.lan_netlink()?;
        let bridge = link_index(lan, &link.bridge).await?;
        let cable = link_index(lan, &link.lan_if).await?;
        Ok((link, lan, bridge, cable))
    }

    /// Puts a wire impaired by `up` (host to switch) and `down` (switch to host) on
    /// `host`'s `eth0` link, its randomness from `seed`.
    pub async fn interpose_wire(
        &self,
        host: Host,
        up: Impairment,
        down: Impairment,
        seed: u64,
    ) -> anyhow::Result<Wire> {
        let (link, lan, bridge, cable) = self.cable(host).await?;
        let (wire_if, port_if) = stand_in_names(&link.lan_if);
        let mut pair = LinkVeth::new(&port_if, &wire_if).up().controller(bridge);
        let mtu = match host {
            Host::WifiAp => self.plan.trunks.first().and_then(|t| t.mtu),
            _ => self.plan.link(host).and_then(|l| l.mtu),
        };
        if let Some(mtu) = mtu {
            pair = pair.mtu(mtu);
        }
        lan.link()
            .add(pair.build())
            .execute()
            .await
            .with_context(|| format!("cannot create veth {port_if} <-> {wire_if} in lan"))?;
        let wire_index = link_index(lan, &wire_if).await?;
        lan.link()
            .set(LinkUnspec::new_with_index(wire_index).up().build())
            .execute()
            .await
            .with_context(|| format!("cannot bring {wire_if} up"))?;
        lan.link()
            .set(LinkUnspec::new_with_index(cable).nocontroller().build())
            .execute()
            .await
            .with_context(|| format!("cannot take {} off {}", link.lan_if, link.bridge))?;
        if self.spec.offloads == Offloads::Off {
            offloads_off(self.lan().clone(), wire_if.clone()).await?;
            offloads_off(self.lan().clone(), port_if.clone()).await?;
        }
        wait_oper_up(lan, wire_index, &wire_if).await?;
        wait_oper_up(lan, link_index(lan, &port_if).await?, &port_if).await?;
        Wire::start(self.lan(), &link.lan_if, &wire_if, up, down, seed)
    }

    /// Stops `wire` and gives `host` its plain link back.
    pub async fn remove_wire(&self, host: Host, wire: Wire) -> anyhow::Result<()> {
        let stopped = wire.stop();
        let (link, lan, bridge, cable) = self.cable(host).await?;
        let (wire_if, _) = stand_in_names(&link.lan_if);
        let wire_index = link_index(lan, &wire_if).await?;
        lan.link()
            .del(wire_index)
            .execute()
            .await
            .with_context(|| format!("cannot delete {wire_if}"))?;
        lan.link()
            .set(LinkUnspec::new_with_index(cable).controller(bridge).build())
            .execute()
            .await
            .with_context(|| format!("cannot put {} back on {}", link.lan_if, link.bridge))?;
        stopped
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stand_in_names_fit_an_interface_name() {
        let (q, r) = super::stand_in_names("p-client12");
        assert_eq!((q.as_str(), r.as_str()), ("q-client12", "r-client12"));
        assert!(q.len() <= 15);
    }
}

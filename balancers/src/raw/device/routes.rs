//! Asks the kernel's routing table which interface reaches an address (what
//! `ip route get ADDR` prints as `dev`), so a next hop learned from a received frame
//! ([`crate::raw::device::hops`]) is used only where routing agrees with it.
//!
//! The lookups run on the balancer's tokio runtime (rtnetlink); the forwarding thread
//! asks and collects the answers without ever blocking ([`RouteChecker`]).

use std::net::Ipv4Addr;
use std::sync::mpsc;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::RouteMessageBuilder;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// The forwarding thread's end: ask with [`RouteChecker::ask`], collect with
/// [`RouteChecker::answers`].
pub struct RouteChecker {
    asks: UnboundedSender<Ipv4Addr>,
    answers: mpsc::Receiver<(Ipv4Addr, Option<i32>)>,
}

impl RouteChecker {
    /// Starts the lookup task on `runtime` (in the calling thread's network namespace).
    pub fn spawn(runtime: &tokio::runtime::Handle) -> std::io::Result<Self> {
        let (connection, handle, _) = {
            let _guard = runtime.enter();
            rtnetlink::new_connection()?
        };
        runtime.spawn(connection);
        let (asks, mut asked) = unbounded_channel::<Ipv4Addr>();
        let (answer, answers) = mpsc::channel();
        runtime.spawn(async move {
            while let Some(addr) = asked.recv().await {
                let message = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(addr, 32)
                    .build();
                let route = handle.route().get(message).execute().try_next().await;
                let ifindex = match route {
                    Ok(Some(route)) => route.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => i32::try_from(*i).ok(),
                        _ => None,
                    }),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(event = "route_lookup_failed", %addr, error = %e);
                        None
                    }
                };
                if answer.send((addr, ifindex)).is_err() {
                    break;
                }
            }
        });
        Ok(Self { asks, answers })
    }

    /// Asks which interface reaches `addr` (the answer comes later).
    pub fn ask(&self, addr: Ipv4Addr) {
        let _ = self.asks.send(addr);
    }

    /// The answers that arrived since the last call: address and the interface index of
    /// its route (None: no route, or the lookup failed).
    pub fn answers(&self) -> impl Iterator<Item = (Ipv4Addr, Option<i32>)> + '_ {
        self.answers.try_iter()
    }
}

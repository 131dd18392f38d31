//! Ground truth about TCP sockets inside a namespace, from the kernel (sock_diag).
//!
//! The scenario runner asks "which connections does server s2 hold right now" here,
//! instead of trusting a balancer's own log. The query runs on a throwaway thread that
//! entered the namespace, through a `NETLINK_SOCK_DIAG` socket opened there.

use std::net::{IpAddr, SocketAddrV4};

use anyhow::{bail, Context};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use crate::netns::Namespace;

/// One IPv4 TCP socket: local and remote address.
pub type Pair = (SocketAddrV4, SocketAddrV4);

/// Established IPv4 TCP connections in `ns` whose local port is `local_port`
/// (e.g. the connections a server accepted): `(local, remote)` pairs, sorted.
pub async fn established(ns: &Namespace, local_port: u16) -> anyhow::Result<Vec<Pair>> {
    let all = ns.run_async(|| dump(StateFlags::ESTABLISHED)).await??;
    Ok(filter_local_port(all, local_port))
}

/// Like [`established`], blocking the calling thread (not for tokio workers).
pub fn established_blocking(ns: &Namespace, local_port: u16) -> anyhow::Result<Vec<Pair>> {
    let all = ns.run(|| dump(StateFlags::ESTABLISHED))??;
    Ok(filter_local_port(all, local_port))
}

/// Like [`established`], with the payload bytes each socket has received
/// (`tcpi_bytes_received`): the harness tells which server socket is whose by what
/// arrived on it.
pub async fn established_bytes(
    ns: &Namespace,
    local_port: u16,
) -> anyhow::Result<Vec<(Pair, u64)>> {
    let all = ns
        .run_async(|| dump_with(StateFlags::ESTABLISHED, true))
        .await??;
    Ok(all
        .into_iter()
        .filter(|((l, _), _)| l.port() == local_port)
        .collect())
}

/// Offset of `tcpi_bytes_received` in the kernel's `struct tcp_info` (after 8 one-byte
/// fields, 24 `u32`s and three `u64`s: pacing rate, max pacing rate, bytes acked; Linux
/// 4.1 and later).
const TCPI_BYTES_RECEIVED: usize = 128;

/// `tcpi_bytes_received` from a raw `struct tcp_info` (None: an older, shorter struct).
pub fn tcp_info_bytes_received(info: &[u8]) -> Option<u64> {
    let bytes = info.get(TCPI_BYTES_RECEIVED..TCPI_BYTES_RECEIVED + 8)?;
    Some(u64::from_ne_bytes(bytes.try_into().ok()?))
}

/// Local addresses of IPv4 TCP sockets listening in `ns`, sorted.
pub async fn listening(ns: &Namespace) -> anyhow::Result<Vec<SocketAddrV4>> {
    let all = ns.run_async(|| dump(StateFlags::LISTEN)).await??;
    Ok(all.into_iter().map(|(local, _)| local).collect())
}

/// Keeps the pairs whose local port is `port`.
pub fn filter_local_port(pairs: Vec<Pair>, port: u16) -> Vec<Pair> {
    pairs
        .into_iter()
        .filter(|(l, _)| l.port() == port)
        .collect()
}

/// Dumps IPv4 TCP sockets in `states` of the calling thread's namespace.
fn dump(states: StateFlags) -> anyhow::Result<Vec<Pair>> {
    Ok(dump_with(states, false)?
        .into_iter()
        .map(|(pair, _)| pair)
        .collect())
}

/// Dumps IPv4 TCP sockets in `states`, each with its received payload bytes when `info`
/// asks the kernel for `tcp_info` (0 otherwise).
fn dump_with(states: StateFlags, info: bool) -> anyhow::Result<Vec<(Pair, u64)>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("cannot open a sock_diag socket")?;
    socket
        .bind_auto()
        .context("cannot bind the sock_diag socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("cannot connect the sock_diag socket")?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: AF_INET,
            protocol: IPPROTO_TCP,
            extensions: if info {
                ExtensionFlags::INFO
            } else {
                ExtensionFlags::empty()
            },
            states,
            socket_id: SocketId::new_v4(),
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .context("cannot send the sock_diag request")?;

    let mut pairs = Vec::new();
    let mut receive = vec![0u8; 64 * 1024];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .context("cannot read the sock_diag answer")?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&receive[offset..size])
                .context("malformed sock_diag answer")?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let id = &response.header.socket_id;
                    let received = response
                        .nlas
                        .iter()
                        .find_map(|nla| match nla {
                            Nla::TcpInfo(raw) => tcp_info_bytes_received(raw),
                            _ => None,
                        })
                        .unwrap_or(0);
                    if let (IpAddr::V4(l), IpAddr::V4(r)) =
                        (id.source_address, id.destination_address)
                    {
                        pairs.push((
                            (
                                SocketAddrV4::new(l, id.source_port),
                                SocketAddrV4::new(r, id.destination_port),
                            ),
                            received,
                        ));
                    }
                }
                NetlinkPayload::Done(_) => {
                    pairs.sort();
                    return Ok(pairs);
                }
                NetlinkPayload::Error(e) => bail!("sock_diag answered an error: {e:?}"),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn keeps_only_the_local_port_asked_for() {
        let a = |o: u8, p: u16| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, o), p);
        let pairs = vec![
            (a(11, 7000), a(101, 40000)),
            (a(11, 22), a(101, 40001)),
            (a(11, 7000), a(102, 40002)),
        ];
        assert_eq!(
            filter_local_port(pairs, 7000),
            vec![(a(11, 7000), a(101, 40000)), (a(11, 7000), a(102, 40002))]
        );
    }

    #[test]
    fn bytes_received_is_read_at_its_offset_in_tcp_info() {
        let mut info = vec![0u8; 232];
        info[128..136].copy_from_slice(&123_456u64.to_ne_bytes());
        assert_eq!(tcp_info_bytes_received(&info), Some(123_456));
        assert_eq!(tcp_info_bytes_received(&info[..120]), None);
    }
}

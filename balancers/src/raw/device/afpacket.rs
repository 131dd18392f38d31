//! The `AF_PACKET` device of `--capture packet` (the default):
//! frames taken at the device and, where the next hop is known, sent straight back out
//! of a device, whole.
//!
//! Receiving: a `SOCK_RAW` packet socket with `PACKET_VNET_HDR`, so every frame arrives
//! as `[virtio_net_hdr][Ethernet header][IPv4 datagram]`: a GRO/TSO super-packet of up
//! to 64 KB stays one frame, and the header says whether its TCP checksum is still
//! partial ([`l4lb_rawsock::vnet`]). A kernel filter passes only TCP to our ports on
//! Ethernet and loopback devices, addressed to this host; the raw-table PREROUTING drop
//! keeps the kernel from processing them too.
//!
//! Sending, direct: the rewritten frame goes out in the very buffer it came in, with the
//! next hop's Ethernet header ([`crate::raw::device::hops`], learned from received frames and
//! confirmed by the routing table) and the received offload header, on a second packet
//! socket. The kernel's IP output path (routing, netfilter OUTPUT/POSTROUTING, neighbour
//! lookup) is skipped, a super-packet is never cut in user space, and a partial checksum
//! is completed by the device (or by the kernel when the device cannot); the device's
//! qdisc and netdev egress hooks still apply (shaping, loss on the link).
//!
//! Sending, routed: a connection's first SYN, frames to a next hop not (yet) known, the
//! balancer's own resets and everything when `--send routed` go through an `IPPROTO_RAW`
//! socket, i.e. the kernel's own routing and ARP ([`RawSender`]).

use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::raw::device::hops::{Hop, Hops};
use crate::raw::device::routes::RouteChecker;
use crate::raw::device::{poll, Device, Forward, FramesSent, RecvBatch};
use crate::raw::wire::packet::{flags, ChecksumState};
use l4lb_rawsock::bpf::frame_filter;
use l4lb_rawsock::ip::RawSender;
use l4lb_rawsock::local_addresses;
use l4lb_rawsock::packet::{LinkDest, PacketSocket};
use l4lb_rawsock::vnet::{self, VnetHdr};

/// Ethernet header length.
const ETH_LEN: usize = 14;
/// Bytes before the IPv4 datagram in every frame buffer.
pub const HEAD: usize = vnet::LEN + ETH_LEN;
/// Receive ring slots (2 KB each): about 10 ms of a saturated 1500-byte stream.
const RING_SLOTS: usize = 4096;
/// How often learned hops are aged.
const EXPIRE_EVERY: Duration = Duration::from_secs(10);

/// The packet-socket device.
pub struct PacketDevice {
    socket: PacketSocket,
    routed: RawSender,
    /// This host's addresses: frames routed through the host are not ours.
    local: Vec<[u8; 4]>,
    /// Whether frames may be sent directly (`--send direct`).
    direct: bool,
    /// Frames larger than this that are not super-packets go the routed way (which cuts
    /// them to size).
    mtu: usize,
    /// How long receiving polls before it sleeps (`--busy-poll`).
    busy_poll: Duration,
    hops: Hops,
    routes: Option<RouteChecker>,
    start: Instant,
    next_expiry: Duration,
    /// What each receive fills in besides the frames, kept between receives.
    rx: RecvInfo,
    /// The frames of a batch sent directly and their destinations, kept between batches.
    tx_direct: Vec<(usize, usize, Hop)>,
    tx_to: Vec<LinkDest>,
}

/// Per-frame results of a receive (length, interface, arrival time), kept from one
/// receive to the next so a busy-polling loop allocates nothing.
#[derive(Default)]
struct RecvInfo {
    /// Whether received frames carry their kernel arrival time (`--stage-times`).
    stamped: bool,
    lens: Vec<usize>,
    ifindexes: Vec<i32>,
    /// Empty unless arrivals are stamped.
    stamps: Vec<u64>,
}

impl RecvInfo {
    /// Room for `n` frames (and their stamps, when stamped).
    fn fit(&mut self, n: usize) {
        if self.lens.len() < n {
            self.lens.resize(n, 0);
            self.ifindexes.resize(n, 0);
        }
        if self.stamped && self.stamps.len() < n {
            self.stamps.resize(n, 0);
        }
    }
}

impl PacketDevice {
    /// Opens the sockets (needs root or CAP_NET_RAW), marks them and installs the
    /// filter. `direct` allows direct sending; `mtu` bounds frames sent directly that are
    /// not super-packets; receiving polls for `busy_poll` before it sleeps.
    pub fn open(
        mark: u32,
        listen: u16,
        nat: &RangeInclusive<u16>,
        direct: bool,
        mtu: usize,
        busy_poll: Duration,
    ) -> io::Result<Self> {
        let socket = PacketSocket::open(mark, &frame_filter(listen, nat))?;
        Ok(Self {
            socket,
            routed: RawSender::open(mark)?,
            local: local_addresses()?,
            direct,
            mtu,
            busy_poll,
            hops: Hops::new(),
            routes: None,
            start: Instant::now(),
            next_expiry: EXPIRE_EVERY,
            rx: RecvInfo::default(),
            tx_direct: Vec::new(),
            tx_to: Vec::new(),
        })
    }

    /// Lets learned hops be confirmed by the routing table; without it, every frame goes
    /// the routed way.
    pub fn set_route_checker(&mut self, routes: RouteChecker) {
        self.routes = Some(routes);
    }

    /// Makes every received frame carry its kernel arrival time into
    /// [`RecvBatch::arrived`] (`--stage-times`).
    pub fn stamp_arrivals(&mut self) -> io::Result<()> {
        self.socket.stamp_arrivals()?;
        self.rx.stamped = true;
        Ok(())
    }

    /// Takes frames from a receive ring ([`l4lb_rawsock::ring`]) from now on
    /// (`--receive ring`); returns its number of slots.
    pub fn map_receive_ring(&mut self) -> io::Result<usize> {
        self.socket.map_receive_ring(RING_SLOTS)
    }

    /// A second handle on the routed sender, for a sender thread.
    pub fn sender(&self) -> io::Result<RawSender> {
        self.routed.try_clone()
    }

    /// Addresses whose next hop is remembered (stats and tests).
    pub fn hops_known(&self) -> usize {
        self.hops.len()
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Learns the hop of a received frame (at least [`HEAD`] + 20 bytes); asks the
    /// routing table about new ones.
    fn learn(&mut self, frame: &[u8], ifindex: i32, now: Duration) {
        let Some(routes) = &self.routes else {
            return;
        };
        let eth = &frame[vnet::LEN..HEAD];
        let ip = &frame[HEAD..];
        let mut mac = [0u8; 6];
        let mut own_mac = [0u8; 6];
        own_mac.copy_from_slice(&eth[0..6]);
        mac.copy_from_slice(&eth[6..12]);
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let hop = Hop {
            ifindex,
            mac,
            own_mac,
        };
        if self.hops.observe(src, hop, now) {
            routes.ask(src);
        }
    }
}

impl Device for PacketDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let now = self.now();
        if let Some(routes) = &self.routes {
            for (addr, ifindex) in routes.answers() {
                self.hops.confirm(addr, ifindex);
            }
        }
        if now >= self.next_expiry {
            self.hops.expire(now);
            self.next_expiry = now + EXPIRE_EVERY;
        }
        debug_assert_eq!(
            batch.head, HEAD,
            "a PacketDevice needs RecvBatch::with_head(_, HEAD)"
        );
        let n = batch.wanted().len();
        // Taken out for the loop below, which also learns hops (`&mut self`); put back
        // at the end (a failed receive puts it back at once).
        let mut rx = std::mem::take(&mut self.rx);
        rx.fit(n);
        let socket = &mut self.socket;
        let got = poll::receive(self.busy_poll, |wait| {
            let stamps = if rx.stamped {
                Some(&mut rx.stamps[..n])
            } else {
                None
            };
            let (lens, ifindexes) = (&mut rx.lens[..n], &mut rx.ifindexes[..n]);
            socket.recv(batch.wanted(), lens, ifindexes, stamps, wait)
        });
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                self.rx = rx;
                return Err(e);
            }
        };
        let (lens, ifindexes, stamps) = (&rx.lens, &rx.ifindexes, &rx.stamps);
        // Keep frames that carry an IPv4 header addressed to this host, in order; a
        // frame too short for one goes on to be counted by the parser.
        let mut kept = 0;
        for i in 0..got {
            let frame = &batch.bufs[i][..lens[i].min(batch.bufs[i].len())];
            let hdr = VnetHdr::read(frame).unwrap_or_default();
            let whole = frame.len() >= HEAD + 20;
            if whole && !self.local.iter().any(|a| frame[HEAD + 16..HEAD + 20] == *a) {
                continue;
            }
            if whole && self.direct {
                self.learn(frame, ifindexes[i], now);
            }
            batch.bufs.swap(kept, i);
            batch.arrived[kept] = stamps.get(i).copied().unwrap_or(0);
            batch.lens[kept] = lens[i].saturating_sub(HEAD);
            batch.checksums[kept] = if hdr.needs_csum() {
                ChecksumState::Partial
            } else {
                ChecksumState::Final
            };
            kept += 1;
        }
        self.rx = rx;
        Ok(kept)
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        self.routed.send(packets)
    }

    fn receive_drops(&mut self) -> io::Result<u64> {
        self.socket.receive_drops()
    }

    fn send_frames(&mut self, batch: &mut RecvBatch, forwards: &[Forward]) -> FramesSent {
        let mut result = FramesSent::default();
        if !self.direct {
            result.routed = (0..forwards.len()).collect();
            return result;
        }
        let now = self.now();
        // (index into forwards, frame length, hop), in a list kept between batches.
        let mut direct = std::mem::take(&mut self.tx_direct);
        direct.clear();
        for (k, f) in forwards.iter().enumerate() {
            let buf = &mut batch.bufs[f.index];
            let hdr = VnetHdr::read(buf).unwrap_or_default();
            let datagram = &buf[HEAD..HEAD + f.len];
            let tcp_flags = datagram
                .first()
                .map(|b| usize::from(b & 0x0f) * 4 + 13)
                .and_then(|at| datagram.get(at))
                .copied()
                .unwrap_or(0);
            // A connection's first SYN goes the kernel's way: it resolves a backend not
            // heard from yet, and the backend's answer teaches us its hop.
            let first_syn = tcp_flags & (flags::SYN | flags::ACK) == flags::SYN;
            let too_big = !hdr.is_gso() && f.len > self.mtu;
            match self.hops.get(f.dst, now) {
                Some(hop) if !first_syn && !too_big => {
                    hdr.for_sending().write(&mut buf[..vnet::LEN]);
                    buf[vnet::LEN..vnet::LEN + 6].copy_from_slice(&hop.mac);
                    buf[vnet::LEN + 6..vnet::LEN + 12].copy_from_slice(&hop.own_mac);
                    direct.push((k, HEAD + f.len, hop));
                }
                _ => result.routed.push(k),
            }
        }
        if !direct.is_empty() {
            let frames: Vec<&[u8]> = direct
                .iter()
                .map(|&(k, len, _)| &batch.bufs[forwards[k].index][..len])
                .collect();
            self.tx_to.clear();
            self.tx_to
                .extend(direct.iter().map(|&(_, _, hop)| LinkDest {
                    ifindex: hop.ifindex,
                    mac: hop.mac,
                }));
            result.failed = self
                .socket
                .send(&frames, &self.tx_to)
                .into_iter()
                .map(|(_, err)| err)
                .collect();
        }
        self.tx_direct = direct;
        result
    }
}

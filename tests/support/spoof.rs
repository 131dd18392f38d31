//! Hand-built TCP/IPv4 segments for hostile-traffic tests, sent and sniffed only inside
//! a test topology's network namespaces.
//!
//! - [`Segment`] describes one segment; [`Segment::to_bytes`] builds the IPv4 + TCP
//!   headers (and payload) with correct checksums, or a deliberately wrong TCP checksum
//!   ([`Segment::bad_checksum`]).
//! - [`send`] opens a raw IPv4 socket with `IP_HDRINCL` *inside* a namespace (on a
//!   dedicated std thread that entered it, see `Namespace::run`), and sends the segments
//!   paced evenly over a duration. The kernel only routes them: the source address is
//!   whatever the segment says. Callers must use addresses of the test subnet only.
//! - [`sniff`] opens an `AF_PACKET` socket inside a namespace and returns the first
//!   TCP segment (either direction) that matches a predicate, e.g. to learn a live
//!   connection's sequence numbers.
//!
//! Bounds: [`send`] refuses more than [`MAX_PACKETS`] segments or a duration above
//! [`MAX_DURATION`].

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use l4lb_harness::netns::Namespace;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Most segments one [`send`] may emit.
pub const MAX_PACKETS: usize = 100_000;
/// Longest one [`send`] may take.
pub const MAX_DURATION: Duration = Duration::from_secs(10);

/// TCP flag bits: the balancer's own constants (plain TCP numbers, nothing to test).
pub use l4lb_balancers::raw::wire::packet::flags;

/// One TCP segment to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: Vec<u8>,
    /// Corrupt the TCP checksum (one's complement of the right one, plus one).
    pub bad_checksum: bool,
}

impl Segment {
    /// A segment with `flags`, sequence `seq`, no payload, ack 0, window 64240.
    pub fn new(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, seq: u32) -> Segment {
        Segment {
            src,
            dst,
            seq,
            ack: 0,
            flags,
            window: 64240,
            payload: Vec::new(),
            bad_checksum: false,
        }
    }

    /// The whole IPv4 datagram: 20-byte IP header, 20-byte TCP header, payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let total = 40 + self.payload.len();
        let mut b = vec![0u8; total];
        b[0] = 0x45; // version 4, IHL 5
        b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        b[4..6].copy_from_slice(&(self.seq as u16).to_be_bytes()); // any id
        b[6] = 0x40; // DF
        b[8] = 64; // TTL
        b[9] = 6; // TCP
        b[12..16].copy_from_slice(&self.src.ip().octets());
        b[16..20].copy_from_slice(&self.dst.ip().octets());
        let ip_sum = checksum(&[&b[..20]]);
        b[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let t = &mut b[20..];
        t[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        t[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.to_be_bytes());
        t[12] = 5 << 4; // data offset 5 words
        t[13] = self.flags;
        t[14..16].copy_from_slice(&self.window.to_be_bytes());
        t[20..].copy_from_slice(&self.payload);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&self.src.ip().octets());
        pseudo[4..8].copy_from_slice(&self.dst.ip().octets());
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&((20 + self.payload.len()) as u16).to_be_bytes());
        let mut sum = checksum(&[&pseudo, t]);
        if self.bad_checksum {
            sum = sum.wrapping_add(1).max(1);
        }
        t[16..18].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each of even
/// length except possibly the last).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `segments` from inside `ns` through a raw `IP_HDRINCL` socket, spread evenly
/// over `over` (all at once for `Duration::ZERO`). Blocks a fresh std thread, not the
/// caller's runtime. Returns how many were sent (a send error such as ENOBUFS is
/// counted as not sent, not fatal).
pub async fn send(ns: &Namespace, segments: Vec<Segment>, over: Duration) -> usize {
    assert!(
        segments.len() <= MAX_PACKETS && over <= MAX_DURATION,
        "spoof::send is bounded to {MAX_PACKETS} segments and {MAX_DURATION:?}"
    );
    ns.run_async(move || {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).expect("raw socket");
        sock.set_header_included_v4(true).expect("IP_HDRINCL");
        let start = Instant::now();
        let n = segments.len().max(1) as u32;
        let mut sent = 0;
        for (i, seg) in segments.iter().enumerate() {
            let due = start + over * i as u32 / n;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let to = SockAddr::from(SocketAddrV4::new(*seg.dst.ip(), 0));
            if sock.send_to(&seg.to_bytes(), &to).is_ok() {
                sent += 1;
            }
        }
        sent
    })
    .await
    .expect("enter namespace to spoof")
}

/// A TCP segment seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload_len: usize,
}

/// Returns the first TCP/IPv4 segment in `ns` (any interface, either direction) for
/// which `want` holds, or None after `timeout`. `ready` is sent once the capture socket
/// is open, so the caller can then trigger the traffic.
pub async fn sniff(
    ns: &Namespace,
    timeout: Duration,
    ready: tokio::sync::oneshot::Sender<()>,
    want: impl Fn(&Seen) -> bool + Send + 'static,
) -> Option<Seen> {
    ns.run_async(move || {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let sock = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(proto))),
        )
        .expect("AF_PACKET socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("SO_RCVTIMEO");
        let _ = ready.send(());
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            // SAFETY: recv into a buffer we own, of its length.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            if let Some(seen) = parse_frame(&buf[..n as usize]) {
                if want(&seen) {
                    return Some(seen);
                }
            }
        }
        None
    })
    .await
    .expect("enter namespace to sniff")
}

/// Ethernet + IPv4 + TCP, or None.
fn parse_frame(f: &[u8]) -> Option<Seen> {
    if f.len() < 14 + 40 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ip[9] != 6 || ip.len() < ihl + 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let t = &ip[ihl..];
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let addr = |o: usize, p: usize| {
        SocketAddrV4::new(
            Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]),
            u16::from_be_bytes([t[p], t[p + 1]]),
        )
    };
    let data_off = usize::from(t[12] >> 4) * 4;
    Some(Seen {
        src: addr(12, 0),
        dst: addr(16, 2),
        seq: be32(&t[4..8]),
        ack: be32(&t[8..12]),
        flags: t[13],
        payload_len: total.saturating_sub(ihl + data_off),
    })
}

#[test]
fn checksums_verify_to_zero() {
    let a = |o, p| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, o), p);
    let mut seg = Segment::new(a(101, 40000), a(1, 20000), flags::SYN, 7);
    seg.payload = b"odd".to_vec();
    let b = seg.to_bytes();
    assert_eq!(checksum(&[&b[..20]]), 0, "IP header checksum");
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&b[12..16]);
    pseudo[4..8].copy_from_slice(&b[16..20]);
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&((b.len() - 20) as u16).to_be_bytes());
    assert_eq!(checksum(&[&pseudo, &b[20..]]), 0, "TCP checksum");
    seg.bad_checksum = true;
    assert_ne!(checksum(&[&pseudo, &seg.to_bytes()[20..]]), 0);
}

//! Checked views of untrusted IPv4/TCP bytes and the NAT rewrite, as pure functions.
//!
//! [`parse`] validates a received datagram (version, IHL, total length against the
//! buffer, fragments, protocol, TCP data offset) and returns a [`TcpView`] summary or the
//! [`DropReason`]; it never panics, whatever the bytes. [`rewrite`] changes addresses and
//! ports in place and fixes both checksums incrementally (RFC 1624, eqn. 3), so IP and TCP
//! options and the payload are carried through untouched. Field reads go through pnet's
//! views once the bounds are checked here.
//!
//! The views and [`parse`] are here; the checksums (`checksum.rs`), the rewrite
//! (`rewrite.rs`) and the resets the balancer builds (`reset.rs`) are in private modules
//! whose items this module re-exports.

use std::net::Ipv4Addr;

use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::tcp::TcpPacket;

mod checksum;
mod reset;
mod rewrite;

pub use checksum::{
    checksums_valid, complete_tcp_checksum, fill_checksums, full_ip_checksum, full_tcp_checksum,
    internet_checksum, partial_checksum, tcp_checksum_ok, ChecksumState,
};
pub use reset::{build_closed_port_reply, build_refusal, build_rst};
pub use rewrite::{rewrite, ChecksumFix, Rewrite};

/// Minimum IPv4 header length in bytes (IHL 5).
pub const IPV4_MIN_HEADER: usize = 20;
/// Minimum TCP header length in bytes (data offset 5).
pub const TCP_MIN_HEADER: usize = 20;

/// Byte offsets inside the IPv4 header.
mod ip_off {
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Byte offsets inside the TCP header.
mod tcp_off {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const CHECKSUM: usize = 16;
}

/// TCP flag bits (low byte of the flags field).
pub mod flags {
    /// FIN: the sender has finished sending.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// PSH: push.
    pub const PSH: u8 = 0x08;
    /// ACK: the acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// URG: the urgent pointer is significant.
    pub const URG: u8 = 0x20;
    /// ECE: ECN echo.
    pub const ECE: u8 = 0x40;
    /// CWR: congestion window reduced.
    pub const CWR: u8 = 0x80;

    /// Whether a TCP could send this combination: conntrack's table
    /// (`tcp_valid_flags`), PSH, ECE and CWR aside. SYN+FIN, SYN+RST, no flags at all
    /// and FIN without ACK are not.
    pub fn valid(flags: u8) -> bool {
        matches!(
            flags & !(PSH | ECE | CWR),
            SYN | 0x22 // SYN|URG
                | 0x12 // SYN|ACK
                | RST
                | 0x14 // RST|ACK
                | 0x11 // FIN|ACK
                | 0x31 // FIN|ACK|URG
                | ACK
                | 0x30 // ACK|URG
        )
    }
}

/// Why a packet was not forwarded. Every drop has one; the balancer counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than a minimal IPv4 header.
    Truncated,
    /// IP version field is not 4.
    BadVersion,
    /// IHL below 5 or beyond the buffer.
    BadHeaderLength,
    /// Total length smaller than the header or larger than the received bytes.
    BadTotalLength,
    /// A fragment (MF set or offset not zero).
    Fragment,
    /// Not TCP.
    NotTcp,
    /// TCP header truncated or data offset below 5 or beyond the segment.
    BadTcpHeader,
    /// Destination port is neither the listening port nor a NAT port.
    NotForUs,
    /// A non-SYN segment from a client that has no NAT row.
    UnknownClient,
    /// A segment from a backend to a NAT port that has no row.
    UnknownNatPort,
    /// A new connection while no backend is usable.
    NoBackend,
    /// A new connection while the table is full of established rows.
    TableFull,
    /// Every NAT port of the chosen backend is in use.
    PortsExhausted,
    /// A segment larger than the egress MTU that could not be sent.
    TooBig,
    /// The kernel refused to send the rewritten packet.
    SendFailed,
    /// The backend answered a new connection's SYN with a bare ACK: an old connection
    /// on the same NAT port is still in TIME_WAIT there. The ACK is not forwarded; the
    /// balancer resets that old connection and sends the SYN again.
    BackendTimeWait,
    /// A RST whose sequence number is outside the receiver's window (a blind reset):
    /// dropped, the row kept.
    RstOutOfWindow,
    /// A segment whose full TCP checksum is wrong.
    BadChecksum,
    /// A flag combination no TCP sends (SYN+FIN, SYN+RST, none, FIN without ACK, ...),
    /// as conntrack judges them.
    InvalidFlags,
    /// An ICMP "fragmentation needed" too short to quote an IPv4 header and 8 bytes of
    /// TCP, quoting something else, or giving an MTU below 68.
    BadIcmp,
    /// An ICMP "fragmentation needed" about no flow of ours, or quoting a sequence number
    /// outside the flow's window (a blind or stale error): not relayed.
    IcmpUnknownFlow,
    /// Lost before the balancer could read it: the kernel found the capture's receive
    /// buffer or ring full (the balancer fell behind, or was stopped), or the ring could
    /// not give a super-packet whole. Counted from the kernel's own tally.
    ReceiveQueueFull,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 22] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::BadHeaderLength,
        DropReason::BadTotalLength,
        DropReason::Fragment,
        DropReason::NotTcp,
        DropReason::BadTcpHeader,
        DropReason::NotForUs,
        DropReason::UnknownClient,
        DropReason::UnknownNatPort,
        DropReason::NoBackend,
        DropReason::TableFull,
        DropReason::PortsExhausted,
        DropReason::TooBig,
        DropReason::SendFailed,
        DropReason::BackendTimeWait,
        DropReason::RstOutOfWindow,
        DropReason::BadChecksum,
        DropReason::InvalidFlags,
        DropReason::BadIcmp,
        DropReason::IcmpUnknownFlow,
        DropReason::ReceiveQueueFull,
    ];

    /// Stable snake_case name (metrics label, logs).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLength => "bad_header_length",
            DropReason::BadTotalLength => "bad_total_length",
            DropReason::Fragment => "fragment",
            DropReason::NotTcp => "not_tcp",
            DropReason::BadTcpHeader => "bad_tcp_header",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnknownClient => "unknown_client",
            DropReason::UnknownNatPort => "unknown_nat_port",
            DropReason::NoBackend => "no_backend",
            DropReason::TableFull => "table_full",
            DropReason::PortsExhausted => "ports_exhausted",
            DropReason::TooBig => "too_big",
            DropReason::SendFailed => "send_failed",
            DropReason::BackendTimeWait => "backend_time_wait",
            DropReason::RstOutOfWindow => "rst_out_of_window",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::InvalidFlags => "invalid_flags",
            DropReason::BadIcmp => "bad_icmp",
            DropReason::IcmpUnknownFlow => "icmp_unknown_flow",
            DropReason::ReceiveQueueFull => "receive_queue_full",
        }
    }

    /// Index into a counter array of length [`DropReason::ALL`]`.len()`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What [`parse`] learned about a valid IPv4/TCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TcpView {
    /// IPv4 header length in bytes (options included).
    pub ip_header_len: usize,
    /// IPv4 total length: the datagram is `buf[..total_len]`.
    pub total_len: usize,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// TCP header length in bytes (options included).
    pub tcp_header_len: usize,
    /// TCP flags (low 8 bits).
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Payload bytes after the TCP header.
    pub payload_len: usize,
    /// Window field (unscaled).
    pub window: u16,
}

impl TcpView {
    /// Whether every bit of `mask` is set in the flags.
    pub fn has(&self, mask: u8) -> bool {
        self.flags & mask == mask
    }

    /// A connection-opening SYN (SYN without ACK).
    pub fn is_initial_syn(&self) -> bool {
        self.has(flags::SYN) && !self.has(flags::ACK)
    }

    /// Sequence space the segment uses: its payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        let mut n = self.payload_len as u32;
        if self.has(flags::SYN) {
            n = n.wrapping_add(1);
        }
        if self.has(flags::FIN) {
            n = n.wrapping_add(1);
        }
        n
    }
}

/// Validates `buf` as one IPv4 datagram carrying a TCP segment. Never panics.
pub fn parse(buf: &[u8]) -> Result<TcpView, DropReason> {
    if buf.len() < IPV4_MIN_HEADER {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv4Packet::new(buf).ok_or(DropReason::Truncated)?;
    if ip.get_version() != 4 {
        return Err(DropReason::BadVersion);
    }
    let ihl = usize::from(ip.get_header_length()) * 4;
    if ihl < IPV4_MIN_HEADER || ihl > buf.len() {
        return Err(DropReason::BadHeaderLength);
    }
    // MF flag (0b001) or a fragment offset, judged before anything a fragment cannot be
    // held to (a non-first fragment has no TCP header; its bytes at the port offset are
    // payload): every fragment that reaches the parser counts as one, whatever its bytes.
    if ip.get_flags() & 0b001 != 0 || ip.get_fragment_offset() != 0 {
        return Err(DropReason::Fragment);
    }
    let total_len = usize::from(ip.get_total_length());
    if total_len < ihl || total_len > buf.len() {
        return Err(DropReason::BadTotalLength);
    }
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
        return Err(DropReason::NotTcp);
    }
    let tcp_bytes = &buf[ihl..total_len];
    if tcp_bytes.len() < TCP_MIN_HEADER {
        return Err(DropReason::BadTcpHeader);
    }
    let tcp = TcpPacket::new(tcp_bytes).ok_or(DropReason::BadTcpHeader)?;
    let doff = usize::from(tcp.get_data_offset()) * 4;
    if doff < TCP_MIN_HEADER || doff > tcp_bytes.len() {
        return Err(DropReason::BadTcpHeader);
    }
    Ok(TcpView {
        ip_header_len: ihl,
        total_len,
        src: ip.get_source(),
        dst: ip.get_destination(),
        sport: tcp.get_source(),
        dport: tcp.get_destination(),
        tcp_header_len: doff,
        // The classic 8 flag bits (pnet leaves out NS).
        flags: tcp.get_flags(),
        seq: tcp.get_sequence(),
        ack: tcp.get_acknowledgement(),
        payload_len: tcp_bytes.len() - doff,
        window: tcp.get_window(),
    })
}

/// The window scale a SYN offers (RFC 7323 option 3, shift capped at 14), None without
/// the option or on malformed options. Only meaningful on a SYN.
pub fn window_scale(buf: &[u8], seg: &TcpView) -> Option<u8> {
    let start = seg.ip_header_len + TCP_MIN_HEADER;
    let end = seg.ip_header_len + seg.tcp_header_len;
    let mut opts = buf.get(start..end)?;
    while let [kind, rest @ ..] = opts {
        match *kind {
            0 => return None,
            1 => opts = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > opts.len() {
                    return None;
                }
                if *kind == 3 && len == 3 {
                    return Some(opts[2].min(14));
                }
                opts = &opts[len..];
            }
        }
    }
    None
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

//! Checked views of untrusted IPv4/TCP bytes and the NAT rewrite, as pure functions.
//!
//! [`parse`] validates a received datagram (version, IHL, total length against the
//! buffer, fragments, protocol, TCP data offset) and returns a [`TcpView`] summary or the
//! [`DropReason`]; it never panics, whatever the bytes. [`rewrite`] changes addresses and
//! ports in place and fixes both checksums incrementally (RFC 1624, eqn. 3), so IP and TCP
//! options and the payload are carried through untouched. Field reads go through pnet's
//! views once the bounds are checked here.

use std::net::Ipv4Addr;

use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::tcp::TcpPacket;

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
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 19] = [
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

/// Whether the TCP checksum of a datagram `parse` accepted as `seg` may be trusted: a
/// partial one (the receiving side says so, or, `Unknown`, the field holds exactly the
/// pseudo-header part) cannot be verified and is trusted, as the kernel trusts a local
/// sender's offload; a full one must verify.
pub fn tcp_checksum_ok(buf: &[u8], seg: &TcpView, state: ChecksumState) -> bool {
    let tcp_len = seg.total_len - seg.ip_header_len;
    let received = read_u16(buf, seg.ip_header_len + tcp_off::CHECKSUM);
    match state {
        ChecksumState::Partial => true,
        ChecksumState::Unknown if received == partial_checksum(seg.src, seg.dst, tcp_len) => true,
        _ => {
            full_tcp_checksum(seg.src, seg.dst, &buf[seg.ip_header_len..seg.total_len]) == received
        }
    }
}

/// New addresses and ports for a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// New source address.
    pub src: Ipv4Addr,
    /// New source port.
    pub sport: u16,
    /// New destination address.
    pub dst: Ipv4Addr,
    /// New destination port.
    pub dport: u16,
}

/// How [`rewrite`] fixed the TCP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumFix {
    /// Incrementally (RFC 1624): the received checksum was a final one.
    Incremental,
    /// In full: the received checksum was only the pseudo-header part that a sender with
    /// checksum offload leaves for the NIC (CHECKSUM_PARTIAL on a veth).
    Full,
    /// Left partial, its pseudo-header part moved to the new addresses: the device
    /// that sends it completes it ([`ChecksumState::Partial`]).
    KeptPartial,
}

/// What the receiving side knows of a datagram's TCP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumState {
    /// Nothing: a field equal to the pseudo-header sum is taken as partial and the
    /// checksum is computed in full (raw sockets, which do not say).
    #[default]
    Unknown,
    /// Final (the kernel said so): updated incrementally.
    Final,
    /// Only the pseudo-header part (the kernel said so, e.g. `VIRTIO_NET_HDR_F_NEEDS_CSUM`):
    /// kept partial, for a device that completes it on the way out.
    Partial,
}

/// The value a CHECKSUM_PARTIAL segment carries in its checksum field: the folded,
/// uncomplemented pseudo-header sum.
pub fn partial_checksum(src: Ipv4Addr, dst: Ipv4Addr, tcp_len: usize) -> u16 {
    let sum = sum_bytes(&src.octets()) + sum_bytes(&dst.octets()) + 6 + tcp_len as u32;
    fold(sum)
}

/// Rewrites addresses and ports of a datagram `parse` accepted as `seg`, fixing the IP
/// header checksum and the TCP checksum. Bytes beyond `seg.total_len`, options and
/// payload are left untouched.
///
/// `state` is what the receiving side knows of the TCP checksum: a final one is updated
/// incrementally (RFC 1624), a partial one stays partial (only the addresses of its
/// pseudo-header part change: ports are not in it). An unknown one whose field holds
/// exactly the pseudo-header part (what a sender with checksum offload leaves for the
/// NIC, which a veth passes on unfinished) is computed in full; a complete checksum that
/// happens to equal it is also correct after a full computation, so the test can only
/// err towards correctness.
pub fn rewrite(buf: &mut [u8], seg: &TcpView, to: &Rewrite, state: ChecksumState) -> ChecksumFix {
    let tcp_len = seg.total_len - seg.ip_header_len;
    let received = read_u16(buf, seg.ip_header_len + tcp_off::CHECKSUM);
    let partial = match state {
        ChecksumState::Unknown => received == partial_checksum(seg.src, seg.dst, tcp_len),
        ChecksumState::Final | ChecksumState::Partial => false,
    };
    let ihl = seg.ip_header_len;
    let old_src = seg.src.octets();
    let old_dst = seg.dst.octets();
    let new_src = to.src.octets();
    let new_dst = to.dst.octets();

    // IPv4 header: addresses only.
    let mut ip_sum = Incremental::new(read_u16(buf, ip_off::CHECKSUM));
    ip_sum.replace4(old_src, new_src);
    ip_sum.replace4(old_dst, new_dst);
    buf[ip_off::SRC..ip_off::SRC + 4].copy_from_slice(&new_src);
    buf[ip_off::DST..ip_off::DST + 4].copy_from_slice(&new_dst);
    write_u16(buf, ip_off::CHECKSUM, ip_sum.finish());

    // TCP: the pseudo header's addresses and the two ports.
    let tcp = ihl;
    let mut tcp_sum = Incremental::new(read_u16(buf, tcp + tcp_off::CHECKSUM));
    tcp_sum.replace4(old_src, new_src);
    tcp_sum.replace4(old_dst, new_dst);
    tcp_sum.replace(seg.sport, to.sport);
    tcp_sum.replace(seg.dport, to.dport);
    write_u16(buf, tcp + tcp_off::SRC_PORT, to.sport);
    write_u16(buf, tcp + tcp_off::DST_PORT, to.dport);
    if state == ChecksumState::Partial {
        // The field is the uncomplemented pseudo-header sum: move it to the new addresses.
        let mut pseudo = Incremental::new(!received);
        pseudo.replace4(old_src, new_src);
        pseudo.replace4(old_dst, new_dst);
        write_u16(buf, tcp + tcp_off::CHECKSUM, !pseudo.finish());
        return ChecksumFix::KeptPartial;
    }
    if partial {
        let full = full_tcp_checksum(to.src, to.dst, &buf[tcp..seg.total_len]);
        write_u16(buf, tcp + tcp_off::CHECKSUM, full);
        ChecksumFix::Full
    } else {
        write_u16(buf, tcp + tcp_off::CHECKSUM, tcp_sum.finish());
        ChecksumFix::Incremental
    }
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`, accumulated over several 16-bit words.
struct Incremental {
    sum: u32,
}

impl Incremental {
    fn new(check: u16) -> Self {
        Self {
            sum: u32::from(!check),
        }
    }

    fn replace(&mut self, old: u16, new: u16) {
        self.sum += u32::from(!old) + u32::from(new);
    }

    fn replace4(&mut self, old: [u8; 4], new: [u8; 4]) {
        self.replace(
            u16::from_be_bytes([old[0], old[1]]),
            u16::from_be_bytes([new[0], new[1]]),
        );
        self.replace(
            u16::from_be_bytes([old[2], old[3]]),
            u16::from_be_bytes([new[2], new[3]]),
        );
    }

    fn finish(self) -> u16 {
        !fold(self.sum)
    }
}

/// Folds a 32-bit one's-complement accumulator to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// One's-complement sum of `bytes` (odd length padded with a zero byte), unfolded.
fn sum_bytes(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum: u32 = 0;
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        // Fold early so very long inputs cannot overflow.
        if sum > 0xffff_0000 {
            sum = u32::from(fold(sum));
        }
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Full IPv4 header checksum of `header` (its checksum field counted as zero).
pub fn full_ip_checksum(header: &[u8]) -> u16 {
    let sum = sum_bytes(header) + 0xffff - u32::from(read_u16(header, ip_off::CHECKSUM));
    !fold(sum)
}

/// Full TCP checksum over the pseudo header and `segment` (its checksum field counted as
/// zero).
pub fn full_tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut sum = sum_bytes(&src.octets()) + sum_bytes(&dst.octets());
    sum += 6 + segment.len() as u32;
    sum += u32::from(fold(sum_bytes(segment)));
    sum += 0xffff - u32::from(read_u16(segment, tcp_off::CHECKSUM));
    !fold(sum)
}

/// Recomputes both checksums of a datagram `parse` accepted as `seg` from scratch.
/// Used for user-space segmentation and by tests as the reference.
pub fn fill_checksums(buf: &mut [u8], seg: &TcpView) {
    let ihl = seg.ip_header_len;
    let ip = full_ip_checksum(&buf[..ihl]);
    write_u16(buf, ip_off::CHECKSUM, ip);
    let tcp = full_tcp_checksum(seg.src, seg.dst, &buf[ihl..seg.total_len]);
    write_u16(buf, ihl + tcp_off::CHECKSUM, tcp);
}

/// Completes the TCP checksum of a datagram whose field holds only the pseudo-header
/// part, for sending it through a path that does not complete it. False if `buf` is not
/// a valid datagram (left untouched).
pub fn complete_tcp_checksum(buf: &mut [u8]) -> bool {
    let Ok(seg) = parse(buf) else {
        return false;
    };
    let ihl = seg.ip_header_len;
    let full = full_tcp_checksum(seg.src, seg.dst, &buf[ihl..seg.total_len]);
    write_u16(buf, ihl + tcp_off::CHECKSUM, full);
    true
}

/// Whether both checksums of `buf` verify (tests and diagnostics).
pub fn checksums_valid(buf: &[u8]) -> bool {
    let Ok(seg) = parse(buf) else {
        return false;
    };
    let ihl = seg.ip_header_len;
    full_ip_checksum(&buf[..ihl]) == read_u16(buf, ip_off::CHECKSUM)
        && full_tcp_checksum(seg.src, seg.dst, &buf[ihl..seg.total_len])
            == read_u16(buf, ihl + tcp_off::CHECKSUM)
}

/// A TCP header with no options and no payload, both checksums set: IP ID 0, DF, TTL 64,
/// window 0, as the kernel sends its own resets.
fn build_bare(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    tcp_flags: u8,
) -> Vec<u8> {
    let mut p = vec![0u8; IPV4_MIN_HEADER + TCP_MIN_HEADER];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6;
    p[ip_off::SRC..ip_off::SRC + 4].copy_from_slice(&src.octets());
    p[ip_off::DST..ip_off::DST + 4].copy_from_slice(&dst.octets());
    let t = IPV4_MIN_HEADER;
    write_u16(&mut p, t + tcp_off::SRC_PORT, sport);
    write_u16(&mut p, t + tcp_off::DST_PORT, dport);
    p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    p[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
    p[t + 12] = 5 << 4;
    p[t + 13] = tcp_flags;
    if let Ok(seg) = parse(&p) {
        fill_checksums(&mut p, &seg);
    }
    p
}

/// A bare RST `src:sport -> dst:dport` with sequence number `seq`, both checksums set.
pub fn build_rst(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32) -> Vec<u8> {
    build_bare(src, sport, dst, dport, seq, 0, flags::RST)
}

/// The answer to a connection-opening SYN that cannot be served: a RST+ACK from the
/// address and port the SYN was sent to back to its sender, as the kernel answers a SYN
/// to a closed port (RFC 9293 3.10.7.1): sequence 0, acknowledgment = the SYN's sequence
/// plus the sequence space it used (1 for the SYN, 1 for a FIN, plus its payload),
/// window 0, IP ID 0 with DF, both checksums computed in full.
///
/// `syn` is what [`parse`] returned for the received datagram. Returns None for anything
/// but a SYN without ACK and without RST, so a reset is never answered (no RST loops) and
/// at most one refusal is built per SYN.
pub fn build_refusal(syn: &TcpView) -> Option<Vec<u8>> {
    if !syn.is_initial_syn() {
        return None;
    }
    build_closed_port_reply(syn)
}

/// What a host answers a segment to a closed port with (RFC 9293 3.10.7.1): with ACK
/// set, a RST with sequence = the segment's acknowledgment; without, a RST+ACK with
/// sequence 0 and acknowledgment = the segment's sequence plus the space it used. From
/// the address and port the segment was sent to; None for a RST (never a RST to a RST).
pub fn build_closed_port_reply(seg: &TcpView) -> Option<Vec<u8>> {
    if seg.has(flags::RST) {
        return None;
    }
    let (seq, ack, bits) = if seg.has(flags::ACK) {
        (seg.ack, 0, flags::RST)
    } else {
        (
            0,
            seg.seq.wrapping_add(seg.seq_len()),
            flags::RST | flags::ACK,
        )
    };
    Some(build_bare(
        seg.dst, seg.dport, seg.src, seg.sport, seq, ack, bits,
    ))
}

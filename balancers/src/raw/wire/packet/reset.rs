//! The resets the balancer builds: a bare RST, the refusal of a SYN it cannot serve, and
//! a closed port's answer.

use std::net::Ipv4Addr;

use super::checksum::fill_checksums;
use super::{flags, ip_off, parse, tcp_off, write_u16, TcpView, IPV4_MIN_HEADER, TCP_MIN_HEADER};
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

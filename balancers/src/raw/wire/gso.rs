//! User-space TCP segmentation of GRO/GSO super-packets.
//!
//! With default veth offloads a sender's TSO (or GRO on the way) hands the balancer one
//! datagram of up to 64 KB carrying many segments, and its TCP checksum may be only the
//! pseudo-header part (CHECKSUM_PARTIAL). A raw socket cannot send more than the egress
//! MTU, so [`split`] cuts such a datagram into MTU-sized segments the way the kernel's
//! GSO does: the same headers (options included), consecutive sequence numbers and IP
//! ids, FIN/PSH only on the last segment, CWR only on the first, and both checksums
//! computed in full.

use crate::raw::wire::packet::{self, flags};

/// Cuts a valid datagram into segments of at most `mtu` bytes; None if it cannot (not a
/// valid TCP datagram, or headers too long for the MTU).
pub fn split(datagram: &[u8], mtu: usize) -> Option<Vec<Vec<u8>>> {
    let seg = packet::parse(datagram).ok()?;
    let headers = seg.ip_header_len + seg.tcp_header_len;
    if mtu <= headers {
        return None;
    }
    let mss = mtu - headers;
    let payload = &datagram[headers..seg.total_len];
    let ip_id = u16::from_be_bytes([datagram[4], datagram[5]]);
    let flags_at = seg.ip_header_len + 13;
    let original_flags = datagram[flags_at];
    let chunks: Vec<&[u8]> = payload.chunks(mss).collect();
    let count = chunks.len();
    let mut out = Vec::with_capacity(count);
    let mut offset: u32 = 0;
    for (k, chunk) in chunks.into_iter().enumerate() {
        let mut p = Vec::with_capacity(headers + chunk.len());
        p.extend_from_slice(&datagram[..headers]);
        p.extend_from_slice(chunk);
        let total = u16::try_from(p.len()).ok()?;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&ip_id.wrapping_add(k as u16).to_be_bytes());
        let seq_at = seg.ip_header_len + 4;
        p[seq_at..seq_at + 4].copy_from_slice(&seg.seq.wrapping_add(offset).to_be_bytes());
        let mut fl = original_flags;
        if k + 1 < count {
            fl &= !(flags::FIN | flags::PSH);
        }
        if k > 0 {
            fl &= !0x80; // CWR
        }
        p[flags_at] = fl;
        let part = packet::parse(&p).ok()?;
        packet::fill_checksums(&mut p, &part);
        offset = offset.wrapping_add(chunk.len() as u32);
        out.push(p);
    }
    Some(out)
}

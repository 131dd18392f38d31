//! The NAT rewrite: new addresses and ports in place, both checksums fixed.

use std::net::Ipv4Addr;

use super::checksum::{full_tcp_checksum, partial_checksum, ChecksumState, Incremental};
use super::{ip_off, read_u16, tcp_off, write_u16, TcpView};

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

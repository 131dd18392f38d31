//! The Internet checksum of IPv4 and TCP: full sums, verification, completion of a
//! partial one, and the RFC 1624 incremental update the rewrite uses.

use std::net::Ipv4Addr;

use super::{ip_off, parse, read_u16, tcp_off, write_u16, TcpView};

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
/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`, accumulated over several 16-bit words.
pub(super) struct Incremental {
    sum: u32,
}

impl Incremental {
    pub(super) fn new(check: u16) -> Self {
        Self {
            sum: u32::from(!check),
        }
    }

    pub(super) fn replace(&mut self, old: u16, new: u16) {
        self.sum += u32::from(!old) + u32::from(new);
    }

    pub(super) fn replace4(&mut self, old: [u8; 4], new: [u8; 4]) {
        self.replace(
            u16::from_be_bytes([old[0], old[1]]),
            u16::from_be_bytes([new[0], new[1]]),
        );
        self.replace(
            u16::from_be_bytes([old[2], old[3]]),
            u16::from_be_bytes([new[2], new[3]]),
        );
    }

    pub(super) fn finish(self) -> u16 {
        !fold(self.sum)
    }
}

/// Folds a 32-bit one's-complement accumulator to 16 bits.
pub(super) fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's-complement sum of `bytes` (odd length padded with a zero byte), unfolded.
pub(super) fn sum_bytes(bytes: &[u8]) -> u32 {
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

/// The Internet checksum (RFC 1071) of `bytes` whose checksum field is zero (an ICMP
/// message, a fresh IPv4 header).
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    !fold(sum_bytes(bytes))
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

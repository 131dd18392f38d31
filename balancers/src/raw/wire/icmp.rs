//! ICMP "fragmentation needed" (type 3, code 4), the signal of path-MTU discovery, read
//! and built as pure functions over bytes.
//!
//! Under full NAT the router that finds a segment too big tells the balancer (the
//! segment's source), about the flow as the balancer sent it. The kernel of the
//! balancer's host has no socket for that flow, so without the balancer the real sender
//! never learns and every full-size segment vanishes: a download through a PPPoE uplink
//! hangs. [`parse_frag_needed`] reads such an error (never panics, whatever the bytes);
//! [`build_frag_needed`] writes the same error about the flow as its real sender sent
//! it, quoting a fresh IPv4 header and the first 8 bytes of TCP (ports and sequence
//! number: what RFC 792 asks for and what a TCP needs to find its connection).

use std::net::{Ipv4Addr, SocketAddrV4};

use super::packet::{internet_checksum, DropReason, IPV4_MIN_HEADER};

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
const PROTO_TCP: u8 = 6;
/// ICMP header: type, code, checksum, unused, next-hop MTU.
const ICMP_HEADER: usize = 8;
/// The least a quote holds: an IPv4 header and 8 bytes of its payload.
const QUOTE_MIN: usize = IPV4_MIN_HEADER + 8;
/// The smallest MTU IPv4 allows (RFC 791); an error giving less is not believed.
pub const MIN_MTU: u16 = 68;

/// A "fragmentation needed" about one TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragNeeded {
    /// Who sent the error (the router whose next hop is too small).
    pub from: Ipv4Addr,
    /// The next hop's MTU.
    pub mtu: u16,
    /// Source of the quoted segment (as the balancer sent it).
    pub src: SocketAddrV4,
    /// Destination of the quoted segment.
    pub dst: SocketAddrV4,
    /// Sequence number of the quoted segment.
    pub seq: u32,
    /// Total length field of the quoted IPv4 header (the too-big datagram's size).
    pub quoted_len: u16,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Reads an IPv4 datagram carrying an ICMP "fragmentation needed" about a TCP segment,
/// or says why it is not one ([`DropReason::BadIcmp`], or the IPv4 reasons).
pub fn parse_frag_needed(buf: &[u8]) -> Result<FragNeeded, DropReason> {
    if buf.len() < IPV4_MIN_HEADER {
        return Err(DropReason::Truncated);
    }
    if buf[0] >> 4 != 4 {
        return Err(DropReason::BadVersion);
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HEADER || ihl > buf.len() {
        return Err(DropReason::BadHeaderLength);
    }
    if u16_at(buf, 6) & 0x3fff != 0 {
        return Err(DropReason::Fragment);
    }
    let total = usize::from(u16_at(buf, 2));
    if total < ihl || total > buf.len() {
        return Err(DropReason::BadTotalLength);
    }
    if buf[9] != PROTO_ICMP {
        return Err(DropReason::NotTcp);
    }
    let icmp = &buf[ihl..total];
    if icmp.len() < ICMP_HEADER + QUOTE_MIN || icmp[0] != 3 || icmp[1] != 4 {
        return Err(DropReason::BadIcmp);
    }
    if internet_checksum(icmp) != 0 {
        return Err(DropReason::BadIcmp);
    }
    let mtu = u16_at(icmp, 6);
    let quote = &icmp[ICMP_HEADER..];
    let inner_ihl = usize::from(quote[0] & 0x0f) * 4;
    if quote[0] >> 4 != 4
        || inner_ihl < IPV4_MIN_HEADER
        || quote.len() < inner_ihl + 8
        || quote[9] != PROTO_TCP
        || mtu < MIN_MTU
    {
        return Err(DropReason::BadIcmp);
    }
    let tcp = &quote[inner_ihl..];
    Ok(FragNeeded {
        from: addr_at(buf, 12),
        mtu,
        src: SocketAddrV4::new(addr_at(quote, 12), u16_at(tcp, 0)),
        dst: SocketAddrV4::new(addr_at(quote, 16), u16_at(tcp, 2)),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        quoted_len: u16_at(quote, 2),
    })
}

/// An IPv4 datagram from `from` to `to` carrying a "fragmentation needed" with next-hop
/// `mtu` about a TCP segment `src -> dst` with sequence number `seq` and IPv4 total
/// length `quoted_len`, with both checksums filled.
pub fn build_frag_needed(
    from: Ipv4Addr,
    to: Ipv4Addr,
    mtu: u16,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    quoted_len: u16,
) -> Vec<u8> {
    let total = IPV4_MIN_HEADER + ICMP_HEADER + QUOTE_MIN;
    let mut b = vec![0u8; total];
    ipv4_header(
        &mut b[..IPV4_MIN_HEADER],
        total as u16,
        PROTO_ICMP,
        from,
        to,
        0,
    );
    let icmp = &mut b[IPV4_MIN_HEADER..];
    icmp[0] = 3;
    icmp[1] = 4;
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    let quote = &mut icmp[ICMP_HEADER..];
    ipv4_header(
        &mut quote[..IPV4_MIN_HEADER],
        quoted_len,
        PROTO_TCP,
        *src.ip(),
        *dst.ip(),
        0x4000,
    );
    let tcp = &mut quote[IPV4_MIN_HEADER..];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    let sum = internet_checksum(&b[IPV4_MIN_HEADER..]);
    b[IPV4_MIN_HEADER + 2..IPV4_MIN_HEADER + 4].copy_from_slice(&sum.to_be_bytes());
    b
}

/// Writes a 20-byte IPv4 header (TTL 64, the given flags word) with its checksum.
fn ipv4_header(h: &mut [u8], total: u16, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, flags: u16) {
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&flags.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = internet_checksum(h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    /// A valid error about `10.0.0.2:20000 -> 10.0.0.9:5555`, next-hop MTU 1400.
    fn sample() -> Vec<u8> {
        build_frag_needed(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1400,
            a("10.0.0.2:20000"),
            a("10.0.0.9:5555"),
            1,
            1500,
        )
    }

    #[test]
    fn a_built_error_reads_back_and_its_checksums_verify() {
        let b = build_frag_needed(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 11),
            1492,
            a("192.168.1.11:9000"),
            a("192.168.1.2:20001"),
            0xdead_beef,
            1500,
        );
        assert_eq!(internet_checksum(&b[..20]), 0);
        assert_eq!(internet_checksum(&b[20..]), 0);
        assert_eq!(
            internet_checksum(&b[28..48]),
            0,
            "the quoted header's own checksum"
        );
        let f = parse_frag_needed(&b).unwrap();
        assert_eq!(
            f,
            FragNeeded {
                from: Ipv4Addr::new(192, 168, 1, 1),
                mtu: 1492,
                src: a("192.168.1.11:9000"),
                dst: a("192.168.1.2:20001"),
                seq: 0xdead_beef,
                quoted_len: 1500,
            }
        );
    }

    #[test]
    fn what_is_not_a_frag_needed_about_tcp_is_refused_with_a_reason() {
        let good = sample();
        let refit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            let sum_at = 22;
            b[sum_at..sum_at + 2].copy_from_slice(&[0, 0]);
            let sum = internet_checksum(&b[20..]);
            b[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
            parse_frag_needed(&b)
        };
        assert_eq!(
            refit(&|b| b[21] = 3),
            Err(DropReason::BadIcmp),
            "port unreachable"
        );
        assert_eq!(
            refit(&|b| b[37] = 17),
            Err(DropReason::BadIcmp),
            "quotes UDP"
        );
        assert_eq!(
            refit(&|b| b[26..28].copy_from_slice(&60u16.to_be_bytes())),
            Err(DropReason::BadIcmp),
            "an MTU below 68"
        );
        let mut wrong_sum = good.clone();
        wrong_sum[30] ^= 1;
        assert_eq!(parse_frag_needed(&wrong_sum), Err(DropReason::BadIcmp));
        let mut short = good.clone();
        short.truncate(50);
        short[2..4].copy_from_slice(&50u16.to_be_bytes());
        assert_eq!(parse_frag_needed(&short), Err(DropReason::BadIcmp));
        assert_eq!(parse_frag_needed(&good[..10]), Err(DropReason::Truncated));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let good = sample();
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(0..b.len());
                b[i] = rng.u8(..);
            }
            b.truncate(rng.usize(0..=b.len()));
            let _ = parse_frag_needed(&b);
        }
    }
}

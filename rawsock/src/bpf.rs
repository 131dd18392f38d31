//! Classic BPF programs that pass only TCP segments to given ports, so nothing else
//! reaches user space. Attached with socket2's `attach_filter`.

use std::ops::RangeInclusive;

use socket2::SockFilter;

/// The classic BPF program: accept a TCP segment whose destination port is `listen` or in
/// `nat`; everything else stays in the kernel. The IP header starts at byte `base` (0 on
/// raw IPv4 sockets, 14 after an Ethernet header).
pub fn port_filter(listen: u16, nat: &RangeInclusive<u16>, base: u32) -> Vec<SockFilter> {
    const LDX_B_MSH: u16 = 0xb1; // X = 4 * (pkt[k] & 0x0f): the IP header length
    const LD_H_IND: u16 = 0x48; // A = u16 at X + k
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const JGT_K: u16 = 0x25;
    const RET_K: u16 = 0x06;
    vec![
        SockFilter::new(LDX_B_MSH, 0, 0, base),
        SockFilter::new(LD_H_IND, 0, 0, base + 2),
        SockFilter::new(JEQ_K, 2, 0, u32::from(listen)),
        SockFilter::new(JGE_K, 0, 2, u32::from(*nat.start())),
        SockFilter::new(JGT_K, 1, 0, u32::from(*nat.end())),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

/// The AF_PACKET (`SOCK_RAW`) filter: incoming to this host (PACKET_HOST), on an Ethernet
/// or loopback device (a 14-byte link header), TCP, then [`port_filter`].
pub fn frame_filter(listen: u16, nat: &RangeInclusive<u16>) -> Vec<SockFilter> {
    const LD_W_ABS: u16 = 0x20;
    const LD_B_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const SKF_AD_OFF: u32 = 0xffff_f000;
    const SKF_AD_PKTTYPE: u32 = SKF_AD_OFF + 4;
    const SKF_AD_HATYPE: u32 = SKF_AD_OFF + 28;
    const ETH_HLEN: u32 = 14;
    let ports = port_filter(listen, nat, ETH_HLEN);
    // `to_drop(k)`: the jump from instruction k of the prefix to "drop", the last
    // instruction of `ports`.
    let prefix_len = 7u8;
    let to_drop = |k: u8| prefix_len - k - 1 + ports.len() as u8 - 1;
    let mut prog = vec![
        SockFilter::new(LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        SockFilter::new(JEQ_K, 0, to_drop(1), 0), // PACKET_HOST
        SockFilter::new(LD_W_ABS, 0, 0, SKF_AD_HATYPE),
        SockFilter::new(JEQ_K, 1, 0, u32::from(libc::ARPHRD_ETHER)),
        SockFilter::new(JEQ_K, 0, to_drop(4), u32::from(libc::ARPHRD_LOOPBACK)),
        SockFilter::new(LD_B_ABS, 0, 0, ETH_HLEN + 9),
        SockFilter::new(JEQ_K, 0, to_drop(6), 6), // TCP
    ];
    debug_assert_eq!(prog.len(), usize::from(prefix_len));
    prog.extend(ports);
    prog
}

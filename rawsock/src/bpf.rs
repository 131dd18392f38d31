//! Classic BPF programs that pass only TCP segments to given ports (and, on packet
//! sockets, the ICMP "fragmentation needed" errors the balancer relays), so nothing else
//! reaches user space. Attached with socket2's `attach_filter`.

use std::ops::RangeInclusive;

use socket2::SockFilter;

/// One classic BPF instruction: (code, jump if true, jump if false, k).
type Insn = (u16, u8, u8, u32);

const LD_H_ABS: u16 = 0x28; // A = u16 at k
const LDX_B_MSH: u16 = 0xb1; // X = 4 * (pkt[k] & 0x0f): the IP header length
const LD_H_IND: u16 = 0x48; // A = u16 at X + k
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JGT_K: u16 = 0x25;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const LD_W_ABS: u16 = 0x20; // A = u32 at k (or an ancillary value at SKF_AD_OFF + n)
const LD_B_ABS: u16 = 0x30; // A = u8 at k
const SKF_AD_OFF: u32 = 0xffff_f000;
const SKF_AD_PKTTYPE: u32 = SKF_AD_OFF + 4;
const SKF_AD_HATYPE: u32 = SKF_AD_OFF + 28;
const ETH_HLEN: u32 = 14;
/// ICMP type 3 (destination unreachable), code 4 (fragmentation needed), as one u16.
pub const ICMP_FRAG_NEEDED: u16 = 0x0304;

/// The classic BPF program: accept a TCP segment whose destination port is `listen` or in
/// `nat`, and every non-first IP fragment (it carries no ports, so the balancer counts
/// and drops it as a fragment instead of the filter reading payload bytes as ports);
/// everything else stays in the kernel. The IP header starts at byte `base` (0 on raw
/// IPv4 sockets, 14 after an Ethernet header).
pub fn port_filter(listen: u16, nat: &RangeInclusive<u16>, base: u32) -> Vec<SockFilter> {
    port_program(listen, nat, base)
        .into_iter()
        .map(|(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
        .collect()
}

fn port_program(listen: u16, nat: &RangeInclusive<u16>, base: u32) -> Vec<Insn> {
    vec![
        (LD_H_ABS, 0, 0, base + 6), // flags and fragment offset
        (JSET_K, 5, 0, 0x1fff),     // a non-first fragment: accept
        (LDX_B_MSH, 0, 0, base),
        (LD_H_IND, 0, 0, base + 2), // destination port
        (JEQ_K, 2, 0, u32::from(listen)),
        (JGE_K, 0, 2, u32::from(*nat.start())),
        (JGT_K, 1, 0, u32::from(*nat.end())),
        (RET_K, 0, 0, u32::MAX),
        (RET_K, 0, 0, 0),
    ]
}

/// The AF_PACKET (`SOCK_RAW`) filter: incoming to this host (PACKET_HOST), on an Ethernet
/// or loopback device (a 14-byte link header), then TCP through [`port_filter`], or an
/// ICMP "fragmentation needed" (type 3, code 4: the path-MTU signal a router sends about
/// a segment the balancer forwarded, which it relays to the segment's sender).
pub fn frame_filter(listen: u16, nat: &RangeInclusive<u16>) -> Vec<SockFilter> {
    frame_program(listen, nat)
        .into_iter()
        .map(|(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
        .collect()
}

fn frame_program(listen: u16, nat: &RangeInclusive<u16>) -> Vec<Insn> {
    let ports = port_program(listen, nat, ETH_HLEN);
    // `to_drop(k)`: the jump from instruction k of the prefix to "drop", the last
    // instruction of `ports`.
    let prefix_len = 13u8;
    let to_drop = |k: u8| prefix_len - k - 1 + ports.len() as u8 - 1;
    let mut prog: Vec<Insn> = vec![
        (LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        (JEQ_K, 0, to_drop(1), 0), // PACKET_HOST
        (LD_W_ABS, 0, 0, SKF_AD_HATYPE),
        (JEQ_K, 1, 0, u32::from(libc::ARPHRD_ETHER)),
        (JEQ_K, 0, to_drop(4), u32::from(libc::ARPHRD_LOOPBACK)),
        (LD_B_ABS, 0, 0, ETH_HLEN + 9), // protocol
        (JEQ_K, 6, 0, 6),               // TCP: on to the ports
        (JEQ_K, 0, to_drop(7), 1),      // ICMP, or drop
        (LDX_B_MSH, 0, 0, ETH_HLEN),
        (LD_H_IND, 0, 0, ETH_HLEN), // ICMP type and code
        (JEQ_K, 0, 1, u32::from(ICMP_FRAG_NEEDED)),
        (RET_K, 0, 0, u32::MAX),
        (RET_K, 0, 0, 0),
    ];
    debug_assert_eq!(prog.len(), usize::from(prefix_len));
    prog.extend(ports);
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the instructions the programs use over `pkt` (received by this host on an
    /// Ethernet device); returns the accepted length.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let half = |at: usize| {
            pkt.get(at..at + 2)
                .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
        };
        loop {
            let (code, jt, jf, k) = prog[pc];
            let jump = |cond: bool| pc + 1 + usize::from(if cond { jt } else { jf });
            pc = match code {
                LD_H_ABS => match half(k as usize) {
                    Some(v) => {
                        a = v;
                        pc + 1
                    }
                    None => return 0,
                },
                LDX_B_MSH => {
                    x = 4 * u32::from(pkt[k as usize] & 0x0f);
                    pc + 1
                }
                LD_H_IND => match half((x + k) as usize) {
                    Some(v) => {
                        a = v;
                        pc + 1
                    }
                    None => return 0,
                },
                LD_W_ABS if k == SKF_AD_PKTTYPE => {
                    a = 0; // PACKET_HOST
                    pc + 1
                }
                LD_W_ABS if k == SKF_AD_HATYPE => {
                    a = u32::from(libc::ARPHRD_ETHER);
                    pc + 1
                }
                LD_B_ABS => match pkt.get(k as usize) {
                    Some(&v) => {
                        a = u32::from(v);
                        pc + 1
                    }
                    None => return 0,
                },
                JEQ_K => jump(a == k),
                JGE_K => jump(a >= k),
                JGT_K => jump(a > k),
                JSET_K => jump(a & k != 0),
                RET_K => return k,
                other => panic!("opcode {other:#x} not interpreted"),
            };
        }
    }

    fn datagram(dport: u16, frag: u16) -> Vec<u8> {
        let mut d = vec![0u8; 40];
        d[0] = 0x45;
        d[6..8].copy_from_slice(&frag.to_be_bytes());
        d[9] = 6;
        d[22..24].copy_from_slice(&dport.to_be_bytes());
        d
    }

    #[test]
    fn passes_our_ports_and_every_non_first_fragment() {
        let prog = port_program(20000, &(30000..=30999), 0);
        assert_eq!(run(&prog, &datagram(20000, 0)), u32::MAX);
        assert_eq!(run(&prog, &datagram(30500, 0)), u32::MAX);
        assert_eq!(run(&prog, &datagram(22, 0)), 0);
        assert_eq!(run(&prog, &datagram(31000, 0)), 0);
        // A first fragment (MF set, offset 0) carries the ports: judged by them.
        assert_eq!(run(&prog, &datagram(22, 0x2000)), 0);
        // A non-first fragment's bytes at the port offset are payload: passed whatever
        // they say, so the balancer counts it.
        assert_eq!(run(&prog, &datagram(22, 0x0010)), u32::MAX);
        assert_eq!(run(&prog, &datagram(22, 0x2001)), u32::MAX);
        // Behind a 14-byte Ethernet header.
        let mut framed = vec![0u8; 14];
        framed.extend(datagram(20000, 0));
        assert_eq!(
            run(&port_program(20000, &(30000..=30999), 14), &framed),
            u32::MAX
        );
    }

    fn framed(datagram: Vec<u8>) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f.extend(datagram);
        f
    }

    fn icmp(kind: u8, code: u8) -> Vec<u8> {
        let mut d = vec![0u8; 56];
        d[0] = 0x45;
        d[9] = 1;
        d[20] = kind;
        d[21] = code;
        d
    }

    #[test]
    fn frames_pass_our_tcp_ports_and_frag_needed_only() {
        let prog = frame_program(20000, &(30000..=30999));
        assert_eq!(run(&prog, &framed(datagram(20000, 0))), u32::MAX);
        assert_eq!(run(&prog, &framed(datagram(30999, 0))), u32::MAX);
        assert_eq!(run(&prog, &framed(datagram(22, 0))), 0);
        assert_eq!(run(&prog, &framed(icmp(3, 4))), u32::MAX);
        // Other unreachables, echo requests, and UDP stay in the kernel.
        assert_eq!(run(&prog, &framed(icmp(3, 3))), 0);
        assert_eq!(run(&prog, &framed(icmp(8, 0))), 0);
        let mut udp = datagram(20000, 0);
        udp[9] = 17;
        assert_eq!(run(&prog, &framed(udp)), 0);
        // An ICMP header behind IP options is found through the header length.
        let mut long = icmp(0, 0);
        long[0] = 0x46;
        long[24] = 3;
        long[25] = 4;
        assert_eq!(run(&prog, &framed(long)), u32::MAX);
    }
}

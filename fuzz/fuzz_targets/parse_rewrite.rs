//! Fuzz the raw balancer's parse-and-rewrite entry point: any bytes, in either direction,
//! must be forwarded, relayed (an ICMP "fragmentation needed" about a row) or counted as a
//! drop, never panic. The same entry point runs in
//! `cargo test` with a seeded generator (`random_bytes_never_panic_...`). Seeds (blind,
//! exact and in-window resets, bad and partial checksums, invalid flags, unknown flows, a
//! SYN flood over the 4 NAT ports, an idle row): `cargo +nightly fuzz run parse_rewrite
//! fuzz/corpus/parse_rewrite fuzz/seeds/parse_rewrite`.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use l4lb_balancers::raw::nat::table::TableConfig;
use l4lb_balancers::raw::nat::{FixedRoundRobin, Nat, NatConfig, Outcome};
use l4lb_balancers::raw::wire::packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut nat = Nat::new(NatConfig {
        source_ip: Ipv4Addr::new(10, 0, 0, 1),
        listen_port: 20_000,
        table: TableConfig {
            max_rows: 4,
            half_open_timeout: Duration::from_secs(1),
            established_timeout: Duration::from_secs(2),
            fin_linger: Duration::from_millis(10),
            nat_ports: 21_000..=21_003,
        },
    });
    let mut sel = FixedRoundRobin::new(vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 11), 80)]);
    // The input may hold several datagrams, each after two bytes: flags, then length.
    // Flags bit 0: make both checksums right first (random bytes almost never carry
    // them, and without this the fuzzer would rarely get past the checksum check into the
    // NAT table); bits 1-2: the checksum state the device reports.
    let mut rest = data;
    let mut t = 0;
    while let [flags, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let mut buf = tail[..n].to_vec();
        rest = &tail[n..];
        t += 1;
        if flags & 1 == 1 {
            if let Ok(seg) = packet::parse(&buf) {
                packet::fill_checksums(&mut buf, &seg);
            }
        }
        let before: u64 = nat.counters().drops.iter().sum();
        let state = [
            packet::ChecksumState::Unknown,
            packet::ChecksumState::Final,
            packet::ChecksumState::Partial,
        ][usize::from((flags >> 1) & 3) % 3];
        match nat.process(&mut buf, Duration::from_millis(t * 300), &mut sel, state) {
            Outcome::Forward { len, .. } => {
                assert!(len <= buf.len());
                assert!(packet::parse(&buf[..len]).is_ok(), "forwarded bytes parse");
            }
            Outcome::Drop(_) => {
                assert_eq!(nat.counters().drops.iter().sum::<u64>(), before + 1);
            }
            Outcome::Relayed => {
                // An ICMP error about a row: relayed, never counted as a drop, and the
                // relayed datagram is a valid ICMP error itself.
                assert_eq!(nat.counters().drops.iter().sum::<u64>(), before);
                let pending = nat.take_pending();
                let (relayed, _) = pending.last().expect("a relayed error is pending");
                assert!(l4lb_balancers::raw::wire::icmp::parse_frag_needed(relayed).is_ok());
            }
        }
        nat.expire(Duration::from_millis(t * 300));
    }
});

//! The NAT core's tests. Here, refusals: a SYN that cannot be served gets one RST+ACK
//! back, nothing else does; hostile and stale traffic in [`hostile`].

mod hostile;
mod icmp;

use std::time::Duration;

use crate::raw::device::mem::pump_batch as run;
use crate::raw::fixture::{addr, client, test_nat, vip, Spec, LB};
use crate::raw::nat::reset_bucket::{REFUSALS_PER_SEC, REFUSAL_BURST};
use crate::raw::nat::FixedRoundRobin;
use crate::raw::wire::packet::{self, flags as f, DropReason};

/// Bytes in, bytes out: a SYN with options and a payload (as with TCP Fast Open) gets the
/// kernel's closed-port answer, checked against a reference datagram byte for byte.
#[test]
fn a_refusal_is_the_kernels_closed_port_answer() {
    let mut spec = Spec::new(client(), vip(), f::SYN);
    spec.seq = 0xffff_fffe; // the acknowledgment wraps
    spec.tcp_options = vec![2, 4, 0x05, 0xb4, 4, 2, 1, 1];
    spec.payload = b"hello".to_vec();
    let syn = spec.build();
    let seg = packet::parse(&syn).expect("valid syn");
    let out = packet::build_refusal(&seg).expect("a SYN is refused");
    #[rustfmt::skip]
    let mut expected: Vec<u8> = vec![
        // IPv4: IHL 5, total 40, ID 0, DF, TTL 64, TCP, checksum (filled below).
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0,
        10, 0, 0, 1, // from the address the SYN was sent to
        10, 0, 0, 101, // to the client
        // TCP: 20000 -> 40001, seq 0, ack 0xfffffffe + 1 + 5 = 4, RST|ACK, window 0.
        0x4e, 0x20, 0x9c, 0x41,
        0, 0, 0, 0,
        0, 0, 0, 4,
        0x50, 0x14, 0, 0,
        0, 0, 0, 0,
    ];
    // Both checksums from a full recomputation over the reference bytes.
    let ref_seg = packet::parse(&expected).expect("reference parses");
    packet::fill_checksums(&mut expected, &ref_seg);
    assert_eq!(out, expected, "refusal bytes");
    assert!(packet::checksums_valid(&out));
    let decoded = packet::parse(&out).expect("refusal parses");
    insta::assert_json_snapshot!("refusal_decoded", decoded);
}

#[test]
fn a_syn_fin_counts_the_fin_in_the_acknowledgment() {
    let mut spec = Spec::new(client(), vip(), f::SYN | f::FIN);
    spec.seq = 100;
    let seg = packet::parse(&spec.build()).expect("valid");
    let out = packet::build_refusal(&seg).expect("refused");
    assert_eq!(packet::parse(&out).expect("parses").ack, 102);
}

#[test]
fn only_a_bare_syn_is_ever_answered() {
    for flags in [
        f::RST,
        f::RST | f::ACK,
        f::SYN | f::RST,
        f::ACK,
        f::SYN | f::ACK,
        f::FIN | f::ACK,
        f::ACK | f::PSH,
        0,
    ] {
        let seg = packet::parse(&Spec::new(client(), vip(), flags).build()).expect("valid");
        assert_eq!(packet::build_refusal(&seg), None, "flags {flags:#04x}");
    }
}

/// The core on the in-memory device with every backend down: the SYN is dropped and
/// counted, and exactly one RST+ACK with the right numbers goes back to the client.
#[test]
fn all_backends_down_a_syn_gets_one_rst_ack_and_is_counted() {
    let mut nat = test_nat(16);
    let mut down = FixedRoundRobin::new(vec![]);
    let mut spec = Spec::new(client(), vip(), f::SYN);
    spec.seq = 123_456;
    let sent = run(&mut nat, &mut down, vec![spec.build()], Duration::ZERO);
    assert_eq!(sent.len(), 1, "one answer: {sent:?}");
    let (bytes, dst) = &sent[0];
    assert_eq!(*dst, *client().ip());
    assert!(packet::checksums_valid(bytes));
    let rst = packet::parse(bytes).expect("parses");
    assert_eq!((rst.src, rst.sport), (*vip().ip(), vip().port()));
    assert_eq!((rst.dst, rst.dport), (*client().ip(), client().port()));
    assert_eq!(rst.flags, f::RST | f::ACK);
    assert_eq!((rst.seq, rst.ack), (0, 123_457));
    assert_eq!(nat.counters().drops_of(DropReason::NoBackend), 1);
    assert_eq!(nat.counters().refusals_sent, 1);
    assert_eq!(nat.table().len(), 0);
}

/// A reset, a bare ACK, a SYN+ACK, data, and a SYN for another port get nothing back.
/// With every backend down, a SYN is refused; segments of flows with no row get what a
/// closed port answers (a RST from their acknowledgment); a RST, a SYN+RST and segments
/// to other ports get nothing.
#[test]
fn all_backends_down_only_closed_port_answers_are_sent() {
    let mut nat = test_nat(16);
    let mut down = FixedRoundRobin::new(vec![]);
    let silent = vec![
        Spec::new(client(), vip(), f::RST).build(),
        Spec::new(client(), vip(), f::RST | f::ACK).build(),
        Spec::new(client(), vip(), f::SYN | f::RST).build(),
        Spec::new(client(), addr(LB, 22), f::SYN).build(),
        Spec::new(client(), addr(LB, 21_000), f::SYN).build(),
    ];
    let n = silent.len() as u64;
    let sent = run(&mut nat, &mut down, silent, Duration::ZERO);
    assert!(sent.is_empty(), "nothing answered: {sent:?}");
    let dropped: u64 = nat.counters().drops.iter().sum();
    assert_eq!(dropped, n, "every one still counted as a drop");
    let mut ack = Spec::new(client(), vip(), f::ACK);
    ack.ack = 777;
    let mut syn_ack = Spec::new(client(), vip(), f::SYN | f::ACK);
    syn_ack.ack = 888;
    let sent = run(
        &mut nat,
        &mut down,
        vec![ack.build(), syn_ack.build()],
        Duration::ZERO,
    );
    let answers: Vec<(u8, u32)> = sent
        .iter()
        .map(|(b, _)| packet::parse(b).expect("parses"))
        .map(|r| (r.flags, r.seq))
        .collect();
    assert_eq!(answers, vec![(f::RST, 777), (f::RST, 888)]);
    assert_eq!(nat.counters().refusals_sent, 0);
    assert_eq!(nat.counters().resets_sent, 2);
    assert_eq!(nat.counters().drops_of(DropReason::UnknownClient), 4);
}

/// A table full of established rows refuses a new client the same way.
#[test]
fn a_full_table_refuses_a_new_client() {
    let mut nat = test_nat(1);
    let b = addr([10, 0, 0, 11], 7000);
    let mut sel = FixedRoundRobin::new(vec![b]);
    let zero = Duration::ZERO;
    run(
        &mut nat,
        &mut sel,
        vec![Spec::new(client(), vip(), f::SYN).build()],
        zero,
    );
    run(
        &mut nat,
        &mut sel,
        vec![Spec::new(b, addr(LB, 21_000), f::SYN | f::ACK).build()],
        zero,
    );
    run(
        &mut nat,
        &mut sel,
        vec![Spec::new(client(), vip(), f::ACK).build()],
        zero,
    );
    let other = addr([10, 0, 0, 102], 40_002);
    let sent = run(
        &mut nat,
        &mut sel,
        vec![Spec::new(other, vip(), f::SYN).build()],
        zero,
    );
    assert_eq!(nat.counters().drops_of(DropReason::TableFull), 1);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let rst = packet::parse(&sent[0].0).expect("parses");
    assert_eq!(
        (rst.dst, rst.dport, rst.flags),
        (*other.ip(), 40_002, f::RST | f::ACK)
    );
}

/// A SYN flood while everything is down: refusals stop at the bucket, the rest is counted.
#[test]
fn refusals_are_rate_limited_and_the_excess_counted() {
    let mut nat = test_nat(16);
    let mut down = FixedRoundRobin::new(vec![]);
    let flood = REFUSAL_BURST as usize + 100;
    let inputs: Vec<Vec<u8>> = (0..flood)
        .map(|i| {
            Spec::new(
                addr([10, 0, 1, (i % 250) as u8], 1024 + i as u16),
                vip(),
                f::SYN,
            )
            .build()
        })
        .collect();
    let now = Duration::from_secs(1);
    let sent = run(&mut nat, &mut down, inputs, now);
    assert_eq!(sent.len(), REFUSAL_BURST as usize);
    assert_eq!(nat.counters().refusals_sent, u64::from(REFUSAL_BURST));
    assert_eq!(nat.counters().refusals_limited, 100);
    assert_eq!(nat.counters().drops_of(DropReason::NoBackend), flood as u64);
    // A tenth of a second later the bucket has refilled by a tenth of the rate.
    let later = now + Duration::from_millis(100);
    let inputs: Vec<Vec<u8>> = (0..REFUSAL_BURST)
        .map(|i| {
            Spec::new(
                addr([10, 0, 2, (i % 250) as u8], 2048 + i as u16),
                vip(),
                f::SYN,
            )
            .build()
        })
        .collect();
    let sent = run(&mut nat, &mut down, inputs, later);
    assert_eq!(sent.len(), (REFUSALS_PER_SEC / 10) as usize);
}

/// Every drop reason is named in the core's module doc, where operators look them up.
#[test]
fn every_drop_reason_is_listed_in_the_module_doc() {
    let doc: String = include_str!("mod.rs")
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect();
    for reason in DropReason::ALL {
        assert!(
            doc.contains(&format!("`{}`", reason.name())),
            "{} missing from nat/mod.rs's doc",
            reason.name()
        );
    }
}

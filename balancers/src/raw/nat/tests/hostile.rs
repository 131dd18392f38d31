//! Hostile and stale traffic through the core (issue #14), bytes in and bytes out on the
//! in-memory device: blind resets, bad checksums, invalid flags, SYN floods, idle
//! eviction.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::raw::device::mem::pump_batch as run;
use crate::raw::fixture::{addr, backend, client, nat_side, test_nat, vip, Spec};
use crate::raw::nat::{FixedRoundRobin, Nat, Outcome};
use crate::raw::wire::packet::{self, flags as f, ChecksumState, DropReason};

pub(super) const CLIENT_ISN: u32 = 1_000;
pub(super) const BACKEND_ISN: u32 = 900_000;

fn seg(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, seq: u32, ack: u32) -> Spec {
    let mut s = Spec::new(src, dst, flags);
    s.seq = seq;
    s.ack = ack;
    s
}

/// A handshake and one line each way: the client's next sequence number is
/// `CLIENT_ISN + 1 + 5`, the backend's `BACKEND_ISN + 1 + 5`.
pub(super) fn established() -> (Nat, FixedRoundRobin) {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let (c, b) = (CLIENT_ISN + 1, BACKEND_ISN + 1);
    let mut line = seg(client(), vip(), f::ACK | f::PSH, c, b);
    line.payload = b"hello".to_vec();
    let mut echo = seg(backend(), nat_side(), f::ACK | f::PSH, b, c + 5);
    echo.payload = b"hello".to_vec();
    let steps = [
        seg(client(), vip(), f::SYN, CLIENT_ISN, 0),
        seg(backend(), nat_side(), f::SYN | f::ACK, BACKEND_ISN, c),
        seg(client(), vip(), f::ACK, c, b),
        line,
        echo,
        seg(client(), vip(), f::ACK, c + 5, b + 5),
    ];
    for (i, s) in steps.iter().enumerate() {
        let sent = run(&mut nat, &mut sel, vec![s.build()], Duration::ZERO);
        assert_eq!(sent.len(), 1, "step {i} forwarded");
    }
    (nat, sel)
}

#[test]
fn blind_resets_are_dropped_and_counted_and_the_row_kept() {
    let (mut nat, mut sel) = established();
    let next_c = CLIENT_ISN + 6;
    let far = seg(client(), vip(), f::RST, next_c.wrapping_add(1 << 31), 0).build();
    let mut bad_sum = seg(client(), vip(), f::RST, next_c, 0).build();
    bad_sum[37] ^= 0x01;
    let from_backend = seg(backend(), nat_side(), f::RST, 0x1234_5678, 0).build();
    let sent = run(
        &mut nat,
        &mut sel,
        vec![far, bad_sum, from_backend],
        Duration::ZERO,
    );
    assert!(sent.is_empty(), "nothing forwarded: {sent:?}");
    assert_eq!(nat.counters().drops_of(DropReason::RstOutOfWindow), 2);
    assert_eq!(nat.counters().drops_of(DropReason::BadChecksum), 1);
    assert_eq!(nat.table().len(), 1, "the row lives");
}

#[test]
fn an_in_window_reset_that_is_not_exact_is_forwarded_and_keeps_the_row() {
    let (mut nat, mut sel) = established();
    let rst = seg(client(), vip(), f::RST, CLIENT_ISN + 6 + 1000, 0).build();
    let sent = run(&mut nat, &mut sel, vec![rst], Duration::ZERO);
    assert_eq!(
        sent.len(),
        1,
        "forwarded for the backend to judge (RFC 5961)"
    );
    assert_eq!(nat.table().len(), 1);
}

#[test]
fn an_exact_reset_is_forwarded_byte_for_byte_and_frees_the_row() {
    let (mut nat, mut sel) = established();
    let rst = seg(
        backend(),
        nat_side(),
        f::RST | f::ACK,
        BACKEND_ISN + 6,
        CLIENT_ISN + 6,
    );
    let sent = run(&mut nat, &mut sel, vec![rst.build()], Duration::ZERO);
    let mut expected = rst.clone();
    expected.src = vip();
    expected.dst = client();
    assert_eq!(sent, vec![(expected.build(), *client().ip())]);
    assert_eq!(nat.table().len(), 0);
    assert_eq!(nat.counters().rows_freed.get("rst"), Some(&1));
}

#[test]
fn a_partial_checksum_cannot_be_verified_and_is_trusted() {
    let (mut nat, mut sel) = established();
    let mut rst = seg(client(), vip(), f::RST, CLIENT_ISN + 6, 0).build();
    // What a local sender with checksum offload leaves: the pseudo-header part only.
    let partial = packet::partial_checksum(*client().ip(), *vip().ip(), 20);
    rst[36..38].copy_from_slice(&partial.to_be_bytes());
    let out = nat.process(&mut rst, Duration::ZERO, &mut sel, ChecksumState::Partial);
    assert!(matches!(out, Outcome::Forward { .. }), "{out:?}");
    assert_eq!(nat.table().len(), 0);
}

#[test]
fn invalid_flag_combinations_open_no_row() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let inputs = [
        f::SYN | f::FIN,
        f::SYN | f::RST,
        0,
        f::FIN,
        f::FIN | f::PSH | 0x20,
    ]
    .iter()
    .map(|&bits| seg(client(), vip(), bits, 7, 0).build())
    .collect();
    let sent = run(&mut nat, &mut sel, inputs, Duration::ZERO);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(nat.counters().drops_of(DropReason::InvalidFlags), 5);
    assert_eq!(nat.counters().rows_created, 0);
    for bits in [
        f::SYN,
        f::SYN | f::ACK,
        f::ACK | f::PSH,
        f::FIN | f::ACK,
        f::RST,
        f::RST | f::ACK,
    ] {
        assert!(f::valid(bits), "{bits:#04x}");
    }
}

#[test]
fn a_backend_refusing_the_syn_frees_the_row_and_a_blind_refusal_does_not() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    run(
        &mut nat,
        &mut sel,
        vec![seg(client(), vip(), f::SYN, CLIENT_ISN, 0).build()],
        Duration::ZERO,
    );
    let blind = seg(backend(), nat_side(), f::RST | f::ACK, 0, 4242).build();
    assert!(run(&mut nat, &mut sel, vec![blind], Duration::ZERO).is_empty());
    assert_eq!(nat.table().len(), 1);
    let refusal = seg(backend(), nat_side(), f::RST | f::ACK, 0, CLIENT_ISN + 1).build();
    assert_eq!(
        run(&mut nat, &mut sel, vec![refusal], Duration::ZERO).len(),
        1
    );
    assert_eq!(nat.table().len(), 0);
}

/// Idle eviction tells both ends, each with the sequence number it expects next.
#[test]
fn an_idle_evicted_row_resets_both_ends() {
    let (mut nat, mut sel) = established();
    nat.expire(Duration::from_secs(301));
    assert_eq!(nat.table().len(), 0);
    let sent = nat.take_pending();
    let to_client = seg(vip(), client(), f::RST, BACKEND_ISN + 6, 0);
    let to_backend = seg(nat_side(), backend(), f::RST, CLIENT_ISN + 6, 0);
    let fields = |s: &Spec| {
        let mut b = s.build();
        // The balancer's resets are bare (window 0, IP ID 0), like the kernel's.
        b[4..6].copy_from_slice(&[0, 0]);
        b[34..36].copy_from_slice(&[0, 0]);
        let v = packet::parse(&b).expect("parses");
        packet::fill_checksums(&mut b, &v);
        b
    };
    assert_eq!(
        sent,
        vec![
            (fields(&to_client), *client().ip()),
            (fields(&to_backend), *backend().ip()),
        ]
    );
    // The client's next segment finds no row: it gets the closed-port answer.
    let late = seg(
        client(),
        vip(),
        f::ACK | f::PSH,
        CLIENT_ISN + 6,
        BACKEND_ISN + 6,
    )
    .build();
    let sent = run(&mut nat, &mut sel, vec![late], Duration::from_secs(302));
    let answer = packet::parse(&sent[0].0).expect("parses");
    assert_eq!((answer.flags, answer.seq), (f::RST, BACKEND_ISN + 6));
    assert_eq!(nat.counters().resets_sent, 3);
}

/// Unknown-flow answers share the reset bucket: a flood of stray ACKs gets at most the
/// burst back, and a RST gets nothing.
#[test]
fn answers_to_unknown_flows_are_rate_limited_and_never_to_a_reset() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let burst = crate::raw::nat::reset_bucket::REFUSAL_BURST as usize;
    let inputs = (0..burst + 50)
        .map(|i| {
            seg(
                addr([10, 0, 3, (i % 250) as u8], 1024 + i as u16),
                vip(),
                f::ACK,
                1,
                2,
            )
            .build()
        })
        .chain(std::iter::once(seg(client(), vip(), f::RST, 1, 0).build()))
        .collect();
    let sent = run(&mut nat, &mut sel, inputs, Duration::from_secs(1));
    assert_eq!(sent.len(), burst);
    assert_eq!(nat.counters().resets_limited, 50);
}

/// 20,000 spoofed SYNs fill the single backend's 1000 NAT ports many times over; a real
/// client's SYN still gets a row and is forwarded, at every moment of the flood.
#[test]
fn a_syn_flood_cannot_keep_a_real_client_out() {
    let mut nat = test_nat(65_536);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let mut rng = fastrand::Rng::with_seed(4);
    for round in 0..20u16 {
        let now = Duration::from_millis(u64::from(round) * 400);
        let flood = (0..1000)
            .map(|_| {
                let src = addr([10, 0, 0, rng.u8(200..=250)], rng.u16(1024..));
                seg(src, vip(), f::SYN, rng.u32(..), 0).build()
            })
            .collect();
        run(&mut nat, &mut sel, flood, now);
        let real = addr([10, 0, 0, 101], 50_000 + round);
        let sent = run(
            &mut nat,
            &mut sel,
            vec![seg(real, vip(), f::SYN, 5, 0).build()],
            now,
        );
        let out: Vec<_> = sent
            .iter()
            .map(|(b, dst)| (packet::parse(b).expect("parses"), *dst))
            .collect();
        let syn = out.iter().find(|(s, _)| s.flags == f::SYN);
        let (syn, dst) = syn.unwrap_or_else(|| panic!("round {round}: not forwarded"));
        assert_eq!((*dst, syn.seq), (*backend().ip(), 5));
        // The row it replaced is reset on the backend, from its NAT port, before the SYN
        // reaches it.
        assert_eq!(out.first().map(|(s, _)| s.flags), Some(f::RST));
        let (rst, _) = out
            .iter()
            .find(|(s, _)| s.flags == f::RST)
            .expect("a reset");
        assert_eq!(
            (rst.src, rst.sport, rst.dport),
            (*nat_side().ip(), syn.sport, 7_000)
        );
    }
    assert_eq!(nat.counters().drops_of(DropReason::PortsExhausted), 0);
}

/// A flood's row events are logged up to the budget, the rest counted for one summary.
#[test]
fn row_events_beyond_the_budget_are_held_for_a_summary() {
    let mut nat = test_nat(65_536);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let flood = (0..3000u32)
        .map(|i| {
            let src = addr([10, 0, 4, (i % 250) as u8], 1024 + i as u16);
            seg(src, vip(), f::SYN, i, 0).build()
        })
        .collect();
    run(&mut nat, &mut sel, flood, Duration::from_secs(1));
    // 3000 rows created and 2000 given way, at one instant: the burst is logged.
    let events = 3000 + 2000;
    let burst = u64::from(crate::raw::nat::ROW_EVENT_BURST);
    assert_eq!(nat.row_events_held, events - burst);
    nat.expire(Duration::from_secs(1));
    assert_eq!(nat.row_events_held, 0, "summarised");
    assert_eq!(nat.counters().rows_freed.get("evicted"), Some(&2000));
}

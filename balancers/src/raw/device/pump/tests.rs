//! Packet fixtures: bytes in, bytes out, through the NAT core on an in-memory device.

use std::time::Duration;

use crate::raw::device::mem::MemDevice;
use crate::raw::device::pump::Pump;
use crate::raw::fixture::{addr, backend, client, test_nat, vip, Spec, LB, NAT_PORT};
use crate::raw::nat::{FixedRoundRobin, Nat};
use crate::raw::wire::packet::{self, flags as f, DropReason, TcpView};

/// Runs `input` through a fresh pump; returns what came out.
fn through(nat: &mut Nat, sel: &mut FixedRoundRobin, input: Vec<u8>) -> Option<Vec<u8>> {
    let mut dev = MemDevice::default();
    dev.inbox.push_back(input);
    let mut pump = Pump::new(8, 1500);
    pump.once(&mut dev, nat, sel, Duration::ZERO)
        .expect("mem device");
    dev.sent.pop().map(|(bytes, _)| bytes)
}

fn tcp_options() -> Vec<u8> {
    // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    vec![
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ]
}

fn ip_options() -> Vec<u8> {
    // Router alert (4 bytes) and a NOP-padded record-route stub.
    vec![0x94, 4, 0, 0, 1, 1, 1, 0]
}

/// One exchange of a connection, both directions, each checked byte for byte against a
/// packet built from scratch with the expected addresses (full checksum recomputation).
#[test]
fn full_exchange_bytes_in_bytes_out() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let nat_side = addr(LB, NAT_PORT);
    // (name, from client, flags, TCP options, IP options, payload)
    type Step = (&'static str, bool, u8, Vec<u8>, Vec<u8>, Vec<u8>);
    let steps: Vec<Step> = vec![
        ("syn", true, f::SYN, tcp_options(), vec![], vec![]),
        (
            "syn-ack",
            false,
            f::SYN | f::ACK,
            tcp_options(),
            vec![],
            vec![],
        ),
        ("ack", true, f::ACK, vec![], vec![], vec![]),
        (
            "data odd",
            true,
            f::ACK | f::PSH,
            vec![],
            vec![],
            b"[test1] hi\n".to_vec(),
        ),
        (
            "data ip options",
            false,
            f::ACK | f::PSH,
            vec![],
            ip_options(),
            b"odd".to_vec(),
        ),
        (
            "data both options",
            true,
            f::ACK,
            tcp_options(),
            ip_options(),
            vec![7u8; 1001],
        ),
        ("fin client", true, f::FIN | f::ACK, vec![], vec![], vec![]),
        (
            "fin backend",
            false,
            f::FIN | f::ACK,
            vec![],
            vec![],
            vec![],
        ),
        ("last ack", true, f::ACK, vec![], vec![], vec![]),
    ];
    let mut decoded: Vec<(String, TcpView)> = Vec::new();
    for (name, from_client, flags, topts, iopts, payload) in steps {
        let (src, dst, out_src, out_dst) = if from_client {
            (client(), vip(), nat_side, backend())
        } else {
            (backend(), nat_side, vip(), client())
        };
        let mut spec = Spec::new(src, dst, flags);
        spec.seq = 77_777 + payload.len() as u32;
        // A backend's SYN-ACK acknowledges the client's SYN (seq 77_777); the rest 4242.
        spec.ack = if flags == f::SYN | f::ACK {
            77_778
        } else {
            4242
        };
        spec.tcp_options = topts;
        spec.ip_options = iopts;
        spec.payload = payload;
        let input = spec.build();
        assert!(packet::checksums_valid(&input), "{name}: fixture checksums");
        let out = through(&mut nat, &mut sel, input).unwrap_or_else(|| panic!("{name}: dropped"));
        let mut expected = spec.clone();
        expected.src = out_src;
        expected.dst = out_dst;
        assert_eq!(
            out,
            expected.build(),
            "{name}: bytes differ from a full rebuild"
        );
        assert!(packet::checksums_valid(&out), "{name}: checksums");
        decoded.push((name.to_string(), packet::parse(&out).expect("parse out")));
    }
    insta::assert_json_snapshot!("full_exchange_decoded", decoded);
    // FIN both ways: the row lingers, then goes.
    assert_eq!(nat.table().len(), 1);
    nat.expire(Duration::from_secs(3));
    assert_eq!(nat.table().len(), 0);
}

#[test]
fn rst_from_either_side_is_forwarded_and_frees_the_row() {
    for rst_from_client in [true, false] {
        let mut nat = test_nat(16);
        let mut sel = FixedRoundRobin::new(vec![backend()]);
        let syn = Spec::new(client(), vip(), f::SYN).build();
        through(&mut nat, &mut sel, syn).expect("syn forwarded");
        let (src, dst) = if rst_from_client {
            (client(), vip())
        } else {
            (backend(), addr(LB, NAT_PORT))
        };
        // Exactly where the receiver expects it: the client's next sequence number (its
        // SYN was 1000), or, from a backend that never answered, acknowledging the SYN.
        let mut rst = Spec::new(src, dst, f::RST | f::ACK);
        rst.seq = 1001;
        rst.ack = 1001;
        let rst = rst.build();
        let out = through(&mut nat, &mut sel, rst).expect("rst forwarded");
        assert!(packet::checksums_valid(&out));
        let seg = packet::parse(&out).expect("parse");
        assert!(seg.has(f::RST));
        assert_eq!(nat.table().len(), 0, "rst from client: {rst_from_client}");
    }
}

#[test]
fn incremental_checksum_matches_full_recomputation_on_many_addresses() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let r = next();
        let a = |x: u64| [(x >> 24) as u8, (x >> 16) as u8, (x >> 8) as u8, x as u8];
        let mut spec = Spec::new(
            addr(a(r), (r >> 32) as u16),
            addr(a(r >> 8), (r >> 48) as u16),
            (r >> 40) as u8 & 0x1f,
        );
        spec.payload = vec![(r >> 3) as u8; (r % 97) as usize];
        let mut bytes = spec.build();
        let seg = packet::parse(&bytes).expect("valid");
        let r2 = next();
        let to = packet::Rewrite {
            src: a(r2).into(),
            sport: (r2 >> 32) as u16,
            dst: a(r2 >> 16).into(),
            dport: (r2 >> 48) as u16,
        };
        packet::rewrite(&mut bytes, &seg, &to, packet::ChecksumState::Unknown);
        assert!(packet::checksums_valid(&bytes), "after rewrite to {to:?}");
    }
}

#[test]
fn malformed_inputs_are_counted_with_their_reason() {
    let good = Spec::new(client(), vip(), f::SYN).build();
    let mut cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![], DropReason::Truncated),
        (good[..19].to_vec(), DropReason::Truncated),
    ];
    let mut v6 = good.clone();
    v6[0] = 0x65;
    cases.push((v6, DropReason::BadVersion));
    let mut ihl4 = good.clone();
    ihl4[0] = 0x44;
    cases.push((ihl4, DropReason::BadHeaderLength));
    let mut ihl15 = good[..40].to_vec();
    ihl15[0] = 0x4f;
    cases.push((ihl15, DropReason::BadHeaderLength));
    let mut long = good.clone();
    long[2..4].copy_from_slice(&1000u16.to_be_bytes());
    cases.push((long, DropReason::BadTotalLength));
    let mut short = good.clone();
    short[2..4].copy_from_slice(&10u16.to_be_bytes());
    cases.push((short, DropReason::BadTotalLength));
    let mut mf = good.clone();
    mf[6] = 0x20;
    cases.push((mf, DropReason::Fragment));
    let mut offset = good.clone();
    offset[7] = 0x01;
    cases.push((offset, DropReason::Fragment));
    // A non-first fragment: its bytes at the port offset are payload (here, port 80 and
    // a data offset of 0), and one whose total length says more than was received: both
    // are fragments, whatever else their bytes say.
    let mut later = Spec::new(client(), addr(LB, 80), f::ACK).build();
    later[6..8].copy_from_slice(&185u16.to_be_bytes());
    later[32] = 0;
    cases.push((later.clone(), DropReason::Fragment));
    let mut cut = later;
    cut[2..4].copy_from_slice(&1500u16.to_be_bytes());
    cases.push((cut, DropReason::Fragment));
    let mut udp = good.clone();
    udp[9] = 17;
    cases.push((udp, DropReason::NotTcp));
    let mut doff = good.clone();
    doff[32] = 0x40;
    cases.push((doff, DropReason::BadTcpHeader));
    let mut doff_big = good.clone();
    doff_big[32] = 0xf0;
    cases.push((doff_big, DropReason::BadTcpHeader));
    let mut cut_tcp = good[..30].to_vec();
    cut_tcp[2..4].copy_from_slice(&30u16.to_be_bytes());
    cases.push((cut_tcp, DropReason::BadTcpHeader));
    cases.push((
        Spec::new(client(), addr(LB, 80), f::SYN).build(),
        DropReason::NotForUs,
    ));
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    for (i, (bytes, reason)) in cases.iter().enumerate() {
        let before = nat.counters().drops_of(*reason);
        assert_eq!(through(&mut nat, &mut sel, bytes.clone()), None, "case {i}");
        assert_eq!(
            nat.counters().drops_of(*reason),
            before + 1,
            "case {i}: {reason:?}"
        );
    }
    // A segment of an unknown flow is dropped, counted, and answered as a closed port.
    for (spec, reason) in [
        (
            Spec::new(client(), vip(), f::ACK),
            DropReason::UnknownClient,
        ),
        (
            Spec::new(backend(), addr(LB, NAT_PORT + 5), f::ACK),
            DropReason::UnknownNatPort,
        ),
    ] {
        let before = nat.counters().drops_of(reason);
        let answer = through(&mut nat, &mut sel, spec.build()).expect("a reset");
        let answer = packet::parse(&answer).expect("parses");
        assert_eq!(
            (answer.src, answer.sport, answer.dst, answer.dport),
            (
                *spec.dst.ip(),
                spec.dst.port(),
                *spec.src.ip(),
                spec.src.port()
            )
        );
        assert_eq!((answer.flags, answer.seq), (f::RST, spec.ack));
        assert_eq!(nat.counters().drops_of(reason), before + 1, "{reason:?}");
    }
    let mut none = FixedRoundRobin::new(vec![]);
    let syn = Spec::new(client(), vip(), f::SYN).build();
    // Not forwarded: dropped and counted, and refused with a RST+ACK to the client.
    let answer = through(&mut nat, &mut none, syn).expect("a refusal");
    let answer = packet::parse(&answer).expect("parses");
    assert_eq!(
        (answer.dst, answer.flags),
        (*client().ip(), f::RST | f::ACK)
    );
    assert_eq!(nat.counters().drops_of(DropReason::NoBackend), 1);
}

#[test]
fn frames_the_device_lost_are_counted_once_and_a_failed_count_is_not_fatal() {
    let mut pump = Pump::new(8, 1500);
    let mut dev = MemDevice {
        lost: 7,
        ..MemDevice::default()
    };
    pump.count_receive_drops(&mut dev);
    pump.count_receive_drops(&mut dev);
    dev.lost = 5;
    pump.count_receive_drops(&mut dev);
    assert_eq!(pump.counters().drops_of(DropReason::ReceiveQueueFull), 12);
    dev.fail_drop_count = Some(libc::EBADF);
    dev.lost = 100;
    pump.count_receive_drops(&mut dev);
    pump.count_receive_drops(&mut dev);
    assert_eq!(
        pump.counters().drops_of(DropReason::ReceiveQueueFull),
        12,
        "a device that cannot tell adds nothing"
    );
}

#[test]
fn failed_sends_are_counted_not_fatal() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let mut dev = MemDevice {
        fail_sends: Some(libc::EPERM),
        ..MemDevice::default()
    };
    dev.inbox
        .push_back(Spec::new(client(), vip(), f::SYN).build());
    dev.inbox
        .push_back(Spec::new(client(), vip(), f::RST).build());
    let mut pump = Pump::new(8, 1500);
    let n = pump
        .once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .expect("a failed send is not an error");
    assert_eq!(n, 2);
    assert_eq!(pump.counters().drops_of(DropReason::SendFailed), 2);
    assert_eq!(
        nat.counters().drops_of(DropReason::SendFailed),
        0,
        "the NAT counts only its own decisions"
    );
}

#[test]
fn super_packets_are_segmented_to_the_mtu_with_full_checksums() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    through(
        &mut nat,
        &mut sel,
        Spec::new(client(), vip(), f::SYN).build(),
    )
    .expect("syn");
    let mut big = Spec::new(client(), vip(), f::ACK | f::PSH | f::FIN);
    big.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3];
    big.payload = (0..10_001u32).map(|i| (i % 251) as u8).collect();
    big.seq = 5;
    let mut bytes = big.build();
    // A GSO super-packet carries only the pseudo-header part of the checksum.
    let partial = packet::partial_checksum(*client().ip(), *vip().ip(), bytes.len() - 20);
    bytes[36..38].copy_from_slice(&partial.to_be_bytes());
    let mut dev = MemDevice::default();
    dev.inbox.push_back(bytes);
    let mut pump = Pump::new(8, 1500);
    pump.once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .expect("pump");
    let mss = 1500 - 20 - 32;
    assert_eq!(dev.sent.len(), 10_001usize.div_ceil(mss));
    let mut payload = Vec::new();
    for (i, (p, dst)) in dev.sent.iter().enumerate() {
        assert_eq!(*dst, *backend().ip());
        assert!(p.len() <= 1500);
        assert!(packet::checksums_valid(p), "segment {i}");
        let seg = packet::parse(p).expect("segment parses");
        assert_eq!(seg.seq, 5 + payload.len() as u32);
        let last = i + 1 == dev.sent.len();
        assert_eq!(seg.has(f::FIN), last);
        assert_eq!(seg.has(f::PSH), last);
        assert_eq!(seg.tcp_header_len, 32, "options kept");
        payload.extend_from_slice(&p[seg.ip_header_len + seg.tcp_header_len..]);
    }
    assert_eq!(payload, big.payload);
}

/// Seeded random bytes and mutations of valid packets through the parse-and-rewrite entry
/// point: never a panic, every drop counted (the bounded stand-in for `cargo fuzz`).
#[test]
fn random_bytes_never_panic_and_every_packet_is_accounted_for() {
    let mut nat = test_nat(64);
    let mut sel = FixedRoundRobin::new(vec![backend(), addr([10, 0, 0, 12], 7000)]);
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.u64(..);
    let templates = [
        Spec::new(client(), vip(), f::SYN).build(),
        Spec::new(backend(), addr(LB, NAT_PORT), f::ACK).build(),
    ];
    let mut forwarded = 0u64;
    let total = 20_000u64;
    for i in 0..total {
        let r = next();
        let mut bytes = if i % 2 == 0 {
            let len = (r % 120) as usize;
            (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
        } else {
            let mut b = templates[(r % 2) as usize].clone();
            for _ in 0..(r >> 8) % 4 + 1 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            b.truncate(b.len() - (r >> 16) as usize % 4);
            b
        };
        // Every checksum state a device may report, in turn.
        let state = [
            packet::ChecksumState::Unknown,
            packet::ChecksumState::Final,
            packet::ChecksumState::Partial,
        ][(i % 3) as usize];
        if let crate::raw::nat::Outcome::Forward { .. } =
            nat.process(&mut bytes, Duration::from_millis(i), &mut sel, state)
        {
            forwarded += 1;
        }
    }
    let dropped: u64 = nat.counters().drops.iter().sum();
    assert_eq!(forwarded + dropped, total);
    assert!(dropped > total / 2, "most random input is dropped");
}

#[test]
fn partial_offload_checksums_are_completed_in_full() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let mut spec = Spec::new(client(), vip(), f::SYN);
    spec.payload = b"abc".to_vec();
    let mut bytes = spec.build();
    let seg = packet::parse(&bytes).expect("valid");
    let partial = packet::partial_checksum(seg.src, seg.dst, seg.total_len - seg.ip_header_len);
    bytes[36..38].copy_from_slice(&partial.to_be_bytes());
    assert!(!packet::checksums_valid(&bytes));
    let out = through(&mut nat, &mut sel, bytes).expect("forwarded");
    assert!(packet::checksums_valid(&out));
    assert_eq!(nat.counters().checksum_full, 1);
    // A final checksum takes the incremental path.
    let ack = Spec::new(client(), vip(), f::ACK).build();
    through(&mut nat, &mut sel, ack).expect("forwarded");
    assert_eq!(nat.counters().checksum_full, 1);
}

/// With the device saying a checksum is partial (`NEEDS_CSUM`), the core keeps it partial
/// for the new addresses (for a device to complete), both ways, on many addresses; the
/// routed path completes it, and what it completes verifies.
#[test]
fn partial_checksums_the_device_reports_stay_partial_and_complete_correctly() {
    use crate::raw::wire::packet::ChecksumState;
    let mut nat = test_nat(4096);
    for i in 0..500u32 {
        let c = addr(
            (0x0a00_0000 + i * 7919).to_be_bytes(),
            1024 + (i * 31) as u16,
        );
        let b = addr((0xc0a8_0000 + i * 104_729).to_be_bytes(), 80 + i as u16);
        let mut sel = FixedRoundRobin::new(vec![b]);
        for (spec, now) in [
            (Spec::new(c, vip(), f::SYN), 0u64),
            (Spec::new(c, vip(), f::ACK), 1),
        ] {
            let mut spec = spec;
            spec.payload = vec![i as u8; (i % 97) as usize];
            let mut bytes = spec.build();
            let seg = packet::parse(&bytes).expect("valid");
            let tcp_len = seg.total_len - seg.ip_header_len;
            let partial = packet::partial_checksum(seg.src, seg.dst, tcp_len);
            bytes[36..38].copy_from_slice(&partial.to_be_bytes());
            let outcome = nat.process(
                &mut bytes,
                Duration::from_secs(now),
                &mut sel,
                ChecksumState::Partial,
            );
            assert!(matches!(outcome, crate::raw::nat::Outcome::Forward { .. }));
            let out = packet::parse(&bytes).expect("still valid");
            let kept = u16::from_be_bytes([bytes[36], bytes[37]]);
            let want = packet::partial_checksum(out.src, out.dst, tcp_len);
            // One's complement has two zeros; either spelling is the same sum.
            assert!(
                kept == want || kept ^ want == 0xffff,
                "{kept:#x} vs {want:#x}"
            );
            assert!(packet::complete_tcp_checksum(&mut bytes));
            assert!(packet::checksums_valid(&bytes), "row {i}");
        }
    }
    assert_eq!(nat.counters().checksum_full, 0, "nothing summed in full");
}

/// A device that reports partial checksums, sending everything routed: small datagrams
/// leave with complete checksums, super-packets are cut and every segment verifies.
#[test]
fn the_routed_path_completes_partial_checksums_of_datagrams_and_super_packets() {
    use crate::raw::wire::packet::ChecksumState;
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let mut dev = MemDevice {
        checksum: ChecksumState::Partial,
        ..MemDevice::default()
    };
    for (flags, payload) in [(f::SYN, 0usize), (f::ACK, 100), (f::ACK | f::PSH, 9000)] {
        let mut spec = Spec::new(client(), vip(), flags);
        spec.payload = vec![7; payload];
        let mut bytes = spec.build();
        let seg = packet::parse(&bytes).expect("valid");
        let partial = packet::partial_checksum(seg.src, seg.dst, seg.total_len - 20);
        bytes[36..38].copy_from_slice(&partial.to_be_bytes());
        dev.inbox.push_back(bytes);
    }
    let mut pump = Pump::new(8, 1500);
    pump.once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .expect("mem device");
    assert_eq!(dev.sent.len(), 2 + 9000usize.div_ceil(1460));
    for (bytes, _) in &dev.sent {
        assert!(packet::checksums_valid(bytes));
    }
    assert_eq!(pump.counters().sent_routed, dev.sent.len() as u64);
    assert_eq!(pump.counters().sent_direct, 0);
}

/// The resets of an idle-evicted row leave at once, on an idle device.
#[test]
fn resets_of_expired_rows_are_sent_without_waiting_for_traffic() {
    let mut nat = test_nat(16);
    let mut sel = FixedRoundRobin::new(vec![backend()]);
    let mut syn = Spec::new(client(), vip(), f::SYN);
    syn.seq = 10;
    let mut syn_ack = Spec::new(backend(), addr(LB, NAT_PORT), f::SYN | f::ACK);
    (syn_ack.seq, syn_ack.ack) = (500, 11);
    let mut ack = Spec::new(client(), vip(), f::ACK);
    (ack.seq, ack.ack) = (11, 501);
    for s in [syn, syn_ack, ack] {
        through(&mut nat, &mut sel, s.build()).expect("forwarded");
    }
    nat.expire(Duration::from_secs(301));
    let mut dev = MemDevice::default();
    let mut pump = Pump::new(8, 1500);
    pump.send_pending(&mut dev, &mut nat);
    let sent: Vec<_> = dev
        .sent
        .iter()
        .map(|(b, dst)| {
            let r = packet::parse(b).expect("parses");
            (*dst, r.dport, r.flags, r.seq)
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (*client().ip(), client().port(), f::RST, 501),
            (*backend().ip(), backend().port(), f::RST, 11),
        ]
    );
    assert_eq!(pump.counters().sent_routed, 2);
}

#[test]
fn a_batch_holds_about_batch_bytes_from_one_to_the_most() {
    use crate::raw::device::pump::{next_batch, BATCH_BYTES};
    assert_eq!(next_batch(64, 0), 64, "nothing known: ask for all");
    assert_eq!(next_batch(64, 65_000), BATCH_BYTES / 65_000);
    assert_eq!(next_batch(64, 1500), 64, "full-size segments fill a batch");
    assert_eq!(next_batch(64, 9000), BATCH_BYTES / 9000);
    assert_eq!(
        next_batch(64, usize::MAX / 2),
        1,
        "huge frames: one at a time"
    );
    assert_eq!(next_batch(0, 100), 1, "never zero");
}

#[test]
fn super_packets_shrink_the_next_receive_and_small_ones_grow_it_back() {
    let (mut nat, mut sel) = (test_nat(16), FixedRoundRobin::new(vec![backend()]));
    let mut dev = MemDevice::default();
    let mut pump = Pump::new(64, 1500);
    let big = vec![0u8; 60_000];
    for _ in 0..20 {
        dev.inbox.push_back(big.clone());
    }
    // Nothing known yet: the first receive takes everything queued.
    let got = pump
        .once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .unwrap();
    assert_eq!(got, 20);
    for _ in 0..20 {
        dev.inbox.push_back(big.clone());
    }
    let got = pump
        .once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .unwrap();
    assert_eq!(
        got,
        (256 << 10) / 60_000,
        "after super-packets, a few at a time"
    );
    // A batch of ACKs with one super-packet among them is sized by the super-packet.
    dev.inbox.clear();
    dev.inbox.push_back(big.clone());
    for _ in 0..100 {
        dev.inbox.push_back(vec![0u8; 60]);
    }
    let got = pump
        .once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .unwrap();
    assert_eq!(got, (256 << 10) / 60_000);
    let got = pump
        .once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .unwrap();
    assert_eq!(got, (256 << 10) / 60_000, "still sized by the last batch");
    let got = pump
        .once(&mut dev, &mut nat, &mut sel, Duration::ZERO)
        .unwrap();
    assert_eq!(got, 64, "small datagrams: a full batch again");
}

//! NAT table rules, with time passed in.

use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::time::Duration;

use crate::raw::fixture::{addr, test_nat, Spec};
use crate::raw::nat::table::{Direction, FreeReason, NatTable, OpenError, RowState, TableConfig};
use crate::raw::nat::FixedRoundRobin;
use crate::raw::wire::packet::{flags as f, ChecksumState, DropReason};

const LB: [u8; 4] = [10, 0, 0, 1];

fn config(max_rows: usize, ports: std::ops::RangeInclusive<u16>) -> TableConfig {
    TableConfig {
        max_rows,
        half_open_timeout: Duration::from_secs(10),
        established_timeout: Duration::from_secs(100),
        fin_linger: Duration::from_secs(2),
        nat_ports: ports,
    }
}

fn client(i: u16) -> SocketAddrV4 {
    addr([10, 0, 1, (i % 200) as u8], 30_000 + i)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn allocation_never_collides_and_ports_are_per_backend() {
    let mut t = NatTable::new(config(10_000, 5000..=5099));
    let backends = [addr([10, 0, 0, 11], 80), addr([10, 0, 0, 12], 80)];
    let mut seen = HashSet::new();
    for i in 0..200u16 {
        let b = backends[usize::from(i % 2)];
        let id = t.open(client(i), LB.into(), b, secs(0)).expect("room").id;
        let row = t.get(id).expect("row").clone();
        assert!((5000..=5099).contains(&row.nat_port));
        assert!(seen.insert((row.backend, row.nat_port)), "collision at {i}");
        assert_eq!(t.by_nat(row.backend, row.nat_port), Some(id));
    }
    // 100 per backend: both spaces are now full (of established rows: a half-open one
    // would give way).
    assert_eq!(t.rows_for(backends[0]), 100);
    for i in 0..200u16 {
        let id = t.by_client(client(i)).expect("row");
        t.get_mut(id).expect("row").state = RowState::Established;
    }
    assert_eq!(
        t.open(client(999), LB.into(), backends[0], secs(0)).err(),
        Some(OpenError::PortsExhausted)
    );
    // A freed port goes to the back of the queue: the next row gets it (only one free).
    let victim = t.by_client(client(0)).expect("row 0");
    let port = t.get(victim).expect("row").nat_port;
    t.free(victim);
    let id = t
        .open(client(999), LB.into(), backends[0], secs(0))
        .expect("room")
        .id;
    assert_eq!(t.get(id).expect("row").nat_port, port);
}

#[test]
fn freed_ports_are_reused_last() {
    let mut t = NatTable::new(config(100, 6000..=6009));
    let b = addr([10, 0, 0, 11], 80);
    let first = t.open(client(1), LB.into(), b, secs(0)).expect("room").id;
    let port = t.get(first).expect("row").nat_port;
    t.free(first);
    for i in 2..11 {
        let id = t.open(client(i), LB.into(), b, secs(0)).expect("room").id;
        assert_ne!(t.get(id).expect("row").nat_port, port, "reused too early");
    }
}

#[test]
fn rows_opened_per_backend_never_go_down() {
    // A live count cannot tell "one row freed, one opened" from "nothing happened";
    // observers (the scenario runner) need this monotonic count instead.
    let mut t = NatTable::new(config(100, 6000..=6009));
    let b = addr([10, 0, 0, 11], 80);
    let other = addr([10, 0, 0, 12], 80);
    let first = t.open(client(1), LB.into(), b, secs(0)).expect("room").id;
    assert_eq!((t.rows_for(b), t.rows_opened_for(b)), (1, 1));
    t.free(first);
    t.open(client(2), LB.into(), b, secs(1)).expect("room");
    assert_eq!((t.rows_for(b), t.rows_opened_for(b)), (1, 2));
    assert_eq!(t.rows_opened_for(other), 0);
}

#[test]
fn retransmitted_syn_reuses_its_row() {
    let mut nat = test_nat(16);
    let b1 = addr([10, 0, 0, 11], 7000);
    let b2 = addr([10, 0, 0, 12], 7000);
    let mut sel = FixedRoundRobin::new(vec![b1, b2]);
    let syn = Spec::new(client(1), addr(LB, 20_000), f::SYN).build();
    let mut a = syn.clone();
    let mut b = syn.clone();
    let first = nat.process(&mut a, secs(0), &mut sel, ChecksumState::Unknown);
    let second = nat.process(&mut b, secs(1), &mut sel, ChecksumState::Unknown);
    assert_eq!(first, second);
    assert_eq!(a, b, "same backend, same NAT port");
    assert_eq!(nat.table().len(), 1);
    assert_eq!(nat.counters().rows_created, 1);
}

#[test]
fn fin_both_ways_frees_after_linger_and_rst_frees_at_once() {
    let mut t = NatTable::new(config(16, 5000..=5099));
    let b = addr([10, 0, 0, 11], 80);
    let id = t.open(client(1), LB.into(), b, secs(0)).expect("room").id;
    assert_eq!(
        t.observe(id, Direction::ToClient, f::SYN | f::ACK, secs(0)),
        None
    );
    assert_eq!(t.observe(id, Direction::ToBackend, f::ACK, secs(0)), None);
    assert_eq!(t.get(id).expect("row").state, RowState::Established);
    assert_eq!(
        t.observe(id, Direction::ToBackend, f::FIN | f::ACK, secs(5)),
        None
    );
    assert!(
        t.expire(secs(60)).is_empty(),
        "one FIN is a half-close, not the end"
    );
    assert_eq!(
        t.observe(id, Direction::ToClient, f::FIN | f::ACK, secs(61)),
        None
    );
    assert!(t.expire(secs(62)).is_empty(), "lingers for the last ACK");
    let freed = t.expire(secs(63));
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].1, FreeReason::Fin);
    assert!(t.is_empty());

    let id = t.open(client(2), LB.into(), b, secs(70)).expect("room").id;
    assert_eq!(
        t.observe(id, Direction::ToClient, f::RST, secs(70)),
        Some(FreeReason::Rst)
    );
}

#[test]
fn idle_rows_are_evicted_with_separate_timeouts() {
    let mut t = NatTable::new(config(16, 5000..=5099));
    let b = addr([10, 0, 0, 11], 80);
    let half = t.open(client(1), LB.into(), b, secs(0)).expect("room").id;
    let est = t.open(client(2), LB.into(), b, secs(0)).expect("room").id;
    t.observe(est, Direction::ToClient, f::SYN | f::ACK, secs(0));
    t.observe(est, Direction::ToBackend, f::ACK, secs(0));
    assert!(t.expire(secs(9)).is_empty());
    let freed = t.expire(secs(10));
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].1, FreeReason::HalfOpenTimeout);
    assert!(t.get(half).is_none());
    t.observe(est, Direction::ToBackend, f::ACK, secs(50));
    assert!(
        t.expire(secs(149)).is_empty(),
        "traffic at 50s refreshed it"
    );
    let freed = t.expire(secs(150));
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].1, FreeReason::IdleTimeout);
    assert!(t.is_empty());
    assert_eq!(t.rows_for(b), 0, "ports returned");
}

#[test]
fn a_syn_flood_of_half_open_rows_yields_to_a_real_client() {
    let mut nat = test_nat(100);
    let mut sel = FixedRoundRobin::new(vec![addr([10, 0, 0, 11], 7000)]);
    for i in 0..500u16 {
        let mut syn = Spec::new(addr([6, 6, 6, 6], 1000 + i), addr(LB, 20_000), f::SYN).build();
        nat.process(
            &mut syn,
            Duration::from_millis(u64::from(i)),
            &mut sel,
            ChecksumState::Unknown,
        );
    }
    assert_eq!(nat.table().len(), 100);
    assert_eq!(nat.counters().rows_freed.get("evicted"), Some(&400));
    let mut syn = Spec::new(client(7), addr(LB, 20_000), f::SYN).build();
    let outcome = nat.process(&mut syn, secs(1), &mut sel, ChecksumState::Unknown);
    assert!(matches!(outcome, crate::raw::nat::Outcome::Forward { .. }));
    assert!(nat.table().by_client(client(7)).is_some());
    assert_eq!(nat.counters().drops_of(DropReason::TableFull), 0);
}

#[test]
fn a_table_full_of_established_rows_drops_new_syns_and_counts_them() {
    let mut t = NatTable::new(config(3, 5000..=5099));
    let b = addr([10, 0, 0, 11], 80);
    for i in 0..3 {
        let id = t.open(client(i), LB.into(), b, secs(0)).expect("room").id;
        t.observe(id, Direction::ToClient, f::SYN | f::ACK, secs(0));
        t.observe(id, Direction::ToBackend, f::ACK, secs(0));
    }
    assert_eq!(
        t.open(client(9), LB.into(), b, secs(0)).err(),
        Some(OpenError::TableFull)
    );
    let mut nat = test_nat(1);
    let mut sel = FixedRoundRobin::new(vec![b]);
    let mut syn = Spec::new(client(1), addr(LB, 20_000), f::SYN).build();
    nat.process(&mut syn, secs(0), &mut sel, ChecksumState::Unknown);
    let mut synack = Spec::new(b, addr(LB, 21_000), f::SYN | f::ACK).build();
    nat.process(&mut synack, secs(0), &mut sel, ChecksumState::Unknown);
    let mut ack = Spec::new(client(1), addr(LB, 20_000), f::ACK).build();
    nat.process(&mut ack, secs(0), &mut sel, ChecksumState::Unknown);
    let mut syn2 = Spec::new(client(2), addr(LB, 20_000), f::SYN).build();
    nat.process(&mut syn2, secs(0), &mut sel, ChecksumState::Unknown);
    assert_eq!(nat.counters().drops_of(DropReason::TableFull), 1);
}

#[test]
fn a_new_syn_on_a_closing_row_starts_a_new_connection() {
    let mut nat = test_nat(16);
    let b = addr([10, 0, 0, 11], 7000);
    let mut sel = FixedRoundRobin::new(vec![b]);
    let c = client(1);
    let vip = addr(LB, 20_000);
    for (src, dst, fl) in [
        (c, vip, f::SYN),
        (b, addr(LB, 21_000), f::SYN | f::ACK),
        (c, vip, f::ACK),
        (c, vip, f::FIN | f::ACK),
        (b, addr(LB, 21_000), f::FIN | f::ACK),
    ] {
        let mut p = Spec::new(src, dst, fl).build();
        nat.process(&mut p, secs(0), &mut sel, ChecksumState::Unknown);
    }
    let mut syn = Spec::new(c, vip, f::SYN).build();
    nat.process(&mut syn, secs(1), &mut sel, ChecksumState::Unknown);
    assert_eq!(nat.counters().rows_created, 2);
    assert_eq!(nat.counters().rows_freed.get("replaced"), Some(&1));
    assert_eq!(nat.table().len(), 1);
}

#[test]
fn a_backend_time_wait_answer_is_reset_and_the_syn_sent_again() {
    let mut nat = test_nat(16);
    let b = addr([10, 0, 0, 11], 7000);
    let mut sel = FixedRoundRobin::new(vec![b]);
    let mut syn = Spec::new(client(1), addr(LB, 20_000), f::SYN).build();
    nat.process(&mut syn, secs(0), &mut sel, ChecksumState::Unknown);
    // The backend's TIME_WAIT socket answers with a bare ACK (ack = its next sequence).
    let mut stale = Spec::new(b, addr(LB, 21_000), f::ACK);
    stale.ack = 0xdead_beef;
    let mut stale = stale.build();
    let outcome = nat.process(&mut stale, secs(0), &mut sel, ChecksumState::Unknown);
    assert_eq!(
        outcome,
        crate::raw::nat::Outcome::Drop(DropReason::BackendTimeWait),
        "not forwarded to the client"
    );
    let sent = nat.take_pending();
    assert_eq!(sent.len(), 2);
    let rst = crate::raw::wire::packet::parse(&sent[0].0).expect("rst parses");
    assert!(rst.has(f::RST));
    assert_eq!((rst.src, rst.sport), (LB.into(), 21_000));
    assert_eq!((rst.dst, rst.dport), (*b.ip(), 7000));
    assert_eq!(rst.seq, 0xdead_beef);
    assert!(crate::raw::wire::packet::checksums_valid(&sent[0].0));
    assert_eq!(sent[1].0, syn, "the same rewritten SYN again");
    // Only once: a second bare ACK goes to the client as before.
    let mut again = Spec::new(b, addr(LB, 21_000), f::ACK).build();
    assert!(matches!(
        nat.process(&mut again, secs(0), &mut sel, ChecksumState::Unknown),
        crate::raw::nat::Outcome::Forward { .. }
    ));
    assert!(nat.take_pending().is_empty());
}

#[test]
fn a_stale_syn_ack_on_a_reused_nat_port_is_reset_and_never_reaches_the_client() {
    let mut nat = test_nat(16);
    let b = addr([10, 0, 0, 11], 7000);
    let mut sel = FixedRoundRobin::new(vec![b]);
    // The fixture's SYN has sequence number 1000.
    let mut syn = Spec::new(client(1), addr(LB, 20_000), f::SYN).build();
    nat.process(&mut syn, secs(0), &mut sel, ChecksumState::Unknown);
    // The backend's half-open connection from an earlier SYN on this NAT port
    // retransmits its SYN-ACK: it acknowledges another SYN, not the client's 1000.
    let stale_syn_ack = |ack: u32| {
        let mut p = Spec::new(b, addr(LB, 21_000), f::SYN | f::ACK);
        p.ack = ack;
        p.build()
    };
    for round in 0..2 {
        let outcome = nat.process(
            &mut stale_syn_ack(0xdead_beef),
            secs(0),
            &mut sel,
            ChecksumState::Unknown,
        );
        assert_eq!(
            outcome,
            crate::raw::nat::Outcome::Drop(DropReason::BackendTimeWait),
            "round {round}: not forwarded to the client"
        );
        let sent = nat.take_pending();
        if round == 0 {
            assert_eq!(sent.len(), 2, "a RST and the SYN again");
            let rst = crate::raw::wire::packet::parse(&sent[0].0).expect("rst parses");
            assert!(rst.has(f::RST));
            assert_eq!((rst.dst, rst.dport, rst.seq), (*b.ip(), 7000, 0xdead_beef));
            assert_eq!(sent[1].0, syn, "the same rewritten SYN again");
        } else {
            assert!(sent.is_empty(), "once per row: {} sent", sent.len());
        }
    }
    // The answer to the client's own SYN goes through.
    assert!(matches!(
        nat.process(
            &mut stale_syn_ack(1001),
            secs(0),
            &mut sel,
            ChecksumState::Unknown
        ),
        crate::raw::nat::Outcome::Forward { .. }
    ));
}

#[test]
fn a_full_port_pool_evicts_its_oldest_half_open_row() {
    let mut t = NatTable::new(config(10_000, 6000..=6009));
    let b = addr([10, 0, 0, 11], 80);
    let other = addr([10, 0, 0, 12], 80);
    let first = t.open(client(0), LB.into(), b, secs(0)).expect("room").id;
    t.open(client(100), LB.into(), other, secs(0))
        .expect("room");
    for i in 1..10 {
        t.open(client(i), LB.into(), b, secs(0)).expect("room");
    }
    let opened = t.open(client(10), LB.into(), b, secs(0)).expect("evicts");
    assert_eq!(opened.freed.len(), 1);
    assert_eq!(opened.freed[0].0.client, client(0));
    assert_eq!(opened.freed[0].1, FreeReason::Evicted);
    assert!(t.get(first).is_none());
    assert_eq!(t.rows_for(other), 1, "another backend's row is not touched");
    // Established rows never give way.
    for i in 1..=10 {
        let id = t.by_client(client(i)).expect("row");
        t.get_mut(id).expect("row").state = RowState::Established;
    }
    assert_eq!(
        t.open(client(11), LB.into(), b, secs(0)).err(),
        Some(OpenError::PortsExhausted)
    );
}

#[test]
fn under_pressure_old_half_open_rows_drop_early() {
    let mut t = NatTable::new(config(10_000, 6000..=6009));
    let b = addr([10, 0, 0, 11], 80);
    // 8 of 10 ports: above 3/4. Young rows stay.
    for i in 0..8 {
        t.open(client(i), LB.into(), b, Duration::from_millis(100))
            .expect("room");
    }
    let young = t
        .open(client(8), LB.into(), b, Duration::from_millis(500))
        .expect("room");
    assert!(young.freed.is_empty());
    // A second later the first rows are old: each new SYN frees up to four of them.
    let later = t
        .open(client(9), LB.into(), b, Duration::from_millis(1200))
        .expect("room");
    let reasons: Vec<FreeReason> = later.freed.iter().map(|(_, r)| *r).collect();
    assert_eq!(reasons, vec![FreeReason::EarlyDrop; 4]);
    assert_eq!(t.len(), 6);
    // Below pressure nothing is dropped early, however old.
    let calm = t.open(client(10), LB.into(), b, secs(60)).expect("room");
    assert!(calm.freed.is_empty(), "{:?}", calm.freed);
}

#[test]
fn a_table_under_pressure_drops_old_half_open_rows_of_any_backend() {
    let mut t = NatTable::new(config(8, 6000..=6999));
    for i in 0..7 {
        let b = addr([10, 0, 0, 11 + i as u8], 80);
        t.open(client(i), LB.into(), b, secs(0)).expect("room");
    }
    let opened = t
        .open(client(7), LB.into(), addr([10, 0, 0, 99], 80), secs(2))
        .expect("room");
    assert_eq!(opened.freed.len(), 4);
    assert!(opened
        .freed
        .iter()
        .all(|(_, r)| *r == FreeReason::EarlyDrop));
}

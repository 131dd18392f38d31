//! Path-MTU discovery through the core: an ICMP "fragmentation needed" about a segment
//! the balancer forwarded goes to the segment's real sender, rewritten to the flow as
//! that sender sees it; one about no flow, or quoting a stale sequence number, is
//! dropped and counted; the table never changes.

use std::net::Ipv4Addr;

use super::hostile::{established, BACKEND_ISN, CLIENT_ISN};
use crate::raw::device::mem::pump_batch as run;
use crate::raw::fixture::{addr, backend, client, nat_side, vip};
use crate::raw::wire::icmp::{build_frag_needed, parse_frag_needed, FragNeeded};
use crate::raw::wire::packet::DropReason;

/// The home router (between the balancer and the client) reports a segment
/// `lb:20000 -> client` too big for its 1492-byte uplink.
fn from_router(seq: u32) -> Vec<u8> {
    build_frag_needed(
        Ipv4Addr::new(10, 0, 0, 254),
        *vip().ip(),
        1492,
        vip(),
        client(),
        seq,
        1500,
    )
}

#[test]
fn a_frag_needed_about_a_segment_to_the_client_reaches_the_backend() {
    let (mut nat, mut sel) = established();
    let rows = nat.table().len();
    let sent = run(
        &mut nat,
        &mut sel,
        vec![from_router(BACKEND_ISN + 1)],
        Default::default(),
    );
    assert_eq!(sent.len(), 1, "one relayed error");
    let (bytes, to) = &sent[0];
    assert_eq!(to, backend().ip());
    let relayed = parse_frag_needed(bytes).expect("a valid frag-needed");
    assert_eq!(
        relayed,
        FragNeeded {
            from: *nat_side().ip(),
            mtu: 1492,
            src: backend(),
            dst: nat_side(),
            seq: BACKEND_ISN + 1,
            quoted_len: 1500,
        }
    );
    assert_eq!(nat.counters().icmp_relayed, 1);
    assert_eq!(nat.table().len(), rows);
}

#[test]
fn a_frag_needed_about_a_segment_to_the_backend_reaches_the_client() {
    let (mut nat, mut sel) = established();
    // A router between the balancer and the backend reports `nat_side -> backend`.
    let err = build_frag_needed(
        Ipv4Addr::new(10, 0, 0, 253),
        *nat_side().ip(),
        1400,
        nat_side(),
        backend(),
        CLIENT_ISN + 1,
        1500,
    );
    let sent = run(&mut nat, &mut sel, vec![err], Default::default());
    assert_eq!(sent.len(), 1);
    let relayed = parse_frag_needed(&sent[0].0).expect("valid");
    assert_eq!(
        (relayed.src, relayed.dst, relayed.mtu),
        (client(), vip(), 1400)
    );
    assert_eq!(sent[0].1, *client().ip());
}

#[test]
fn an_error_about_no_flow_or_a_stale_sequence_is_dropped_and_counted() {
    let (mut nat, mut sel) = established();
    let rows = nat.table().len();
    let stranger = build_frag_needed(
        Ipv4Addr::new(10, 0, 0, 254),
        *vip().ip(),
        1492,
        vip(),
        addr([10, 0, 0, 199], 5555),
        1,
        1500,
    );
    // Far outside the backend's window: a blind attempt to shrink a flow's segments.
    let blind = from_router(BACKEND_ISN.wrapping_add(0x4000_0000));
    let mut garbled = from_router(BACKEND_ISN + 1);
    garbled[30] ^= 0xff;
    let sent = run(
        &mut nat,
        &mut sel,
        vec![stranger, blind, garbled],
        Default::default(),
    );
    assert!(sent.is_empty(), "nothing relayed: {sent:?}");
    assert_eq!(nat.counters().drops_of(DropReason::IcmpUnknownFlow), 2);
    assert_eq!(nat.counters().drops_of(DropReason::BadIcmp), 1);
    assert_eq!(nat.counters().icmp_relayed, 0);
    assert_eq!(nat.table().len(), rows);
}

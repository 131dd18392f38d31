//! The NAT core: one received datagram in, a rewritten datagram (or a counted drop) out.
//!
//! Client -> `lb:port` becomes `source_ip:nat_port -> backend`; backend -> `nat_port`
//! becomes `lb:port -> client`. Round robin (through a [`Selector`]) decides on a client's
//! first SYN; a retransmitted SYN reuses its row. Structured events are emitted for
//! rows created, backends chosen and rows freed, never per packet, and at most
//! [`ROW_EVENTS_PER_SEC`] a second (beyond it, a summary line a second counts them).
//!
//! Before a segment may change anything it must carry a flag combination a TCP sends
//! (else `invalid_flags`: SYN+FIN, SYN+RST, no flags, FIN without ACK, as conntrack
//! judges) and, when it carries SYN, FIN or RST, a TCP checksum that verifies (else
//! `bad_checksum`; a partial checksum, from a local sender's offload, cannot be verified
//! and is trusted). Each row tracks both sides' sequence numbers and windows
//! ([`track`]): a RST outside the receiver's window is dropped (`rst_out_of_window`), one
//! in the window is forwarded, and only one exactly where the receiver expects it frees
//! the row.
//!
//! A new connection that cannot be served (no usable backend, a table full of established
//! rows, or no free NAT port) is refused the way the kernel refuses a closed port: its SYN
//! is dropped and counted with its reason, and a RST+ACK ([`packet::build_refusal`]) goes
//! back to the client, so its `connect()` fails at once instead of hanging. A segment of
//! a flow with no row (other than a SYN or a RST) gets the same closed-port answer
//! ([`packet::build_closed_port_reply`]); the two ends of an established row evicted for
//! silence each get a RST at the sequence number they expect; a backend's half-open
//! connection of a row that gave way to a new SYN is reset before that SYN reaches it.
//! Never a RST to a RST; refusals and the resets to clients share a token bucket of
//! [`REFUSALS_PER_SEC`] a second (the excess is counted, not sent).
//!
//! Drop reasons (`l4lb_raw_drops_total{reason}`, [`DropReason::name`]): `truncated`,
//! `bad_version`, `bad_header_length`, `bad_total_length`, `fragment`, `not_tcp`,
//! `bad_tcp_header`, `not_for_us`, `unknown_client`, `unknown_nat_port`, `no_backend`,
//! `table_full`, `ports_exhausted`, `too_big`, `send_failed`, `backend_time_wait`,
//! `rst_out_of_window`, `bad_checksum`, `invalid_flags`, `bad_icmp`, `icmp_unknown_flow`,
//! and, counted by the pump from the kernel's tally, `receive_queue_full`.
//!
//! An ICMP "fragmentation needed" about a flow of ours is relayed to the flow's real
//! sender ([`Outcome::Relayed`]), so path-MTU discovery works through the balancer.
pub mod reset_bucket;
pub mod table;
#[cfg(test)]
mod tests;
pub mod track;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::raw::nat::reset_bucket::{TokenBucket, REFUSALS_PER_SEC, REFUSAL_BURST};
use crate::raw::nat::table::{
    Direction, FreeReason, NatTable, OpenError, Row, RowId, RowState, TableConfig,
};
use crate::raw::nat::track::{RstVerdict, Sender, Tracking};
use crate::raw::wire::icmp;
use crate::raw::wire::packet::{self, flags, ChecksumState, DropReason, Rewrite, TcpView};

/// Row events (`row_created`, `row_freed`) logged a second at most, on average; the rest
/// are counted in one summary line a second. Under a SYN flood every spoofed SYN makes a
/// row and frees another: logging each one cost the forwarding thread more than the NAT.
pub const ROW_EVENTS_PER_SEC: u32 = 200;
/// Row events logged at once after a quiet while.
pub const ROW_EVENT_BURST: u32 = 1_000;

/// Picks the backend of a new connection (round robin over usable backends).
pub trait Selector {
    /// The next usable backend, or None when every backend is down.
    fn pick(&mut self) -> Option<SocketAddrV4>;
}

/// Round robin over a fixed list (tests, and the base the health-aware selector wraps).
#[derive(Debug, Clone)]
pub struct FixedRoundRobin {
    backends: Vec<SocketAddrV4>,
    next: usize,
}

impl FixedRoundRobin {
    /// Round robin over `backends` in order.
    pub fn new(backends: Vec<SocketAddrV4>) -> Self {
        Self { backends, next: 0 }
    }
}

impl Selector for FixedRoundRobin {
    fn pick(&mut self) -> Option<SocketAddrV4> {
        if self.backends.is_empty() {
            return None;
        }
        let b = self.backends[self.next % self.backends.len()];
        self.next = self.next.wrapping_add(1);
        Some(b)
    }
}

/// What became of a processed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send `buf[..len]` (rewritten in place) to `dst`.
    Forward {
        /// Destination address (for `sendto`).
        dst: Ipv4Addr,
        /// Datagram length.
        len: usize,
    },
    /// Drop it, for this reason (already counted).
    Drop(DropReason),
    /// An ICMP error about a flow of ours: consumed, and the same error about the flow
    /// as its real sender sent it queued for [`Nat::take_pending`].
    Relayed,
}

/// The NAT decisions counted: datagrams forwarded and dropped, rows, refusals. (What
/// happens to them after, on the device, the pump counts.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Drops by [`DropReason::index`].
    pub drops: [u64; DropReason::ALL.len()],
    /// Datagrams forwarded client -> backend.
    pub to_backend: u64,
    /// Datagrams forwarded backend -> client.
    pub to_client: u64,
    /// Rows created.
    pub rows_created: u64,
    /// Segments whose received checksum was partial (offload) and was computed in full.
    pub checksum_full: u64,
    /// Rows freed by [`FreeReason`] name.
    pub rows_freed: std::collections::BTreeMap<&'static str, u64>,
    /// RST+ACK refusals generated for SYNs that could not be served.
    pub refusals_sent: u64,
    /// Refusals not generated because the rate limit was reached (their SYNs are still
    /// counted as drops with their reason).
    pub refusals_limited: u64,
    /// Other resets the core sent: answers to segments of unknown flows, and the resets
    /// telling both ends of an idle-evicted row.
    pub resets_sent: u64,
    /// Such resets not sent because of the rate limit.
    pub resets_limited: u64,
    /// ICMP "fragmentation needed" errors relayed to the flow's real sender.
    pub icmp_relayed: u64,
}

impl Counters {
    /// Counts a drop and returns the outcome for it.
    pub fn drop(&mut self, reason: DropReason) -> Outcome {
        self.drops[reason.index()] += 1;
        Outcome::Drop(reason)
    }

    /// Drops counted for `reason`.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

/// Static settings of the core.
#[derive(Debug, Clone)]
pub struct NatConfig {
    /// Source address towards backends.
    pub source_ip: Ipv4Addr,
    /// Port clients connect to (20000).
    pub listen_port: u16,
    /// The table's limits.
    pub table: TableConfig,
}

/// The NAT core.
pub struct Nat {
    source_ip: Ipv4Addr,
    listen_port: u16,
    nat_ports: RangeInclusive<u16>,
    table: NatTable,
    counters: Counters,
    /// Datagrams the core itself wants sent (RST + SYN again for a backend TIME_WAIT,
    /// RST+ACK refusals of SYNs that cannot be served).
    pending: Vec<(Vec<u8>, Ipv4Addr)>,
    /// Bounds the refusals sent.
    refusals: TokenBucket,
    /// Bounds the per-row log events (a SYN flood makes a row a packet).
    row_events: TokenBucket,
    /// Row events not logged since the last summary.
    row_events_held: u64,
}

impl Nat {
    /// A core with an empty table.
    pub fn new(config: NatConfig) -> Self {
        Self {
            source_ip: config.source_ip,
            listen_port: config.listen_port,
            nat_ports: config.table.nat_ports.clone(),
            table: NatTable::new(config.table),
            counters: Counters::default(),
            pending: Vec::new(),
            refusals: TokenBucket::new(REFUSALS_PER_SEC, REFUSAL_BURST),
            row_events: TokenBucket::new(ROW_EVENTS_PER_SEC, ROW_EVENT_BURST),
            row_events_held: 0,
        }
    }

    /// The table (stats).
    pub fn table(&self) -> &NatTable {
        &self.table
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn count_fix(&mut self, fix: packet::ChecksumFix) {
        if fix == packet::ChecksumFix::Full {
            self.counters.checksum_full += 1;
        }
    }

    /// Takes the datagrams the core generated itself (send them after the batch).
    pub fn take_pending(&mut self) -> Vec<(Vec<u8>, Ipv4Addr)> {
        std::mem::take(&mut self.pending)
    }

    /// Processes one datagram in place; `checksum` is what the receiving device knows of
    /// its TCP checksum (see [`packet::rewrite`]). Never panics, whatever the bytes.
    pub fn process(
        &mut self,
        buf: &mut [u8],
        now: Duration,
        sel: &mut dyn Selector,
        checksum: ChecksumState,
    ) -> Outcome {
        if buf.len() > 9 && buf[9] == icmp::PROTO_ICMP {
            return self.icmp(buf);
        }
        let seg = match packet::parse(buf) {
            Ok(seg) => seg,
            Err(reason) => return self.counters.drop(reason),
        };
        let to_client_port = seg.dport == self.listen_port;
        if !to_client_port && !self.nat_ports.contains(&seg.dport) {
            return self.counters.drop(DropReason::NotForUs);
        }
        if !flags::valid(seg.flags) {
            return self.counters.drop(DropReason::InvalidFlags);
        }
        // Only SYN, FIN and RST change a row's life; data and ACKs only move the
        // tracking, and only from inside the window, so they are not summed here.
        let control = seg.flags & (flags::SYN | flags::FIN | flags::RST) != 0;
        if control && !packet::tcp_checksum_ok(buf, &seg, checksum) {
            return self.counters.drop(DropReason::BadChecksum);
        }
        if to_client_port {
            self.client_segment(buf, &seg, now, sel, checksum)
        } else {
            self.backend_segment(buf, &seg, now, checksum)
        }
    }

    /// Drops a segment of a flow with no row, counted with `reason`, and answers it as a
    /// closed port would ([`packet::build_closed_port_reply`]), rate-limited; never a
    /// RST, a SYN, or a segment whose checksum does not verify.
    fn unknown_flow(
        &mut self,
        buf: &[u8],
        seg: &TcpView,
        reason: DropReason,
        now: Duration,
        checksum: ChecksumState,
    ) -> Outcome {
        // A SYN to a NAT port is not a flow's segment: nothing listens there.
        if !seg.is_initial_syn() && packet::tcp_checksum_ok(buf, seg, checksum) {
            if let Some(rst) = packet::build_closed_port_reply(seg) {
                self.send_reset(rst, seg.src, now);
            }
        }
        self.counters.drop(reason)
    }

    /// Relays an ICMP "fragmentation needed" about a segment the balancer forwarded to the
    /// segment's real sender, rewritten to the flow as that sender sees it, so its TCP
    /// lowers its segment size (path-MTU discovery through full NAT). An error about no
    /// row, or quoting a sequence number outside the sender's window, is dropped; the
    /// table is never changed.
    fn icmp(&mut self, buf: &[u8]) -> Outcome {
        let f = match icmp::parse_frag_needed(buf) {
            Ok(f) => f,
            Err(reason) => return self.counters.drop(reason),
        };
        let found = if f.src.port() == self.listen_port {
            // We sent `lb:port -> client` on behalf of the backend.
            let client = f.dst;
            self.table
                .by_client(client)
                .and_then(|id| self.table.get(id))
                .filter(|row| row.track.in_window(Sender::Backend, f.seq))
                .map(|row| {
                    let own = SocketAddrV4::new(self.source_ip, row.nat_port);
                    (self.source_ip, row.backend, own)
                })
        } else if self.nat_ports.contains(&f.src.port()) {
            // We sent `source_ip:nat_port -> backend` on behalf of the client.
            self.table
                .by_nat(f.dst, f.src.port())
                .and_then(|id| self.table.get(id))
                .filter(|row| row.track.in_window(Sender::Client, f.seq))
                .map(|row| {
                    let own = SocketAddrV4::new(row.lb_ip, self.listen_port);
                    (row.lb_ip, row.client, own)
                })
        } else {
            None
        };
        let Some((from, sender, own)) = found else {
            return self.counters.drop(DropReason::IcmpUnknownFlow);
        };
        let relayed =
            icmp::build_frag_needed(from, *sender.ip(), f.mtu, sender, own, f.seq, f.quoted_len);
        self.pending.push((relayed, *sender.ip()));
        self.counters.icmp_relayed += 1;
        Outcome::Relayed
    }

    /// Queues a reset of the core's own (not a refusal) while the rate limit allows.
    fn send_reset(&mut self, rst: Vec<u8>, to: Ipv4Addr, now: Duration) {
        if self.refusals.take(now) {
            self.pending.push((rst, to));
            self.counters.resets_sent += 1;
        } else {
            self.counters.resets_limited += 1;
        }
    }

    /// Judges a segment on a row before it is forwarded: a RST outside the window is
    /// dropped (`Err`); otherwise `Ok(true)` when the segment may change the row (every
    /// segment but a RST that is in the window without being exact).
    fn judge(&mut self, id: RowId, from: Sender, seg: &TcpView) -> Result<bool, Outcome> {
        if !seg.has(flags::RST) {
            return Ok(true);
        }
        let Some(row) = self.table.get(id) else {
            return Ok(true);
        };
        match row.track.judge_rst(from, seg) {
            RstVerdict::Exact => Ok(true),
            RstVerdict::InWindow => Ok(false),
            RstVerdict::OutOfWindow => Err(self.counters.drop(DropReason::RstOutOfWindow)),
        }
    }

    /// Learns from a segment about to be forwarded.
    fn learn(&mut self, id: RowId, from: Sender, buf: &[u8], seg: &TcpView) {
        let wscale = if seg.has(flags::SYN) {
            packet::window_scale(buf, seg)
        } else {
            None
        };
        if let Some(row) = self.table.get_mut(id) {
            row.track.learn(from, seg, wscale);
        }
    }

    fn client_segment(
        &mut self,
        buf: &mut [u8],
        seg: &TcpView,
        now: Duration,
        sel: &mut dyn Selector,
        checksum: ChecksumState,
    ) -> Outcome {
        let client = SocketAddrV4::new(seg.src, seg.sport);
        let existing = self.table.by_client(client).filter(|id| {
            // A SYN on a closing row is a new connection from a reused port.
            !(seg.is_initial_syn()
                && self
                    .table
                    .get(*id)
                    .is_some_and(|r| matches!(r.state, RowState::Closing { .. })))
        });
        let id = match existing {
            Some(id) => id,
            None if seg.is_initial_syn() => {
                let Some(backend) = sel.pick() else {
                    return self.refuse(seg, DropReason::NoBackend, now);
                };
                match self.table.open(client, seg.dst, backend, now) {
                    Ok(opened) => {
                        for (row, reason) in opened.freed {
                            self.release_backend(&row, reason);
                            self.log_freed(&row, reason, now);
                        }
                        let wscale = packet::window_scale(buf, seg);
                        if let Some(row) = self.table.get_mut(opened.id) {
                            row.track = Tracking::from_syn(seg, wscale);
                        }
                        self.counters.rows_created += 1;
                        let logged = self.row_event(now);
                        if let Some(row) = self.table.get(opened.id).filter(|_| logged) {
                            tracing::info!(
                                event = "row_created",
                                client = %row.client,
                                backend = %row.backend,
                                nat_port = row.nat_port,
                                rows = self.table.len(),
                                "backend chosen"
                            );
                        }
                        opened.id
                    }
                    Err(OpenError::TableFull) => {
                        return self.refuse(seg, DropReason::TableFull, now);
                    }
                    Err(OpenError::PortsExhausted) => {
                        return self.refuse(seg, DropReason::PortsExhausted, now);
                    }
                }
            }
            None => return self.unknown_flow(buf, seg, DropReason::UnknownClient, now, checksum),
        };
        let changes = match self.judge(id, Sender::Client, seg) {
            Ok(changes) => changes,
            Err(dropped) => return dropped,
        };
        if changes {
            self.learn(id, Sender::Client, buf, seg);
        }
        let Some(row) = self.table.get(id) else {
            return self.counters.drop(DropReason::UnknownClient);
        };
        let to = Rewrite {
            src: self.source_ip,
            sport: row.nat_port,
            dst: *row.backend.ip(),
            dport: row.backend.port(),
        };
        self.count_fix(packet::rewrite(buf, seg, &to, checksum));
        self.counters.to_backend += 1;
        if seg.is_initial_syn() {
            if let Some(row) = self.table.get_mut(id) {
                if row.state == RowState::HalfOpen {
                    // Kept to be sent again by the kernel's path, which does not
                    // complete a partial checksum.
                    let mut syn: Box<[u8]> = buf[..seg.total_len].into();
                    if checksum == ChecksumState::Partial {
                        packet::complete_tcp_checksum(&mut syn);
                    }
                    row.syn = Some(syn);
                }
            }
        }
        if changes {
            if let Some(reason) = self.table.observe(id, Direction::ToBackend, seg.flags, now) {
                self.free(id, reason, now);
            }
        }
        Outcome::Forward {
            dst: to.dst,
            len: seg.total_len,
        }
    }

    /// Drops a client's SYN that cannot be served, counted with `reason`, and queues a
    /// RST+ACK refusal to the client while the rate limit allows.
    fn refuse(&mut self, syn: &TcpView, reason: DropReason, now: Duration) -> Outcome {
        if let Some(rst) = packet::build_refusal(syn) {
            if self.refusals.take(now) {
                self.pending.push((rst, syn.src));
                self.counters.refusals_sent += 1;
            } else {
                self.counters.refusals_limited += 1;
            }
        }
        self.counters.drop(reason)
    }

    fn backend_segment(
        &mut self,
        buf: &mut [u8],
        seg: &TcpView,
        now: Duration,
        checksum: ChecksumState,
    ) -> Outcome {
        let backend = SocketAddrV4::new(seg.src, seg.sport);
        let Some(id) = self.table.by_nat(backend, seg.dport) else {
            return self.unknown_flow(buf, seg, DropReason::UnknownNatPort, now, checksum);
        };
        let Some(row) = self.table.get(id) else {
            return self.counters.drop(DropReason::UnknownNatPort);
        };
        let unanswered = row.state == RowState::HalfOpen && !row.backend_seen;
        let stale_ack =
            unanswered && seg.has(flags::ACK) && seg.flags & (flags::SYN | flags::RST) == 0;
        // A SYN-ACK that does not acknowledge the client's SYN answers an earlier SYN on
        // this NAT port (the backend's half-open connection retransmitting): forwarded,
        // it would make the client reset its own attempt, and the row with it.
        let stale_syn_ack = unanswered
            && seg.has(flags::SYN)
            && seg.has(flags::ACK)
            && !seg.has(flags::RST)
            && seg.ack != row.track.client.end;
        if stale_ack || stale_syn_ack {
            let nat_port = row.nat_port;
            if let Some(syn) = self.table.get_mut(id).and_then(|r| r.syn.take()) {
                // Reset the backend's earlier connection on this port (TIME_WAIT, or
                // half-open: the ACK field is the sequence number it expects), then offer
                // the SYN again.
                let rst = packet::build_rst(self.source_ip, nat_port, seg.src, seg.sport, seg.ack);
                self.pending.push((rst, seg.src));
                self.pending.push((syn.into_vec(), seg.src));
                tracing::debug!(
                    event = "backend_time_wait",
                    backend = %backend,
                    nat_port,
                    "backend still had this NAT port in TIME_WAIT; reset it and resent the SYN"
                );
                return self.counters.drop(DropReason::BackendTimeWait);
            }
            // Offered once already: a stale SYN-ACK is still never the client's.
            if stale_syn_ack {
                return self.counters.drop(DropReason::BackendTimeWait);
            }
        }
        let changes = match self.judge(id, Sender::Backend, seg) {
            Ok(changes) => changes,
            Err(dropped) => return dropped,
        };
        if changes {
            self.learn(id, Sender::Backend, buf, seg);
        }
        let Some(row) = self.table.get(id) else {
            return self.counters.drop(DropReason::UnknownNatPort);
        };
        let to = Rewrite {
            src: row.lb_ip,
            sport: self.listen_port,
            dst: *row.client.ip(),
            dport: row.client.port(),
        };
        self.count_fix(packet::rewrite(buf, seg, &to, checksum));
        self.counters.to_client += 1;
        if changes {
            if let Some(reason) = self.table.observe(id, Direction::ToClient, seg.flags, now) {
                self.free(id, reason, now);
            }
        }
        Outcome::Forward {
            dst: to.dst,
            len: seg.total_len,
        }
    }

    fn free(&mut self, id: RowId, reason: FreeReason, now: Duration) {
        if let Some(row) = self.table.free(id) {
            self.log_freed(&row, reason, now);
        }
    }

    /// Whether a row event may be logged now (else it is counted for the summary).
    fn row_event(&mut self, now: Duration) -> bool {
        let allowed = self.row_events.take(now);
        if !allowed {
            self.row_events_held += 1;
        }
        allowed
    }

    fn log_freed(&mut self, row: &Row, reason: FreeReason, now: Duration) {
        *self.counters.rows_freed.entry(reason.name()).or_default() += 1;
        if !self.row_event(now) {
            return;
        }
        tracing::info!(
            event = "row_freed",
            client = %row.client,
            backend = %row.backend,
            nat_port = row.nat_port,
            reason = reason.name(),
            rows = self.table.len(),
            "row freed"
        );
    }

    /// A half-open row given way to a new SYN may still hold a half-open connection on
    /// the backend (SYN_RECV): a RST at the sequence number it expects frees it there
    /// at once, so the NAT port's next SYN is answered straight away instead of with a
    /// challenge ACK ([`DropReason::BackendTimeWait`]'s round trip). Sent to one of our
    /// own backends, once per row given way, so not through the reset bucket, which
    /// bounds resets to addresses a segment claims to come from.
    fn release_backend(&mut self, row: &Row, reason: FreeReason) {
        if !matches!(reason, FreeReason::Evicted | FreeReason::EarlyDrop) {
            return;
        }
        if let Some(seq) = row.track.backend_reset_seq() {
            let b = row.backend;
            let rst = packet::build_rst(self.source_ip, row.nat_port, *b.ip(), b.port(), seq);
            self.pending.push((rst, *b.ip()));
            self.counters.resets_sent += 1;
        }
    }

    /// Frees rows whose time is up (call about once a second). Both ends of an
    /// established row evicted for silence are told with a RST each accepts (the
    /// sequence number it expects next), rate-limited, so neither is left hanging.
    pub fn expire(&mut self, now: Duration) {
        for (row, reason) in self.table.expire(now) {
            if reason == FreeReason::IdleTimeout {
                if let Some((to_client, to_backend)) = row.track.reset_seqs() {
                    let (c, b) = (row.client, row.backend);
                    let rst = packet::build_rst(
                        row.lb_ip,
                        self.listen_port,
                        *c.ip(),
                        c.port(),
                        to_client,
                    );
                    self.send_reset(rst, *c.ip(), now);
                    let rst = packet::build_rst(
                        self.source_ip,
                        row.nat_port,
                        *b.ip(),
                        b.port(),
                        to_backend,
                    );
                    self.send_reset(rst, *b.ip(), now);
                }
            }
            self.log_freed(&row, reason, now);
        }
        if self.row_events_held > 0 {
            tracing::info!(
                event = "row_events_held",
                count = self.row_events_held,
                rows = self.table.len(),
                "row events beyond {ROW_EVENTS_PER_SEC}/s not logged (counters have them all)"
            );
            self.row_events_held = 0;
        }
    }
}

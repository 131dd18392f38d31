//! Sequence tracking of one NAT row, per direction: the part of a stateful firewall's
//! window tracking (conntrack's `tcp_in_window`) that a NAT needs to judge resets and to
//! send resets of its own that each end accepts.
//!
//! Each side's next sequence number (highest `seq + len` seen), highest acknowledgment
//! and largest window (scaled by the shift both SYNs agreed on, RFC 7323) are learned
//! from the segments forwarded. A RST is judged against the receiver's window around
//! the sender's next sequence number; the endpoint applies RFC 5961 to what passes. Not
//! tracked: SACK blocks, timestamps (PAWS), and whether acknowledgments are in window.

use crate::raw::wire::packet::{flags, TcpView};

/// The window assumed for a side whose window has not been seen yet.
pub const UNSEEN_WINDOW: u32 = 65_535;

/// What one side of the connection has sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Side {
    /// Its SYN was seen, so `end` holds.
    pub known: bool,
    /// The next sequence number it will send (highest `seq + len` seen).
    pub end: u32,
    /// The highest acknowledgment it sent: what it expects next from the other side.
    pub ack: Option<u32>,
    /// The largest window it advertised, scaled.
    pub max_win: u32,
    /// The window scale its SYN offered.
    pub wscale: Option<u8>,
}

/// Which side sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The client.
    Client,
    /// The backend.
    Backend,
}

/// How a RST fares against the tracked state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstVerdict {
    /// Exactly where the receiver expects it: forwarded, and the row is freed.
    Exact,
    /// In the receiver's window but not exact: forwarded (the endpoint answers with a
    /// challenge ACK, RFC 5961), the row kept.
    InWindow,
    /// Outside the window: dropped.
    OutOfWindow,
}

/// Both sides of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracking {
    /// What the client sent.
    pub client: Side,
    /// What the backend sent.
    pub backend: Side,
}

/// Whether `a` is after `b` in sequence space.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Tracking {
    /// The tracking of a row opened by the client's SYN (`wscale`: its offer).
    pub fn from_syn(syn: &TcpView, wscale: Option<u8>) -> Self {
        Self {
            client: Side {
                known: true,
                end: syn.seq.wrapping_add(syn.seq_len()),
                ack: None,
                max_win: u32::from(syn.window).max(1),
                wscale,
            },
            backend: Side::default(),
        }
    }

    fn sides(&mut self, from: Sender) -> (&mut Side, &mut Side) {
        match from {
            Sender::Client => (&mut self.client, &mut self.backend),
            Sender::Backend => (&mut self.backend, &mut self.client),
        }
    }

    fn side(&self, from: Sender) -> (&Side, &Side) {
        match from {
            Sender::Client => (&self.client, &self.backend),
            Sender::Backend => (&self.backend, &self.client),
        }
    }

    /// The shift applied to `from`'s windows on segments without SYN: its offer, when
    /// both offered (while the other's SYN is unseen, its offer is assumed).
    fn shift(&self, from: Sender) -> u8 {
        let (s, r) = self.side(from);
        match (s.wscale, r.wscale, r.known) {
            (Some(shift), Some(_), _) | (Some(shift), None, false) => shift,
            _ => 0,
        }
    }

    /// Whether `seq` from `from` lies within the receiver's window around the sender's
    /// next sequence number (either way, so retransmissions pass).
    pub fn in_window(&self, from: Sender, seq: u32) -> bool {
        let (s, r) = self.side(from);
        if !s.known {
            return false;
        }
        let win = if r.max_win > 0 {
            r.max_win
        } else {
            UNSEEN_WINDOW
        };
        (seq.wrapping_sub(s.end) as i32).unsigned_abs() <= win
    }

    /// Learns from a segment (not a RST) `from` one side, about to be forwarded. The
    /// backend's SYN+ACK makes it known when it acknowledges the client's SYN; other
    /// segments move the sender's end only when they start in the window.
    pub fn learn(&mut self, from: Sender, seg: &TcpView, wscale: Option<u8>) {
        if seg.has(flags::RST) {
            return;
        }
        let syn = seg.has(flags::SYN);
        let shift = if syn { 0 } else { self.shift(from) };
        let known = self.side(from).0.known;
        let in_window = self.in_window(from, seg.seq);
        let (s, r) = self.sides(from);
        if syn && !known {
            if !(seg.has(flags::ACK) && r.known && seg.ack == r.end) {
                // A SYN+ACK of an older connection on this NAT port: not ours.
                return;
            }
            s.known = true;
            s.end = seg.seq.wrapping_add(seg.seq_len());
            s.wscale = wscale;
        } else if !in_window {
            return;
        } else {
            let end = seg.seq.wrapping_add(seg.seq_len());
            if after(end, s.end) {
                s.end = end;
            }
        }
        let win = u32::from(seg.window) << shift;
        s.max_win = s.max_win.max(win);
        if seg.has(flags::ACK) && s.ack.is_none_or(|a| after(seg.ack, a)) {
            s.ack = Some(seg.ack);
        }
    }

    /// Judges a RST `from` one side.
    pub fn judge_rst(&self, from: Sender, seg: &TcpView) -> RstVerdict {
        let (s, r) = self.side(from);
        if !s.known {
            // No SYN seen from the sender (a backend refusing the client's SYN): the RST
            // must acknowledge that SYN, as in SYN-SENT (RFC 9293 3.10.7.3).
            return if r.known && seg.has(flags::ACK) && seg.ack == r.end {
                RstVerdict::Exact
            } else {
                RstVerdict::OutOfWindow
            };
        }
        if seg.seq == s.end || r.ack == Some(seg.seq) {
            RstVerdict::Exact
        } else if self.in_window(from, seg.seq) {
            RstVerdict::InWindow
        } else {
            RstVerdict::OutOfWindow
        }
    }

    /// The sequence number of a reset the backend accepts: what it expects next from
    /// the client (None before the client's SYN is known).
    pub fn backend_reset_seq(&self) -> Option<u32> {
        self.client
            .known
            .then(|| self.backend.ack.unwrap_or(self.client.end))
    }

    /// The sequence numbers of the resets that close the row on both ends (to the
    /// client, to the backend): what each expects next. None unless both sides are known.
    pub fn reset_seqs(&self) -> Option<(u32, u32)> {
        if !(self.client.known && self.backend.known) {
            return None;
        }
        let to_client = self.client.ack.unwrap_or(self.backend.end);
        let to_backend = self.backend.ack.unwrap_or(self.client.end);
        Some((to_client, to_backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::fixture::{addr, Spec};
    use crate::raw::wire::packet::{self, flags as f};

    fn seg(flags: u8, seq: u32, ack: u32, window: u16, payload: usize) -> TcpView {
        let mut spec = Spec::new(
            addr([10, 0, 0, 101], 40_001),
            addr([10, 0, 0, 1], 20_000),
            flags,
        );
        spec.seq = seq;
        spec.ack = ack;
        spec.payload = vec![0; payload];
        let mut v = packet::parse(&spec.build()).expect("valid");
        v.window = window;
        v
    }

    /// A handshake, then 100 bytes each way; client offers scale 7, backend 9.
    fn established() -> Tracking {
        let mut t = Tracking::from_syn(&seg(f::SYN, 1000, 0, 64_240, 0), Some(7));
        t.learn(
            Sender::Backend,
            &seg(f::SYN | f::ACK, 5000, 1001, 65_160, 0),
            Some(9),
        );
        t.learn(Sender::Client, &seg(f::ACK, 1001, 5001, 502, 0), None);
        t.learn(
            Sender::Client,
            &seg(f::ACK | f::PSH, 1001, 5001, 502, 100),
            None,
        );
        t.learn(
            Sender::Backend,
            &seg(f::ACK | f::PSH, 5001, 1101, 100, 100),
            None,
        );
        t
    }

    #[test]
    fn ends_acks_and_scaled_windows_are_learned() {
        let t = established();
        assert_eq!((t.client.end, t.backend.end), (1101, 5101));
        assert_eq!((t.client.ack, t.backend.ack), (Some(5001), Some(1101)));
        assert_eq!(t.client.max_win, 502 << 7);
        assert_eq!(t.backend.max_win, 65_160, "the SYN's window is not scaled");
        assert_eq!(t.reset_seqs(), Some((5001, 1101)));
    }

    #[test]
    fn without_both_offers_windows_are_not_scaled() {
        let mut t = Tracking::from_syn(&seg(f::SYN, 1000, 0, 64_240, 0), Some(7));
        t.learn(
            Sender::Backend,
            &seg(f::SYN | f::ACK, 5000, 1001, 65_160, 0),
            None,
        );
        t.learn(Sender::Client, &seg(f::ACK, 1001, 5001, 70_00, 0), None);
        assert_eq!(t.client.max_win, 64_240);
    }

    #[test]
    fn resets_are_judged_against_the_window() {
        let t = established();
        let rst = |seq| seg(f::RST, seq, 0, 0, 0);
        assert_eq!(t.judge_rst(Sender::Client, &rst(1101)), RstVerdict::Exact);
        assert_eq!(t.judge_rst(Sender::Backend, &rst(5101)), RstVerdict::Exact);
        assert_eq!(
            t.judge_rst(Sender::Client, &rst(1101 + 3000)),
            RstVerdict::InWindow
        );
        assert_eq!(
            t.judge_rst(Sender::Client, &rst(1101u32.wrapping_add(1 << 31))),
            RstVerdict::OutOfWindow
        );
        // The client's window is 502 << 7 = 64256: the backend's RST must fall in it.
        assert_eq!(
            t.judge_rst(Sender::Backend, &rst(5101 + 64_000)),
            RstVerdict::InWindow
        );
        assert_eq!(
            t.judge_rst(Sender::Backend, &rst(5101 + 70_000)),
            RstVerdict::OutOfWindow
        );
    }

    #[test]
    fn a_backend_refusing_the_syn_must_acknowledge_it() {
        let t = Tracking::from_syn(&seg(f::SYN, 1000, 0, 64_240, 0), None);
        let refusal = seg(f::RST | f::ACK, 0, 1001, 0, 0);
        assert_eq!(t.judge_rst(Sender::Backend, &refusal), RstVerdict::Exact);
        let blind = seg(f::RST | f::ACK, 0, 77, 0, 0);
        assert_eq!(
            t.judge_rst(Sender::Backend, &blind),
            RstVerdict::OutOfWindow
        );
        assert_eq!(
            t.judge_rst(Sender::Backend, &seg(f::RST, 0, 0, 0, 0)),
            RstVerdict::OutOfWindow
        );
        assert_eq!(t.reset_seqs(), None);
    }

    #[test]
    fn a_segment_out_of_window_moves_nothing() {
        let mut t = established();
        t.learn(
            Sender::Client,
            &seg(f::ACK, 1101u32.wrapping_add(1 << 30), 5101, 9, 10),
            None,
        );
        assert_eq!(t.client.end, 1101);
        assert_eq!(t.client.ack, Some(5001));
    }
}

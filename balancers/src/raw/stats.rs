//! The raw balancer's own metrics on the shared stats endpoint: table size, drops by
//! reason, packets, rows created and freed, refusals, rows per backend.
//!
//! The forwarding loop publishes a [`Snapshot`] every 50 ms while packets flow (at
//! least every receive timeout, 100 ms, when idle); the endpoint reads
//! the latest one, so scraping never touches the hot path.

use l4lb_contract::metrics;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};

use crate::admin::{MetricKind, MetricsSource, MetricsWriter};
use crate::raw::device::pump::PumpCounters;
use crate::raw::nat::Nat;
use crate::raw::wire::packet::DropReason;

/// Counters and gauges at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Rows in the table.
    pub rows: usize,
    /// Most rows allowed.
    pub max_rows: usize,
    /// Drops by reason name.
    pub drops: Vec<(&'static str, u64)>,
    /// Datagrams forwarded client -> backend.
    pub to_backend: u64,
    /// Datagrams forwarded backend -> client.
    pub to_client: u64,
    /// Segments whose partial (offload) checksum was completed in full.
    pub checksum_full: u64,
    /// Rows created.
    pub rows_created: u64,
    /// Rows freed by reason name.
    pub rows_freed: Vec<(&'static str, u64)>,
    /// RST+ACK refusals sent to clients whose SYN could not be served.
    pub refusals_sent: u64,
    /// Refusals not sent because of the rate limit.
    pub refusals_limited: u64,
    /// Other resets the core sent (unknown flows, evicted rows).
    pub resets_sent: u64,
    /// Such resets not sent because of the rate limit.
    pub resets_limited: u64,
    /// ICMP "fragmentation needed" errors relayed to a flow's real sender.
    pub icmp_relayed: u64,
    /// Frames sent straight to the device.
    pub sent_direct: u64,
    /// Datagrams sent through the kernel's routed path.
    pub sent_routed: u64,
    /// Rows per backend.
    pub backend_rows: Vec<(SocketAddrV4, usize)>,
    /// Rows ever opened per backend (monotonic).
    pub backend_rows_created: Vec<(SocketAddrV4, u64)>,
}

impl Snapshot {
    /// Reads the core's counters and table, and the pump's counters.
    pub fn of(nat: &Nat, pump: &PumpCounters, backends: &[SocketAddrV4]) -> Self {
        let c = nat.counters();
        Self {
            rows: nat.table().len(),
            max_rows: nat.table().config().max_rows,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name(), c.drops_of(*r) + pump.drops_of(*r)))
                .collect(),
            to_backend: c.to_backend,
            to_client: c.to_client,
            checksum_full: c.checksum_full,
            rows_created: c.rows_created,
            rows_freed: c.rows_freed.iter().map(|(k, v)| (*k, *v)).collect(),
            refusals_sent: c.refusals_sent,
            refusals_limited: c.refusals_limited,
            resets_sent: c.resets_sent,
            resets_limited: c.resets_limited,
            icmp_relayed: c.icmp_relayed,
            sent_direct: pump.sent_direct,
            sent_routed: pump.sent_routed,
            backend_rows: backends
                .iter()
                .map(|b| (*b, nat.table().rows_for(*b)))
                .collect(),
            backend_rows_created: backends
                .iter()
                .map(|b| (*b, nat.table().rows_opened_for(*b)))
                .collect(),
        }
    }

    /// Writes the Prometheus families.
    pub fn write(&self, w: &mut MetricsWriter) {
        w.family(
            metrics::RAW_ROWS,
            MetricKind::Gauge,
            "NAT rows in the table.",
        );
        w.sample(metrics::RAW_ROWS, &[], self.rows);
        w.family(
            metrics::RAW_MAX_ROWS,
            MetricKind::Gauge,
            "Most NAT rows allowed.",
        );
        w.sample(metrics::RAW_MAX_ROWS, &[], self.max_rows);
        w.family(
            metrics::RAW_DROPS_TOTAL,
            MetricKind::Counter,
            "Datagrams not forwarded, by reason.",
        );
        for (reason, n) in &self.drops {
            w.sample(metrics::RAW_DROPS_TOTAL, &[("reason", reason)], n);
        }
        w.family(
            metrics::RAW_PACKETS_TOTAL,
            MetricKind::Counter,
            "Datagrams forwarded, by direction.",
        );
        w.sample(
            metrics::RAW_PACKETS_TOTAL,
            &[("direction", "to_backend")],
            self.to_backend,
        );
        w.sample(
            metrics::RAW_PACKETS_TOTAL,
            &[("direction", "to_client")],
            self.to_client,
        );
        w.family(
            metrics::RAW_SENT_TOTAL,
            MetricKind::Counter,
            "Datagrams sent, by path: direct (to the device and the learned next hop, \
             super-packets whole) or routed (the kernel's IP output path).",
        );
        w.sample(
            metrics::RAW_SENT_TOTAL,
            &[("path", "direct")],
            self.sent_direct,
        );
        w.sample(
            metrics::RAW_SENT_TOTAL,
            &[("path", "routed")],
            self.sent_routed,
        );
        w.family(
            metrics::RAW_CHECKSUM_FULL_TOTAL,
            MetricKind::Counter,
            "Segments with a partial (offloaded) checksum that was computed in full.",
        );
        w.sample(metrics::RAW_CHECKSUM_FULL_TOTAL, &[], self.checksum_full);
        w.family(
            metrics::RAW_ROWS_CREATED_TOTAL,
            MetricKind::Counter,
            "NAT rows created.",
        );
        w.sample(metrics::RAW_ROWS_CREATED_TOTAL, &[], self.rows_created);
        w.family(
            metrics::RAW_ROWS_FREED_TOTAL,
            MetricKind::Counter,
            "NAT rows freed, by reason.",
        );
        for (reason, n) in &self.rows_freed {
            w.sample(metrics::RAW_ROWS_FREED_TOTAL, &[("reason", reason)], n);
        }
        w.family(
            metrics::RAW_REFUSALS_TOTAL,
            MetricKind::Counter,
            "RST+ACK answers to SYNs that could not be served (no usable backend, table \
             full, NAT ports exhausted), by outcome: sent, or rate_limited (not sent).",
        );
        w.sample(
            metrics::RAW_REFUSALS_TOTAL,
            &[("outcome", "sent")],
            self.refusals_sent,
        );
        w.sample(
            metrics::RAW_REFUSALS_TOTAL,
            &[("outcome", "rate_limited")],
            self.refusals_limited,
        );
        w.family(
            metrics::RAW_RESETS_TOTAL,
            MetricKind::Counter,
            "The balancer's other resets, by outcome (sent, or rate_limited): answers to \
             segments of flows with no row, both ends of rows evicted for silence, and \
             backends' half-open connections of rows given way to new SYNs.",
        );
        w.sample(
            metrics::RAW_RESETS_TOTAL,
            &[("outcome", "sent")],
            self.resets_sent,
        );
        w.sample(
            metrics::RAW_RESETS_TOTAL,
            &[("outcome", "rate_limited")],
            self.resets_limited,
        );
        w.family(
            metrics::RAW_ICMP_RELAYED_TOTAL,
            MetricKind::Counter,
            "ICMP fragmentation-needed errors relayed to the flow's real sender, so \
             path-MTU discovery works through the balancer.",
        );
        w.sample(metrics::RAW_ICMP_RELAYED_TOTAL, &[], self.icmp_relayed);
        w.family(
            metrics::RAW_BACKEND_ROWS,
            MetricKind::Gauge,
            "NAT rows towards each backend.",
        );
        for (b, n) in &self.backend_rows {
            w.sample(metrics::RAW_BACKEND_ROWS, &[("backend", &b.to_string())], n);
        }
        w.family(
            metrics::RAW_BACKEND_ROWS_CREATED_TOTAL,
            MetricKind::Counter,
            "NAT rows ever opened towards each backend.",
        );
        for (b, n) in &self.backend_rows_created {
            w.sample(
                metrics::RAW_BACKEND_ROWS_CREATED_TOTAL,
                &[("backend", &b.to_string())],
                n,
            );
        }
    }

    /// A one-line summary of the non-zero drops (shutdown log).
    pub fn drops_line(&self) -> String {
        let parts: Vec<String> = self
            .drops
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }
}

/// The latest snapshot, shared with the stats endpoint.
#[derive(Debug, Clone, Default)]
pub struct Published(pub Arc<Mutex<Snapshot>>);

impl Published {
    /// Replaces the snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        if let Ok(mut s) = self.0.lock() {
            *s = snapshot;
        }
    }
}

impl MetricsSource for Published {
    fn write_metrics(&self, out: &mut MetricsWriter) {
        if let Ok(s) = self.0.lock() {
            s.write(out);
        }
    }
}

//! The NAT table: one row per client connection, O(1) lookups both ways.
//!
//! Rows are found by client `(ip, port)` and by `(backend, nat port)`. NAT ports come from
//! a per-backend first-in-first-out pool over a configured range, so two live rows to the
//! same backend never share a port and a freed port is reused as late as possible. The
//! table is bounded: when full, the oldest half-open row gives way to a new SYN; only
//! with no half-open row left is the SYN refused ([`OpenError::TableFull`]). A backend's
//! port pool is bounded the same way: when empty, that backend's oldest half-open row
//! gives way ([`OpenError::PortsExhausted`] only with none left). Under pressure (the
//! pool or the table more than [`PRESSURE_NUM`]/[`PRESSURE_DEN`] full) half-open rows
//! silent for [`EARLY_DROP_AGE`] are freed as new SYNs arrive, as conntrack's early
//! drop does, so a SYN flood from spoofed addresses cannot keep real clients out.
//! Time is a parameter (`now`, a [`Duration`] since any fixed start), so every rule here
//! is tested without clocks.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::raw::nat::track::Tracking;

/// Table limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// Most rows at once.
    pub max_rows: usize,
    /// A row that never completed its handshake is freed after this much silence.
    pub half_open_timeout: Duration,
    /// An established row is freed after this much silence.
    pub established_timeout: Duration,
    /// After FIN in both directions (so the last ACK can pass), the row lives this long.
    pub fin_linger: Duration,
    /// NAT ports handed out, per backend.
    pub nat_ports: RangeInclusive<u16>,
}

/// Default `--max-rows`.
pub const DEFAULT_MAX_ROWS: usize = 65_536;
/// Default `--half-open-timeout` (a client's SYN retries fit within it).
pub const DEFAULT_HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--idle-timeout` of established rows.
pub const DEFAULT_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(3600);
/// Under pressure, a half-open row silent this long gives way to new SYNs.
pub const EARLY_DROP_AGE: Duration = Duration::from_secs(1);
/// Pressure: more than `PRESSURE_NUM / PRESSURE_DEN` of the pool or the table in use.
pub const PRESSURE_NUM: usize = 3;
/// See [`PRESSURE_NUM`].
pub const PRESSURE_DEN: usize = 4;
/// Most rows early-dropped for one new SYN (keeps `open` O(1)).
const EARLY_DROPS_PER_OPEN: usize = 4;

/// Default `--fin-linger`.
pub const DEFAULT_FIN_LINGER: Duration = Duration::from_secs(2);

/// Handle of a row; stale handles are detected by their generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowId {
    slot: u32,
    generation: u32,
}

/// Which way a segment travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to backend.
    ToBackend,
    /// Backend to client.
    ToClient,
}

/// Life stage of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// The client's SYN was seen, the handshake is not complete.
    HalfOpen,
    /// The handshake completed.
    Established,
    /// FIN seen in both directions; freed at `until`.
    Closing {
        /// When the row is freed.
        until: Duration,
    },
}

/// One client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Client address and port.
    pub client: SocketAddrV4,
    /// The balancer address the client connected to (source of replies).
    pub lb_ip: Ipv4Addr,
    /// Chosen backend.
    pub backend: SocketAddrV4,
    /// Source port towards the backend.
    pub nat_port: u16,
    /// Life stage.
    pub state: RowState,
    /// Last segment in either direction.
    pub last_seen: Duration,
    /// FIN seen from the client.
    pub fin_client: bool,
    /// FIN seen from the backend.
    pub fin_backend: bool,
    /// Any segment seen from the backend.
    pub backend_seen: bool,
    /// While half-open: the SYN as sent to the backend, to send again if the backend
    /// still holds an old connection on this NAT port in TIME_WAIT.
    pub syn: Option<Box<[u8]>>,
    /// Sequence numbers and windows of both sides.
    pub track: Tracking,
}

/// Why a row was freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FreeReason {
    /// FIN in both directions, then the linger passed.
    Fin,
    /// A RST in either direction.
    Rst,
    /// Half-open for longer than the half-open timeout.
    HalfOpenTimeout,
    /// Established and silent for longer than the idle timeout.
    IdleTimeout,
    /// Evicted, as the oldest half-open row (of the table or of the backend's port
    /// pool), to make room for a new SYN.
    Evicted,
    /// Half-open and silent for [`EARLY_DROP_AGE`] while the table or its backend's port
    /// pool was under pressure.
    EarlyDrop,
    /// The client opened a new connection from the same port after closing.
    Replaced,
}

impl FreeReason {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            FreeReason::Fin => "fin",
            FreeReason::Rst => "rst",
            FreeReason::HalfOpenTimeout => "half_open_timeout",
            FreeReason::IdleTimeout => "idle_timeout",
            FreeReason::Evicted => "evicted",
            FreeReason::EarlyDrop => "early_drop",
            FreeReason::Replaced => "replaced",
        }
    }
}

/// Why a new row could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Full of established rows.
    #[error("the NAT table is full of established rows")]
    TableFull,
    /// No free NAT port towards that backend.
    #[error("every NAT port towards the backend is in use")]
    PortsExhausted,
}

/// A new row, and the rows freed to make it.
#[derive(Debug)]
pub struct Opened {
    /// The row.
    pub id: RowId,
    /// Rows freed for it (an evicted half-open row, or a closing row of the same client).
    pub freed: Vec<(Row, FreeReason)>,
}

struct Slot {
    generation: u32,
    row: Option<Row>,
}

/// FIFO pool of NAT ports towards one backend.
#[derive(Debug)]
struct PortPool {
    free: VecDeque<u16>,
    /// Rows ever opened towards this backend (monotonic, unlike the live count).
    opened: u64,
    /// Its rows in the order they were opened, while half-open (stale handles are skipped
    /// as they come up, and swept by `expire`).
    half_open: VecDeque<RowId>,
}

impl PortPool {
    fn new(range: &RangeInclusive<u16>) -> Self {
        Self {
            free: range.clone().collect(),
            opened: 0,
            half_open: VecDeque::new(),
        }
    }
}

/// Which queue of half-open rows to take from.
#[derive(Clone, Copy)]
enum Queue {
    Table,
    Pool(SocketAddrV4),
}

/// The NAT table.
pub struct NatTable {
    config: TableConfig,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    len: usize,
    by_client: HashMap<SocketAddrV4, RowId>,
    by_nat: HashMap<(SocketAddrV4, u16), RowId>,
    ports: HashMap<SocketAddrV4, PortPool>,
    half_open: VecDeque<RowId>,
}

impl NatTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> Self {
        Self {
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            len: 0,
            by_client: HashMap::new(),
            by_nat: HashMap::new(),
            ports: HashMap::new(),
            half_open: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows ever opened towards `backend`: a counter that never goes down, so an observer
    /// can tell a new row from a freed one replaced by another between two looks.
    pub fn rows_opened_for(&self, backend: SocketAddrV4) -> u64 {
        self.ports.get(&backend).map_or(0, |pool| pool.opened)
    }

    /// Rows towards `backend`.
    pub fn rows_for(&self, backend: SocketAddrV4) -> usize {
        let range = self.config.nat_ports.clone();
        let size = usize::from(range.end() - range.start()) + 1;
        self.ports
            .get(&backend)
            .map_or(0, |pool| size - pool.free.len())
    }

    /// The row of a client connection.
    pub fn by_client(&self, client: SocketAddrV4) -> Option<RowId> {
        self.by_client.get(&client).copied()
    }

    /// The row behind a backend's segment to `nat_port`.
    pub fn by_nat(&self, backend: SocketAddrV4, nat_port: u16) -> Option<RowId> {
        self.by_nat.get(&(backend, nat_port)).copied()
    }

    /// A row by handle (None if freed meanwhile).
    pub fn get(&self, id: RowId) -> Option<&Row> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.row.as_ref()
    }

    /// Mutable access to a row (None if freed meanwhile).
    pub fn get_mut(&mut self, id: RowId) -> Option<&mut Row> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.row.as_mut()
    }

    /// Opens a row for a client's first SYN towards `backend`. The caller has checked
    /// that no live row exists for `client` (see [`NatTable::by_client`]).
    pub fn open(
        &mut self,
        client: SocketAddrV4,
        lb_ip: Ipv4Addr,
        backend: SocketAddrV4,
        now: Duration,
    ) -> Result<Opened, OpenError> {
        let mut freed = Vec::new();
        if let Some(old) = self.by_client(client) {
            if let Some(row) = self.free(old) {
                freed.push((row, FreeReason::Replaced));
            }
        }
        let range = self.config.nat_ports.clone();
        let size = usize::from(range.end() - range.start()) + 1;
        let pool = self
            .ports
            .entry(backend)
            .or_insert_with(|| PortPool::new(&range));
        let pool_pressed = (size - pool.free.len()) * PRESSURE_DEN > size * PRESSURE_NUM;
        let table_pressed = self.len * PRESSURE_DEN > self.config.max_rows * PRESSURE_NUM;
        if pool_pressed {
            self.early_drop(Queue::Pool(backend), now, &mut freed);
        }
        if table_pressed {
            self.early_drop(Queue::Table, now, &mut freed);
        }
        if self.len >= self.config.max_rows {
            match self.oldest_half_open(Queue::Table) {
                Some(victim) => {
                    if let Some(row) = self.free(victim) {
                        freed.push((row, FreeReason::Evicted));
                    }
                }
                None => return Err(OpenError::TableFull),
            }
        }
        if self.ports.get(&backend).is_some_and(|p| p.free.is_empty()) {
            match self.oldest_half_open(Queue::Pool(backend)) {
                Some(victim) => {
                    if let Some(row) = self.free(victim) {
                        freed.push((row, FreeReason::Evicted));
                    }
                }
                None => return Err(OpenError::PortsExhausted),
            }
        }
        let pool = self
            .ports
            .entry(backend)
            .or_insert_with(|| PortPool::new(&range));
        let nat_port = pool.free.pop_front().ok_or(OpenError::PortsExhausted)?;
        pool.opened += 1;
        let row = Row {
            client,
            lb_ip,
            backend,
            nat_port,
            state: RowState::HalfOpen,
            last_seen: now,
            fin_client: false,
            fin_backend: false,
            backend_seen: false,
            syn: None,
            track: Tracking::default(),
        };
        let id = match self.free_slots.pop() {
            Some(slot) => {
                let s = &mut self.slots[slot as usize];
                s.generation = s.generation.wrapping_add(1);
                s.row = Some(row);
                RowId {
                    slot,
                    generation: s.generation,
                }
            }
            None => {
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Slot {
                    generation: 0,
                    row: Some(row),
                });
                RowId {
                    slot,
                    generation: 0,
                }
            }
        };
        self.len += 1;
        self.by_client.insert(client, id);
        self.by_nat.insert((backend, nat_port), id);
        self.half_open.push_back(id);
        if let Some(pool) = self.ports.get_mut(&backend) {
            pool.half_open.push_back(id);
        }
        Ok(Opened { id, freed })
    }

    fn queue(&mut self, q: Queue) -> Option<&mut VecDeque<RowId>> {
        match q {
            Queue::Table => Some(&mut self.half_open),
            Queue::Pool(backend) => self.ports.get_mut(&backend).map(|p| &mut p.half_open),
        }
    }

    fn is_half_open(&self, id: RowId) -> bool {
        self.get(id)
            .is_some_and(|row| row.state == RowState::HalfOpen)
    }

    /// Drops the handles at the front of a queue that are no longer half-open rows.
    fn skip_stale(&mut self, q: Queue) {
        while let Some(&id) = self.queue(q).and_then(|q| q.front()) {
            if self.is_half_open(id) {
                return;
            }
            self.queue(q).map(VecDeque::pop_front);
        }
    }

    fn oldest_half_open(&mut self, q: Queue) -> Option<RowId> {
        self.skip_stale(q);
        self.queue(q).and_then(VecDeque::pop_front)
    }

    /// Frees up to [`EARLY_DROPS_PER_OPEN`] of the oldest half-open rows of a queue that
    /// have been silent for [`EARLY_DROP_AGE`].
    fn early_drop(&mut self, q: Queue, now: Duration, freed: &mut Vec<(Row, FreeReason)>) {
        for _ in 0..EARLY_DROPS_PER_OPEN {
            self.skip_stale(q);
            let Some(&id) = self.queue(q).and_then(|q| q.front()) else {
                return;
            };
            let old = self
                .get(id)
                .is_some_and(|row| now.saturating_sub(row.last_seen) >= EARLY_DROP_AGE);
            if !old {
                return;
            }
            self.queue(q).map(VecDeque::pop_front);
            if let Some(row) = self.free(id) {
                freed.push((row, FreeReason::EarlyDrop));
            }
        }
    }

    /// Records a segment with `flags` on a row; returns `Some(reason)` if the row must be
    /// freed now (a RST), after the segment is forwarded.
    pub fn observe(
        &mut self,
        id: RowId,
        dir: Direction,
        flags: u8,
        now: Duration,
    ) -> Option<FreeReason> {
        use crate::raw::wire::packet::flags as f;
        let linger = self.config.fin_linger;
        let row = self.get_mut(id)?;
        row.last_seen = now;
        if flags & f::RST != 0 {
            return Some(FreeReason::Rst);
        }
        match dir {
            Direction::ToClient => row.backend_seen = true,
            Direction::ToBackend => {
                if row.state == RowState::HalfOpen
                    && row.backend_seen
                    && flags & f::ACK != 0
                    && flags & f::SYN == 0
                {
                    row.state = RowState::Established;
                    row.syn = None;
                }
            }
        }
        if flags & f::FIN != 0 {
            match dir {
                Direction::ToBackend => row.fin_client = true,
                Direction::ToClient => row.fin_backend = true,
            }
            if row.fin_client && row.fin_backend && !matches!(row.state, RowState::Closing { .. }) {
                row.state = RowState::Closing {
                    until: now + linger,
                };
            }
        }
        None
    }

    /// Frees a row; returns it (None if already freed).
    pub fn free(&mut self, id: RowId) -> Option<Row> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let row = slot.row.take()?;
        self.free_slots.push(id.slot);
        self.len -= 1;
        self.by_client.remove(&row.client);
        self.by_nat.remove(&(row.backend, row.nat_port));
        if let Some(pool) = self.ports.get_mut(&row.backend) {
            pool.free.push_back(row.nat_port);
        }
        Some(row)
    }

    /// Frees every row whose time is up; returns them with the reason. Walks the whole
    /// table: call it about once a second, not per packet.
    pub fn expire(&mut self, now: Duration) -> Vec<(Row, FreeReason)> {
        let half_open = self.config.half_open_timeout;
        let established = self.config.established_timeout;
        let mut due = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(row) = &slot.row else { continue };
            let silent = now.saturating_sub(row.last_seen);
            let reason = match row.state {
                RowState::HalfOpen if silent >= half_open => Some(FreeReason::HalfOpenTimeout),
                RowState::Established if silent >= established => Some(FreeReason::IdleTimeout),
                RowState::Closing { until } if now >= until => Some(FreeReason::Fin),
                _ => None,
            };
            if let Some(reason) = reason {
                let id = RowId {
                    slot: i as u32,
                    generation: slot.generation,
                };
                due.push((id, reason));
            }
        }
        let freed = due
            .into_iter()
            .filter_map(|(id, reason)| self.free(id).map(|row| (row, reason)))
            .collect();
        let slots = &self.slots;
        let live = |id: &RowId| {
            slots.get(id.slot as usize).is_some_and(|s| {
                s.generation == id.generation
                    && s.row
                        .as_ref()
                        .is_some_and(|r| r.state == RowState::HalfOpen)
            })
        };
        self.half_open.retain(live);
        for pool in self.ports.values_mut() {
            pool.half_open.retain(live);
        }
        freed
    }

    /// Every live row (stats, shutdown log).
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.slots.iter().filter_map(|s| s.row.as_ref())
    }
}

#[cfg(test)]
mod tests;

//! Names of the series on the balancers' stats endpoint (`--admin`, Prometheus text).
//!
//! Per-backend series carry a `backend="IP:PORT"` label; [`BACKEND_STATE`] also a
//! `state` label (`up`, `suspect`, `down`, ...). The harness reads health and placement
//! from these names; people and scrapers read all of them.

/// Gauge, per backend: 1 when the backend receives new clients, else 0.
pub const BACKEND_UP: &str = "l4lb_backend_up";
/// Gauge, per backend and state: 1 for the backend's current health state.
pub const BACKEND_STATE: &str = "l4lb_backend_state";
/// The value of the `state` label of [`BACKEND_STATE`] for a fully healthy backend.
pub const STATE_UP: &str = "up";
/// Gauge, per backend: sessions bound to it now.
pub const BACKEND_SESSIONS_LIVE: &str = "l4lb_backend_sessions_live";
/// Counter, per backend: sessions ever bound to it.
pub const BACKEND_SESSIONS_TOTAL: &str = "l4lb_backend_sessions_total";
/// Counter, per backend: failed health checks.
pub const BACKEND_CHECK_FAILURES_TOTAL: &str = "l4lb_backend_check_failures_total";
/// Counter, per backend: failed connects of sessions.
pub const BACKEND_CONNECT_FAILURES_TOTAL: &str = "l4lb_backend_connect_failures_total";
/// Counter, per backend: health checks that failed for a local reason (out of
/// descriptors or memory, no local address left), which do not change its health.
pub const HEALTH_LOCAL_ERRORS_TOTAL: &str = "l4lb_health_local_errors_total";
/// Counter, per backend: bytes sent to it.
pub const BACKEND_SENT_BYTES_TOTAL: &str = "l4lb_backend_sent_bytes_total";
/// Counter, per backend: bytes received from it.
pub const BACKEND_RECEIVED_BYTES_TOTAL: &str = "l4lb_backend_received_bytes_total";

/// Gauge: NAT rows in the raw balancer's table.
pub const RAW_ROWS: &str = "l4lb_raw_rows";
/// Gauge: the table's bound.
pub const RAW_MAX_ROWS: &str = "l4lb_raw_max_rows";
/// Counter, per `reason`: datagrams dropped.
pub const RAW_DROPS_TOTAL: &str = "l4lb_raw_drops_total";
/// Counter, per `direction`: datagrams received.
pub const RAW_PACKETS_TOTAL: &str = "l4lb_raw_packets_total";
/// Counter, per `path`: datagrams sent.
pub const RAW_SENT_TOTAL: &str = "l4lb_raw_sent_total";
/// Counter: datagrams whose checksum was computed in full.
pub const RAW_CHECKSUM_FULL_TOTAL: &str = "l4lb_raw_checksum_full_total";
/// Counter: NAT rows created.
pub const RAW_ROWS_CREATED_TOTAL: &str = "l4lb_raw_rows_created_total";
/// Counter, per `reason`: NAT rows freed.
pub const RAW_ROWS_FREED_TOTAL: &str = "l4lb_raw_rows_freed_total";
/// Counter, per `reason`: SYNs refused with a RST.
pub const RAW_REFUSALS_TOTAL: &str = "l4lb_raw_refusals_total";
/// Counter, per `outcome`: the raw balancer's other resets (answers to segments of
/// unknown flows, both ends of idle-evicted rows, backends' half-open connections of rows
/// given way to new SYNs).
pub const RAW_RESETS_TOTAL: &str = "l4lb_raw_resets_total";
/// Counter: ICMP "fragmentation needed" errors relayed to a flow's real sender (path-MTU
/// discovery through the raw balancer).
pub const RAW_ICMP_RELAYED_TOTAL: &str = "l4lb_raw_icmp_relayed_total";
/// Gauge, per backend: NAT rows to it now.
pub const RAW_BACKEND_ROWS: &str = "l4lb_raw_backend_rows";
/// Counter, per backend: NAT rows ever created to it (the raw balancer's placements).
pub const RAW_BACKEND_ROWS_CREATED_TOTAL: &str = "l4lb_raw_backend_rows_created_total";

/// Counter: client connections accepted by the proxy.
pub const PROXY_ACCEPTED_TOTAL: &str = "l4lb_proxy_accepted_total";
/// Gauge: the proxy's live sessions.
pub const PROXY_SESSIONS_LIVE: &str = "l4lb_proxy_sessions_live";
/// Counter, per `reason`: clients refused.
pub const PROXY_REFUSED_TOTAL: &str = "l4lb_proxy_refused_total";
/// Counter, per `reason`: sessions closed.
pub const PROXY_SESSIONS_CLOSED_TOTAL: &str = "l4lb_proxy_sessions_closed_total";
/// Counter: backend connects retried on another backend.
pub const PROXY_CONNECT_RETRIES_TOTAL: &str = "l4lb_proxy_connect_retries_total";

//! Long names of the balancer flags the harness passes (`--NAME VALUE`).
//!
//! The balancers' clap definitions name their flags with these constants and the harness
//! builds its command lines from them, so a renamed flag breaks the build, not a run.

/// raw: the address the balancer's NAT rows use towards backends.
pub const SOURCE_IP: &str = "source-ip";
/// raw: the listening port.
pub const PORT: &str = "port";
/// proxy: the listening address.
pub const LISTEN: &str = "listen";
/// Both: one backend `IP:PORT` (repeatable).
pub const BACKEND: &str = "backend";
/// Both: time between health checks.
pub const HEALTH_INTERVAL: &str = "health-interval";
/// Both: time a health check may take.
pub const HEALTH_TIMEOUT: &str = "health-timeout";
/// Both: successes in a row that bring a backend back.
pub const RISE: &str = "rise";
/// Both: failures in a row that take a backend out.
pub const FALL: &str = "fall";
/// Both: bytes a health check sends.
pub const HEALTH_SEND: &str = "health-send";
/// Both: bytes a health check expects back.
pub const HEALTH_EXPECT: &str = "health-expect";
/// Both: silence after which a session is closed (raw: a row is freed).
pub const IDLE_TIMEOUT: &str = "idle-timeout";
/// proxy: time a backend connect may take.
pub const CONNECT_TIMEOUT: &str = "connect-timeout";
/// Both: the stats endpoint's address.
pub const ADMIN: &str = "admin";

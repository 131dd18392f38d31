//! Command-line pieces both balancers flatten into their clap arguments, and their
//! validation into real types.
//!
//! Flags arrive as strings and are validated here (not by clap value parsers), so that
//! every invalid value gives one clear [`UsageError`] line and exit code 2.
//!
//! ```text
//! --backend IP:PORT[,weight=N]   (repeatable; or the original positional IP PORT IP PORT ...)
//! --health-interval 5s --health-timeout 2s --fall 3 --rise 1 [--health-send S --health-expect S]
//! --log-format text|json         --admin ADDR (stats endpoint, off by default)
//! ```

use l4lb_contract::flags;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::health::CheckConfig;
use crate::logging::LogFormat;
use crate::pool::{Backend, Thresholds};
use crate::usage::UsageError;

/// Longest duration any flag accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest rise/fall threshold accepted.
pub const MAX_THRESHOLD: u32 = 1000;
/// Largest backend weight accepted.
pub const MAX_WEIGHT: u32 = 10_000;

/// Backends: `--backend IP:PORT[,weight=N]`, repeatable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BackendArgs {
    /// A backend `IP:PORT`, optionally `IP:PORT,weight=N` (repeat for each backend).
    #[arg(long = flags::BACKEND, value_name = "IP:PORT")]
    pub backend: Vec<String>,
}

impl BackendArgs {
    /// Validates `--backend` flags together with the original positional form
    /// (`IP PORT IP PORT ...`, already stripped of anything before the first IP).
    pub fn resolve(&self, positional: &[String]) -> Result<Vec<Backend>, UsageError> {
        let mut backends = Vec::new();
        for spec in &self.backend {
            backends.push(parse_backend(spec)?);
        }
        backends.extend(parse_positional(positional)?);
        if backends.is_empty() {
            return Err(UsageError::new(
                "no backends: give --backend IP:PORT (repeatable) or positional IP PORT pairs",
            ));
        }
        let mut seen = HashSet::new();
        for b in &backends {
            if !seen.insert(b.addr) {
                return Err(UsageError::new(format!(
                    "duplicate backend {}: list each backend once (use ,weight=N for a bigger share)",
                    b.addr
                )));
            }
        }
        Ok(backends)
    }
}

/// Parses `IP:PORT` or `IP:PORT,weight=N`.
pub fn parse_backend(spec: &str) -> Result<Backend, UsageError> {
    let (addr_text, options) = match spec.split_once(',') {
        Some((a, o)) => (a, Some(o)),
        None => (spec, None),
    };
    let addr = parse_addr("--backend", addr_text)?;
    let mut backend = Backend::new(addr);
    if let Some(options) = options {
        let weight = options
            .strip_prefix("weight=")
            .and_then(|w| w.parse::<u32>().ok())
            .filter(|w| (1..=MAX_WEIGHT).contains(w))
            .ok_or_else(|| {
                UsageError::new(format!(
                    "invalid backend option {options:?} in {spec:?}: expected weight=N with N from 1 to {MAX_WEIGHT}"
                ))
            })?;
        backend.weight = weight;
    }
    Ok(backend)
}

/// Parses a socket address `IP:PORT` (IPv6 as `[::1]:PORT`); `flag` names it in errors.
pub fn parse_addr(flag: &str, text: &str) -> Result<SocketAddr, UsageError> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        UsageError::new(format!(
            "invalid address {text:?} for {flag}: expected IP:PORT, e.g. 10.0.0.2:8090"
        ))
    })?;
    if addr.port() == 0 && flag == "--backend" {
        return Err(UsageError::new(format!(
            "invalid address {text:?} for {flag}: port 0 cannot be connected to"
        )));
    }
    Ok(addr)
}

/// Parses the original positional form `IP PORT IP PORT ...`.
pub fn parse_positional(words: &[String]) -> Result<Vec<Backend>, UsageError> {
    if words.len() % 2 != 0 {
        return Err(UsageError::new(format!(
            "positional backends come in IP PORT pairs, got {} word(s): {}",
            words.len(),
            words.join(" ")
        )));
    }
    words
        .chunks(2)
        .map(|pair| {
            let ip: IpAddr = pair[0].parse().map_err(|_| {
                UsageError::new(format!(
                    "invalid backend IP {:?}: expected e.g. 10.0.0.2",
                    pair[0]
                ))
            })?;
            let port: u16 = pair[1].parse().ok().filter(|&p| p != 0).ok_or_else(|| {
                UsageError::new(format!(
                    "invalid backend port {:?} for {}: expected 1-65535",
                    pair[1], pair[0]
                ))
            })?;
            Ok(Backend::new(SocketAddr::new(ip, port)))
        })
        .collect()
}

/// Parses a human duration (`250ms`, `5s`, `1m`) for `flag`: more than zero, at most a day.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, UsageError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        UsageError::new(format!(
            "invalid duration {text:?} for {flag}: {e} (use e.g. 250ms, 5s, 1m)"
        ))
    })?;
    if d.is_zero() {
        return Err(UsageError::new(format!(
            "{flag} must be more than zero, got {text:?}"
        )));
    }
    if d > MAX_DURATION {
        return Err(UsageError::new(format!(
            "{flag} {text:?} is too long: at most 1 day"
        )));
    }
    Ok(d)
}

/// Longest `--busy-poll`: past a millisecond of silence, polling is only spinning.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(1);

/// Parses `--busy-poll` (a clap value parser): a human duration from `0s` (off) to
/// [`MAX_BUSY_POLL`].
pub fn parse_busy_poll(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (use e.g. 0s, 20us, 100us)"))?;
    if d > MAX_BUSY_POLL {
        return Err(format!(
            "{text:?} is too long: at most 1ms (past that, polling only burns CPU; 0s turns it off)"
        ));
    }
    Ok(d)
}

/// Active health-check flags (defaults: the original raw balancer's).
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Time between two health checks of a backend.
    #[arg(long = flags::HEALTH_INTERVAL, value_name = "DURATION", default_value = "5s")]
    pub health_interval: String,
    /// Longest a health check may take.
    #[arg(long = flags::HEALTH_TIMEOUT, value_name = "DURATION", default_value = "2s")]
    pub health_timeout: String,
    /// Failed checks in a row that take a backend down.
    #[arg(long = flags::FALL, value_name = "N", default_value_t = 3)]
    pub fall: u32,
    /// Passed checks in a row that bring a down backend back up.
    #[arg(long = flags::RISE, value_name = "N", default_value_t = 1)]
    pub rise: u32,
    /// Text to send after connecting (escapes \n \r \t \\ understood).
    #[arg(long = flags::HEALTH_SEND, value_name = "TEXT")]
    pub health_send: Option<String>,
    /// Prefix the backend's reply must start with (escapes as for --health-send).
    #[arg(long = flags::HEALTH_EXPECT, value_name = "TEXT")]
    pub health_expect: Option<String>,
}

impl Default for HealthArgs {
    fn default() -> Self {
        Self {
            health_interval: "5s".into(),
            health_timeout: "2s".into(),
            fall: 3,
            rise: 1,
            health_send: None,
            health_expect: None,
        }
    }
}

impl HealthArgs {
    /// Validates into the checker settings and the pool thresholds.
    pub fn resolve(&self) -> Result<(CheckConfig, Thresholds), UsageError> {
        let interval = parse_duration("--health-interval", &self.health_interval)?;
        let timeout = parse_duration("--health-timeout", &self.health_timeout)?;
        if timeout >= interval {
            return Err(UsageError::new(format!(
                "--health-timeout {} must be shorter than --health-interval {} (a check must end before the next one starts)",
                self.health_timeout.trim(),
                self.health_interval.trim()
            )));
        }
        for (flag, n) in [("--fall", self.fall), ("--rise", self.rise)] {
            if !(1..=MAX_THRESHOLD).contains(&n) {
                return Err(UsageError::new(format!(
                    "{flag} must be from 1 to {MAX_THRESHOLD}, got {n}"
                )));
            }
        }
        let payload = |flag: &str, text: &Option<String>| -> Result<Option<Vec<u8>>, UsageError> {
            match text {
                None => Ok(None),
                Some(t) if t.is_empty() => {
                    Err(UsageError::new(format!("{flag} must not be empty")))
                }
                Some(t) => Ok(Some(unescape(t))),
            }
        };
        let config = CheckConfig {
            interval,
            timeout,
            send: payload("--health-send", &self.health_send)?,
            expect: payload("--health-expect", &self.health_expect)?,
        };
        Ok((
            config,
            Thresholds {
                rise: self.rise,
                fall: self.fall,
            },
        ))
    }
}

/// Turns `\n`, `\r`, `\t`, `\\` into their bytes; anything else is kept as written.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let decoded = if c == '\\' {
            match chars.next() {
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                Some('\\') => '\\',
                Some(other) => {
                    out.push(b'\\');
                    other
                }
                None => '\\',
            }
        } else {
            c
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
    }
    out
}

/// `--log-format text|json`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct LogArgs {
    /// Log lines as text for people or one JSON object per line for tools.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the tracing subscriber ([`crate::logging::init`]).
    pub fn init(&self) {
        crate::logging::init(self.log_format);
    }
}

/// `--admin ADDR`: the stats endpoint, off by default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9100). Off by default.
    #[arg(long = flags::ADMIN, value_name = "ADDR")]
    pub admin: Option<String>,
}

impl AdminArgs {
    /// The address to serve on, if asked for.
    pub fn resolve(&self) -> Result<Option<SocketAddr>, UsageError> {
        self.admin
            .as_deref()
            .map(|a| parse_addr("--admin", a))
            .transpose()
    }
}

#[cfg(test)]
mod tests;

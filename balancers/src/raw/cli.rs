//! Arguments of `l4lb raw`, and their validation, in one [`RawArgs::resolve`], into a
//! [`RawConfig`]. Resolving is pure: the one fact it needs from the host (the kernel's
//! ephemeral port range) is a parameter, and the checks against the host's addresses
//! happen when the balancer starts.

use l4lb_contract::flags;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::health::CheckConfig;
use crate::pool::{Backend, Thresholds};
use crate::raw::nat::table::{self, TableConfig};
use crate::usage::UsageError;

/// Most datagrams received or sent per system call (`--batch`).
pub const MAX_BATCH: usize = 1024;

/// Default listening port (the original's).
pub const DEFAULT_PORT: u16 = 20000;

/// `l4lb raw` arguments.
#[derive(Debug, clap::Args)]
pub struct RawArgs {
    /// Backends (`--backend IP:PORT`, repeatable, round-robin order).
    #[command(flatten)]
    pub backends: crate::args::BackendArgs,
    /// Balancer options.
    #[command(flatten)]
    pub options: RawOptions,
    /// Health-check flags (shared with the proxy).
    #[command(flatten)]
    pub health: crate::args::HealthArgs,
    /// Stats endpoint.
    #[command(flatten)]
    pub admin: crate::args::AdminArgs,
    /// Log format.
    #[command(flatten)]
    pub log: crate::args::LogArgs,
    /// Original positional form: `SOURCE_IP IP PORT IP PORT ...` (without SOURCE_IP when
    /// `--source-ip` is given).
    pub positional: Vec<String>,
}

/// `l4lb raw` options (the shared health/admin/log flags are added by [`RawArgs`]).
#[derive(Debug, Clone, clap::Args)]
pub struct RawOptions {
    /// Source address towards the backends (this host's address on their network).
    #[arg(long = flags::SOURCE_IP, value_name = "IP")]
    pub source_ip: Option<Ipv4Addr>,
    /// Port the clients connect to.
    #[arg(long = flags::PORT, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// NAT source ports towards each backend, `LOW-HIGH` (default: the 16,384 ports just
    /// below the kernel's ip_local_port_range, so they never collide with the kernel's
    /// own ephemeral ports, e.g. the health checks').
    #[arg(long, value_name = "LOW-HIGH")]
    pub nat_ports: Option<String>,
    /// Most NAT rows at once.
    #[arg(long, default_value_t = table::DEFAULT_MAX_ROWS)]
    pub max_rows: usize,
    /// Free a row whose handshake did not complete after this much silence.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub half_open_timeout: Duration,
    /// Free an established row after this much silence.
    #[arg(long = flags::IDLE_TIMEOUT, value_parser = humantime::parse_duration, default_value = "1h")]
    pub idle_timeout: Duration,
    /// Keep a row this long after FIN in both directions (for the last ACK).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub fin_linger: Duration,
    /// Add the RST-drop rule if it is missing, and remove it on exit.
    #[arg(long)]
    pub install_rst_drop: bool,
    /// Egress MTU: larger (GRO/TSO super-) packets are segmented in user space.
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// Datagrams received and sent per system call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Where segments are taken from: `packet` (AF_PACKET, kernel processing of our
    /// ports cut off in PREROUTING) or `raw` (a raw TCP socket, the original's way).
    #[arg(long, value_enum, default_value_t = Capture::Packet)]
    pub capture: Capture,
    /// Send on a second thread (overlaps the receivers' kernel work with receiving).
    #[arg(long)]
    pub send_thread: bool,
    /// After each batch, poll the socket without sleeping for this long before sleeping
    /// in the kernel (0s: sleep at once). Saves the wake-up on each packet of a
    /// request-response flow, for up to this much CPU time per quiet gap; an idle
    /// balancer still sleeps.
    #[arg(long, value_parser = crate::args::parse_busy_poll, default_value = "20us")]
    pub busy_poll: Duration,
    /// How rewritten packets leave: `direct` (default with `--capture packet`: straight
    /// to the device and the next hop learned from received frames, super-packets whole)
    /// or `routed` (through the kernel's IP output path, the only choice with
    /// `--capture raw`).
    #[arg(long, value_enum)]
    pub send: Option<SendPath>,
    /// How `--capture packet` takes frames from the kernel: `socket` (a batched receive
    /// system call) or `ring` (a receive ring shared with the kernel: no system call
    /// while frames are waiting; super-packets still come through the socket).
    #[arg(long, value_enum, default_value_t = Receive::Socket)]
    pub receive: Receive,
    /// Time where each packet's time goes (queued in the socket, rewrite, send) and write
    /// the histograms to FILE as JSON when stopping. Costs three clock reads a batch and a
    /// kernel timestamp per frame; the queued stage needs `--capture packet`.
    #[arg(long, value_name = "FILE")]
    pub stage_times: Option<std::path::PathBuf>,
}

/// Where segments are taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Capture {
    /// An AF_PACKET socket, with the kernel's own processing of our ports cut off in
    /// PREROUTING (fast): together with the `raw`-table PREROUTING drop, the kernel never
    /// processes our segments (no socket lookup, no RST to build and drop).
    Packet,
    /// A raw TCP socket: a copy of what the kernel also processes (the original's way).
    Raw,
}

/// How the packet capture takes frames from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Receive {
    /// `recvmmsg` on the packet socket.
    Socket,
    /// A `PACKET_RX_RING` (`TPACKET_V2`) ring mapped onto it.
    Ring,
}

/// How rewritten packets leave the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendPath {
    /// An `AF_PACKET` socket, to the next hop learned from received frames (confirmed by
    /// the routing table); a connection's first SYN and unknown hops still go routed.
    Direct,
    /// A raw IP socket: the kernel routes, resolves neighbours, runs OUTPUT/POSTROUTING.
    Routed,
}

/// Everything `l4lb raw` runs with, validated.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// Source address towards backends.
    pub source_ip: Ipv4Addr,
    /// Backends, in round-robin order (for the pool).
    pub backends: Vec<Backend>,
    /// The same backends' IPv4 addresses, in the same order.
    pub backend_addrs: Vec<SocketAddrV4>,
    /// Active health-check settings.
    pub check: CheckConfig,
    /// Rise/fall thresholds.
    pub thresholds: Thresholds,
    /// Stats endpoint address, if any.
    pub admin: Option<std::net::SocketAddr>,
    /// Listening port.
    pub port: u16,
    /// Table limits.
    pub table: TableConfig,
    /// Whether to add the RST-drop rule.
    pub install_rst_drop: bool,
    /// Egress MTU.
    pub mtu: usize,
    /// Batch size.
    pub batch: usize,
    /// Capture mode.
    pub capture: Capture,
    /// Whether to send on a second thread.
    pub send_thread: bool,
    /// How long receiving polls before it sleeps.
    pub busy_poll: Duration,
    /// How rewritten packets leave.
    pub send: SendPath,
    /// How the packet capture takes frames.
    pub receive: Receive,
    /// Where the stage histograms go when stopping (`--stage-times`), if anywhere.
    pub stage_times: Option<std::path::PathBuf>,
}

/// Takes the source address from `--source-ip`, or else from the first positional word
/// (the original form `SOURCE_IP IP PORT IP PORT ...`); returns it and the backend words.
pub fn split_source(
    flag: Option<Ipv4Addr>,
    positional: &[String],
) -> Result<(Ipv4Addr, &[String]), UsageError> {
    if let Some(ip) = flag {
        return Ok((ip, positional));
    }
    let Some((first, rest)) = positional.split_first() else {
        return Err(UsageError::new(
            "no source address: pass --source-ip IP (or SOURCE_IP as the first positional argument)",
        ));
    };
    let ip = first.parse::<Ipv4Addr>().map_err(|_| {
        UsageError::new(format!(
            "`{first}` is not an IPv4 source address (positional form: SOURCE_IP IP PORT IP PORT ...)"
        ))
    })?;
    Ok((ip, rest))
}

/// The backends as IPv4 socket addresses (the raw balancer speaks IPv4 only).
pub fn ipv4_backends(backends: &[crate::pool::Backend]) -> Result<Vec<SocketAddrV4>, UsageError> {
    backends
        .iter()
        .map(|b| match b.addr {
            std::net::SocketAddr::V4(v4) => Ok(v4),
            std::net::SocketAddr::V6(v6) => Err(UsageError::new(format!(
                "backend {v6} is IPv6; l4lb raw balances IPv4 only (use l4lb proxy for IPv6)"
            ))),
        })
        .collect()
}

/// Parses `LOW-HIGH`.
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, UsageError> {
    let bad = || {
        UsageError::new(format!(
            "`{text}` is not a port range LOW-HIGH (e.g. 16384-32767)"
        ))
    };
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

/// The default NAT range: up to 16,384 ports just below `ephemeral_low` (but above 1023);
/// if the listening port falls inside, the larger side of it.
pub fn default_nat_ports(ephemeral_low: u16, listen: u16) -> RangeInclusive<u16> {
    let hi = ephemeral_low.saturating_sub(1).max(1025);
    let lo = hi.saturating_sub(16_383).max(1024);
    if (lo..=hi).contains(&listen) {
        let below = listen - lo;
        let above = hi - listen;
        if above >= below {
            return listen + 1..=hi;
        }
        return lo..=listen - 1;
    }
    lo..=hi
}

/// Reads the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`).
pub fn ephemeral_range() -> std::io::Result<RangeInclusive<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => Ok(lo..=hi),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected ip_local_port_range: {text:?}"),
        )),
    }
}

/// Checks that the NAT range avoids the kernel's ephemeral range and the listening port.
pub fn check_nat_ports(
    nat: &RangeInclusive<u16>,
    ephemeral: &RangeInclusive<u16>,
    listen: u16,
) -> Result<(), UsageError> {
    if nat.start() <= ephemeral.end() && ephemeral.start() <= nat.end() {
        return Err(UsageError::new(format!(
            "--nat-ports {}-{} overlaps the kernel's ephemeral ports {}-{} \
             (ip_local_port_range); pick ports outside it",
            nat.start(),
            nat.end(),
            ephemeral.start(),
            ephemeral.end()
        )));
    }
    if nat.contains(&listen) {
        return Err(UsageError::new(format!(
            "--nat-ports {}-{} contains the listening port {listen}; pick a range without it",
            nat.start(),
            nat.end()
        )));
    }
    Ok(())
}

impl RawArgs {
    /// Validates every argument; `ephemeral` is the kernel's ephemeral port range
    /// ([`ephemeral_range`]), which the NAT ports must avoid. The error is one line for the
    /// user (exit code 2).
    pub fn resolve(&self, ephemeral: &RangeInclusive<u16>) -> Result<RawConfig, UsageError> {
        let (check, thresholds) = self.health.resolve()?;
        let admin = self.admin.resolve()?;
        let (source_ip, backend_words) = split_source(self.options.source_ip, &self.positional)?;
        let backends = self.backends.resolve(backend_words)?;
        let backend_addrs = ipv4_backends(&backends)?;
        let opts = &self.options;
        if opts.port == 0 {
            return Err(UsageError::new(
                "--port must be from 1 to 65535 (the port clients connect to), got 0",
            ));
        }
        if !(1..=MAX_BATCH).contains(&opts.batch) {
            return Err(UsageError::new(format!(
                "--batch must be from 1 to {MAX_BATCH}, got {}",
                opts.batch
            )));
        }
        let nat_ports = match &opts.nat_ports {
            Some(text) => parse_port_range(text)?,
            None => default_nat_ports(*ephemeral.start(), opts.port),
        };
        check_nat_ports(&nat_ports, ephemeral, opts.port)?;
        if opts.max_rows == 0 {
            return Err(UsageError::new("--max-rows must be at least 1"));
        }
        for (name, d) in [
            ("--half-open-timeout", opts.half_open_timeout),
            ("--idle-timeout", opts.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(UsageError::new(format!("{name} must be longer than zero")));
            }
        }
        if opts.mtu < 576 || opts.mtu > 65_535 {
            return Err(UsageError::new("--mtu must be between 576 and 65535"));
        }
        let send = match (opts.capture, opts.send) {
            (Capture::Raw, Some(SendPath::Direct)) => {
                return Err(UsageError::new(
                    "--send direct needs --capture packet (frames with their link headers); \
                 use --send routed with --capture raw",
                ));
            }
            (Capture::Raw, _) => SendPath::Routed,
            (Capture::Packet, choice) => choice.unwrap_or(SendPath::Direct),
        };
        Ok(RawConfig {
            source_ip,
            backends,
            backend_addrs,
            check,
            thresholds,
            admin,
            port: opts.port,
            table: TableConfig {
                max_rows: opts.max_rows,
                half_open_timeout: opts.half_open_timeout,
                established_timeout: opts.idle_timeout,
                fin_linger: opts.fin_linger,
                nat_ports,
            },
            install_rst_drop: opts.install_rst_drop,
            mtu: opts.mtu,
            batch: opts.batch,
            capture: opts.capture,
            send_thread: opts.send_thread,
            busy_poll: opts.busy_poll,
            send,
            receive: opts.receive,
            stage_times: opts.stage_times.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        raw: RawArgs,
    }

    const EPHEMERAL: RangeInclusive<u16> = 32768..=60999;

    fn resolve(args: &[&str]) -> Result<RawConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("raw").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.raw.resolve(&EPHEMERAL).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_of_the_positional_form() {
        let c = resolve(&["10.0.0.1", "10.0.0.11", "7000", "10.0.0.12", "7000"]).unwrap();
        assert_eq!(c.source_ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.backends.len(), 2);
        assert_eq!(
            c.backend_addrs,
            [
                "10.0.0.11:7000".parse::<SocketAddrV4>().unwrap(),
                "10.0.0.12:7000".parse().unwrap()
            ]
        );
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.table.nat_ports, 20001..=32767);
        assert_eq!(c.batch, 64);
        assert_eq!(c.busy_poll, Duration::from_micros(20));
        assert_eq!(c.capture, Capture::Packet);
        assert_eq!(c.send, SendPath::Direct);
        assert_eq!(c.admin, None);
    }

    #[test]
    fn capture_raw_sends_routed() {
        let c = resolve(&["--source-ip", "10.0.0.1", "--backend", "10.0.0.11:80"])
            .map(|c| c.send)
            .unwrap();
        assert_eq!(c, SendPath::Direct);
        let c = resolve(&["10.0.0.1", "10.0.0.11", "80", "--capture", "raw"]).unwrap();
        assert_eq!(c.send, SendPath::Routed);
        let err = resolve(&[
            "10.0.0.1",
            "10.0.0.11",
            "80",
            "--capture",
            "raw",
            "--send",
            "direct",
        ])
        .unwrap_err();
        assert!(
            err.contains("--send direct needs --capture packet"),
            "{err}"
        );
    }

    #[test]
    fn port_zero_is_refused() {
        let err = resolve(&["10.0.0.1", "10.0.0.11", "80", "--port", "0"]).unwrap_err();
        assert!(err.contains("--port must be from 1 to 65535"), "{err}");
    }

    #[test]
    fn batch_out_of_range_is_refused_with_the_range() {
        for batch in ["0", "1025", "100000000"] {
            let err = resolve(&["10.0.0.1", "10.0.0.11", "80", "--batch", batch]).unwrap_err();
            assert!(
                err.contains("--batch must be from 1 to 1024"),
                "{batch}: {err}"
            );
            assert!(err.ends_with(batch), "{batch}: {err}");
        }
        for batch in ["1", "1024"] {
            let c = resolve(&["10.0.0.1", "10.0.0.11", "80", "--batch", batch]).unwrap();
            assert_eq!(c.batch.to_string(), batch);
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn source_address_from_flag_or_first_word() {
        let w = words("10.0.0.1 10.0.0.11 7000");
        let (ip, rest) = split_source(None, &w).expect("valid");
        assert_eq!(ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(rest.len(), 2);
        let (ip, rest) = split_source(Some(Ipv4Addr::new(10, 0, 0, 9)), &w).expect("valid");
        assert_eq!(ip, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(rest.len(), 3);
        assert!(split_source(None, &[]).is_err());
        assert!(split_source(None, &words("nope 10.0.0.11 80")).is_err());
    }

    #[test]
    fn default_nat_range_avoids_ephemeral_and_listen_ports() {
        let r = default_nat_ports(32768, 20000);
        assert_eq!(r, 20001..=32767);
        assert!(check_nat_ports(&r, &(32768..=60999), 20000).is_ok());
        assert_eq!(default_nat_ports(40000, 20000), 23616..=39999);
        assert!(check_nat_ports(&(30000..=33000), &(32768..=60999), 20000).is_err());
        assert!(check_nat_ports(&(19000..=21000), &(32768..=60999), 20000).is_err());
        assert_eq!(parse_port_range("100-200").expect("range"), 100..=200);
        assert!(parse_port_range("200-100").is_err());
    }
}

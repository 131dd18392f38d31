//! l4lb-balancers: what runs on hosts: two L4 TCP load balancers and the chat workload
//! they balance.
//!
//! It depends on `l4lb-contract` (the RST-drop rule, metric and flag names it shares with
//! the harness) and `l4lb-rawsock` (packet and raw sockets), never on the harness, which
//! drives these programs through the `l4lb` binary. Layout:
//! - [`args`]: command-line pieces both balancers flatten (backends, health, logs, admin).
//! - [`admin`]: the optional stats endpoint (Prometheus text over HTTP).
//! - [`chat`]: chat server and client, wire-compatible with the original C programs.
//! - [`pool`]: backends, health state machine (rise/fall), selection (round robin,
//!   least connections through a counting guard). Pure logic, no I/O.
//! - [`health`]: the active health checker both balancers share (the probe only probes).
//! - [`proxy`]: tokio proxy balancer; each client gets its own upstream connection.
//! - [`raw`]: full-NAT balancer: `wire` (packet views, rewrite), `nat` (table, core),
//!   `device` (packet socket, pump).
//! - [`logging`]: tracing set-up shared by every subcommand (text or JSON lines).
//! - [`shutdown`]: SIGTERM/SIGINT as one future, for every long-running subcommand.
//! - [`usage`]: the error type that means "the user asked for something invalid" (exit 2).
#![warn(missing_docs)]

pub mod admin;
pub mod args;
pub mod chat;
pub mod health;
pub mod logging;
pub mod pool;
pub mod proxy;
pub mod raw;
pub mod shutdown;
pub mod usage;

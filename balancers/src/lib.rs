//! l4lb: two L4 TCP load balancers and the chat workload they balance.
//!
//! Layout of this crate (the harness that proves it lives in `harness/`):
//! - [`args`]: command-line pieces both balancers flatten (backends, health, logs, admin).
//! - [`admin`]: the optional stats endpoint (Prometheus text over HTTP).
//! - [`chat`]: chat server and client, wire-compatible with the original C programs.
//! - [`pool`]: backends, health state machine (rise/fall), selection (round robin,
//!   least connections through a counting guard). Pure logic, no I/O.
//! - [`health`]: the active health checker both balancers share (the probe only probes).
//! - [`proxy`]: tokio proxy balancer; each client gets its own upstream connection.
//! - [`raw`]: pnet full-NAT balancer; packet rewrite as pure functions, NAT table, I/O loop.
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

//! l4lb-contract: the words the balancers write and the harness reads, spelled once.
//!
//! The balancers (`l4lb-balancers`) and the harness (`l4lb-harness`) never depend on each
//! other: the harness starts the balancers as programs and reads what they print, serve
//! and install. What both sides must agree on lives here, below both:
//! - [`firewall`]: the RST-drop rule (how it is written and how `iptables -S` prints it)
//!   and the mark that exempts the balancer's own packets from it.
//! - [`metrics`]: the names of the Prometheus series of the stats endpoint.
//! - [`flags`]: the long names of the balancer flags the harness passes.
//!
//! The root package's `tests/contract.rs` proves the two sides read each other: the
//! harness's command lines parse with the balancers' CLI, and the metrics the balancers
//! render parse into the harness's view of them.
#![warn(missing_docs)]

pub mod firewall;
pub mod flags;
pub mod metrics;

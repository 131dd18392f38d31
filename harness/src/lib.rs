//! l4lb-harness: proves the balancers on a real Linux network stack.
//!
//! It never links the balancers: it starts them as programs (the `l4lb` binary) in
//! namespaces and reads what they serve; the words both sides share come from
//! `l4lb-contract`, the packet sockets of its user-space wire from `l4lb-rawsock`. Layout:
//! - [`topology`]: network namespaces, veth links, bridge, addresses (rtnetlink, netns-rs).
//! - [`netns`]: entering a namespace safely (on a dedicated thread, or in a child before exec).
//! - [`privilege`]: the root gate for tests (fail loudly, skip only on request).
//! - [`process`]: real processes started inside a namespace, piped, signalled, reaped.
//! - [`firewall`]: iptables rules inside a namespace (RST drop, packet loss, ...).
//! - [`cleanup`]: sweeping what crashed runs left behind (only this project's prefix).
//! - [`sockets`]: established/listening TCP sockets in a namespace (sock_diag), ground truth.
//! - [`link`]: link impairments (delay, jitter, loss, queues) emulated in user space.
//! - [`faults`]: link down/up, packet loss on the bridge, rate limits (tc).
//! - [`scenario`]: the scenario file model, its parser and validation.
//! - [`peers`]: HAProxy, nginx, kernel NAT and a user's own balancer for scenarios.
//! - [`runner`]: runs one scenario against one balancer and collects evidence.
//! - [`report`]: Markdown, JSON and SVG reports of a run.
//! - [`mod@bench`]: `l4lb bench`, balancers against direct, kernel NAT, HAProxy, nginx.
//! - [`commands`]: the `l4lb` subcommands that belong to the harness.
#![warn(missing_docs)]

pub mod bench;
pub mod cleanup;
pub mod commands;
pub mod faults;
pub mod firewall;
pub mod link;
pub mod netns;
pub mod peers;
pub mod privilege;
pub mod process;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sockets;
pub mod topology;

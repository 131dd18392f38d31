//! Runs one scenario against one balancer and collects evidence, then checks it.
//!
//! - [`live`]: plays a scenario on a real topology and records [`Evidence`].
//! - [`observer`]: background threads in the namespaces (sockets, balancer stats).
//! - [`probe`]: reading the balancer's stats.
//! - [`balancer`]: the balancer's command line.
//! - [`evidence`]: what a run observed (plain data).
//! - [`expect`]: expectations checked against evidence (pure).
//! - [`outcome`]: evidence plus judgements.

pub mod balancer;
pub mod evidence;
pub mod expect;
pub mod live;
pub mod observer;
pub mod outcome;
pub mod probe;

pub use evidence::*;
pub use expect::{evaluate, Judgement, Status};
pub use live::{RunOptions, DEFAULT_SEED};
pub use outcome::RunOutcome;

use crate::scenario::{BalancerKind, Scenario};

/// Runs `scenario` against `balancer` and checks its expectations.
pub async fn run_one(scenario: &Scenario, balancer: BalancerKind, opts: &RunOptions) -> RunOutcome {
    let evidence = live::run(scenario, balancer, opts).await;
    RunOutcome {
        file: scenario.file.display().to_string(),
        purpose: scenario.purpose.clone(),
        verdicts: evaluate(&scenario.expectations, &evidence),
        evidence,
    }
}

#[cfg(test)]
mod tests;

//! Runs one scenario against one balancer and collects evidence, then checks it.
//!
//! - [`evidence`]: what a run observed (plain data).
//! - [`expect`]: expectations checked against evidence (pure).
//! - [`outcome`]: evidence plus verdicts.

pub mod evidence;
pub mod expect;
pub mod outcome;

pub use evidence::*;
pub use expect::{evaluate, Status, Verdict};
pub use outcome::RunOutcome;

#[cfg(test)]
mod tests;

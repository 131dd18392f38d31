//! The result of one run: its evidence and the verdicts on it.

use serde::Serialize;

use super::evidence::Evidence;
use super::expect::{Judgement, Status};

/// One scenario run against one balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    /// Scenario file it came from.
    pub file: String,
    /// What the scenario proves.
    pub purpose: String,
    /// What was observed.
    pub evidence: Evidence,
    /// Judgements, one an expectation plus the harness's own (`verdicts` in the JSON report).
    pub verdicts: Vec<Judgement>,
}

impl RunOutcome {
    /// Fail if any verdict failed; Skipped if the run could not be carried out; else Pass.
    pub fn status(&self) -> Status {
        if self.verdicts.iter().any(|v| v.status == Status::Fail) {
            Status::Fail
        } else if self.verdicts.iter().any(|v| v.status == Status::Skipped) {
            Status::Skipped
        } else {
            Status::Pass
        }
    }

    /// Short figures for the summary table: placement counts, detection and recovery times.
    pub fn key_figures(&self) -> String {
        if let Some(reason) = &self.evidence.skipped {
            return reason.clone();
        }
        let counts: Vec<String> = self
            .evidence
            .placements()
            .iter()
            .map(|c| c.len().to_string())
            .collect();
        let mut parts = vec![format!("placed {}", counts.join("/"))];
        for v in &self.verdicts {
            if !v.detail.is_empty() && v.status != Status::NotApplicable {
                parts.push(
                    v.detail
                        .split(" (bound")
                        .next()
                        .unwrap_or(&v.detail)
                        .to_string(),
                );
            }
        }
        let failed = self
            .verdicts
            .iter()
            .filter(|v| v.status == Status::Fail)
            .count();
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        parts.join(", ")
    }
}

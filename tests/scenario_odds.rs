//! The odds behind scenario 019's promise: under its burst loss, a server is never taken
//! out (`stayed_up`). The user-space wire decides each frame's fate with a seeded model
//! that counts frames, and an idle link sends few (a health check is about 3 frames each
//! way), so one bad spell can span checks. This test runs the wire's own model
//! ([`Direction`]), with the impairment and `fall` read from the scenario file, over many
//! seeded runs of health checks, and fails if any run fails `fall` checks in a row: a
//! setting that would make the real scenario flaky shows here first. No network, no root.

use std::path::Path;
use std::time::Duration;

use l4lb_harness::link::model::{Direction, Fate};
use l4lb_harness::link::spec::{parse_netem, Impairment};
use l4lb_harness::scenario::{self, Action, LinkDirection};

/// Checks in one run: the scenario lasts about 8 s at a 200 ms interval, with a margin.
const CHECKS_PER_RUN: u32 = 60;
/// Frames a check sends each way (SYN, ACK, FIN one way; SYN-ACK, FIN, ACK the other);
/// losing any of them fails a check whose timeout is shorter than TCP's first retry.
const FRAMES_PER_CHECK: u32 = 3;

/// The longest run of failed checks in one simulated run, each way of the link
/// impaired by `impairment` with its own stream.
fn longest_failed_streak(impairment: Impairment, seed: u64) -> u32 {
    let mut ways = [
        Direction::new(impairment, seed),
        Direction::new(impairment, seed ^ 0x9e37_79b9_7f4a_7c15),
    ];
    let (mut streak, mut longest) = (0, 0);
    let mut frame = 0u32;
    for _ in 0..CHECKS_PER_RUN {
        let mut failed = false;
        for way in &mut ways {
            for _ in 0..FRAMES_PER_CHECK {
                frame += 1;
                let now = Duration::from_millis(u64::from(frame));
                failed |= matches!(way.admit(now, 60), Fate::Dropped(_));
            }
        }
        streak = if failed { streak + 1 } else { 0 };
        longest = longest.max(streak);
    }
    longest
}

/// Of `runs` seeded runs, how many fail `fall` checks in a row.
fn runs_taken_out(impairment: Impairment, fall: u32, runs: u64) -> u64 {
    (0..runs)
        .filter(|&seed| longest_failed_streak(impairment, seed) >= fall)
        .count() as u64
}

#[test]
fn scenario_019_bursts_never_fail_fall_checks_in_a_row() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/019-powerline-bursts.toml");
    let scenario = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let impairment = scenario
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::Impair {
                impairment,
                direction: LinkDirection::Both,
                ..
            } => Some(*impairment),
            _ => None,
        })
        .expect("scenario 019 impairs a link both ways");
    let fall = scenario.health.fall;
    let runs = 20_000;
    let out = runs_taken_out(impairment, fall, runs);
    assert_eq!(
        out, 0,
        "{out} of {runs} simulated runs failed fall = {fall} checks in a row: the scenario would take s1 out now and then"
    );
}

#[test]
fn the_simulation_finds_the_setting_that_failed_in_ci() {
    // The setting the scenario had when a CI run took s1 out: 2% starts, 3-frame spells,
    // fall 6. If the simulation did not flag it, its verdict above would mean nothing.
    let old = parse_netem("loss gemodel 2% 30% 60% 0%").unwrap();
    let runs = 20_000;
    let out = runs_taken_out(old, 6, runs);
    assert!(
        out * 100 >= runs,
        "only {out} of {runs} runs failed 6 checks in a row (expected a few %)"
    );
}

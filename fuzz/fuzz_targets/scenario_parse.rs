//! Fuzz the scenario parser: any text must parse or give located errors, never panic.
//! A scenario file is user input read before any namespace is built; a panic there would
//! lose the message that says what to fix. Seed it with the suite:
//! `cargo +nightly fuzz run scenario_parse fuzz/corpus/scenario_parse scenarios`.
//! The same properties run in `cargo test` on seeded mutations of the suite's files
//! (`mutated_scenario_files_never_panic_and_every_error_is_located`).
#![no_main]

use std::path::Path;

use l4lb_harness::scenario::{parse_bytes, parse_str};
use libfuzzer_sys::fuzz_target;

/// Numbers that overflow a duration or an integer: the fuzzer rarely writes them itself.
const HUGE: [&str; 4] = [
    "2000000000000000",
    "5124095576030431",
    "18446744073709551615",
    "99999999999999999999999",
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        // Bytes that are not UTF-8 are refused at a place, never with a panic.
        if let Err(errors) = parse_bytes(Path::new("fuzz.toml"), rest) {
            assert!(errors.to_string().contains("fuzz.toml:"));
        }
        return;
    };
    // When the first byte is 128 or more, the first number of the text becomes a huge one.
    let text = match usize::from(choice).checked_sub(128) {
        Some(i) => splice_huge(text, HUGE[i % HUGE.len()]),
        None => text.to_string(),
    };
    match parse_str(Path::new("fuzz.toml"), &text) {
        Ok(scenario) => {
            scenario.health.detection_bound();
            scenario.health.recovery_bound();
        }
        Err(errors) => {
            if let Err(problem) = errors.located_in(&text) {
                panic!("{problem}");
            }
            let shown = errors.to_string();
            assert!(shown.contains("fuzz.toml:"), "{shown}");
        }
    }
});

/// `text` with its first run of digits replaced by `number`.
fn splice_huge(text: &str, number: &str) -> String {
    let Some(first) = text.find(|c: char| c.is_ascii_digit()) else {
        return text.to_string();
    };
    let end = text[first..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(text.len(), |i| first + i);
    format!("{}{number}{}", &text[..first], &text[end..])
}

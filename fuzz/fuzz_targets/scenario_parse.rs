//! Fuzz the scenario parser: any text must parse or give located errors, never panic.
//! A scenario file is user input read before any namespace is built; a panic there would
//! lose the message that says what to fix. Seed it with the suite:
//! `cargo +nightly fuzz run scenario_parse fuzz/corpus/scenario_parse scenarios`.
//! The same properties run in `cargo test` on seeded mutations of the suite's files
//! (`mutated_scenario_files_never_panic_and_every_error_is_located`).
#![no_main]

use std::path::Path;

use l4lb_harness::scenario::parse_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = parse_str(Path::new("fuzz.toml"), text) {
        if let Err(problem) = errors.located_in(text) {
            panic!("{problem}");
        }
        let shown = errors.to_string();
        assert!(shown.contains("fuzz.toml:"), "{shown}");
    }
});

//! Hostile input: durations and numbers that overflow, thousands of errors, bytes that
//! are not UTF-8, keys nested past the parser's depth, and seeded mutations of real files.

use std::path::Path;

use super::{parse, MINIMAL};
use crate::scenario::*;

#[test]
fn durations_longer_than_a_day_are_refused_where_they_are_written() {
    let text = format!(
        "{MINIMAL}[[step]]\nkill = \"s1\"\n[[step]]\nwait_until = {{ server_down = \"s1\" }}\ndeadline = \"3s\"\n[balancer]\nhealth_interval = \"2000000000000000h\"\n"
    );
    let e = parse(&text).unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].column), (11, 19), "{e}");
    assert!(e.0[0].message.contains("longer than a day"), "{e}");

    let text = format!(
        "{MINIMAL}[[step]]\nkill = \"s1\"\n[[expect]]\nfailover = \"s1\"\n[balancer]\nhealth_interval = \"5124095576030431h\"\nfall = 2\n"
    );
    let e = parse(&text).unwrap_err();
    assert!(e.0[0].message.contains("longer than a day"), "{e}");
    let day = format!("{MINIMAL}[[step]]\nwait = \"1day\"\n");
    assert!(parse(&day).is_ok());
}

#[test]
fn at_most_twenty_errors_are_shown_then_the_rest_are_counted() {
    let mut text = MINIMAL.to_string();
    for _ in 0..30 {
        text += "[[step]]\nkill = \"s9\"\n";
    }
    let e = parse(&text).unwrap_err();
    assert_eq!(e.0.len(), 30);
    let shown = e.to_string();
    assert_eq!(shown.matches(": error: ").count(), error::MAX_SHOWN_ERRORS);
    assert!(shown.contains("\n... and 10 more errors\n"), "{shown}");
    assert!(shown.ends_with("30 errors; fix them and run `l4lb check` again"));
    // Lines are still right far into the file.
    assert_eq!(e.0[29].line, 4 + 2 * 30);
}

#[test]
fn invalid_utf8_is_located_at_its_first_bad_byte() {
    let mut bytes = MINIMAL.as_bytes().to_vec();
    bytes.extend_from_slice(b"[[step]]\nsay = \"h\xffi\"\n");
    let e = parse_bytes(Path::new("inline.toml"), &bytes).unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].column), (6, 9), "{e}");
    assert!(e.0[0].message.contains("0xff"), "{e}");
}

#[test]
fn a_deeply_dotted_key_is_refused_with_a_location_not_a_stack_overflow() {
    let text = format!("{MINIMAL}{}=1\n", vec!["a"; 20_000].join("."));
    let e = parse(&text).unwrap_err();
    assert_eq!(e.0[0].line, 5, "{}", e.0[0].message);
    e.located_in(&text).unwrap();
}

#[test]
fn rates_too_large_for_tc_are_refused_not_multiplied_into_an_overflow() {
    let step = |rate: &str| format!("{MINIMAL}[[step]]\nrate = \"{rate}\"\nlink = \"lb\"\n");
    assert!(parse(&step("10mbit")).is_ok());
    let e = parse(&step("18446744073709551615mbit")).unwrap_err();
    assert!(e.0[0].message.contains("too large"), "{e}");
    assert!(parse(&step("10xmbit")).is_err());
    assert_eq!(rate_kbit("8000bit"), Ok(8));
    assert_eq!(rate_kbit("1gbit"), Ok(1_000_000));
}

/// Seeded mutations of the suite's files (and of the known-bad ones) through the parser:
/// never a panic, every error located on a line of the text it came from (the bounded
/// stand-in for `cargo fuzz run scenario_parse`).
#[test]
fn mutated_scenario_files_never_panic_and_every_error_is_located() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = discover(&[root.join("scenarios"), root.join("tests/bad-scenarios")]).unwrap();
    let sources: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(sources.len() >= 20, "{files:?}");
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.u64(..);
    // Characters that matter to TOML, durations and the error display.
    let pieces = [
        "\"", "=", "[", "]", "[[", "\n", "\r", "\t", "#", ",", "{", "}", ".", "-", "0", "9", "ms",
        "s1", "é", "😀", "\u{0}", "\u{7f}", "1e999", "'''", "\\u",
    ];
    // Numbers that overflow a duration or an integer when they replace a number.
    let huge = [
        "2000000000000000",
        "5124095576030431",
        "18446744073709551615",
        "99999999999999999999999",
        "4294967296",
        "86401",
    ];
    let (mut rejected, total) = (0, 3_000);
    for _ in 0..total {
        let mut chars: Vec<char> = sources[next() as usize % sources.len()].chars().collect();
        for _ in 0..next() % 4 + 1 {
            let at = next() as usize % (chars.len() + 1);
            match next() % 5 {
                0 => chars.truncate(at),
                4 => {
                    // The next number after `at` becomes a huge one.
                    let Some(first) = (at..chars.len()).find(|&i| chars[i].is_ascii_digit()) else {
                        continue;
                    };
                    let end = (first..chars.len())
                        .find(|&i| !chars[i].is_ascii_digit())
                        .unwrap_or(chars.len());
                    let number = huge[next() as usize % huge.len()];
                    chars.splice(first..end, number.chars());
                }
                1 => {
                    let end = (at + (next() % 12) as usize).min(chars.len());
                    chars.drain(at..end);
                }
                _ => {
                    let piece = pieces[next() as usize % pieces.len()];
                    chars.splice(at..at, piece.chars());
                }
            }
        }
        let text: String = chars.into_iter().collect();
        let errors = match parse(&text) {
            Ok(s) => {
                s.health.detection_bound();
                s.health.recovery_bound();
                continue;
            }
            Err(errors) => errors,
        };
        rejected += 1;
        if let Err(problem) = errors.located_in(&text) {
            panic!("{problem}\nin:\n{text}");
        }
        assert!(errors.to_string().contains("inline.toml:"));
    }
    assert!(
        rejected > total / 3,
        "most mutations are rejected: {rejected}"
    );
}

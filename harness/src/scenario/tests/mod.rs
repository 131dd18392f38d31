//! Parser and validation on inline files (the fixtures in tests/bad-scenarios cover more).

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Scenario, ScenarioErrors> {
    parse_str(Path::new("inline.toml"), text)
}

const MINIMAL: &str = "name = \"m\"\npurpose = \"p\"\n[[step]]\njoin = [\"a\"]\n";

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let s = parse(MINIMAL).unwrap();
    assert_eq!(s.balancers, vec![BalancerKind::Raw, BalancerKind::Proxy]);
    assert_eq!(s.topology.servers, 3);
    assert_eq!(s.topology.server_ports, vec![DEFAULT_SERVER_PORT; 3]);
    assert_eq!(s.health.port, DEFAULT_LB_PORT);
    assert_eq!(s.health.interval, DEFAULT_HEALTH_INTERVAL);
    assert_eq!(s.health.fall, DEFAULT_FALL);
    assert_eq!(s.programs.server, CommandTemplate::default_server());
    assert!(!s.programs.custom && !s.slow);
    assert_eq!(s.steps[0].action, Action::Join(vec!["a".into()]));
}

#[test]
fn errors_name_line_and_column() {
    let e = parse(&format!("{MINIMAL}[[step]]\nkill = \"s9\"\n")).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!((e.0[0].line, e.0[0].column), (6, 8));
    assert_eq!(e.0[0].expected.as_deref(), Some("one of s1, s2, s3"));
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text =
        format!("{MINIMAL}[[step]]\nkill = \"s9\"\n[[step]]\nsay = \"x\"\nclient = \"nobody\"\n");
    assert_eq!(parse(&text).unwrap_err().0.len(), 2);
}

#[test]
fn one_balancer_needs_a_reason() {
    let text = MINIMAL.replace(
        "purpose = \"p\"\n",
        "purpose = \"p\"\nbalancers = [\"proxy\"]\n",
    );
    let e = parse(&text).unwrap_err();
    assert!(e.0[0].message.contains("balancers_why"), "{e}");
    let ok = text.replace(
        "balancers = [\"proxy\"]\n",
        "balancers = [\"proxy\"]\nbalancers_why = \"least connections\"\n",
    );
    assert_eq!(parse(&ok).unwrap().balancers, vec![BalancerKind::Proxy]);
}

#[test]
fn unknown_placeholders_are_refused() {
    let text = format!("{MINIMAL}[programs]\nserver = \"my-server {{prot}}\"\n");
    let e = parse(&text).unwrap_err();
    assert!(e.0[0].message.contains("{prot}"), "{e}");
    let ok = format!("{MINIMAL}[programs]\nserver = \"exec my-server {{port}}\"\n");
    let s = parse(&ok).unwrap();
    assert_eq!(
        s.programs.server.argv,
        vec!["sh", "-c", "exec my-server {port}"]
    );
    assert_eq!(
        s.programs.server.expand(&[("port", "9000".into())]),
        vec!["sh", "-c", "exec my-server 9000"]
    );
}

#[test]
fn health_timeout_must_be_shorter_than_the_interval() {
    let text = format!("{MINIMAL}[balancer]\nhealth_interval = \"1s\"\nhealth_timeout = \"1s\"\n");
    let e = parse(&text).unwrap_err();
    assert!(e.0[0].message.starts_with("impossible timing"), "{e}");
}

#[test]
fn bounds_follow_the_health_settings() {
    let s = parse(&format!("{MINIMAL}[balancer]\nhealth_interval = \"5s\"\nhealth_timeout = \"2s\"\nrise = 2\nfall = 3\n")).unwrap();
    assert_eq!(s.health.detection_bound(), Duration::from_secs(17));
    assert_eq!(s.health.recovery_bound(), Duration::from_secs(12));
}

#[test]
fn the_suite_files_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = discover(&[dir]).unwrap();
    assert!(files.len() >= 12, "{files:?}");
    for f in files {
        load(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn control_characters_are_shown_as_pictures_and_the_caret_follows_tabs() {
    let e = parse("\r\r").unwrap_err();
    let first = &e.0[0];
    // The stray first `\r` is shown as a picture, the caret on the second (the CRLF-like end).
    assert_eq!((first.source_line.as_str(), first.column), ("␍", 2));
    assert!(first.column - 1 <= first.source_line.chars().count());

    let e = parse(&format!("{MINIMAL}[[step]]\n\tkill = \"s9\"\n")).unwrap_err();
    let shown = e.0[0].to_string();
    // The caret line keeps the tab, so `^` lands under the value.
    assert!(shown.contains("  | \t       ^^^^"), "{shown}");
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

#[test]
fn layout_and_offloads_are_shown_as_the_file_names_them() {
    for (layout, offloads) in [("lan", "default"), ("routed", "off")] {
        let text =
            format!("{MINIMAL}[topology]\nlayout = \"{layout}\"\noffloads = \"{offloads}\"\n");
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.topology.layout.to_string(), layout);
        assert_eq!(s.topology.offloads.to_string(), offloads);
    }
}

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

//! Parser and validation on inline files (the fixtures in tests/bad-scenarios cover more);
//! [`hostile`]: huge, deep, mangled and non-UTF-8 input.

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

mod hostile;
mod links;

#[test]
fn joint_joins_rejoins_bulk_and_their_expectations_parse_into_the_model() {
    let text = r#"
name = "t"
purpose = "p"
[[step]]
join = ["a", "b"]
together = true
[[step]]
rejoin = ["a"]
[[step]]
bulk = "b"
bytes = 2500
[[step]]
say = "hi"
client = "a"
[[expect]]
told_closed = { client = "a", within = "1s" }
[[expect]]
bulk_done = ["b"]
within = "5s"
"#;
    let s = parse(text).unwrap();
    assert_eq!(
        s.steps[0].action,
        Action::JoinTogether(vec!["a".into(), "b".into()])
    );
    assert_eq!(s.steps[1].action, Action::Rejoin(vec!["a".into()]));
    assert_eq!(
        s.steps[2].action,
        Action::Bulk {
            client: "b".into(),
            bytes: 2500
        }
    );
    assert_eq!(s.clients(), vec!["a".to_string(), "b".to_string()]);
    assert_eq!(
        s.expectations[0].kind,
        ExpectKind::ToldClosed {
            client: "a".into(),
            within: Duration::from_secs(1)
        }
    );
    assert_eq!(
        s.expectations[1].kind,
        ExpectKind::BulkDone {
            clients: vec!["b".into()],
            within: Some(Duration::from_secs(5))
        }
    );
    // `together = false` is a join one after the other.
    let s = parse(&text.replace("together = true", "together = false")).unwrap();
    assert!(matches!(s.steps[0].action, Action::Join(_)));
}

#[test]
fn a_rejoin_twice_in_one_step_a_zero_byte_bulk_and_a_bad_within_are_refused_where_written() {
    let base = "name = \"t\"\npurpose = \"p\"\n[[step]]\njoin = [\"a\"]\n";
    let e = parse(&format!("{base}[[step]]\nrejoin = [\"a\", \"a\"]\n")).unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].column), (6, 16));
    assert!(e.0[0].message.contains("rejoins twice"), "{:?}", e.0[0]);
    let e = parse(&format!("{base}[[step]]\nbulk = \"a\"\nbytes = 0\n")).unwrap_err();
    assert_eq!(e.0[0].line, 7);
    assert!(e.0[0].message.contains("0 bytes"), "{:?}", e.0[0]);
    let e = parse(&format!(
        "{base}[[expect]]\ntold_closed = {{ client = \"a\", within = \"soon\" }}\n"
    ))
    .unwrap_err();
    assert_eq!(e.0[0].line, 6);
    let e = parse(&format!(
        "{base}[[expect]]\ntold_closed = {{ client = \"zz\", within = \"1s\" }}\n"
    ))
    .unwrap_err();
    assert!(e.0[0].message.contains("no client `zz`"), "{:?}", e.0[0]);
}

//! The native `impair` step, `for`/`every` on faults and `heard ... within`.

use std::time::Duration;

use super::parse;
use crate::link::spec::{Distribution, Impairment, Loss, QueueLimit};
use crate::scenario::*;

const HEAD: &str = "name = \"m\"\npurpose = \"p\"\n[[step]]\njoin = [\"a\", \"b\"]\n";

fn step(body: &str) -> Result<Step, ScenarioErrors> {
    parse(&format!("{HEAD}[[step]]\n{body}\n")).map(|s| s.steps[1].clone())
}

fn impairment(body: &str) -> (Impairment, LinkDirection, String) {
    match step(body).unwrap().action {
        Action::Impair {
            impairment,
            direction,
            text,
            ..
        } => (impairment, direction, text),
        other => panic!("{other:?}"),
    }
}

/// The first error's (line, column, message).
fn error(body: &str) -> (usize, usize, String) {
    let e = step(body).unwrap_err();
    (e.0[0].line, e.0[0].column, e.0[0].message.clone())
}

#[test]
fn the_native_form_gives_the_impairment_netem_gives() {
    let (native, dir, text) = impairment(
        "impair = \"lb\"\ndelay = \"15ms\"\njitter = \"10ms\"\ndistribution = \"normal\"\n\
         loss = \"2%\"\nrate = \"1mbit\"\nqueue = \"64kb\"\ndirection = \"both\"",
    );
    let netem =
        crate::link::spec::parse_netem("delay 15ms 10ms distribution normal loss 2% rate 1mbit")
            .unwrap();
    assert_eq!(
        native,
        Impairment {
            limit: QueueLimit::Bytes(64_000),
            ..netem
        }
    );
    assert_eq!(native.distribution, Distribution::Normal);
    assert_eq!(dir, LinkDirection::Both);
    assert_eq!(
        text,
        "impair delay 15ms ± 10ms normal, loss 2%, rate 1mbit, queue 64kb"
    );
}

#[test]
fn netem_and_impair_are_one_action() {
    let (i, dir, text) = impairment("netem = \"delay 50ms\"\nlink = \"client1\"");
    assert_eq!(i.delay, Duration::from_millis(50));
    assert_eq!(
        (dir, text.as_str()),
        (LinkDirection::Up, "netem delay 50ms")
    );
}

#[test]
fn loss_bursts_are_a_table() {
    let (i, _, text) = impairment(
        "impair = \"client1\"\nloss = { model = \"bursts\", good = \"2s\", bad = \"200ms\", bad_loss = \"50%\", good_loss = \"0%\" }",
    );
    assert_eq!(
        i.loss,
        Loss::Bursts {
            good: Duration::from_secs(2),
            bad: Duration::from_millis(200),
            good_loss: 0.0,
            bad_loss: 0.5
        }
    );
    assert!(text.contains("bursts of 50%"), "{text}");
    let (line, col, msg) =
        error("impair = \"client1\"\nloss = { model = \"waves\", good = \"2s\", bad = \"1s\" }");
    assert_eq!((line, col), (7, 8));
    assert!(msg.contains("waves"), "{msg}");
}

#[test]
fn impair_values_are_checked_where_written() {
    assert_eq!(
        error("impair = \"lb\"\ndelay = \"15 parsecs\""),
        (7, 9, "delay = \"15 parsecs\" is not understood".into())
    );
    assert_eq!(error("impair = \"lb\"\nrate = \"fast\"").0, 7);
    assert_eq!(
        error("impair = \"lb\"\ndelay = \"1ms\"\nqueue = \"lots\"").0,
        8
    );
    assert!(error("impair = \"lb\"\njitter = \"5ms\"")
        .2
        .contains("has none"));
    assert!(error("impair = \"lb\"\nqueue = \"100\"")
        .2
        .contains("needs `delay`"));
    assert!(error("impair = \"c9\"\ndelay = \"1ms\"").2.contains("c9"));
    assert!(
        error("impair = \"lb\"\ndelay = \"1ms\"\ndirection = \"sideways\"")
            .2
            .contains("sideways")
    );
    // Keys of `impair` belong to it.
    assert!(error("kill = \"s1\"\ndelay = \"1ms\"")
        .2
        .contains("does not belong"));
    // `rate` beside `impair` is its key, alone an action.
    assert!(matches!(
        step("rate = \"1mbit\"\nlink = \"lb\"").unwrap().action,
        Action::Rate { .. }
    ));
}

#[test]
fn faults_last_and_come_back() {
    let s = step("impair = \"client1\"\nloss = \"100%\"\nfor = \"2s\"\nevery = \"5s\"").unwrap();
    assert_eq!(
        (s.lasts, s.every),
        (Some(Duration::from_secs(2)), Some(Duration::from_secs(5)))
    );
    let s = step("link_down = \"s1\"\nfor = \"300ms\"").unwrap();
    assert_eq!((s.lasts, s.every), (Some(Duration::from_millis(300)), None));
    for ok in [
        "drop = 0.5\nlink = \"lb\"\nfor = \"1s\"",
        "rate = \"1mbit\"\nlink = \"lb\"\nfor = \"1s\"",
        "netem = \"delay 5ms\"\nlink = \"lb\"\nfor = \"1s\"\nevery = \"3s\"",
    ] {
        assert!(step(ok).unwrap().lasts.is_some(), "{ok}");
    }
    // A chat's `every` is its period, not a fault's.
    let s = step("chat = \"a\"\nevery = \"1s\"").unwrap();
    assert_eq!((s.lasts, s.every), (None, None));
}

#[test]
fn fault_timing_is_bounded() {
    let (line, col, msg) = error("link_down = \"s1\"\nfor = \"2s\"\nevery = \"2s\"");
    assert_eq!((line, col), (8, 9));
    assert!(msg.contains("impossible timing"), "{msg}");
    assert!(error("link_down = \"s1\"\nevery = \"2s\"")
        .2
        .contains("needs `for`"));
    assert!(error("link_down = \"s1\"\nfor = \"0s\"")
        .2
        .contains("longer than zero"));
    assert!(error("link_down = \"s1\"\nfor = \"2 days\"")
        .2
        .contains("longer than a day"));
    assert_eq!(
        error("link_up = \"s1\"\nfor = \"2s\"").2,
        "`for` does not belong to a `link_up` step"
    );
    assert!(error("kill = \"s1\"\nevery = \"2s\"")
        .2
        .contains("does not belong"));
}

#[test]
fn heard_within_is_a_bound_on_by() {
    let text = format!(
        "{HEAD}[[step]]\nsay = \"hi\"\nclient = \"a\"\n[[expect]]\nheard = \"hi\"\nby = [\"b\"]\nwithin = \"200ms\"\n"
    );
    let s = parse(&text).unwrap();
    assert_eq!(
        s.expectations[0].kind,
        ExpectKind::Heard {
            text: "hi".into(),
            by: vec!["b".into()],
            not_by: vec![],
            within: Some(Duration::from_millis(200)),
        }
    );
    let bad = text.replace("within = \"200ms\"", "within = \"soon\"");
    assert!(parse(&bad).unwrap_err().0[0].message.contains("soon"));
    let not_by = text.replace("by = [\"b\"]", "not_by = [\"b\"]");
    assert!(parse(&not_by).unwrap_err().0[0]
        .message
        .contains("`within`"));
    let misplaced = text.replace("heard = \"hi\"\nby = [\"b\"]", "chat_isolation = true");
    assert!(parse(&misplaced).unwrap_err().0[0]
        .message
        .contains("does not belong"));
}

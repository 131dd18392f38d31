//! Expectation checks and reports on synthetic evidence (no network, no root).

use std::time::Duration;

use super::*;
use crate::scenario::{parse_str, BalancerKind, Scenario, ServerAction};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn scenario(file: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    parse_str(std::path::Path::new(&format!("scenarios/{file}")), &text).unwrap()
}

/// The guideline as a perfect round-robin run would record it.
fn guideline_evidence(balancer: BalancerKind) -> (Scenario, Evidence) {
    let s = scenario("001-guideline.toml");
    let mut ev = Evidence::new(&s, balancer);
    for (i, c) in ["test1", "test2", "test3", "test4", "test5", "test6"]
        .iter()
        .enumerate()
    {
        let at = ms(100 * i as u64);
        ev.joins.push(JoinRecord {
            client: c.to_string(),
            at,
            settled: at + ms(20),
            outcome: JoinOutcome::Placed { server: i % 3 },
            socket_closed: None,
        });
        ev.event(at, Some(17), format!("{c} joined -> s{}", i % 3 + 1), None);
        ev.transcripts.insert(c.to_string(), Vec::new());
    }
    for (k, c) in ["test1", "test2", "test3", "test6"].iter().enumerate() {
        let say = SayRecord {
            client: c.to_string(),
            text: format!("hello from {c}"),
            at: ms(1000 + 100 * k as u64),
        };
        let server = ev.placement_of(c).unwrap();
        let peers: Vec<String> = ev.placements()[server].clone();
        for p in peers {
            ev.transcripts
                .get_mut(&p)
                .unwrap()
                .push((say.at + ms(5), say.wire()));
        }
        ev.says.push(say);
    }
    ev.open_sessions_end = Some(6);
    ev.balancer_alive_end = true;
    ev.duration = ms(2000);
    (s, ev)
}

/// The verdict whose expectation text starts with `prefix`.
fn verdict<'a>(o: &'a RunOutcome, prefix: &str) -> &'a Judgement {
    o.verdicts
        .iter()
        .find(|v| v.expectation.starts_with(prefix))
        .unwrap_or_else(|| panic!("no verdict starts with {prefix:?}"))
}

/// The verdict whose expectation text contains `part`.
fn verdict_containing<'a>(o: &'a RunOutcome, part: &str) -> &'a Judgement {
    o.verdicts
        .iter()
        .find(|v| v.expectation.contains(part))
        .unwrap_or_else(|| panic!("no verdict contains {part:?}"))
}

fn outcome(s: &Scenario, ev: Evidence) -> RunOutcome {
    RunOutcome {
        file: format!("scenarios/{}.toml", s.file_stem()),
        purpose: s.purpose.clone(),
        verdicts: evaluate(&s.expectations, &ev),
        evidence: ev,
    }
}

#[test]
fn a_perfect_guideline_run_passes_every_expectation() {
    for b in BalancerKind::OURS {
        let (s, ev) = guideline_evidence(b);
        let o = outcome(&s, ev);
        assert_eq!(o.status(), Status::Pass, "{:#?}", o.verdicts);
    }
}

#[test]
fn raw_expectations_apply_only_to_raw() {
    let (s, ev) = guideline_evidence(BalancerKind::Proxy);
    let o = outcome(&s, ev);
    assert!(o
        .verdicts
        .iter()
        .all(|v| !v.expectation.starts_with("placement exactly")));
    assert!(o
        .verdicts
        .iter()
        .any(|v| v.expectation.starts_with("clients balanced")));
}

#[test]
fn a_wrong_placement_fails_and_says_where() {
    let (s, mut ev) = guideline_evidence(BalancerKind::Raw);
    ev.joins[3].outcome = JoinOutcome::Placed { server: 1 };
    let o = outcome(&s, ev);
    assert_eq!(o.status(), Status::Fail);
    let v = verdict(&o, "placement");
    assert_eq!(v.status, Status::Fail);
    assert!(
        v.summary
            .contains("s1 has [test1], expected [test1, test4]"),
        "{}",
        v.summary
    );
}

#[test]
fn a_line_leaking_across_servers_fails_chat_isolation() {
    let (s, mut ev) = guideline_evidence(BalancerKind::Raw);
    ev.transcripts
        .get_mut("test2")
        .unwrap()
        .push((ms(1500), "[test1] hello from test1".into()));
    let o = outcome(&s, ev);
    let v = verdict(&o, "every line");
    assert_eq!(v.status, Status::Fail);
    assert!(v.summary.contains("leaked to test2"), "{}", v.summary);
}

#[test]
fn a_missing_line_fails_chat_isolation() {
    let (s, mut ev) = guideline_evidence(BalancerKind::Proxy);
    ev.transcripts.get_mut("test4").unwrap().clear();
    let o = outcome(&s, ev);
    let v = verdict(&o, "every line");
    assert_eq!(v.status, Status::Fail);
    assert!(v.summary.contains("missing at test4"), "{}", v.summary);
}

#[test]
fn leftovers_fail_the_cleanup_verdict() {
    let (s, mut ev) = guideline_evidence(BalancerKind::Raw);
    ev.cleanup.namespaces_left.push("l4lb-1-0-lb".into());
    let o = outcome(&s, ev);
    assert_eq!(o.status(), Status::Fail);
}

/// The crash scenario: s1 killed at 1 s, reported down `detect` later, b1..b4 after.
fn crash_evidence(detect: Duration, b_on_s1: bool) -> (Scenario, Evidence) {
    let s = scenario("003-server-crash.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Raw);
    let mut t = ms(0);
    for (i, c) in ["a1", "a2", "a3"].iter().enumerate() {
        ev.joins.push(JoinRecord {
            client: c.to_string(),
            at: t,
            settled: t,
            outcome: JoinOutcome::Placed { server: i },
            socket_closed: None,
        });
        ev.transcripts.insert(c.to_string(), Vec::new());
        t += ms(50);
    }
    let kill = ms(1000);
    ev.event(
        kill,
        Some(20),
        "kill s1",
        Some(Mark::Server(0, ServerAction::Kill)),
    );
    ev.closes.insert(
        "a1".into(),
        CloseRecord {
            at: kill + ms(5),
            last_activity: ms(0),
            by_quit: false,
            how: "Server disconnected".into(),
        },
    );
    ev.health.push(HealthMark {
        server: 0,
        up: false,
        at: kill + detect,
    });
    ev.event(
        kill + detect,
        Some(23),
        "balancer reports s1 down",
        Some(Mark::Down(0)),
    );
    let mut t = kill + detect + ms(10);
    for (i, c) in ["b1", "b2", "b3", "b4"].iter().enumerate() {
        let server = if b_on_s1 && i == 0 { 0 } else { 1 + i % 2 };
        ev.joins.push(JoinRecord {
            client: c.to_string(),
            at: t,
            settled: t,
            outcome: JoinOutcome::Placed { server },
            socket_closed: None,
        });
        ev.transcripts.insert(c.to_string(), Vec::new());
        t += ms(50);
    }
    for (c, text) in [("a2", "still here"), ("a3", "me too")] {
        let say = SayRecord {
            client: c.into(),
            text: text.into(),
            at: t,
        };
        let server = ev.placement_of(c).unwrap();
        for p in ev.placements()[server].clone() {
            if !ev.closes.contains_key(&p) {
                ev.transcripts.get_mut(&p).unwrap().push((t, say.wire()));
            }
        }
        ev.says.push(say);
        t += ms(10);
    }
    ev.balancer_alive_end = true;
    (s, ev)
}

#[test]
fn failover_within_the_bound_passes() {
    let (s, ev) = crash_evidence(ms(650), false);
    let o = outcome(&s, ev);
    assert_eq!(o.status(), Status::Pass, "{:#?}", o.verdicts);
    let v = verdict_containing(&o, "failure noticed");
    assert_eq!(
        v.summary,
        "s1 reported down within the bound; 0 of 4 later joins on s1"
    );
    assert!(
        v.detail.starts_with("detection 0.650s (bound 0.700s"),
        "{}",
        v.detail
    );
}

#[test]
fn late_detection_fails() {
    // bound 700 ms + margin 500 ms: 1.3 s is too late.
    let (s, ev) = crash_evidence(ms(1300), false);
    let o = outcome(&s, ev);
    let v = verdict_containing(&o, "failure noticed");
    assert_eq!(v.status, Status::Fail);
    assert!(v.summary.contains("too late"));
}

#[test]
fn a_client_sent_to_the_dead_server_fails_failover_and_not_on() {
    let (s, ev) = crash_evidence(ms(600), true);
    let o = outcome(&s, ev);
    let failed: Vec<&str> = o
        .verdicts
        .iter()
        .filter(|v| v.status == Status::Fail)
        .map(|v| v.expectation.as_str())
        .collect();
    assert!(
        failed.iter().any(|e| e.contains("failure noticed")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|e| e.starts_with("not placed on")),
        "{failed:?}"
    );
}

#[test]
fn no_down_report_fails_failover() {
    let (s, mut ev) = crash_evidence(ms(600), false);
    ev.health.clear();
    let o = outcome(&s, ev);
    let v = verdict_containing(&o, "failure noticed");
    assert_eq!(v.summary, "the balancer never reported s1 down");
}

#[test]
fn idle_close_outside_tolerance_fails() {
    let s = scenario("007-idle-timeout.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Proxy);
    ev.joins.push(JoinRecord {
        client: "quiet".into(),
        at: ms(0),
        settled: ms(10),
        outcome: JoinOutcome::Placed { server: 0 },
        socket_closed: None,
    });
    ev.joins.push(JoinRecord {
        client: "chatty".into(),
        at: ms(20),
        settled: ms(30),
        outcome: JoinOutcome::Placed { server: 1 },
        socket_closed: None,
    });
    ev.open_sessions_end = Some(1);
    for (closed_after, pass) in [(2100, true), (3500, false), (900, false)] {
        ev.closes.insert(
            "quiet".into(),
            CloseRecord {
                at: ms(10 + closed_after),
                last_activity: ms(10),
                by_quit: false,
                how: "Server disconnected".into(),
            },
        );
        let o = outcome(&s, ev.clone());
        let v = verdict(&o, "idle sessions");
        assert_eq!(
            v.status == Status::Pass,
            pass,
            "closed after {closed_after} ms: {v:?}"
        );
    }
}

#[test]
fn a_skipped_run_is_not_a_pass() {
    let s = scenario("014-netem-delay.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Raw);
    ev.skipped = Some("the kernel lacks what this run needs".into());
    let o = outcome(&s, ev);
    assert_eq!(o.status(), Status::Skipped);
}

#[test]
fn report_of_a_synthetic_run() {
    let (s, mut ev) = crash_evidence(ms(650), false);
    ev.fault_windows.push(crate::runner::evidence::FaultWindow {
        host: "s2".into(),
        kind: crate::runner::evidence::FaultKind::Impair,
        direction: Some(crate::scenario::LinkDirection::Up),
        what: "netem delay 5ms (sending)".into(),
        from: ms(100),
        until: Some(ms(900)),
    });
    let o = outcome(&s, ev);
    insta::assert_snapshot!("snapshot_crash", crate::report::snapshot::render(&o));
    insta::assert_snapshot!("markdown_crash", crate::report::markdown::render(&o));
    let svg = crate::report::svg::render(&o.evidence);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(">kill<") && svg.contains(">down<"));
    assert!(svg.contains(r#"class="fault-window""#) && svg.contains("s2: netem delay 5ms"));
    insta::assert_snapshot!(
        "index",
        crate::report::summary::index(std::slice::from_ref(&o))
    );
}

#[test]
fn the_final_table_has_a_header_and_one_aligned_row_per_run() {
    let (s, ev) = guideline_evidence(BalancerKind::Raw);
    let raw = outcome(&s, ev);
    let (s, ev) = guideline_evidence(BalancerKind::Proxy);
    let proxy = outcome(&s, ev);
    let table = crate::report::summary::table(&[raw, proxy]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("scenario"), "{table}");
    assert!(
        lines[1].contains(" raw ") && lines[2].contains(" proxy "),
        "{table}"
    );
    // Columns line up: the verdict column starts at the same offset in every line.
    let at = |l: &str, word: &str| l.find(word).unwrap_or(usize::MAX);
    assert_eq!(at(lines[0], "verdict"), at(lines[1], "PASS"), "{table}");
    assert_eq!(at(lines[1], "PASS"), at(lines[2], "PASS"), "{table}");
}

/// A line is heard only where a transcript line ends with it: `[a] chat 1` is not found
/// in a transcript that only has `[a] chat 10`, and a prompt before the line is allowed.
#[test]
fn a_line_is_not_taken_for_a_longer_line_it_starts() {
    let s = scenario("001-guideline.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Raw);
    ev.transcripts
        .insert("b".into(), vec![(ms(5), "[a] chat 10".into())]);
    ev.transcripts
        .insert("c".into(), vec![(ms(5), "> [a] chat 1\r".into())]);
    let say = SayRecord {
        client: "a".into(),
        text: "chat 1".into(),
        at: ms(1),
    };
    assert_eq!(ev.receivers(&say), vec!["c".to_string()]);
}

#[test]
fn a_report_says_in_words_why_a_client_was_not_placed() {
    let (s, mut ev) = crash_evidence(ms(650), false);
    ev.joins.push(JoinRecord {
        client: "x1".into(),
        at: ms(3000),
        settled: ms(3000),
        outcome: JoinOutcome::Refused {
            how: "connection refused".into(),
        },
        socket_closed: None,
    });
    ev.joins.push(JoinRecord {
        client: "x2".into(),
        at: ms(3100),
        settled: ms(5100),
        outcome: JoinOutcome::Unplaced {
            why: "no server saw it in 2s".into(),
        },
        socket_closed: None,
    });
    let md = crate::report::markdown::render(&outcome(&s, ev));
    assert!(
        md.contains(
            "Not placed: x1 (refused: connection refused), x2 (not placed: no server saw it in 2s)"
        ),
        "{md}"
    );
}

/// 020's "loud and clear", said by d4 at 1 s and printed by d1 and d4 after `d1_delay`
/// and 20 ms.
fn bufferbloat_outcome(d1_delay: Duration) -> RunOutcome {
    let s = scenario("020-dsl-bufferbloat-within.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Proxy);
    let say = SayRecord {
        client: "d4".into(),
        text: "loud and clear".into(),
        at: ms(1000),
    };
    // A line printed before the saying (an earlier identical one) does not count.
    ev.transcripts.insert(
        "d1".into(),
        vec![(ms(10), say.wire()), (say.at + d1_delay, say.wire())],
    );
    ev.transcripts
        .insert("d4".into(), vec![(say.at + ms(20), say.wire())]);
    ev.says.push(say);
    outcome(&s, ev)
}

#[test]
fn heard_within_passes_in_time_and_reports_the_worst_delay() {
    let o = bufferbloat_outcome(ms(300));
    let v = verdict(&o, "\"loud and clear\"");
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert_eq!(v.summary, "received by [d1, d4], each in time");
    assert_eq!(v.detail, "worst delay 300.0 ms (d1)");
    assert!(v.expectation.ends_with("within 750.0 ms"), "{v:?}");
}

#[test]
fn heard_later_than_within_fails_and_names_who() {
    let o = bufferbloat_outcome(ms(900));
    let v = verdict(&o, "\"loud and clear\"");
    assert_eq!(v.status, Status::Fail);
    assert_eq!(v.summary, "d1 printed it later than 750.0 ms");
    assert_eq!(v.detail, "worst delay 900.0 ms (d1)");
}

/// The same crash seen by a balancer without health checks (kernel NAT): the new
/// joins after the kill that landed on s1 refused, no down report.
fn nat_crash_outcome() -> RunOutcome {
    let (s, mut ev) = crash_evidence(ms(650), false);
    ev.balancer = BalancerKind::Nat;
    ev.traits = crate::peers::traits(BalancerKind::Nat, &s);
    ev.health.clear();
    if let Some(j) = ev.joins.iter_mut().find(|j| j.client == "b1") {
        j.outcome = JoinOutcome::Refused {
            how: "connection refused".into(),
        };
    }
    outcome(&s, ev)
}

#[test]
fn what_a_balancer_cannot_do_by_design_is_not_applicable_with_the_evidence() {
    let o = nat_crash_outcome();
    let failover = verdict(&o, "s1's failure noticed");
    assert_eq!(failover.status, Status::NotApplicable);
    assert!(
        failover.summary.contains("no health checks")
            && failover.summary.contains("1 refused (b1)"),
        "{}",
        failover.summary
    );
    // Judged as for any balancer first; the detail keeps that judgement.
    assert!(
        failover.detail.contains("judged as for any balancer: FAIL"),
        "{}",
        failover.detail
    );
    assert_eq!(verdict(&o, "no join refused").status, Status::NotApplicable);
    // What it can meet is judged as for any balancer, and N/A is not a failure.
    assert_eq!(verdict(&o, "the balancer still runs").status, Status::Pass);
    let mut na_and_pass = o.clone();
    na_and_pass.verdicts.retain(|v| v.status != Status::Fail);
    assert!(na_and_pass
        .verdicts
        .iter()
        .any(|v| v.status == Status::NotApplicable));
    assert_eq!(na_and_pass.status(), Status::Pass);
}

#[test]
fn the_matrix_puts_key_figures_side_by_side_and_names_the_differences() {
    let (s, ev) = crash_evidence(ms(650), false);
    let raw = outcome(&s, ev);
    let nat = nat_crash_outcome();
    let f = crate::report::matrix::figures(&raw.evidence);
    assert_eq!(f.detection, Some(ms(650)));
    assert_eq!(f.refused.0, 0);
    let g = crate::report::matrix::figures(&nat.evidence);
    assert_eq!((g.detection, g.refused.0), (None, 1));
    let both = [raw, nat];
    let md = crate::report::matrix::markdown(&both);
    assert!(md.starts_with("| scenario | raw | nat |\n"), "{md}");
    assert!(
        md.contains("detection 0.65s") && md.contains("refused 1/"),
        "{md}"
    );
    let diffs = crate::report::matrix::differences(&both);
    assert_eq!(diffs.len(), 1, "only nat differs: {diffs:#?}");
    assert!(
        diffs[0].starts_with("**nat**: 003-server-crash: "),
        "{}",
        diffs[0]
    );
    assert!(
        diffs[0].contains("N/A s1's failure noticed, not placed on s1"),
        "{}",
        diffs[0]
    );
    assert!(diffs[0].contains("refused 1 of"), "{}", diffs[0]);
    let html = crate::report::html::render(&both);
    assert!(
        html.contains("<table id=\"matrix\">")
            && html.contains("href=\"#run-003-server-crash-nat\"")
    );
    assert_eq!(html.matches("<svg").count(), 2);
}

#[test]
fn an_idle_close_is_measured_at_the_server_even_if_the_client_typed_later() {
    let s = scenario("007-idle-timeout.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Proxy);
    ev.joins.push(JoinRecord {
        client: "quiet".into(),
        at: ms(0),
        settled: ms(10),
        outcome: JoinOutcome::Placed { server: 0 },
        // The proxy closed the upstream 2 s after the join: sock_diag saw it go.
        socket_closed: Some(ms(2030)),
    });
    ev.joins.push(JoinRecord {
        client: "chatty".into(),
        at: ms(20),
        settled: ms(30),
        outcome: JoinOutcome::Placed { server: 1 },
        socket_closed: None,
    });
    ev.open_sessions_end = Some(1);
    // The phone woke at 5 s and typed; it then saw the close at once.
    ev.says.push(SayRecord {
        client: "quiet".into(),
        text: "are you there?".into(),
        at: ms(5000),
    });
    ev.closes.insert(
        "quiet".into(),
        CloseRecord {
            at: ms(5001),
            last_activity: ms(5000),
            by_quit: false,
            how: "closed by the other side".into(),
        },
    );
    let o = outcome(&s, ev.clone());
    let v = verdict(&o, "idle sessions");
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert_eq!(
        v.detail,
        "quiet closed at its server after 2.020s of silence"
    );
    // Without the server's view, the client's own close counts, with the silence before
    // it (the line typed at 5 s ends it): a close seen 1 ms after speaking fails.
    ev.joins[0].socket_closed = None;
    let o = outcome(&s, ev);
    let v = verdict(&o, "idle sessions");
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(
        v.detail,
        "quiet closed seen by the client after 0.001s of silence"
    );
}

/// 024 as a run would record it: the phone placed on s1 at 0.1 s, its session closed at
/// its server at 2.1 s, and "are you there?" said at 4.6 s, unheard.
fn sleeping_phone(told_at: Option<u64>) -> (Scenario, Evidence) {
    let s = scenario("024-phone-sleeps-past-idle.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Raw);
    for (i, c) in ["phone", "laptop"].iter().enumerate() {
        ev.joins.push(JoinRecord {
            client: c.to_string(),
            at: ms(100 * i as u64),
            settled: ms(100 * i as u64 + 10),
            outcome: JoinOutcome::Placed { server: i },
            socket_closed: (i == 0).then(|| ms(2110)),
        });
        ev.transcripts.insert(c.to_string(), Vec::new());
    }
    ev.says.push(SayRecord {
        client: "phone".into(),
        text: "are you there?".into(),
        at: ms(4600),
    });
    if let Some(t) = told_at {
        ev.closes.insert(
            "phone".into(),
            CloseRecord {
                at: ms(t),
                last_activity: ms(4600),
                by_quit: false,
                how: "closed by the other side".into(),
            },
        );
    }
    ev.open_sessions_end = Some(1);
    ev.duration = ms(6500);
    (s, ev)
}

#[test]
fn told_closed_passes_when_told_at_once_or_before_and_fails_when_late() {
    for (told, pass, summary) in [
        (Some(4603), true, "phone was told in time"),
        (Some(2200), true, "phone was told in time"),
        (Some(5700), false, "phone was told too late after it spoke"),
    ] {
        let (s, ev) = sleeping_phone(told);
        let o = outcome(&s, ev);
        let v = verdict(&o, "phone is told its session ended");
        assert_eq!(v.status == Status::Pass, pass, "{v:?}");
        assert!(v.summary.starts_with(summary), "{v:?}");
        let before = told.is_some_and(|t| t < 4600);
        assert_eq!(v.detail.contains("before its line"), before, "{v:?}");
    }
}

#[test]
fn told_closed_fails_when_the_client_hangs() {
    let (s, ev) = sleeping_phone(None);
    let o = outcome(&s, ev);
    let v = verdict(&o, "phone is told its session ended");
    assert_eq!(v.status, Status::Fail);
    assert_eq!(
        v.summary,
        "phone said \"are you there?\" into its ended session and was never told (no FIN or RST): it hangs"
    );
    assert_eq!(
        v.detail,
        "said at 4.600s, nothing by the end of the run (1.900s later)"
    );
}

#[test]
fn told_closed_fails_when_the_session_still_works() {
    let (s, mut ev) = sleeping_phone(None);
    // Its line came back: the session was never closed.
    ev.transcripts
        .get_mut("phone")
        .unwrap()
        .push((ms(4601), "[phone] are you there?".into()));
    let o = outcome(&s, ev);
    let v = verdict(&o, "phone is told its session ended");
    assert_eq!(v.status, Status::Fail);
    assert_eq!(
        v.summary,
        "phone's session was not closed: its lines still got through"
    );
}

#[test]
fn a_rejoined_client_counts_once_where_its_last_join_put_it_and_chat_follows_its_sessions() {
    let s = scenario("023-pi-reboot-rejoin.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Raw);
    let joins = [("pi", 0, 0), ("laptop", 100, 1), ("pi", 1000, 2)];
    for (c, at, server) in joins {
        ev.joins.push(JoinRecord {
            client: c.into(),
            at: ms(at),
            settled: ms(at + 10),
            outcome: JoinOutcome::Placed { server },
            socket_closed: None,
        });
    }
    ev.rejoins.push(("pi".into(), ms(990)));
    assert_eq!(
        ev.placements(),
        vec![vec![], vec!["laptop".to_string()], vec!["pi".to_string()]]
    );
    assert_eq!(ev.placement_of("pi"), Some(2));
    assert_eq!(ev.session_at("pi", ms(500)).map(|j| j.at), Some(ms(0)));
    assert_eq!(
        ev.session_at("pi", ms(995)),
        None,
        "between the reboot and the new join"
    );
    assert_eq!(ev.session_at("pi", ms(1500)).map(|j| j.at), Some(ms(1000)));
    // A line said in the old session reached the old server's clients (pi alone), one
    // in the new session the new server's: isolation holds over the reboot.
    ev.transcripts.insert("laptop".into(), Vec::new());
    for (at, text) in [(500, "before"), (1500, "after")] {
        let say = SayRecord {
            client: "pi".into(),
            text: text.into(),
            at: ms(at),
        };
        ev.transcripts
            .entry("pi".into())
            .or_default()
            .push((ms(at + 1), say.wire()));
        ev.says.push(say);
    }
    let v = crate::runner::expect::check(
        &crate::scenario::Expectation {
            line: 1,
            only: None,
            algorithm: None,
            why: None,
            kind: crate::scenario::ExpectKind::ChatIsolation,
        },
        &ev,
    );
    assert_eq!(v.status, Status::Pass, "{v:?}");
    // Had the old session's line reached laptop (s2), it would have leaked.
    ev.transcripts
        .get_mut("laptop")
        .unwrap()
        .push((ms(501), "[pi] before".into()));
    let v = crate::runner::expect::check(
        &crate::scenario::Expectation {
            line: 1,
            only: None,
            algorithm: None,
            why: None,
            kind: crate::scenario::ExpectKind::ChatIsolation,
        },
        &ev,
    );
    assert_eq!(v.status, Status::Fail);
    assert!(v.summary.contains("leaked to laptop"), "{v:?}");
}

#[test]
fn bulk_done_needs_every_line_back_in_time() {
    let s = scenario("025-nas-backup-bulk.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Proxy);
    ev.bulks.push(BulkRecord {
        client: "nas".into(),
        lines: 2000,
        line_bytes: 1000,
        started: ms(1000),
        sent_done: Some(ms(1100)),
        echoed: 2000,
        echo_done: Some(ms(1200)),
    });
    let check = |ev: &Evidence| {
        crate::runner::expect::check(
            &crate::scenario::Expectation {
                line: 1,
                only: None,
                algorithm: None,
                why: None,
                kind: crate::scenario::ExpectKind::BulkDone {
                    clients: vec!["nas".into()],
                    within: Some(ms(20_000)),
                },
            },
            ev,
        )
    };
    let v = check(&ev);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert_eq!(
        v.detail,
        "nas: 2000000 of 2000000 bytes back, sent in 0.100s (160.0 Mbit/s up), echoed back in 0.200s (80.0 Mbit/s round trip)"
    );
    ev.bulks[0].echoed = 1999;
    let v = check(&ev);
    assert_eq!(v.status, Status::Fail);
    assert_eq!(v.summary, "nas: 1999 of 2000 lines came back");
    ev.bulks[0].echoed = 2000;
    ev.bulks[0].echo_done = Some(ms(30_000));
    assert_eq!(check(&ev).status, Status::Fail);
}

#[test]
fn a_joint_join_shows_counts_not_names_in_the_snapshot() {
    let s = scenario("022-party-join.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Raw);
    for (i, c) in ["g01", "g02", "g03", "g04"].iter().enumerate() {
        ev.joins.push(JoinRecord {
            client: c.to_string(),
            at: ms(0),
            settled: ms(10),
            outcome: JoinOutcome::Placed { server: i % 3 },
            socket_closed: None,
        });
    }
    ev.together
        .push(vec!["g01".into(), "g02".into(), "g03".into(), "g04".into()]);
    let text = crate::report::snapshot::render(&outcome(&s, ev));
    assert!(
        text.contains(
            "placement: s1 [2 who joined together], s2 [1 who joined together], s3 [1 who joined together]"
        ),
        "{text}"
    );
}

/// A join at `at` ms placed on `server`, its session closed at its server at `closed` ms.
fn placed(client: &str, at: u64, server: usize, closed: Option<u64>) -> JoinRecord {
    JoinRecord {
        client: client.into(),
        at: ms(at),
        settled: ms(at + 10),
        outcome: JoinOutcome::Placed { server },
        socket_closed: closed.map(ms),
    }
}

#[test]
fn raw_idle_close_is_judged_when_the_tolerance_covers_its_sweep_and_na_when_not() {
    // 007 allows 700 ms: less than raw's 1 s sweep, so raw cannot meet it by design.
    let s = scenario("007-idle-timeout.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Raw);
    ev.joins.push(placed("quiet", 0, 0, Some(2900)));
    let o = outcome(&s, ev);
    let v = verdict(&o, "idle sessions");
    assert_eq!(v.status, Status::NotApplicable, "{v:?}");
    assert!(
        v.summary.contains("up to 1s after the idle timeout"),
        "{}",
        v.summary
    );
    // 024 allows 1.2 s: raw is judged like any balancer.
    let (s, ev) = sleeping_phone(Some(4600));
    let o = outcome(&s, ev);
    let v = verdict(&o, "idle sessions");
    assert_ne!(v.status, Status::NotApplicable, "{v:?}");
}

#[test]
fn the_timeline_labels_an_idle_close_apart_from_other_closes() {
    let s = scenario("007-idle-timeout.toml");
    let mut ev = Evidence::new(&s, BalancerKind::Proxy);
    for (i, (client, closed)) in [("quiet", 2030), ("chatty", 700)].iter().enumerate() {
        ev.joins
            .push(placed(client, 10 * i as u64, i, Some(*closed)));
        ev.closes.insert(
            client.to_string(),
            CloseRecord {
                at: ms(*closed + 1),
                last_activity: ms(0),
                by_quit: false,
                how: "closed by the other side".into(),
            },
        );
    }
    let svg = crate::report::svg::render(&ev);
    assert_eq!(svg.matches(r#"class="closed idle""#).count(), 1, "{svg}");
    assert!(svg.contains("quiet closed by the idle timeout"), "{svg}");
    assert!(
        svg.contains(r#"class="closed" "#) && svg.contains(">idle<"),
        "{svg}"
    );
}

//! The scenarios against the peers (root): HAProxy, nginx, kernel NAT, and `index.html`
//! rendered in headless Chromium.
//!
//! HAProxy is the most trusted balancer of its kind: with the scenario's settings it
//! must meet the guideline, server-crash, all-servers-down and idle-timeout expectations
//! as ours do (if it misses a detection bound of interval x fall + timeout, the bound or
//! the harness is wrong). nginx and kernel NAT run the server-crash scenario: what they
//! cannot do by design (passive checks only, no checks at all) is judged N/A with the
//! reason, and the rest as for any balancer. The deterministic part of each run is an
//! insta snapshot (`tests/snapshots/peer-*.snap`); reports go to
//! `target/l4lb-report-test/peers-*`.

use std::path::{Path, PathBuf};
use std::process::Command;

use l4lb_harness::report;
use l4lb_harness::runner::{self, RunOptions, RunOutcome, Status};
use l4lb_harness::scenario::{self, BalancerKind};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(file: &str, kind: BalancerKind, report_dir: &str) -> RunOutcome {
    let s = scenario::load(&Path::new("scenarios").join(file))
        .unwrap_or_else(|e| panic!("scenarios/{file}: {e}"));
    let opts = RunOptions {
        l4lb: PathBuf::from(env!("CARGO_BIN_EXE_l4lb")),
        pcap: None,
        seed: runner::DEFAULT_SEED,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = rt.block_on(runner::run_one(&s, kind, &opts));
    report::write_run(
        &root().join("target/l4lb-report-test").join(report_dir),
        &outcome,
    )
    .expect("writing the report");
    outcome
}

fn snapshot(name: &str, outcome: &RunOutcome) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name.to_string(), report::snapshot::render(outcome)));
}

/// Every verdict of `o`, one line each, for failure messages.
fn verdicts(o: &RunOutcome) -> String {
    report::snapshot::render(o)
}

fn installed_or_fail(kind: BalancerKind) {
    if let Err(why) = l4lb_harness::peers::installed(kind) {
        panic!("{kind}: {why}; `make test` installs the peers (make test-deps)");
    }
}

#[test]
fn haproxy_meets_the_guideline_crash_all_down_and_idle_expectations() {
    if !l4lb_harness::privilege::root_or_skip("haproxy scenarios") {
        return;
    }
    installed_or_fail(BalancerKind::Haproxy);
    for file in [
        "001-guideline.toml",
        "003-server-crash.toml",
        "006-all-servers-down.toml",
        "007-idle-timeout.toml",
    ] {
        let o = run(file, BalancerKind::Haproxy, "peers-haproxy");
        let stem = file.trim_end_matches(".toml");
        // Every expectation applies to HAProxy and holds: none failed, none N/A.
        let not_passed: Vec<String> = o
            .verdicts
            .iter()
            .filter(|v| v.status != Status::Pass)
            .map(|v| format!("{} {}: {}", v.status.label(), v.expectation, v.summary))
            .collect();
        assert!(
            not_passed.is_empty(),
            "haproxy on {stem}: {not_passed:#?}\n{}",
            verdicts(&o)
        );
        snapshot(&format!("peer-haproxy-{stem}"), &o);
    }
}

#[test]
fn nginx_passive_checks_fail_over_but_detection_is_not_applicable() {
    if !l4lb_harness::privilege::root_or_skip("nginx scenario") {
        return;
    }
    installed_or_fail(BalancerKind::Nginx);
    let o = run("003-server-crash.toml", BalancerKind::Nginx, "peers-nginx");
    let failover = o
        .verdicts
        .iter()
        .find(|v| v.expectation.contains("failure noticed"))
        .expect("a failover verdict");
    assert_eq!(failover.status, Status::NotApplicable, "{}", verdicts(&o));
    assert!(failover.summary.contains("passive"), "{}", failover.summary);
    // Its passive checks send every later client elsewhere: the rest holds.
    for v in o.verdicts.iter().filter(|v| !std::ptr::eq(*v, failover)) {
        assert_eq!(v.status, Status::Pass, "{}", verdicts(&o));
    }
    snapshot("peer-nginx-003-server-crash", &o);
}

#[test]
fn kernel_nat_keeps_sending_clients_to_a_dead_server_and_says_so() {
    if !l4lb_harness::privilege::root_or_skip("nat scenario") {
        return;
    }
    installed_or_fail(BalancerKind::Nat);
    let o = run("003-server-crash.toml", BalancerKind::Nat, "peers-nat");
    let na: Vec<&str> = o
        .verdicts
        .iter()
        .filter(|v| v.status == Status::NotApplicable)
        .map(|v| v.summary.as_str())
        .collect();
    assert!(
        na.iter().any(|s| s.contains("no health checks")),
        "{}",
        verdicts(&o)
    );
    // The report shows it: joins after the kill refused by s1's host.
    assert!(
        na.iter().any(|s| s.contains("refused (b")),
        "the N/A verdicts should name the refused joins: {na:#?}"
    );
    assert!(
        o.verdicts.iter().all(|v| v.status != Status::Fail),
        "{}",
        verdicts(&o)
    );
    assert_eq!(o.status(), Status::Pass);
    snapshot("peer-nat-003-server-crash", &o);
}

/// The Chromium binary, or a failure saying how to install it.
fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("chromium is not installed: `apt-get install chromium` (make test-deps)");
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom` or `--screenshot=...`);
/// returns stdout.
fn chromium_on(page: &Path, mode: &str) -> String {
    let profile = tempdir("l4lb-chromium");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir(prefix: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temporary directory");
    d
}

#[test]
fn index_html_shows_the_matrix_and_every_timeline_in_chromium() {
    if !l4lb_harness::privilege::root_or_skip("index.html in chromium") {
        return;
    }
    chromium();
    installed_or_fail(BalancerKind::Haproxy);
    let outcomes: Vec<RunOutcome> = [BalancerKind::Raw, BalancerKind::Haproxy, BalancerKind::Nat]
        .into_iter()
        .map(|b| run("003-server-crash.toml", b, "peers-html"))
        .collect();
    let dir = root().join("target/l4lb-report-test/peers-html");
    report::write_index(&dir, &outcomes).expect("writing the index");
    let page = dir.join("index.html");
    let dom = chromium_on(&page, "--dump-dom");
    // The matrix: one column a balancer, the scenario's row, a link to each run.
    let matrix = dom
        .split("<table id=\"matrix\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no matrix in the rendered page:\n{dom}"));
    for b in ["raw", "haproxy", "nat"] {
        assert!(
            matrix.contains(&format!("<th>{b}</th>")),
            "no {b} column: {matrix}"
        );
        assert!(
            matrix.contains(&format!("href=\"#run-003-server-crash-{b}\"")),
            "no link to the {b} run: {matrix}"
        );
        assert!(
            dom.contains(&format!("id=\"run-003-server-crash-{b}\"")),
            "no section of the {b} run"
        );
    }
    assert!(matrix.contains("<th>003-server-crash</th>"), "{matrix}");
    assert!(
        matrix.contains("N/A"),
        "nat's N/A verdicts are not counted: {matrix}"
    );
    // Every run's timeline, inline and parsed as SVG (the DOM has its elements).
    let timelines = dom.matches("<div class=\"timeline\">").count();
    let svgs = dom
        .matches("<svg xmlns=\"http://www.w3.org/2000/svg\"")
        .count();
    assert_eq!((timelines, svgs), (3, 3), "timelines in the rendered page");
    assert!(
        dom.matches("<polyline").count() >= 9,
        "sessions per server of each run"
    );
    assert!(dom.contains("kernel NAT has no health checks"));
    let shot = dir.join("index.png");
    let _ = std::fs::remove_file(&shot);
    chromium_on(&page, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );
}

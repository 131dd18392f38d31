//! Command-line mistakes are usage errors with one clear line, exit status 2.

use crate::BIN;
#[test]
fn usage_errors_are_clear_and_exit_2() {
    let backend = ["--source-ip", "10.0.0.1", "--backend", "10.0.0.11:80"];
    for (args, says) in [
        (&["10.0.0.1", "10.0.0.11"][..], "IP PORT"),
        (&["--backend", "10.0.0.11:80"][..], "--source-ip"),
        (
            &[&backend[..], &["--capture", "raw", "--send", "direct"]].concat()[..],
            "--send direct needs --capture packet",
        ),
        // The shared health check resolve refuses a timeout not below the interval.
        (
            &[
                &backend[..],
                &["--health-timeout", "2s", "--health-interval", "2s"],
            ]
            .concat()[..],
            "must be shorter than --health-interval",
        ),
    ] {
        let err = usage_error(args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Runs `l4lb raw ARGS` expecting a usage error; returns its one line on stderr.
fn usage_error(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .arg("raw")
        .args(args)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line: {err}"
    );
    err
}

#[test]
fn a_stage_times_file_that_cannot_be_written_is_a_usage_error() {
    if !l4lb_harness::privilege::root_or_skip("a_stage_times_file_that_cannot_be_written") {
        return;
    }
    let err = usage_error(&[
        "--source-ip",
        "127.0.0.1",
        "--backend",
        "127.0.0.1:7000",
        "--stage-times",
        "/nonexistent-l4lb-dir/stages.json",
    ]);
    assert!(
        err.contains("cannot write --stage-times /nonexistent-l4lb-dir/stages.json"),
        "{err}"
    );
}

#[test]
fn port_zero_and_a_batch_out_of_range_are_usage_errors() {
    let base = ["--source-ip", "127.0.0.1", "--backend", "127.0.0.1:7000"];
    let err = usage_error(&[&base[..], &["--port", "0"]].concat());
    assert!(err.contains("--port must be from 1 to 65535"), "{err}");
    for batch in ["0", "100000000"] {
        let err = usage_error(&[&base[..], &["--batch", batch]].concat());
        assert!(err.contains("--batch must be from 1 to 1024"), "{err}");
    }
}

#[test]
fn a_source_ip_that_is_not_this_hosts_is_a_usage_error() {
    // 192.0.2.0/24 is TEST-NET-1: documentation only, never a host's address.
    let err = usage_error(&["--source-ip", "192.0.2.77", "--backend", "127.0.0.1:7000"]);
    assert!(
        err.contains("--source-ip 192.0.2.77 is not an address of this host"),
        "{err}"
    );
}

#[test]
fn a_busy_poll_budget_past_a_millisecond_is_refused() {
    let out = std::process::Command::new(BIN)
        .args([
            "raw",
            "--source-ip",
            "127.0.0.1",
            "--backend",
            "127.0.0.1:7000",
        ])
        .args(["--busy-poll", "5ms"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("at most 1ms"), "{err}");
}

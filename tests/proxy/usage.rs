//! Bad command-line input: exit status 2 and one clear line.

use std::process::Command;
#[test]
fn bad_cli_input_gives_exit_code_2_and_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no backends"),
        (
            &["--backend", "10.0.0.2"],
            "invalid address \"10.0.0.2\" for --backend",
        ),
        (
            &["10.0.0.2", "80", "10.0.0.2", "80"],
            "duplicate backend 10.0.0.2:80",
        ),
        (
            &["--backend", "10.0.0.2:80", "--idle-timeout", "0s"],
            "--idle-timeout must be more than zero",
        ),
        (
            &["--backend", "10.0.0.2:80", "--health-interval", "400d"],
            "at most 1 day",
        ),
        (
            &["--backend", "10.0.0.2:80", "--connect-timeout", "fast"],
            "invalid duration \"fast\"",
        ),
        (
            &[
                "--backend",
                "10.0.0.2:80",
                "--health-timeout",
                "10s",
                "--health-interval",
                "1s",
            ],
            "--health-timeout 10s must be shorter than --health-interval 1s",
        ),
        (
            &["--backend", "10.0.0.2:80", "--fall", "0"],
            "--fall must be from 1",
        ),
        (
            &["--backend", "10.0.0.2:80", "--listen", "*:20000"],
            "--listen",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_l4lb"))
            .arg("proxy")
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("l4lb: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
    // Values clap itself rejects exit 2 as well.
    let out = Command::new(env!("CARGO_BIN_EXE_l4lb"))
        .args([
            "proxy",
            "--backend",
            "10.0.0.2:80",
            "--max-sessions",
            "lots",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A busy-poll budget past a millisecond only burns CPU: refused, with the bound.
    let out = Command::new(env!("CARGO_BIN_EXE_l4lb"))
        .args(["proxy", "--backend", "10.0.0.2:80", "--busy-poll", "5ms"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at most 1ms"), "{stderr}");
}

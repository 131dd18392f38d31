//! `kernel = true` on a `netem` step runs the arguments on the kernel's netem qdisc
//! (root): where the kernel has netem the run passes and the delay shows; where it has
//! none (as on this project's CI kernels) the step fails with a message that says how to
//! run the same arguments on the harness's own wire. Never skipped: both outcomes are
//! checked against what the kernel really has.

use std::path::Path;
use std::process::Command;

use l4lb_harness::privilege::root_or_skip;

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");

const SCENARIO: &str = r#"
name = "kernel netem"
purpose = "the balancer's link delayed by the kernel's netem, when asked for"
balancers = ["proxy"]
balancers_why = "the qdisc is the same whichever balancer runs"

[[step]]
netem = "delay 30ms"
link = "lb"
kernel = true

[[step]]
join = ["a", "b"]

[[step]]
say = "over netem"
client = "a"

[[step]]
wait = "300ms"

[[expect]]
heard = "over netem"
by = ["a"]
"#;

#[test]
fn kernel_netem_runs_where_the_kernel_has_it_and_says_what_to_do_where_not() {
    if !root_or_skip("kernel_netem_runs_where_the_kernel_has_it_and_says_what_to_do_where_not") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l4lb-kernel-netem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("kernel-netem.toml");
    std::fs::write(&file, SCENARIO).expect("write scenario");
    let reports = dir.join("reports");
    let out = Command::new(BIN)
        .args(["run", file.to_str().unwrap(), "--report-dir"])
        .arg(&reports)
        .output()
        .expect("run l4lb");
    let report = std::fs::read_to_string(reports.join("kernel-netem/proxy/report.md"))
        .unwrap_or_else(|e| {
            panic!(
                "no report ({e}); stdout: {}; stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    if l4lb_harness::faults::netem_supported() {
        assert!(out.status.success(), "the run failed:\n{report}");
        assert!(report.contains("kernel netem delay 30ms"), "{report}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{report}");
        assert!(
            report.contains("this kernel has no netem qdisc")
                && report.contains("drop `kernel = true`"),
            "the failure does not say what to do:\n{report}"
        );
    }
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

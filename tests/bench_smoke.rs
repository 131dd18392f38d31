//! Smoke test of `l4lb bench`: one short run over every path that is installed (ours
//! always), checking that each path moved bytes without error and without loss, that
//! the report files are written, and that nothing is left behind. Not how fast.

use std::process::Command;

use l4lb_harness::privilege::root_or_skip;

const PATHS: [&str; 7] = [
    "direct",
    "nat",
    "haproxy-rr",
    "haproxy-lc",
    "nginx",
    "raw",
    "proxy",
];
const METRICS: [&str; 7] = [
    "bulk1_gbps",
    "bulk8_gbps",
    "conn_per_s",
    "keep_req_per_s",
    "lat_p50_us",
    "lat_p99_us",
    "lat_p999_us",
];

/// One bench at a time: two would share the two cores and each other's pinning.
static ONE_BENCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_installed_path_moves_bytes_without_error_or_loss() {
    if !root_or_skip("bench_smoke") {
        return;
    }
    let _one = ONE_BENCH.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::env::temp_dir().join(format!("l4lb-bench-smoke-{}", std::process::id()));
    let (run, context) = short_bench(&["--paths", &PATHS.join(",")], &out);
    let stdout = String::from_utf8_lossy(&run.stdout);

    // Nothing of that run is left: no namespace with its prefix.
    let prefix = namespace_prefix(&stdout).unwrap_or_else(|| panic!("no prefix\n{context}"));
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains(&prefix), "left behind: {netns}\n{context}");

    let json = std::fs::read_to_string(out.join("bench.json"))
        .unwrap_or_else(|e| panic!("no bench.json ({e})\n{context}"));
    let report: serde_json::Value = serde_json::from_str(&json).expect("bench.json is JSON");
    for name in ["bench.md", "bench.svg"] {
        let text = std::fs::read_to_string(out.join(name)).unwrap_or_default();
        assert!(text.len() > 100, "{name} missing or empty\n{context}");
    }
    std::fs::remove_dir_all(&out).ok();

    let steal = report["steal"].as_array().expect("steal array");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        steal.len() >= cpus
            && steal
                .iter()
                .all(|s| s[1].as_f64().is_some_and(|p| (0.0..=100.0).contains(&p))),
        "every CPU's host steal, as a percentage: {steal:?}\n{context}"
    );
    let paths = report["paths"].as_array().expect("paths array");
    assert_eq!(
        paths.len(),
        PATHS.len(),
        "every requested path is reported\n{context}"
    );
    for p in paths {
        let name = p["path"].as_str().unwrap_or("?");
        let state = p["status"]["state"].as_str().unwrap_or("?");
        let is_peer = ["haproxy-rr", "haproxy-lc", "nginx"].contains(&name);
        if is_peer && state == "not_installed" {
            eprintln!("{name}: {}", p["status"]["reason"]);
            continue;
        }
        assert_eq!(state, "measured", "{name} did not run: {p}\n{context}");
        assert!(
            p["bytes_moved"].as_u64().unwrap_or(0) > 0,
            "{name} moved no bytes: {p}"
        );
        assert_eq!(p["errors"], 0, "{name} had errors: {}", p["problems"]);
        assert_eq!(p["lost_bytes"], 0, "{name} lost bytes: {}", p["problems"]);
        assert_eq!(
            p["server_errors"], 0,
            "{name}: servers saw errors: {}",
            p["problems"]
        );
        for m in METRICS {
            let v = p["metrics"][m]["median"].as_f64();
            assert!(v.is_some_and(|v| v > 0.0), "{name}: no {m} figure: {p}");
        }
        if name != "direct" {
            // Requests went through the balancer to more than one server.
            let used = p["per_server"].as_array().map_or(0, |s| {
                s.iter().filter(|n| n.as_u64().unwrap_or(0) > 0).count()
            });
            assert!(
                used > 1,
                "{name} used {used} server(s): {}",
                p["per_server"]
            );
        }
        // Ours balance as they claim: raw's round robin gives each server the same count
        // give or take the connections still in flight when the workload stopped (the
        // bench keeps 50), the proxy's least connections at least half the mean each.
        let counts: Vec<u64> = p["per_server"]
            .as_array()
            .map(|s| s.iter().filter_map(|n| n.as_u64()).collect())
            .unwrap_or_default();
        let (min, max) = (
            counts.iter().copied().min().unwrap_or(0),
            counts.iter().copied().max().unwrap_or(0),
        );
        let mean = counts.iter().sum::<u64>() / counts.len().max(1) as u64;
        match name {
            "raw" => assert!(max - min <= 50, "raw round robin uneven: {counts:?}"),
            "proxy" => assert!(
                2 * min >= mean,
                "proxy least connections uneven: {counts:?}"
            ),
            _ => {}
        }
    }
    assert!(run.status.success(), "ours were not clean\n{context}");
}

#[test]
fn with_offloads_off_raw_and_kernel_nat_move_every_segment_on_its_own() {
    if !root_or_skip("bench_smoke offloads off") {
        return;
    }
    let _one = ONE_BENCH.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::env::temp_dir().join(format!("l4lb-bench-off-{}", std::process::id()));
    let offloads_off = ["--offloads", "off", "--paths", "nat,raw"];
    let (run, context) = short_bench(
        &[&offloads_off[..], &["--workloads", "bulk,packets"]].concat(),
        &out,
    );
    assert!(run.status.success(), "raw was not clean\n{context}");
    let json = std::fs::read_to_string(out.join("bench.json"))
        .unwrap_or_else(|e| panic!("no bench.json ({e})\n{context}"));
    std::fs::remove_dir_all(&out).ok();
    let report: serde_json::Value = serde_json::from_str(&json).expect("bench.json is JSON");
    let setup = report["setup"].to_string();
    assert!(setup.contains("offloads off on every veth"), "{setup}");
    for p in report["paths"].as_array().expect("paths array") {
        let name = p["path"].as_str().unwrap_or("?");
        assert_eq!(p["status"]["state"], "measured", "{name}: {p}\n{context}");
        for m in ["bulk1_gbps", "small_kpps"] {
            let v = p["metrics"][m]["median"].as_f64();
            assert!(v.is_some_and(|v| v > 0.0), "{name}: no {m} figure: {p}");
        }
        assert_eq!(p["lost_bytes"], 0, "{name} lost bytes: {}", p["problems"]);
    }
}

/// Runs `l4lb bench` for one round of 300 ms workloads with `args`, its report into
/// `out`; returns its output and a context (exit status, stdout, stderr) for failures.
fn short_bench(args: &[&str], out: &std::path::Path) -> (std::process::Output, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_l4lb"))
        .args([
            "bench",
            "--rounds",
            "1",
            "--duration",
            "300ms",
            "--no-progress",
        ])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("running l4lb bench");
    let context = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    (run, context)
}

/// The bench prints its namespace prefix in its setup lines: `namespaces l4lb-<pid>-<n>-*`.
fn namespace_prefix(stdout: &str) -> Option<String> {
    let at = stdout.find("namespaces l4lb-")? + "namespaces ".len();
    let prefix: String = stdout[at..].chars().take_while(|c| *c != '*').collect();
    (prefix.len() > "l4lb-".len()).then_some(prefix)
}

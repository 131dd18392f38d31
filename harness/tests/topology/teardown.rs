//! Teardown and the sweep leave no namespace behind, even after a panic.

use std::time::Duration;

use l4lb_harness::cleanup::{self, SweepScope};
use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::{Host, Topology, TopologySpec};

use crate::namespaces_with;
/// Also the one test on a current-thread runtime (the `#[tokio::test]` default).
#[tokio::test]
async fn teardown_leaves_no_namespace_of_its_prefix() {
    if !root_or_skip("teardown_leaves_no_namespace_of_its_prefix") {
        return;
    }
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    let prefix = topo.prefix().to_string();
    assert_eq!(namespaces_with(&prefix).len(), 6);
    // A process left running inside a namespace is killed by teardown.
    let mut sleeper = topo
        .namespace(Host::Server(0))
        .command("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    topo.teardown().await.unwrap();
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    let status = tokio::time::timeout(Duration::from_secs(2), sleeper.wait())
        .await
        .expect("sleeper was killed")
        .unwrap();
    assert!(!status.success());

    // Dropping works the same.
    let topo = Topology::build(&TopologySpec::default()).await.unwrap();
    let prefix = topo.prefix().to_string();
    drop(topo);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_still_leaves_nothing() {
    if !root_or_skip("a_panicking_test_still_leaves_nothing") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let runtime = tokio::runtime::Handle::current();
    let crashed = std::thread::spawn(move || {
        runtime.block_on(async {
            let topo = Topology::build(&TopologySpec::default()).await.unwrap();
            tx.send(topo.prefix().to_string()).unwrap();
            panic!("deliberate failure inside a test");
        })
    })
    .join();
    assert!(crashed.is_err(), "the thread must have panicked");
    let prefix = rx.recv().unwrap();
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_removes_dead_runs_but_not_live_ones() {
    if !root_or_skip("sweep_removes_dead_runs_but_not_live_ones") {
        return;
    }
    // A dead run: a child process creates a namespace with its own pid, leaves a
    // process running inside it, and exits.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ip netns add l4lb-$$-0-lb && \
             (ip netns exec l4lb-$$-0-lb sleep 30 >/dev/null 2>&1 &) && echo $$",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead_pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dead = format!("l4lb-{dead_pid}-0-lb");
    // Wait (bounded) until the sleeper has entered the namespace.
    for _ in 0..200 {
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &dead])
            .output()
            .unwrap();
        if !pids.stdout.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !cleanup::pid_alive(dead_pid.parse().unwrap()),
        "{:?}",
        std::fs::read_to_string(format!("/proc/{dead_pid}/status"))
    );
    let live = Topology::build(&TopologySpec::default()).await.unwrap();
    let removed = cleanup::sweep(SweepScope::DeadRuns).unwrap();
    let entry = removed
        .iter()
        .find(|r| r.name == dead)
        .expect("dead run swept");
    assert_eq!(
        entry.killed.len(),
        1,
        "the sleeper inside was killed: {entry:?}"
    );
    assert!(!cleanup::pid_alive(entry.killed[0]));
    assert!(
        !removed.iter().any(|r| r.name.starts_with(live.prefix())),
        "{removed:?}"
    );
    assert!(namespaces_with(&dead).is_empty());
    assert_eq!(namespaces_with(live.prefix()).len(), 6);
}

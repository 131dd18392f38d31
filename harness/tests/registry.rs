//! The process-wide registry of live topologies (what a SIGINT/SIGTERM handler tears
//! down). In its own test binary: `teardown_all` removes every topology of the process.

use l4lb_harness::cleanup::{self, registry};
use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::topology::{Topology, TopologySpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_all_removes_every_live_topology() {
    if !root_or_skip("teardown_all_removes_every_live_topology") {
        return;
    }
    let a = Topology::build(&TopologySpec::default()).await.unwrap();
    let b = Topology::build(&TopologySpec::default()).await.unwrap();
    let live = registry::live_namespaces();
    assert_eq!(live.len(), 12, "{live:?}");
    assert!(live
        .iter()
        .all(|ns| ns.name.starts_with(a.prefix()) || ns.name.starts_with(b.prefix())));

    let errors = registry::teardown_all();
    assert!(errors.is_empty(), "{errors:?}");
    let names = cleanup::list_namespaces().unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(a.prefix()) || n.starts_with(b.prefix())),
        "{names:?}"
    );
    assert!(registry::live_namespaces().is_empty());
    // The topologies' own teardown afterwards finds nothing left and does not fail.
    a.teardown().await.unwrap();
    drop(b);
}

//! What the proxy logs when a session closes.

use std::time::Duration;

use tokio::time::{sleep, Instant};

use crate::{join, Backend, Proxy, WAIT};
/// At the default level an ordinary close is not logged unless `--log-sessions` asks for
/// an access log; an idle-timeout close always is. One worker, so the lines come in the
/// order the sessions closed: the idle close, logged last, shows the earlier line is not
/// just late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_closes_are_logged_at_info_only_with_log_sessions() {
    let backend = Backend::start("s1", [127, 0, 0, 31]).await;
    for (flag, want) in [(None, 0), (Some("--log-sessions"), 1)] {
        let mut extra = vec!["--workers", "1", "--idle-timeout", "500ms"];
        extra.extend(flag);
        let proxy = Proxy::start_logging(&[&backend], &extra, "info");
        let mut done = join(&proxy).await;
        done.say("hello").await;
        drop(done);
        proxy
            .wait_metric("l4lb_proxy_sessions_closed_total{reason=\"done\"}", 1.0)
            .await;
        let _idle = join(&proxy).await;
        let deadline = Instant::now() + WAIT;
        while !proxy
            .logged("session closed")
            .iter()
            .any(|v| v["reason"] == "idle_timeout")
        {
            assert!(Instant::now() < deadline, "the idle close was not logged");
            sleep(Duration::from_millis(20)).await;
        }
        let done_lines = proxy
            .logged("session closed")
            .iter()
            .filter(|v| v["reason"] == "done")
            .count();
        assert_eq!(done_lines, want, "with {flag:?}");
    }
}

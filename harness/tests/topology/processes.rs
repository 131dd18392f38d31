//! Processes in a namespace: transcript, stdin and signals.

use std::time::Duration;

use l4lb_harness::cleanup;
use l4lb_harness::privilege::root_or_skip;
use l4lb_harness::process::{NsProcess, Signal};
use l4lb_harness::topology::Host;

use crate::topology_without_rst_drop;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ns_process_transcript_stdin_and_signals() {
    if !root_or_skip("ns_process_transcript_stdin_and_signals") {
        return;
    }
    let topo = topology_without_rst_drop().await;
    let ns = topo.namespace(Host::Server(0));
    // The process runs inside the namespace: it sees s1's address.
    let script = "ip -4 -o addr show dev eth0; echo oops >&2; \
                  while read l; do echo \"got $l\"; done; echo bye";
    let mut p = NsProcess::spawn(ns, "sh".as_ref(), &["-c".into(), script.into()])
        .await
        .unwrap();
    let addr = format!("inet {}/24", topo.addr(Host::Server(0)));
    assert!(p
        .wait_for_line(|l| l.contains(&addr), Duration::from_secs(3))
        .await
        .is_some());
    let err = p
        .wait_for_line(|l| l == "oops", Duration::from_secs(3))
        .await
        .unwrap();
    assert!(err.stderr);
    p.send_line("one").await.unwrap();
    assert!(p
        .wait_for_line(|l| l == "got one", Duration::from_secs(3))
        .await
        .is_some());

    // STOP: input is not answered; CONT: it is.
    p.signal(Signal::Stop).unwrap();
    p.send_line("two").await.unwrap();
    assert!(p
        .wait_for_line(|l| l == "got two", Duration::from_millis(300))
        .await
        .is_none());
    p.signal(Signal::Cont).unwrap();
    assert!(p
        .wait_for_line(|l| l == "got two", Duration::from_secs(3))
        .await
        .is_some());

    // End of input ends the loop; exit status 0.
    p.close_stdin();
    assert!(p
        .wait_for_line(|l| l == "bye", Duration::from_secs(3))
        .await
        .is_some());
    let status = p.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert!(status.success());
    // Order within a stream is kept (stdout and stderr are separate pipes, so their
    // interleaving is up to the scheduler).
    let stream = |stderr: bool| -> Vec<String> {
        p.transcript()
            .iter()
            .filter(|l| l.stderr == stderr)
            .map(|l| l.text.clone())
            .collect()
    };
    assert_eq!(
        &stream(false)[1..],
        ["got one", "got two", "bye"].map(String::from).as_slice()
    );
    assert_eq!(stream(true), vec!["oops".to_string()]);
    assert!(p.transcript().windows(2).all(|w| w[0].at <= w[1].at));

    // TERM and KILL end a process with that signal.
    use std::os::unix::process::ExitStatusExt;
    let mut t = NsProcess::spawn(ns, "sleep".as_ref(), &["30".into()])
        .await
        .unwrap();
    t.signal(Signal::Term).unwrap();
    let status = t.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let mut k = NsProcess::spawn(ns, "sleep".as_ref(), &["30".into()])
        .await
        .unwrap();
    k.signal(Signal::Kill).unwrap();
    let status = k.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(
        k.signal(Signal::Term).is_err(),
        "signalling an exited process is an error"
    );

    // Output into a file: both streams appended in the order written, the transcript
    // left empty, the tail read back from the file.
    let file = std::env::temp_dir().join(format!("l4lb-output-test-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut f = NsProcess::spawn_with_output_file(
        ns,
        "sh".as_ref(),
        &["-c".into(), "echo one; echo two >&2; echo three".into()],
        &file,
    )
    .await
    .unwrap();
    let status = f.wait_exit(Duration::from_secs(3)).await.unwrap().unwrap();
    assert!(status.success());
    assert_eq!(f.output_tail(2), ["two", "three"]);
    assert_eq!(f.output_tail(10), ["one", "two", "three"]);
    assert!(f.transcript().is_empty());
    std::fs::remove_file(&file).unwrap();

    // stop(): TERM ignored -> KILL after the grace period.
    let mut stubborn = NsProcess::spawn(
        ns,
        "sh".as_ref(),
        &[
            "-c".into(),
            "trap '' TERM; echo ready; sleep 30 & wait".into(),
        ],
    )
    .await
    .unwrap();
    assert!(stubborn
        .wait_for_line(|l| l == "ready", Duration::from_secs(3))
        .await
        .is_some());
    let status = stubborn.stop(Duration::from_millis(200)).await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // Drop kills and reaps.
    let dropped = NsProcess::spawn(ns, "sleep".as_ref(), &["30".into()])
        .await
        .unwrap();
    let pid = dropped.pid();
    drop(dropped);
    assert!(
        !cleanup::pid_alive(pid),
        "dropped process {pid} still alive"
    );
}

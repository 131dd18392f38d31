//! A client joins: where it lands, seen from the kernel of every server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{program, Client, Run, JOIN_TIMEOUT, JOIN_TIMEOUT_FAULTY};
use crate::netns::Namespace;
use crate::process::NsProcess;
use crate::runner::evidence::*;
use crate::runner::observer::{PERSIST, PERSIST_LOSSY, POLL};
use crate::scenario::{server_name, CommandTemplate, Step};
use crate::topology::Host;

impl Run<'_> {
    /// The client host a new client goes on: joins alternate over the hosts; a client
    /// that rejoins keeps its own.
    pub(super) fn next_host(&self) -> usize {
        self.clients.len() % self.scenario.topology.clients
    }

    /// Starts `name`'s client program on client host `host`.
    pub(super) async fn spawn_client(&self, name: &str, host: usize) -> anyhow::Result<NsProcess> {
        let ns: Namespace = self.topo.namespace(Host::Client(host)).clone();
        let vars = [
            ("l4lb", self.opts.l4lb.display().to_string()),
            ("host", self.topo.entry(host).to_string()),
            ("port", self.scenario.health.port.to_string()),
            ("nick", name.to_string()),
        ];
        let template: &CommandTemplate = &self.scenario.programs.client;
        let (prog, args) = program(template.expand(&vars));
        NsProcess::spawn(&ns, &prog, &args).await
    }

    /// Records a started client under `name` (replacing an earlier session of that name).
    pub(super) fn add_client(
        &mut self,
        name: &str,
        host: usize,
        p: NsProcess,
        settled: std::time::Duration,
    ) {
        self.clients.insert(
            name.to_string(),
            Client {
                proc: Arc::new(tokio::sync::Mutex::new(p)),
                last_activity: Arc::new(Mutex::new(settled)),
                chatter: None,
                chat_stop: None,
                quit: false,
                host,
            },
        );
    }

    /// Whether packets are dropped or shaped now (joins then wait longer).
    pub(super) fn faulty(&self) -> bool {
        !(self.drops.is_empty() && self.shaped.is_empty())
    }

    pub(super) async fn join(
        &mut self,
        step: &Step,
        name: &str,
        host: Option<usize>,
    ) -> anyhow::Result<()> {
        let host_idx = host.unwrap_or_else(|| self.next_host());
        let baseline = self.observer()?.baseline();
        let counts_before = self.observer()?.balancer_counts(&self.backends);
        let at = self.now();
        let mut p = self.spawn_client(name, host_idx).await?;
        let faulty = self.faulty();
        let join_timeout = if faulty {
            JOIN_TIMEOUT_FAULTY
        } else {
            JOIN_TIMEOUT
        };
        let end = Instant::now() + join_timeout;
        let persist = join_persistence(
            faulty,
            counts_before.is_some(),
            self.scenario.health.timeout,
        );
        let mut connected = None;
        let mut socket = None;
        let outcome = loop {
            let found = self.observer()?.new_sockets(&baseline, persist);
            // A health check also makes a socket on a server, and on a busy machine it may
            // last as long as a client's: when the balancer counts the sessions it opened
            // per backend (monotonic, so a session ending meanwhile cannot hide the new
            // one), a server counts only if its count rose too.
            let rose = |server: usize| match (
                &counts_before,
                self.observer()
                    .ok()
                    .and_then(|o| o.balancer_counts(&self.backends)),
            ) {
                (Some(before), Some(now)) => now[server] > before[server],
                _ => true,
            };
            let lasting: Vec<_> = found
                .iter()
                .filter(|n| n.persistent && rose(n.server))
                .collect();
            // One client makes one connection: decide only when one server alone has new
            // sockets (a young one elsewhere may be the client, the old one a slow check).
            // At the deadline, young sockets elsewhere did not last: they were checks.
            if lasting.len() == 1
                && (counts_before.is_some() || found.len() == 1 || Instant::now() > end)
            {
                connected = Some(lasting[0].first);
                // Every new socket on that server: a health check there may be among
                // them; the client's is the one that lasts (chosen at the end).
                let server = lasting[0].server;
                socket = Some(
                    self.observer()?
                        .lasting_new_sockets(&baseline, Duration::ZERO)
                        .into_iter()
                        .filter(|(s, _, _)| *s == server)
                        .collect::<Vec<_>>(),
                );
                break JoinOutcome::Placed {
                    server: lasting[0].server,
                };
            }
            if lasting.len() > 1 && Instant::now() > end {
                let servers: Vec<String> = lasting.iter().map(|n| server_name(n.server)).collect();
                break JoinOutcome::Unplaced {
                    why: format!(
                        "ambiguous: new long-lived sockets on {} at once",
                        servers.join(", ")
                    ),
                };
            }
            if let Some((_, how)) = closed(&mut p).await {
                break JoinOutcome::Refused { how };
            }
            if Instant::now() > end {
                break JoinOutcome::Unplaced {
                    why: format!(
                        "no new established socket on any server within {}",
                        humantime::format_duration(join_timeout)
                    ),
                };
            }
            tokio::time::sleep(POLL).await;
        };
        // Placed: when the server's socket appeared; otherwise when the harness gave up.
        let settled =
            connected.map_or_else(|| self.now(), |t| t.saturating_duration_since(self.start));
        let text = match &outcome {
            JoinOutcome::Placed { server } => format!("{name} joins -> {}", server_name(*server)),
            JoinOutcome::Refused { how } => format!("{name} joins -> refused ({how})"),
            JoinOutcome::Unplaced { why } => format!("{name} joins -> not placed ({why})"),
        };
        self.event(Some(step), text, None);
        self.ev.joins.push(JoinRecord {
            client: name.to_string(),
            at,
            settled,
            outcome,
            socket_closed: None,
        });
        self.join_sockets.push(socket.unwrap_or_default());
        self.add_client(name, host_idx, p, settled);
        Ok(())
    }
}

/// How long a new server socket must last before a join counts it as the client's.
///
/// With the balancer's monotonic per-backend counters (both of ours), a health check
/// cannot be taken for a client: a server counts only if its counter rose, and a check
/// opens no session. The socket then only has to outlive a poll or two ([`PERSIST`], or
/// [`PERSIST_LOSSY`] while packets are dropped: a check whose FIN was lost lingers).
/// Without counters a health check to a hung server stays established for the whole
/// check timeout, longer on a busy machine, so the socket must outlast twice the timeout
/// plus 100 ms.
pub(super) fn join_persistence(faulty: bool, counted: bool, check_timeout: Duration) -> Duration {
    let base = if faulty { PERSIST_LOSSY } else { PERSIST };
    if counted {
        base
    } else {
        base.max(check_timeout * 2 + Duration::from_millis(100))
    }
}

/// When and how a client's session ended: its disconnect or error line, or its exit.
/// `how` is a fixed phrase (it goes into snapshots); the client's own words are not.
pub(super) async fn closed(p: &mut NsProcess) -> Option<(Instant, String)> {
    let scan = |p: &NsProcess| {
        p.transcript().into_iter().find_map(|l| {
            let t = l.text.to_ascii_lowercase();
            if t.contains("connect() error") || t.contains("refused") {
                Some((l.at, "connection refused".to_string()))
            } else if t.contains("disconnected") {
                Some((l.at, "closed by the other side".to_string()))
            } else {
                None
            }
        })
    };
    if let Some(found) = scan(p) {
        return Some(found);
    }
    let status = p.try_exit_code()?;
    let exited = Instant::now();
    // It may have printed its reason just before exiting: read to the end first.
    p.wait_output_closed(Duration::from_millis(300)).await;
    scan(p).or(Some((
        exited,
        format!("exited ({status}) without saying why"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_join_waits_a_poll_or_two_an_uncounted_one_outlasts_a_check() {
        let timeout = Duration::from_millis(100);
        assert_eq!(join_persistence(false, true, timeout), PERSIST);
        assert_eq!(join_persistence(true, true, timeout), PERSIST_LOSSY);
        assert_eq!(
            join_persistence(false, false, timeout),
            Duration::from_millis(300)
        );
        assert_eq!(join_persistence(true, false, timeout), PERSIST_LOSSY);
    }
}

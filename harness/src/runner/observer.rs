//! Background observation of a running scenario, on dedicated threads that entered the
//! namespaces: established sockets on each server's port (sock_diag), and the
//! balancer's stats (health of each backend, sessions held).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::evidence::{HealthMark, Sample};
use super::probe::Stats;
use crate::netns::Namespace;
use crate::peers::view::HealthView;

/// How often the threads look.
pub const POLL: Duration = Duration::from_millis(25);
/// How long a new socket must persist to count as a client (health checks come and go).
pub const PERSIST: Duration = Duration::from_millis(60);
/// The same while packets are dropped or delayed: a health check whose FIN was lost
/// stays established until the FIN is retransmitted (RTO 200 ms, then 400 ms).
pub const PERSIST_LOSSY: Duration = Duration::from_millis(750);
/// How long a socket missing from the dumps is still counted (one missed poll or two).
pub const GRACE: Duration = Duration::from_millis(60);
/// How often a sample for the SVG is taken.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What the threads have seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Per server: remote end of each established socket on its port, and when first seen.
    pub conns: Vec<BTreeMap<SocketAddrV4, Instant>>,
    /// Per server: when each socket was last seen (a socket missing from one dump is
    /// kept for [`GRACE`], so a short gap does not restart its age).
    pub last_seen: Vec<BTreeMap<SocketAddrV4, Instant>>,
    /// Per server: when each socket still counted was first missing from a dump (since
    /// its last sighting).
    pub missing: Vec<BTreeMap<SocketAddrV4, Instant>>,
    /// Per server: sockets that went away, as (remote end, first seen, first dump without
    /// it): the session ended there within the poll before that dump.
    pub gone: Vec<Vec<(SocketAddrV4, Instant, Instant)>>,
    /// Last stats read, when they could be read.
    pub stats: Option<Stats>,
    /// Text of the last stats read.
    pub stats_text: Option<String>,
    /// Last error reading the stats.
    pub stats_error: Option<String>,
    /// Per server: last known health (None: not known yet).
    pub health: Vec<Option<bool>>,
    /// Health changes after the first reading.
    pub marks: Vec<HealthMark>,
    /// Sessions per server over time.
    pub samples: Vec<Sample>,
}

/// New sockets on one server since a baseline.
#[derive(Debug, Clone, Copy)]
pub struct NewSockets {
    /// Server index.
    pub server: usize,
    /// The remote end of the oldest of them (the balancer's side of the session).
    pub addr: SocketAddrV4,
    /// When the oldest of them appeared.
    pub first: Instant,
    /// Whether that one has lasted long enough to be a client, not a health check.
    pub persistent: bool,
}

/// The running observer; [`Observer::stop`] ends its threads.
pub struct Observer {
    /// What the observer's threads have seen so far; they write it, the run reads it.
    pub seen: Arc<Mutex<Seen>>,
    start: Instant,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observer {
    /// Starts one thread a server namespace and one in the balancer's, which reads
    /// `view` (with no view, the sessions it reports are the servers' sockets).
    pub fn start(
        start: Instant,
        servers: Vec<(Namespace, u16)>,
        lb: Namespace,
        view: HealthView,
        backends: Vec<SocketAddrV4>,
    ) -> Observer {
        let n = servers.len();
        let seen = Arc::new(Mutex::new(Seen {
            conns: vec![BTreeMap::new(); n],
            last_seen: vec![BTreeMap::new(); n],
            missing: vec![BTreeMap::new(); n],
            gone: vec![Vec::new(); n],
            health: vec![None; n],
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, (ns, port)) in servers.into_iter().enumerate() {
            let (seen, stop) = (seen.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // Kernel ground truth: sock_diag inside the server's namespace.
                    if let Ok(pairs) = crate::sockets::established(&ns, port).await {
                        let now_conns: Vec<SocketAddrV4> =
                            pairs.into_iter().map(|(_, r)| r).collect();
                        let now = Instant::now();
                        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                        let Seen {
                            conns,
                            last_seen,
                            missing,
                            gone,
                            ..
                        } = &mut *s;
                        for c in &now_conns {
                            conns[i].entry(*c).or_insert(now);
                            last_seen[i].insert(*c, now);
                            missing[i].remove(c);
                        }
                        for (addr, seen) in &last_seen[i] {
                            if *seen != now {
                                missing[i].entry(*addr).or_insert(now);
                            }
                            if now - *seen > GRACE {
                                if let (Some(first), Some(lost)) =
                                    (conns[i].get(addr), missing[i].remove(addr))
                                {
                                    gone[i].push((*addr, *first, lost));
                                }
                            }
                        }
                        last_seen[i].retain(|_, seen| now - *seen <= GRACE);
                        let alive = &last_seen[i];
                        conns[i].retain(|k, _| alive.contains_key(k));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }));
        }
        let (seen2, stop2) = (seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let _ = lb
                .run_async(move || {
                    let mut last_sample = None::<Instant>;
                    while !stop2.load(Ordering::Relaxed) {
                        let result = view
                            .exists()
                            .then(|| view.read(&backends, Duration::from_millis(300)));
                        let now = Instant::now();
                        let mut s = seen2.lock().unwrap_or_else(|p| p.into_inner());
                        match result {
                            None => {
                                let sessions = s.conns.iter().map(|m| m.len() as u32).sum();
                                s.stats = Some(Stats {
                                    sessions: Some(sessions),
                                    ..Stats::default()
                                });
                            }
                            Some(Ok((text, stats))) => {
                                for (i, b) in backends.iter().enumerate() {
                                    let Some(&up) = stats.up.get(&b.to_string()) else {
                                        continue;
                                    };
                                    match s.health[i] {
                                        Some(prev) if prev != up => s.marks.push(HealthMark {
                                            server: i,
                                            up,
                                            at: now - start,
                                        }),
                                        _ => {}
                                    }
                                    s.health[i] = Some(up);
                                }
                                s.stats = Some(stats);
                                s.stats_text = Some(text);
                                s.stats_error = None;
                            }
                            Some(Err(e)) => s.stats_error = Some(e.to_string()),
                        }
                        if last_sample.is_none_or(|t| now - t >= SAMPLE_EVERY) {
                            let per_server = s.conns.iter().map(|m| m.len()).collect();
                            s.samples.push(Sample {
                                at: now - start,
                                per_server,
                            });
                            last_sample = Some(now);
                        }
                        drop(s);
                        std::thread::sleep(POLL);
                    }
                })
                .await;
        }));
        Observer {
            seen,
            start,
            stop,
            tasks,
        }
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Locks the shared view.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sockets each server has now.
    pub fn baseline(&self) -> Vec<Vec<SocketAddrV4>> {
        self.lock()
            .conns
            .iter()
            .map(|m| m.keys().copied().collect())
            .collect()
    }

    /// Servers with a socket not in `baseline`: each with when its oldest new socket
    /// appeared and whether that one has persisted `persist`; oldest first.
    pub fn new_sockets(
        &self,
        baseline: &[Vec<SocketAddrV4>],
        persist: Duration,
    ) -> Vec<NewSockets> {
        let now = Instant::now();
        let s = self.lock();
        let mut out: Vec<NewSockets> = s
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                m.iter()
                    .filter(|(k, _)| !baseline[i].contains(k))
                    .min_by_key(|(_, first)| **first)
                    .map(|(addr, first)| NewSockets {
                        server: i,
                        addr: *addr,
                        first: *first,
                        persistent: now - *first >= persist,
                    })
            })
            .collect();
        out.sort_by_key(|n| n.first);
        out
    }

    /// Every socket not in `baseline` that has lasted `persist`: (server, remote end,
    /// first seen), oldest first.
    pub fn lasting_new_sockets(
        &self,
        baseline: &[Vec<SocketAddrV4>],
        persist: Duration,
    ) -> Vec<(usize, SocketAddrV4, Instant)> {
        let now = Instant::now();
        let s = self.lock();
        let mut out: Vec<_> = s
            .conns
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                m.iter()
                    .filter(move |(k, first)| !baseline[i].contains(k) && now - **first >= persist)
                    .map(move |(k, first)| (i, *k, *first))
            })
            .collect();
        out.sort_by_key(|(_, _, first)| *first);
        out
    }

    /// When the socket `addr` on `server`, first seen at `first`, was first missing from
    /// the dumps for good (None: it is still there, or was never seen).
    pub fn gone_at(&self, server: usize, addr: SocketAddrV4, first: Instant) -> Option<Instant> {
        self.lock()
            .gone
            .get(server)?
            .iter()
            .find(|(a, f, _)| *a == addr && *f == first)
            .map(|(_, _, lost)| *lost)
    }

    /// Sessions the balancer ever opened per server, a monotonic count (None: not
    /// reported); a join compares it before and after to tell its server.
    pub fn balancer_counts(&self, backends: &[SocketAddrV4]) -> Option<Vec<u32>> {
        let s = self.lock();
        let stats = s.stats.as_ref()?;
        if stats.opened_per_backend.is_empty() {
            return None;
        }
        Some(
            backends
                .iter()
                .map(|b| {
                    stats
                        .opened_per_backend
                        .get(&b.to_string())
                        .copied()
                        .unwrap_or(0)
                })
                .collect(),
        )
    }

    /// Stops the threads and waits for them.
    pub async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        Arc::try_unwrap(self.seen)
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default()
    }
}

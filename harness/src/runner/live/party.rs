//! Clients that join together (a party), rejoin under their own name (a reboot), and
//! bulk transfers beside the chat.
//!
//! A joint join starts every client before looking at any, waits until the servers hold
//! as many new lasting sockets as clients still run (and, when the balancer counts its
//! sessions per backend, until those counters rose by as much), then tells whose socket
//! is whose by a roll call: every client sends one line at once, each of a length no
//! other client's has, and the server socket whose received byte count
//! (`tcpi_bytes_received`, sock_diag) grew by a client's length is that client's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::join::{closed, join_persistence};
use super::{lock, Run, JOIN_TIMEOUT, JOIN_TIMEOUT_FAULTY};
use crate::process::{NsProcess, Signal};
use crate::runner::evidence::*;
use crate::runner::observer::POLL;
use crate::scenario::{server_name, ExpectKind, Expectation, Step, BULK_LINE};
use crate::topology::Host;

/// Longest wait for every roll-call line to reach its server.
const ROLL_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Roll-call texts whose wire lines (`[nick] text\n`) have pairwise different lengths,
/// one per nickname, in order: `roll call` and as many dots as make its length new.
pub fn roll_call_texts(names: &[String]) -> Vec<(String, u64)> {
    let mut used = BTreeSet::new();
    names
        .iter()
        .map(|n| {
            let mut text = "roll call".to_string();
            loop {
                let len = (n.len() + 3 + text.len() + 1) as u64;
                if used.insert(len) {
                    return (text, len);
                }
                text.push('.');
            }
        })
        .collect()
}

/// The client whose roll-call length is `delta`, among those not yet found.
pub fn whose_delta(
    delta: u64,
    lengths: &[(String, u64)],
    found: &BTreeSet<String>,
) -> Option<String> {
    lengths
        .iter()
        .find(|(n, l)| *l == delta && !found.contains(n))
        .map(|(n, _)| n.clone())
}

/// One client of a joint join, while it settles.
struct Joining {
    name: String,
    host: usize,
    at: Duration,
    proc: NsProcess,
    refused: Option<String>,
}

impl Run<'_> {
    /// Received payload bytes of every established socket on each server's port.
    async fn socket_bytes(&self) -> anyhow::Result<BTreeMap<(usize, SocketAddrV4), u64>> {
        let mut out = BTreeMap::new();
        for (i, b) in self.backends.iter().enumerate() {
            let ns = self.topo.namespace(Host::Server(i)).clone();
            for ((_, remote), bytes) in crate::sockets::established_bytes(&ns, b.port()).await? {
                out.insert((i, remote), bytes);
            }
        }
        Ok(out)
    }

    /// `names` join at once; see the module's comment for how each is placed.
    pub(super) async fn join_together(
        &mut self,
        step: &Step,
        names: &[String],
    ) -> anyhow::Result<()> {
        let baseline = self.observer()?.baseline();
        let counts_before = self.observer()?.balancer_counts(&self.backends);
        let faulty = self.faulty();
        let timeout = if faulty {
            JOIN_TIMEOUT_FAULTY
        } else {
            JOIN_TIMEOUT
        };
        let persist = join_persistence(
            faulty,
            counts_before.is_some(),
            self.scenario.health.timeout,
        );
        let hosts = self.scenario.topology.clients;
        let mut joining = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let host = (self.clients.len() + k) % hosts;
            let at = self.now();
            let proc = self.spawn_client(name, host).await?;
            joining.push(Joining {
                name: name.clone(),
                host,
                at,
                proc,
                refused: None,
            });
        }
        let end = Instant::now() + timeout;
        let settled = loop {
            for j in joining.iter_mut().filter(|j| j.refused.is_none()) {
                if let Some((_, how)) = closed(&mut j.proc).await {
                    j.refused = Some(how);
                }
            }
            let want = joining.iter().filter(|j| j.refused.is_none()).count();
            let lasting = self.observer()?.lasting_new_sockets(&baseline, persist);
            let rises = match (
                &counts_before,
                self.observer()?.balancer_counts(&self.backends),
            ) {
                (Some(before), Some(now)) => Some(
                    now.iter()
                        .zip(before)
                        .map(|(n, b)| n.saturating_sub(*b) as usize)
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            };
            let enough = match &rises {
                Some(rise) => {
                    rise.iter().sum::<usize>() == want
                        && rise
                            .iter()
                            .enumerate()
                            .all(|(s, r)| lasting.iter().filter(|(i, _, _)| *i == s).count() >= *r)
                }
                None => lasting.len() >= want,
            };
            if enough || Instant::now() > end {
                break lasting;
            }
            tokio::time::sleep(POLL).await;
        };
        // The roll call: one line each, all at once, lengths pairwise different.
        let present: Vec<String> = joining
            .iter()
            .filter(|j| j.refused.is_none())
            .map(|j| j.name.clone())
            .collect();
        let lengths = roll_call_texts(&present);
        let before = self.socket_bytes().await?;
        let candidates: Vec<(usize, SocketAddrV4, Instant)> = settled;
        let mut said = BTreeMap::new();
        for (name, (text, _)) in present.iter().zip(&lengths) {
            let j = joining
                .iter_mut()
                .find(|j| &j.name == name)
                .context("a joining client")?;
            let at = self.now();
            if j.proc.send_line(text).await.is_ok() {
                said.insert(name.clone(), at);
                self.ev.roll_calls.push(SayRecord {
                    client: name.clone(),
                    text: text.clone(),
                    at,
                });
            }
        }
        let lengths: Vec<(String, u64)> = present
            .iter()
            .cloned()
            .zip(lengths.iter().map(|(_, l)| *l))
            .collect();
        let mut found: BTreeMap<String, (usize, SocketAddrV4, Instant)> = BTreeMap::new();
        let roll_end = Instant::now() + ROLL_CALL_TIMEOUT;
        while found.len() < said.len() && Instant::now() < roll_end {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.socket_bytes().await?;
            for c in &candidates {
                if found.values().any(|f| f.0 == c.0 && f.1 == c.1) {
                    continue;
                }
                let delta = now
                    .get(&(c.0, c.1))
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(before.get(&(c.0, c.1)).copied().unwrap_or(0));
                let taken: BTreeSet<String> = found.keys().cloned().collect();
                if let Some(name) = whose_delta(delta, &lengths, &taken) {
                    found.insert(name, *c);
                }
            }
        }
        let mut per_server = vec![0usize; self.backends.len()];
        let mut others = Vec::new();
        for j in joining {
            let (outcome, settled, socket) = match (&j.refused, found.get(&j.name)) {
                (Some(how), _) => (JoinOutcome::Refused { how: how.clone() }, self.now(), None),
                (None, Some(&(server, addr, first))) => {
                    per_server[server] += 1;
                    (
                        JoinOutcome::Placed { server },
                        first.saturating_duration_since(self.start),
                        Some((server, addr, first)),
                    )
                }
                (None, None) => (
                    JoinOutcome::Unplaced {
                        why: if said.contains_key(&j.name) {
                            "no server socket received its roll-call line".into()
                        } else {
                            "it did not take its roll-call line".into()
                        },
                    },
                    self.now(),
                    None,
                ),
            };
            if !matches!(outcome, JoinOutcome::Placed { .. }) {
                others.push(format!("{} {outcome}", j.name));
            }
            self.ev.joins.push(JoinRecord {
                client: j.name.clone(),
                at: j.at,
                settled,
                outcome,
                socket_closed: None,
            });
            self.join_sockets.push(socket.into_iter().collect());
            let activity = said.get(&j.name).copied().unwrap_or(settled);
            self.add_client(&j.name, j.host, j.proc, activity);
        }
        let mut text = format!(
            "{} clients join together -> {}",
            names.len(),
            per_server
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{} {n}", server_name(i)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !others.is_empty() {
            text += &format!("; {}", others.join("; "));
        }
        self.event(Some(step), text, None);
        self.ev.together.push(names.to_vec());
        Ok(())
    }

    /// Ends `name`'s session as a reboot would (its program is killed; its kernel closes
    /// the connection) and joins it again under the same name, on the same host.
    pub(super) async fn rejoin(&mut self, step: &Step, name: &str) -> anyhow::Result<()> {
        let c = self
            .clients
            .remove(name)
            .with_context(|| format!("{name} is not connected"))?;
        if let Some(t) = c.chatter {
            t.abort();
        }
        let at = self.now();
        {
            let mut p = c.proc.lock().await;
            if p.try_exit_code().is_none() {
                let _ = p.signal(Signal::Kill);
            }
            let _ = p.wait_exit(Duration::from_secs(2)).await;
            p.wait_output_closed(Duration::from_millis(300)).await;
            self.earlier
                .entry(name.to_string())
                .or_default()
                .extend(p.transcript());
            self.ended_pids.push(p.pid());
        }
        self.ev.rejoins.push((name.to_string(), at));
        self.event_at(
            at,
            Some(step),
            format!("{name} reboots: its session ends"),
            None,
        );
        self.join(step, name, Some(c.host)).await
    }

    /// Lets the transfers a `bulk_done` expectation names finish before the run ends,
    /// each up to that expectation's `within` from its start ([`BULK_WAIT`] without
    /// one): a timeline shorter than a transfer must not cut it off (on a slow or loaded
    /// machine a 2 MB echo outlasts a 300 ms last step), and a stalled transfer still
    /// ends the wait. Transfers no expectation names are not waited for.
    pub(super) async fn await_bulks(&mut self) {
        let bounds = bulk_waits(&self.scenario.expectations);
        let bulks = lock(&self.bulks).clone();
        let senders: Vec<String> = bulks.iter().map(|b| b.client.clone()).collect();
        for b in bulks {
            let Some(&bound) = bounds.get(&b.client) else {
                continue;
            };
            let Some(proc) = self.clients.get(&b.client).map(|c| c.proc.clone()) else {
                continue;
            };
            while self.now() < b.started + bound {
                let lines = proc
                    .lock()
                    .await
                    .transcript()
                    .into_iter()
                    .filter(|l| !l.stderr)
                    .map(|l| (Duration::ZERO, l.text))
                    .collect();
                let split = split_bulk(&b.client, lines, &senders);
                if split.own_seqs.iter().filter(|s| **s < b.lines).count() as u64 >= b.lines {
                    break;
                }
                tokio::time::sleep(POLL * 4).await;
            }
        }
    }

    /// `client` sends `bytes` (rounded up to whole lines of [`BULK_LINE`] bytes) in the
    /// background and reads their echo back; the chat goes on meanwhile.
    pub(super) async fn bulk(
        &mut self,
        step: &Step,
        client: &str,
        bytes: u64,
    ) -> anyhow::Result<()> {
        let c = self
            .clients
            .get(client)
            .with_context(|| format!("{client} is not connected"))?;
        let line_bytes = BULK_LINE as u64;
        let lines = bytes.div_ceil(line_bytes).max(1);
        let started = self.now();
        let idx = {
            let mut b = lock(&self.bulks);
            b.push(BulkRecord {
                client: client.to_string(),
                lines,
                line_bytes,
                started,
                sent_done: None,
                echoed: 0,
                echo_done: None,
            });
            b.len() - 1
        };
        let (proc, last, bulks, start, name) = (
            c.proc.clone(),
            c.last_activity.clone(),
            self.bulks.clone(),
            self.start,
            client.to_string(),
        );
        self.bulk_tasks.push(tokio::spawn(async move {
            for seq in 0..lines {
                let text = BulkRecord::line_text(&name, seq, line_bytes);
                if proc.lock().await.send_line(&text).await.is_err() {
                    return;
                }
                *lock(&last) = start.elapsed();
            }
            lock(&bulks)[idx].sent_done = Some(start.elapsed());
        }));
        self.event(
            Some(step),
            format!(
                "{client} starts a bulk transfer of {} bytes ({lines} lines)",
                lines * line_bytes
            ),
            None,
        );
        Ok(())
    }
}

/// How long a run waits for a transfer a `bulk_done` without `within` names.
const BULK_WAIT: Duration = Duration::from_secs(20);

/// How long after its start a run waits for each client's transfers: the longest
/// `within` of the `bulk_done` expectations naming it ([`BULK_WAIT`] for one without).
/// Clients none names are absent.
pub fn bulk_waits(expectations: &[Expectation]) -> BTreeMap<String, Duration> {
    let mut bounds: BTreeMap<String, Duration> = BTreeMap::new();
    for e in expectations {
        if let ExpectKind::BulkDone { clients, within } = &e.kind {
            for c in clients {
                let b = bounds.entry(c.clone()).or_default();
                *b = (*b).max(within.unwrap_or(BULK_WAIT));
            }
        }
    }
    bounds
}

/// A client's printed lines, split by [`split_bulk`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BulkSplit {
    /// Its chat lines, with times (bulk text taken out).
    pub chat: Vec<(Duration, String)>,
    /// Printed lines that carried bulk text (any sender's).
    pub bulk_lines: u64,
    /// Sequence numbers of the client's own transfer that came back.
    pub own_seqs: BTreeSet<u64>,
    /// When the last of them was printed.
    pub own_last: Option<Duration>,
}

/// Splits a client's printed lines into chat and bulk lines. The chat server relays
/// chunks, not lines, so a chat line said during a transfer may be printed glued after a
/// fragment of a bulk line (`[nas] bulk 00000123 xxx[carol] hi`), and the rest of that
/// bulk line then comes on a line of its own (`xxxx`): bulk text is counted, not kept,
/// and what follows it on a printed line is kept as chat. `own` gives the sequence
/// numbers of the client's own transfer that came back and when the last was printed.
pub fn split_bulk(client: &str, lines: Vec<(Duration, String)>, senders: &[String]) -> BulkSplit {
    let prefixes: Vec<String> = senders.iter().map(|s| BulkRecord::wire_prefix(s)).collect();
    let own = BulkRecord::wire_prefix(client);
    let mut kept = Vec::new();
    let mut counted = 0;
    let mut seqs = BTreeSet::new();
    let mut last = None;
    for (at, text) in lines {
        let found: Vec<(usize, &String)> = prefixes
            .iter()
            .flat_map(|p| text.match_indices(p.as_str()).map(move |(i, _)| (i, p)))
            .collect();
        let Some(&(end_at, end_prefix)) = found.iter().max_by_key(|(i, _)| *i) else {
            // The tail of a bulk line cut by a chat line printed before it.
            let tail = !senders.is_empty() && !text.is_empty() && text.bytes().all(|b| b == b'x');
            if !tail {
                kept.push((at, text));
            }
            continue;
        };
        counted += 1;
        for (i, p) in &found {
            if *p == &own {
                let rest = &text[i + own.len()..];
                if let Some(seq) = rest.get(..8).and_then(|d| d.parse::<u64>().ok()) {
                    seqs.insert(seq);
                    last = Some(at);
                }
            }
        }
        // Past the last bulk line's number and filler: a chat line glued to it, if any.
        let rest = &text[end_at + end_prefix.len()..];
        let rest = rest.get(8..).unwrap_or("").trim_start_matches(' ');
        let rest = rest.trim_start_matches('x');
        if !rest.is_empty() {
            kept.push((at, rest.to_string()));
        }
    }
    BulkSplit {
        chat: kept,
        bulk_lines: counted,
        own_seqs: seqs,
        own_last: last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_call_lengths_differ_even_for_nicknames_of_one_length() {
        let names: Vec<String> = ["g1", "g2", "guest10", "g3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let texts = roll_call_texts(&names);
        let lengths: BTreeSet<u64> = texts.iter().map(|(_, l)| *l).collect();
        assert_eq!(lengths.len(), names.len());
        for (n, (t, l)) in names.iter().zip(&texts) {
            assert_eq!(format!("[{n}] {t}\n").len() as u64, *l);
        }
        let found = BTreeSet::from(["g1".to_string()]);
        let named: Vec<(String, u64)> = names
            .iter()
            .cloned()
            .zip(texts.iter().map(|t| t.1))
            .collect();
        assert_eq!(whose_delta(texts[1].1, &named, &found), Some("g2".into()));
        assert_eq!(
            whose_delta(texts[0].1, &named, &found),
            None,
            "g1 is found already"
        );
        assert_eq!(whose_delta(3, &named, &BTreeSet::new()), None);
    }

    #[test]
    fn bulk_lines_are_exactly_their_length_and_are_counted_not_kept() {
        let line = BulkRecord::line_text("nas", 7, 1000);
        assert_eq!(format!("[nas] {line}\n").len(), 1000);
        let lines = vec![
            (Duration::from_millis(1), "[nas] hello".to_string()),
            (Duration::from_millis(2), format!("[nas] {line}")),
            (
                Duration::from_millis(3),
                format!("[nas] {}", BulkRecord::line_text("nas", 8, 1000)),
            ),
            (
                Duration::from_millis(4),
                format!("[tv] {}", BulkRecord::line_text("tv", 0, 1000)),
            ),
            // A chat line glued after a bulk fragment, and the fragment's tail.
            (
                Duration::from_millis(5),
                "[nas] bulk 00000009 xxx[carol] hi".to_string(),
            ),
            (Duration::from_millis(6), "xxxxxxxx".to_string()),
        ];
        let senders = vec!["nas".to_string(), "tv".to_string()];
        let BulkSplit {
            chat: kept,
            bulk_lines: counted,
            own_seqs: seqs,
            own_last: last,
        } = split_bulk("nas", lines.clone(), &senders);
        assert_eq!(
            kept,
            vec![
                lines[0].clone(),
                (Duration::from_millis(5), "[carol] hi".to_string())
            ]
        );
        assert_eq!(counted, 4);
        assert_eq!(seqs, BTreeSet::from([7, 8, 9]));
        assert_eq!(last, Some(Duration::from_millis(5)));
        let other = split_bulk("phone", lines, &senders);
        assert_eq!((other.bulk_lines, other.own_seqs.len()), (4, 0));
        // Without bulk senders nothing is taken for bulk.
        let plain = vec![(Duration::ZERO, "xxxx".to_string())];
        assert_eq!(split_bulk("a", plain.clone(), &[]).chat, plain);
    }

    #[test]
    fn a_run_waits_for_the_transfers_bulk_done_names_up_to_their_longest_within() {
        let scenario = crate::scenario::parse_str(
            std::path::Path::new("waits.toml"),
            r#"
name = "waits"
purpose = "bulk waits"
[topology]
clients = 1
[[step]]
join = ["nas", "phone", "tv"]
[[step]]
bulk = "nas"
bytes = 1000
[[step]]
bulk = "phone"
bytes = 1000
[[step]]
bulk = "tv"
bytes = 1000
[[expect]]
bulk_done = ["nas", "phone"]
within = "5s"
[[expect]]
bulk_done = ["nas"]
within = "30s"
[[expect]]
bulk_done = ["phone"]
"#,
        )
        .expect("a valid scenario");
        let waits = bulk_waits(&scenario.expectations);
        let want: BTreeMap<String, Duration> = [
            ("nas".to_string(), Duration::from_secs(30)),
            ("phone".to_string(), BULK_WAIT),
        ]
        .into_iter()
        .collect();
        assert_eq!(waits, want, "tv is named by none: not waited for");
    }
}

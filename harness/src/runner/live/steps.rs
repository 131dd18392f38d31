//! The timeline's actions: chat, quits, server signals, link faults, waits.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::join::closed;
use super::{host, lock, FaultTimer, Run};
use crate::faults;
use crate::link::shaper::Way;
use crate::link::spec::Impairment;
use crate::process::Signal;
use crate::runner::evidence::*;
use crate::runner::observer::POLL;
use crate::scenario::{
    rate_kbit, server_name, Action, Condition, LinkDirection, LinkHost, ServerAction, Step,
};

impl Run<'_> {
    pub(super) async fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        // `at` is "no earlier than"; faults that end or come back meanwhile do so on time.
        self.sleep_serving(step.at.unwrap_or_default()).await?;
        let (events, windows, began) = (
            self.ev.events.len(),
            self.ev.fault_windows.len(),
            self.now(),
        );
        self.act(step).await?;
        if let Some(lasts) = step.lasts {
            let suffix = timing_words(lasts, step.every);
            for e in &mut self.ev.events[events..] {
                e.text += &suffix;
            }
            let window =
                (self.ev.fault_windows.len() > windows).then(|| self.ev.fault_windows.len() - 1);
            self.timers.push(FaultTimer {
                step: step.clone(),
                began,
                window,
                cleared: false,
            });
        }
        Ok(())
    }

    /// Sleeps until `until` (from the run's start), ending and bringing back timed faults
    /// when they are due; returns at once when `until` has passed (after the due ones).
    pub(super) async fn sleep_serving(&mut self, until: Duration) -> anyhow::Result<()> {
        loop {
            self.fire_due().await?;
            let now = self.now();
            if now >= until {
                return Ok(());
            }
            let next = self
                .timers
                .iter()
                .map(FaultTimer::due)
                .min()
                .map_or(until, |d| d.min(until));
            tokio::time::sleep(next.saturating_sub(now)).await;
        }
    }

    /// Ends the timed faults whose `for` has passed and brings back those whose `every`
    /// has come.
    async fn fire_due(&mut self) -> anyhow::Result<()> {
        loop {
            let now = self.now();
            let Some(i) = self.timers.iter().position(|t| t.due() <= now) else {
                return Ok(());
            };
            let mut t = self.timers.remove(i);
            let (lasts, every) = (t.step.lasts.unwrap_or_default(), t.step.every);
            if !t.cleared {
                self.clear_fault(&t, lasts).await?;
                t.cleared = true;
                if every.is_some() {
                    self.timers.push(t);
                }
            } else {
                t.began += every.unwrap_or_default();
                let (events, windows) = (self.ev.events.len(), self.ev.fault_windows.len());
                self.apply_fault(&t.step).await?;
                let suffix = timing_words(lasts, every);
                for e in &mut self.ev.events[events..] {
                    e.text += &suffix;
                }
                t.window = (self.ev.fault_windows.len() > windows)
                    .then(|| self.ev.fault_windows.len() - 1);
                t.cleared = false;
                self.timers.push(t);
            }
        }
    }

    /// Undoes one timed fault (its `for` has passed) and closes its window.
    async fn clear_fault(&mut self, t: &FaultTimer, lasts: Duration) -> anyhow::Result<()> {
        match &t.step.action {
            Action::Link { host: h, up: false } => self.topo.set_link(host(*h), true).await?,
            Action::Drop { host: h, fraction } => {
                faults::remove_drop_fraction(&self.topo, host(*h), *fraction).await?;
                if let Some(i) = self.drops.iter().position(|d| d == &(*h, *fraction)) {
                    self.drops.remove(i);
                }
            }
            Action::Rate { host: h, .. } | Action::KernelNetem { host: h, .. } => {
                let ns = self.topo.namespace(host(*h)).clone();
                faults::clear_qdisc(&ns, "eth0").await?;
                self.shaped.retain(|x| x != h);
            }
            Action::Impair {
                host: h, direction, ..
            } => {
                if let Some(wire) = self.wires.get(h) {
                    if direction.up() {
                        wire.set(Way::Up, Impairment::default())?;
                    }
                    if direction.down() {
                        wire.set(Way::Down, Impairment::default())?;
                    }
                }
            }
            _ => {}
        }
        let now = self.now();
        let what = match t.window.and_then(|i| self.ev.fault_windows.get_mut(i)) {
            Some(w) => {
                if w.until.is_none() {
                    w.until = Some(now);
                }
                // `netem delay 5ms (sending)` on lb: the host before the way, as events say.
                match w.what.rfind(" (") {
                    Some(i) => format!("{} on {}{}", &w.what[..i], w.host, &w.what[i..]),
                    None => format!("{} on {}", w.what, w.host),
                }
            }
            None => "a fault".into(),
        };
        self.event_at(
            now,
            Some(&t.step),
            format!("end of {what}, after {}", humantime::format_duration(lasts)),
            Some(Mark::Fault),
        );
        Ok(())
    }

    /// Carries out one action.
    async fn act(&mut self, step: &Step) -> anyhow::Result<()> {
        match &step.action {
            Action::Join(names) => {
                for name in names {
                    self.join(step, name, None).await?;
                }
            }
            Action::JoinTogether(names) => self.join_together(step, names).await?,
            Action::Rejoin(names) => {
                for name in names {
                    self.rejoin(step, name).await?;
                }
            }
            Action::Bulk { client, bytes } => self.bulk(step, client, *bytes).await?,
            Action::Say { clients, text } => {
                for c in clients {
                    let client = self.clients.get(c).context("unknown client")?;
                    let proc = client.proc.clone();
                    let at = self.now();
                    proc.lock()
                        .await
                        .send_line(text)
                        .await
                        .with_context(|| format!("{c} cannot say a line"))?;
                    *lock(&client.last_activity) = at;
                    lock(&self.says).push(SayRecord {
                        client: c.clone(),
                        text: text.clone(),
                        at,
                    });
                    self.event(Some(step), format!("{c} says \"{text}\""), None);
                    // Give the server a moment so lines of different senders do not merge.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
            Action::Chat { client, every } => {
                // The n-th line is due `every` × n after the chat began (its `at` when it
                // has one), and `silent` stops before the first line due at or after its
                // own time (its `at`, or when it ran): between steps at fixed times a chat
                // says the same lines in every run, however late the machine runs them.
                let anchor = self.start + step.at.unwrap_or_else(|| self.now());
                let c = self.clients.get_mut(client).context("unknown client")?;
                let (stop_tx, mut stop) = tokio::sync::watch::channel(None::<Instant>);
                c.chat_stop = Some(stop_tx);
                let (proc, last, says, start, every, name) = (
                    c.proc.clone(),
                    c.last_activity.clone(),
                    self.says.clone(),
                    self.start,
                    *every,
                    client.clone(),
                );
                c.chatter = Some(tokio::spawn(async move {
                    let mut n = 0u32;
                    loop {
                        let due = anchor + every * n;
                        if stop.borrow().is_some_and(|s| due >= s) {
                            return;
                        }
                        if Instant::now() < due {
                            let until = tokio::time::Instant::from_std(due);
                            tokio::select! {
                                () = tokio::time::sleep_until(until) => {}
                                changed = stop.changed() => {
                                    if changed.is_err() {
                                        tokio::time::sleep_until(until).await;
                                    }
                                }
                            }
                            continue;
                        }
                        n += 1;
                        let text = format!("chatter {n}");
                        let at = start.elapsed();
                        if proc.lock().await.send_line(&text).await.is_err() {
                            return;
                        }
                        *lock(&last) = at;
                        lock(&says).push(SayRecord {
                            client: name.clone(),
                            text,
                            at,
                        });
                    }
                }));
                self.event(
                    Some(step),
                    format!(
                        "{client} starts talking every {}",
                        humantime::format_duration(every)
                    ),
                    None,
                );
            }
            Action::Silent(client) => {
                let stop_at = self.start + step.at.unwrap_or_else(|| self.now());
                if let Some(c) = self.clients.get_mut(client) {
                    if let Some(tx) = c.chat_stop.take() {
                        let _ = tx.send(Some(stop_at));
                    }
                    if let Some(mut t) = c.chatter.take() {
                        // It sends the lines already due, then ends.
                        if tokio::time::timeout(Duration::from_secs(2), &mut t)
                            .await
                            .is_err()
                        {
                            t.abort();
                        }
                    }
                }
                self.event(Some(step), format!("{client} goes silent"), None);
            }
            Action::Quit(names) => {
                for name in names {
                    let c = self.clients.get_mut(name).context("unknown client")?;
                    if let Some(t) = c.chatter.take() {
                        t.abort();
                    }
                    c.quit = true;
                    let proc = c.proc.clone();
                    let mut p = proc.lock().await;
                    p.send_line("q")
                        .await
                        .with_context(|| format!("{name} cannot quit"))?;
                    let status = p.wait_exit(Duration::from_secs(2)).await?;
                    drop(p);
                    let text = match status {
                        Some(s) if s.success() => format!("{name} quits"),
                        Some(s) => format!("{name} quits ({s})"),
                        None => format!("{name} did not exit after `q`"),
                    };
                    self.event(Some(step), text, None);
                }
            }
            Action::Server { server, action } => self.server_action(step, *server, *action).await?,
            Action::Link { .. }
            | Action::Drop { .. }
            | Action::Rate { .. }
            | Action::Impair { .. }
            | Action::KernelNetem { .. } => self.apply_fault(step).await?,
            Action::ClearFaults(h) => {
                // Its timed faults end here and do not come back.
                self.timers
                    .retain(|t| t.step.action.link_host() != Some(*h));
                let ns = self.topo.namespace(host(*h)).clone();
                let mut keep = Vec::new();
                for (dh, f) in std::mem::take(&mut self.drops) {
                    if dh == *h {
                        faults::remove_drop_fraction(&self.topo, host(*h), f).await?;
                    } else {
                        keep.push((dh, f));
                    }
                }
                self.drops = keep;
                if self.shaped.contains(h) {
                    faults::clear_qdisc(&ns, "eth0").await?;
                    self.shaped.retain(|x| x != h);
                }
                if let Some(wire) = self.wires.remove(h) {
                    self.topo.remove_wire(host(*h), wire).await?;
                }
                self.close_faults(*h, |w| w.kind != FaultKind::LinkDown);
                self.event(
                    Some(step),
                    format!("faults on {h} cleared"),
                    Some(Mark::Fault),
                );
            }
            Action::Wait(d) => {
                let until = self.now() + *d;
                self.sleep_serving(until).await?;
                self.event(
                    Some(step),
                    format!("waited {}", humantime::format_duration(*d)),
                    None,
                );
            }
            Action::WaitUntil {
                condition,
                deadline,
            } => {
                if self.waited_without_view(step, condition, *deadline).await? {
                    return Ok(());
                }
                let what = match condition {
                    Condition::ServerDown(s) => {
                        format!("the balancer reports {} down", server_name(*s))
                    }
                    Condition::ServerUp(s) => {
                        format!("the balancer reports {} up", server_name(*s))
                    }
                    Condition::Closed(c) => format!("{c}'s session is closed"),
                    Condition::Sessions(n) => format!("the balancer holds {n} session(s)"),
                };
                let end = Instant::now() + *deadline;
                loop {
                    if self.condition_holds(condition).await? {
                        self.event(Some(step), what.clone(), None);
                        break;
                    }
                    if Instant::now() > end {
                        self.event(
                            Some(step),
                            format!(
                                "NOT MET within {}: {what}",
                                humantime::format_duration(*deadline)
                            ),
                            None,
                        );
                        anyhow::bail!(
                            "{what}: not within {}",
                            humantime::format_duration(*deadline)
                        );
                    }
                    let until = self.now() + POLL;
                    self.sleep_serving(until).await?;
                }
            }
        }
        Ok(())
    }

    /// Puts a link fault in force (`link_down`/`link_up`, `drop`, `rate`, `netem`,
    /// `impair`), with its fault window and event.
    async fn apply_fault(&mut self, step: &Step) -> anyhow::Result<()> {
        match &step.action {
            Action::Link { host: h, up } => {
                self.topo.set_link(host(*h), *up).await?;
                if *up {
                    self.close_faults(*h, |w| w.kind == FaultKind::LinkDown);
                } else {
                    self.open_fault(*h, FaultKind::LinkDown, None, "link down".into());
                }
                self.event(
                    Some(step),
                    format!("link of {h} {}", if *up { "up" } else { "down" }),
                    Some(Mark::Fault),
                );
            }
            Action::Drop { host: h, fraction } => {
                faults::drop_fraction(&self.topo, host(*h), *fraction).await?;
                self.drops.push((*h, *fraction));
                let what = format!("drop {:.1}%", fraction * 100.0);
                self.open_fault(*h, FaultKind::Drop, None, what);
                self.event(
                    Some(step),
                    format!("dropping {:.1}% of packets on {h}", fraction * 100.0),
                    Some(Mark::Fault),
                );
            }
            Action::Rate { host: h, rate } => {
                let kbit = rate_kbit(rate).map_err(anyhow::Error::msg)?;
                faults::rate_limit(self.topo.namespace(host(*h)), "eth0", kbit).await?;
                self.shaped.push(*h);
                self.open_fault(*h, FaultKind::Rate, None, format!("rate limit {rate}"));
                self.event(
                    Some(step),
                    format!("rate limit {rate} on {h}"),
                    Some(Mark::Fault),
                );
            }
            Action::KernelNetem { host: h, args } => {
                let words: Vec<&str> = args.split_whitespace().collect();
                faults::netem(self.topo.namespace(host(*h)), "eth0", &words).await?;
                self.shaped.push(*h);
                let what = format!("kernel netem {args}");
                self.open_fault(*h, FaultKind::KernelNetem, None, what.clone());
                self.event(Some(step), format!("{what} on {h}"), Some(Mark::Fault));
            }
            Action::Impair {
                host: h,
                direction,
                impairment,
                text,
            } => {
                let spec = *impairment;
                let up = if direction.up() {
                    spec
                } else {
                    Impairment::default()
                };
                let down = if direction.down() {
                    spec
                } else {
                    Impairment::default()
                };
                match self.wires.get(h) {
                    Some(wire) => {
                        if direction.up() {
                            wire.set(Way::Up, up)?;
                        }
                        if direction.down() {
                            wire.set(Way::Down, down)?;
                        }
                    }
                    None => {
                        let seed = link_seed(self.seed, *h);
                        let wire = self.topo.interpose_wire(host(*h), up, down, seed).await?;
                        self.wires.insert(*h, wire);
                    }
                }
                let way = match direction {
                    LinkDirection::Up => "sending",
                    LinkDirection::Down => "receiving",
                    LinkDirection::Both => "both ways",
                };
                // A new impairment of a way replaces the one in force there.
                let new = *direction;
                let replaced = |w: &FaultWindow| {
                    w.kind == FaultKind::Impair
                        && (new == LinkDirection::Both
                            || w.direction == Some(new)
                            || w.direction == Some(LinkDirection::Both))
                };
                self.close_faults(*h, replaced);
                let what = format!("{text} ({way})");
                self.open_fault(*h, FaultKind::Impair, Some(new), what);
                self.event(
                    Some(step),
                    format!("{text} on {h} ({way})"),
                    Some(Mark::Fault),
                );
            }
            _ => {}
        }
        Ok(())
    }

    async fn condition_holds(&mut self, c: &Condition) -> anyhow::Result<bool> {
        let obs = self.observer()?;
        Ok(match c {
            Condition::ServerDown(s) => obs.lock().health[*s] == Some(false),
            Condition::ServerUp(s) => obs.lock().health[*s] == Some(true),
            Condition::Sessions(n) => {
                obs.lock().stats.as_ref().and_then(|s| s.sessions) == Some(*n)
            }
            Condition::Closed(name) => {
                let c = self.clients.get(name).context("unknown client")?;
                let mut p = c.proc.lock().await;
                closed(&mut p).await.is_some()
            }
        })
    }

    async fn server_action(
        &mut self,
        step: &Step,
        i: usize,
        action: ServerAction,
    ) -> anyhow::Result<()> {
        let name = server_name(i);
        match action {
            ServerAction::Restart => {
                if let Some(mut p) = self.servers[i].take() {
                    let _ = p.signal(Signal::Kill);
                    let _ = p.wait_exit(Duration::from_secs(2)).await;
                }
                // Timed before the start: the balancer may see the server up before
                // `start_server` has returned.
                let at = self.start.elapsed();
                self.start_server(i).await?;
                self.event_at(
                    at,
                    Some(step),
                    format!("restart {name}"),
                    Some(Mark::Server(i, action)),
                );
            }
            _ => {
                let p = self.servers[i]
                    .as_mut()
                    .with_context(|| format!("{name} is not running"))?;
                let (signal, verb) = match action {
                    ServerAction::Kill => (Signal::Kill, "kill"),
                    ServerAction::Stop => (Signal::Stop, "stop"),
                    _ => (Signal::Cont, "cont"),
                };
                // Timed just before the signal: detection and recovery are measured from
                // here, however long the process then takes to be reaped and its output
                // drained, and the balancer's reaction can never be recorded before it (a
                // health check waiting on a stopped server may pass the instant it is
                // continued, before a time taken after the signal).
                let at = self.start.elapsed();
                p.signal(signal)?;
                if action == ServerAction::Kill {
                    let _ = p.wait_exit(Duration::from_secs(2)).await;
                }
                self.event_at(
                    at,
                    Some(step),
                    format!("{verb} {name}"),
                    Some(Mark::Server(i, action)),
                );
            }
        }
        Ok(())
    }
}

/// `for 2s` or `for 2s, every 5s`, as events say it.
fn timing_words(lasts: Duration, every: Option<Duration>) -> String {
    let mut w = format!(" for {}", humantime::format_duration(lasts));
    if let Some(e) = every {
        w += &format!(", every {}", humantime::format_duration(e));
    }
    w
}

/// The seed of one host's wire: the run's seed mixed with the host, so links differ and
/// each is reproduced by the run's seed.
fn link_seed(seed: u64, h: LinkHost) -> u64 {
    let host = match h {
        LinkHost::Lb => 0,
        LinkHost::Client(i) => 1 + 2 * i as u64,
        LinkHost::Server(i) => 2 + 2 * i as u64,
        LinkHost::Router => u64::MAX,
        LinkHost::Wifi => u64::MAX - 1,
    };
    // splitmix64: well spread, and the same on every platform and Rust version.
    let mut z = seed ^ host.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

//! The user-space wire: a thread in the switch's namespace that carries one host's link
//! frame by frame between two interfaces, through a [`Shaper`].
//!
//! The host's cable (`p-<host>`, the far end of the host's `eth0`) is taken off the
//! bridge and read by one packet socket; a new veth pair (`q-<host>` read by the wire,
//! `r-<host>` on the bridge) stands in for it on the switch. Frames keep their offload
//! header (`PACKET_VNET_HDR`), so a super-packet crosses whole; the impairments apply to
//! it as one frame (see the README's Limits). Timers are the thread's own `ppoll` with
//! nanosecond timeouts and a 1 ns timer slack, so a frame leaves within tens of
//! microseconds of its departure time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use l4lb_rawsock::packet::PortSocket;
use l4lb_rawsock::vnet::{self, VnetHdr};
use nix::poll::{PollFd, PollFlags};

use super::shaper::{Shaper, Way, WayCounters};
use super::spec::Impairment;
use crate::netns::Namespace;

/// Frames read per system call.
const BATCH: usize = 64;
/// Largest frame: a 64 KB super-packet, its Ethernet and offload headers.
const FRAME: usize = 65_536 + 14 + vnet::LEN;
/// Longest sleep when nothing is due, so a stop is noticed.
const IDLE: Duration = Duration::from_millis(20);

/// A change sent to a running wire.
enum Control {
    Set(Way, Impairment),
}

/// A running wire; dropping it stops the thread.
pub struct Wire {
    control: mpsc::Sender<Control>,
    stop: Arc<AtomicBool>,
    counters: Arc<Mutex<[WayCounters; 2]>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Wire {
    /// Starts a wire in `ns` between `host_if` (towards the host) and `switch_if`
    /// (towards the bridge), impaired by `up` and `down`, seeded with `seed`.
    pub fn start(
        ns: &Namespace,
        host_if: &str,
        switch_if: &str,
        up: Impairment,
        down: Impairment,
        seed: u64,
    ) -> anyhow::Result<Wire> {
        let netns = ns.handle()?;
        let (control, commands) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Mutex::new([WayCounters::default(); 2]));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (host_if, switch_if) = (host_if.to_string(), switch_if.to_string());
        let (stop2, counters2) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name(format!("wire-{host_if}"))
            .spawn(move || -> anyhow::Result<()> {
                let opened = netns
                    .enter()
                    .context("setns into the switch namespace (needs root)")
                    .and_then(|()| {
                        let host = PortSocket::open(&host_if, IDLE)
                            .with_context(|| format!("packet socket on {host_if}"))?;
                        let switch = PortSocket::open(&switch_if, IDLE)
                            .with_context(|| format!("packet socket on {switch_if}"))?;
                        Ok((host, switch))
                    });
                let (host, switch) = match opened {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                // Timers as precise as the kernel gives them.
                let _ = nix::sys::prctl::set_timerslack(1);
                let shaper = Shaper::new(up, down, seed);
                carry(&host, &switch, shaper, &commands, &stop2, &counters2)
            })
            .context("cannot spawn the wire thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("the wire could not start: {e}"),
            Err(_) => anyhow::bail!("the wire thread ended before it started"),
        }
        Ok(Wire {
            control,
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// Changes the impairment of one way from now on.
    pub fn set(&self, way: Way, spec: Impairment) -> anyhow::Result<()> {
        self.control
            .send(Control::Set(way, spec))
            .map_err(|_| anyhow::anyhow!("the wire has stopped"))
    }

    /// What happened so far, per way (up, down), updated every few milliseconds.
    pub fn counters(&self) -> [WayCounters; 2] {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the thread; frames still held are dropped.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => anyhow::bail!("the wire thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// The wire's loop: read both sides, offer to the shaper, send what is due.
fn carry(
    host: &PortSocket,
    switch: &PortSocket,
    mut shaper: Shaper,
    commands: &mpsc::Receiver<Control>,
    stop: &AtomicBool,
    counters: &Mutex<[WayCounters; 2]>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut bufs = vec![vec![0u8; FRAME]; BATCH];
    let mut lens = vec![0usize; BATCH];
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut last_publish = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        let wait = shaper
            .next_due()
            .map(|due| due.saturating_sub(now))
            .unwrap_or(IDLE)
            .min(IDLE);
        let mut fds = [
            PollFd::new(host.fd(), PollFlags::POLLIN),
            PollFd::new(switch.fd(), PollFlags::POLLIN),
        ];
        let timeout = nix::sys::time::TimeSpec::from_duration(wait);
        match nix::poll::ppoll(&mut fds, Some(timeout), None) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("waiting for frames"),
        }
        let readable = |fd: &PollFd| fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
        let (host_ready, switch_ready) = (readable(&fds[0]), readable(&fds[1]));
        // A change sent before a frame arrived applies to that frame.
        while let Ok(Control::Set(way, spec)) = commands.try_recv() {
            shaper.set(way, spec);
        }
        for (ready, port, way) in [
            (host_ready, host, Way::Up),
            (switch_ready, switch, Way::Down),
        ] {
            if !ready {
                continue;
            }
            let got = port.recv(&mut bufs, &mut lens).context("reading frames")?;
            let now = start.elapsed();
            for (buf, &len) in bufs.iter().zip(&lens).take(got) {
                shaper.offer(way, now, buf[..len].to_vec());
            }
        }
        send_due(&mut shaper, start.elapsed(), host, switch, &mut rng);
        let now = start.elapsed();
        if now - last_publish >= Duration::from_millis(5) {
            last_publish = now;
            let mut c = counters.lock().unwrap_or_else(|p| p.into_inner());
            *c = [shaper.counters(Way::Up), shaper.counters(Way::Down)];
        }
    }
    Ok(())
}

/// Sends every frame due by `now`, batched per side.
fn send_due(
    shaper: &mut Shaper,
    now: Duration,
    host: &PortSocket,
    switch: &PortSocket,
    rng: &mut fastrand::Rng,
) {
    let mut up: Vec<Vec<u8>> = Vec::new();
    let mut down: Vec<Vec<u8>> = Vec::new();
    while let Some(due) = shaper.pop_due(now) {
        let mut frame = due.frame;
        if due.corrupt && !corrupt(&mut frame, rng) {
            continue;
        }
        match due.way {
            Way::Up => up.push(frame),
            Way::Down => down.push(frame),
        }
    }
    for (frames, port) in [(up, switch), (down, host)] {
        if frames.is_empty() {
            continue;
        }
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        // A frame the device refuses is lost, as on a real link.
        let _ = port.send(&refs);
    }
}

/// Flips one random bit of the IP datagram in `frame` (offload header and Ethernet
/// header first), so the receiver's checksum catches it. A partial checksum is completed
/// first (else the device would sum the corrupted bytes and hide the flip); a
/// super-packet cannot be completed and is dropped instead. Returns whether to send.
pub fn corrupt(frame: &mut [u8], rng: &mut fastrand::Rng) -> bool {
    let ip = vnet::LEN + 14;
    let Some(hdr) = VnetHdr::read(frame) else {
        return false;
    };
    if frame.len() <= ip {
        return false;
    }
    if hdr.is_gso() {
        return false;
    }
    if hdr.needs_csum() {
        let start = vnet::LEN + usize::from(hdr.csum_start);
        let at = start + usize::from(hdr.csum_offset);
        if at + 2 > frame.len() || start > frame.len() {
            return false;
        }
        let sum = fold(&frame[start..]);
        frame[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
        VnetHdr { flags: 0, ..hdr }.write(frame);
    }
    let bit = rng.usize(..(frame.len() - ip) * 8);
    frame[ip + bit / 8] ^= 1 << (bit % 8);
    true
}

/// The ones' complement sum of `bytes` as 16-bit big-endian words (RFC 1071), folded.
fn fold(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flags: u8, gso: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; vnet::LEN + 14];
        VnetHdr {
            flags,
            gso_type: gso,
            csum_start: 14 + 20,
            csum_offset: 16,
            ..VnetHdr::default()
        }
        .write(&mut f);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn corruption_flips_exactly_one_bit_of_the_datagram() {
        let mut rng = fastrand::Rng::with_seed(1);
        let original = frame(0, 0, &[0x55; 60]);
        let mut f = original.clone();
        assert!(corrupt(&mut f, &mut rng));
        let flipped: u32 = f
            .iter()
            .zip(&original)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(flipped, 1);
        assert_eq!(
            f[..vnet::LEN + 14],
            original[..vnet::LEN + 14],
            "headers before IP kept"
        );
    }

    #[test]
    fn a_partial_checksum_is_completed_before_the_flip_and_super_packets_are_dropped() {
        let mut rng = fastrand::Rng::with_seed(2);
        let mut f = frame(vnet::F_NEEDS_CSUM, 0, &[0x11; 60]);
        assert!(corrupt(&mut f, &mut rng));
        assert!(
            !VnetHdr::read(&f).unwrap().needs_csum(),
            "sent as a finished checksum"
        );
        // Completed checksum over the segment, before the flip: summing the segment now
        // gives all ones except for the one flipped bit.
        let seg = &f[vnet::LEN + 14 + 20..];
        assert_ne!(
            fold(seg),
            0xffff,
            "the flip must break the completed checksum"
        );
        let mut gso = frame(vnet::F_NEEDS_CSUM, vnet::GSO_TCPV4, &[0; 60]);
        assert!(!corrupt(&mut gso, &mut rng));
    }
}

//! Forwarding a session's bytes: two half-duplex copies, run together, each ending on its
//! own (a FIN from one side is passed on as a FIN, and the other direction goes on).
//!
//! Both copies work on `&TcpStream` through tokio's readiness API (`readable`,
//! `try_io`), so the same session task drives both directions without splitting sockets.
//! [`Mode::Splice`] moves bytes socket -> pipe -> socket with splice(2) (zero copy);
//! [`Mode::Copy`] reads into a user-space buffer and writes it out.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::net::{RecvFlags, SendFlags};
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::splice::{Pipe, PIPE_CAPACITY};

/// Size of a read in [`Mode::Copy`]: of each worker thread's scratch buffer, and of the
/// buffer a direction gets once its destination pushes back.
pub const COPY_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Where [`Mode::Copy`] reads land when they can be written out at once, with no
    /// await in between: most sessions (requests, chat lines) then need no buffer of
    /// their own, so no allocation and no zeroing per session. Zeroed once per thread.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; COPY_BUFFER]);
}

/// How bytes are moved between the two sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// splice(2) through a pipe per direction: no copy through user space.
    Splice,
    /// recv(2)/send(2) through a per-thread scratch buffer; a direction whose destination
    /// pushes back gets a 64 KiB buffer of its own.
    Copy,
}

/// Byte counts and the time of the last byte, shared by both directions of a session.
#[derive(Debug)]
pub struct Transfer {
    base: Instant,
    last_activity_ms: AtomicU64,
    to_backend: AtomicU64,
    from_backend: AtomicU64,
    /// Set by the first direction to reach end of stream.
    one_ended: AtomicBool,
}

impl Default for Transfer {
    fn default() -> Self {
        Self::new()
    }
}

impl Transfer {
    /// Counters at zero, last activity now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            to_backend: AtomicU64::new(0),
            from_backend: AtomicU64::new(0),
            one_ended: AtomicBool::new(false),
        }
    }

    fn record(&self, counter: &AtomicU64, n: usize) {
        super::spin::activity();
        counter.fetch_add(n as u64, Ordering::Relaxed);
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// When a byte last moved in either direction (the session start if none did).
    pub fn last_activity(&self) -> Instant {
        let ms = self.last_activity_ms.load(Ordering::Relaxed);
        self.base + std::time::Duration::from_millis(ms)
    }

    /// Bytes forwarded client -> backend so far.
    pub fn to_backend(&self) -> u64 {
        self.to_backend.load(Ordering::Relaxed)
    }

    /// Bytes forwarded backend -> client so far.
    pub fn from_backend(&self) -> u64 {
        self.from_backend.load(Ordering::Relaxed)
    }
}

/// Forwards both directions until both have seen end of stream; the first error (e.g. a
/// reset) ends both. Bytes and activity are recorded in `transfer` as they move.
///
/// The first end of stream is passed on with shutdown(2); the second is left to the
/// caller's close (one syscall less per session), so drop both sockets once this returns.
pub async fn forward(
    client: &TcpStream,
    backend: &TcpStream,
    mode: Mode,
    transfer: &Transfer,
) -> io::Result<()> {
    match mode {
        Mode::Splice => {
            let (up, down) = (Pipe::new()?, Pipe::new()?);
            tokio::try_join!(
                splice_half(client, backend, &up, transfer, &transfer.to_backend),
                splice_half(backend, client, &down, transfer, &transfer.from_backend),
            )?;
        }
        Mode::Copy => {
            tokio::try_join!(
                copy_half(client, backend, transfer, &transfer.to_backend),
                copy_half(backend, client, transfer, &transfer.from_backend),
            )?;
        }
    }
    Ok(())
}

/// Passes end of stream on: no more writes to `dst` (its reading side stays open). When the
/// other direction has already ended, nothing is left to forward and both sockets are
/// about to be closed, which sends the FIN: the shutdown is skipped.
fn end_of_stream(dst: &TcpStream, transfer: &Transfer) -> io::Result<()> {
    if transfer.one_ended.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    match socket2::SockRef::from(dst).shutdown(Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

async fn splice_half(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    transfer: &Transfer,
    counter: &AtomicU64,
) -> io::Result<()> {
    loop {
        let n = loop {
            src.readable().await?;
            let mut short = None;
            // As in `read_and_clear`: less than a full pipe means `src` is drained.
            let filled = src.try_io(Interest::READABLE, || {
                let n = pipe.fill(src)?;
                if n > 0 && n < PIPE_CAPACITY {
                    short = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match short.map_or(filled, Ok) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return end_of_stream(dst, transfer);
        }
        transfer.record(counter, n);
        let mut left = n;
        while left > 0 {
            match dst.try_io(Interest::WRITABLE, || pipe.drain(dst, left)) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One read from `src`. A short read (less than the buffer) means the socket is drained
/// for now, so its readiness is cleared at once: the next wait goes straight to the event
/// loop instead of costing a read that would only say `EAGAIN`. Tokio clears readiness
/// only up to the event seen before the read, so data that arrives meanwhile is not missed.
fn read_and_clear(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut short = None;
    let result = src.try_io(Interest::READABLE, || {
        let n = recv(src, buf)?;
        if n > 0 && n < buf.len() {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (result, short) {
        (_, Some(n)) => Ok(n),
        (result, None) => result,
    }
}

/// One write to `dst`. With `fin_follows` (the source has ended and these are its last
/// bytes) the write is sent with MSG_MORE: the kernel holds a short last segment until
/// the FIN that follows at once (shutdown or close), and both leave in one packet instead
/// of two (one packet less to send, receive and acknowledge per session). The FIN always
/// follows, so nothing waits on the cork.
fn write_some(dst: &TcpStream, buf: &[u8], fin_follows: bool) -> io::Result<usize> {
    let flags = if fin_follows {
        SendFlags::MORE | SendFlags::NOSIGNAL
    } else {
        SendFlags::NOSIGNAL
    };
    dst.try_io(Interest::WRITABLE, || send(dst, buf, flags))
}

/// recv(2) as the system call itself (rustix's), not glibc's `recv`: glibc's is a thread
/// cancellation point and switches asynchronous cancellation on and off around every
/// call, which `perf` put at about 1.4% of the proxy's CPU per kept request. The proxy
/// never cancels threads, so that work buys nothing.
fn recv(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let (n, _) = rustix::net::recv(src, buf, RecvFlags::empty())?;
    Ok(n)
}

/// send(2) as the system call itself, for the reason given at [`recv`].
fn send(dst: &TcpStream, buf: &[u8], flags: SendFlags) -> io::Result<usize> {
    Ok(rustix::net::send(dst, buf, flags)?)
}

/// What one [`pass_on`] did.
#[derive(Debug)]
struct Pass {
    /// Bytes read (0: end of stream).
    read: usize,
    /// Of those, bytes already written to the destination.
    sent: usize,
    /// The read took everything up to the source's FIN (see [`drained_to_fin`]).
    fin: bool,
}

/// One read from `src` into `buf`, then writes to `dst` until it is all out or `dst`
/// would block. `None` when `src` had nothing after all (stale readiness).
fn pass_on(
    src: &TcpStream,
    dst: &TcpStream,
    buf: &mut [u8],
    ready: Ready,
) -> io::Result<Option<Pass>> {
    let read = match read_and_clear(src, buf) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    let fin = drained_to_fin(ready, read, buf.len());
    let mut sent = 0;
    while sent < read {
        match write_some(dst, &buf[sent..read], fin) {
            Ok(m) => sent += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(Pass { read, sent, fin }))
}

async fn copy_half(
    src: &TcpStream,
    dst: &TcpStream,
    transfer: &Transfer,
    counter: &AtomicU64,
) -> io::Result<()> {
    // Reads go to the thread's scratch buffer while `dst` takes everything at once. The
    // first time it does not, what is left moves to a buffer of this direction's own,
    // which then takes every read (a destination that pushed back once is likely bulk:
    // no copy per read from then on).
    let mut own: Vec<u8> = Vec::new();
    loop {
        let ready = src.ready(Interest::READABLE | Interest::ERROR).await?;
        let pass = if own.is_empty() {
            SCRATCH.with_borrow_mut(|scratch| pass_on(src, dst, scratch, ready))?
        } else {
            pass_on(src, dst, &mut own, ready)?
        };
        let Some(Pass { read, sent, fin }) = pass else {
            continue;
        };
        if read == 0 {
            return end_of_stream(dst, transfer);
        }
        transfer.record(counter, read);
        let mut unsent: Range<usize> = sent..read;
        if !unsent.is_empty() && own.is_empty() {
            own = vec![0; COPY_BUFFER];
            SCRATCH.with_borrow(|scratch| {
                own[..unsent.len()].copy_from_slice(&scratch[unsent.clone()])
            });
            unsent = 0..unsent.len();
        }
        while !unsent.is_empty() {
            dst.writable().await?;
            match write_some(dst, &own[unsent.clone()], fin) {
                Ok(m) => unsent.start += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if fin {
            // The read that would only return 0 is skipped (one syscall per direction).
            return end_of_stream(dst, transfer);
        }
    }
}

/// Whether a read of `n` bytes into a buffer of `len` has taken everything up to the
/// peer's FIN, so the next read would return 0. `ready` is the readiness seen *before*
/// the read: if the FIN had already arrived then (read closed) and the read came back
/// short, nothing was left behind it. Not when an error (a reset) was seen too: the read
/// that reports it must still happen, so the reset is passed on.
fn drained_to_fin(ready: Ready, n: usize, len: usize) -> bool {
    n > 0 && n < len && ready.is_read_closed() && !ready.is_error()
}

#[cfg(test)]
mod tests;

//! Batched datagram I/O (`recvmmsg`, `sendmmsg`) shared by the socket devices, with the
//! socket address type (`sockaddr_in`, `sockaddr_ll`) as a parameter.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::RawFd;

/// A socket address type the kernel fills in or reads (plain old data).
///
/// # Safety
/// An all-zero value must be a valid value of the type.
pub unsafe trait SockAddr: Copy {}

// SAFETY: C socket address structs of plain integers and arrays.
unsafe impl SockAddr for libc::sockaddr_in {}
// SAFETY: as above.
unsafe impl SockAddr for libc::sockaddr_ll {}

/// An all-zero address, to fill in.
pub fn zeroed<A: SockAddr>() -> A {
    // SAFETY: `SockAddr` promises all-zero is valid.
    unsafe { MaybeUninit::<A>::zeroed().assume_init() }
}

/// Whether a receive may sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Sleep for the first datagram, up to the socket's read timeout.
    UpToTimeout,
    /// Take only what is queued now (`MSG_DONTWAIT`): a busy-polling loop's call.
    No,
}

/// Receives up to `bufs.len()` datagrams, waiting for the first as `wait` says
/// (`MSG_WAITFORONE`); each one's length goes to `lens`, and its sender's address to
/// `names` when given (as long as `bufs`). Returns how many arrived (0 on timeout, on
/// interruption, or when nothing was queued and `wait` is [`Wait::No`]). Builds its
/// headers afresh: a loop that receives often keeps a [`RecvScratch`] instead.
pub fn recv_many<A: SockAddr>(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    names: Option<&mut [A]>,
    wait: Wait,
) -> io::Result<usize> {
    let mut scratch = RecvScratch::<A>::default();
    let got = scratch.recv(fd, bufs, lens, None, wait)?;
    if let Some(names) = names {
        for (name, got_name) in names.iter_mut().zip(scratch.names()).take(got) {
            *name = *got_name;
        }
    }
    Ok(got)
}

/// Room for one `SCM_TIMESTAMPNS` control message (`CMSG_SPACE` of a timespec is 32
/// bytes on 64-bit Linux), as u64s so it is aligned for a `cmsghdr`.
type StampControl = [u64; 8];

/// Message headers and their iovecs, one each a datagram, grown as needed and kept
/// between calls; every call points them afresh at its buffers.
#[derive(Default)]
struct Headers {
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovs` and `msgs` are written afresh before every
// system call and only read by the kernel during it; between calls they are never
// dereferenced, so moving the headers to another thread moves no live borrow.
unsafe impl Send for Headers {}

impl Headers {
    /// Room for `n` headers.
    fn fit(&mut self, n: usize) {
        if self.msgs.len() < n {
            let null = libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            self.iovs.resize(n, null);
            // SAFETY: an all-zero mmsghdr is a valid "no name, no control" header.
            self.msgs
                .resize_with(n, || unsafe { MaybeUninit::zeroed().assume_init() });
        }
    }

    /// Points header `k` at `len` bytes at `data`, the address `name` of `namelen` bytes
    /// and the control buffer `control` of `controllen` bytes (null and 0: none).
    fn point(
        &mut self,
        k: usize,
        (data, len): (*mut u8, usize),
        (name, namelen): (*mut libc::c_void, usize),
        (control, controllen): (*mut libc::c_void, usize),
    ) {
        self.iovs[k] = libc::iovec {
            iov_base: data.cast(),
            iov_len: len,
        };
        let h = &mut self.msgs[k].msg_hdr;
        h.msg_iov = &mut self.iovs[k];
        h.msg_iovlen = 1;
        h.msg_name = name;
        h.msg_namelen = namelen as libc::socklen_t;
        h.msg_control = control;
        h.msg_controllen = controllen;
        h.msg_flags = 0;
    }
}

/// The message headers, iovecs, sender addresses and control buffers of `recvmmsg`,
/// kept from one receive to the next so a receive allocates nothing: a busy-polling
/// loop receives hundreds of thousands of times a second, most of them finding nothing,
/// and building these afresh cost it more than the system call (`perf`: malloc, free
/// and zeroing about 12% of the balancer's samples under a request-response load).
pub struct RecvScratch<A: SockAddr> {
    headers: Headers,
    names: Vec<A>,
    controls: Vec<StampControl>,
}

impl<A: SockAddr> Default for RecvScratch<A> {
    fn default() -> Self {
        Self {
            headers: Headers::default(),
            names: Vec::new(),
            controls: Vec::new(),
        }
    }
}

impl<A: SockAddr> RecvScratch<A> {
    /// The sender addresses of the last receive, one per datagram it returned.
    pub fn names(&self) -> &[A] {
        &self.names
    }

    /// [`recv_many`] with these headers, always reading the senders' addresses (see
    /// [`RecvScratch::names`]) and, with `stamps` (as long as `bufs`), each datagram's
    /// kernel arrival time in nanoseconds of `CLOCK_REALTIME` (0 where the kernel gave
    /// none; the socket needs `SO_TIMESTAMPNS`, [`crate::opt::timestamp_ns`]).
    pub fn recv(
        &mut self,
        fd: RawFd,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        stamps: Option<&mut [u64]>,
        wait: Wait,
    ) -> io::Result<usize> {
        let n = bufs.len().min(lens.len());
        let stamped = stamps.is_some();
        self.headers.fit(n);
        if self.names.len() < n {
            self.names.resize(n, zeroed());
        }
        if stamped && self.controls.len() < n {
            self.controls.resize(n, [0; 8]);
        }
        for (k, buf) in bufs.iter_mut().take(n).enumerate() {
            let control = match stamped {
                true => (
                    self.controls[k].as_mut_ptr().cast(),
                    size_of::<StampControl>(),
                ),
                false => (std::ptr::null_mut(), 0),
            };
            let name = (&mut self.names[k] as *mut A).cast();
            self.headers.point(
                k,
                (buf.as_mut_ptr(), buf.len()),
                (name, size_of::<A>()),
                control,
            );
        }
        let flags = match wait {
            Wait::UpToTimeout => libc::MSG_WAITFORONE,
            Wait::No => libc::MSG_WAITFORONE | libc::MSG_DONTWAIT,
        };
        // The system call itself, not glibc's `recvmmsg`: that one is a thread
        // cancellation point and switches asynchronous cancellation on and off around
        // every call (3% of the balancer's samples when polling); nothing here cancels.
        // SAFETY: the first `n` headers point at live iovecs into `bufs`, at live names
        // and (when stamped) at live control buffers, all outliving the call; the kernel
        // writes at most `iov_len` bytes into each buffer, `msg_namelen` into each name
        // and `msg_controllen` into each control buffer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_recvmmsg,
                fd,
                self.headers.msgs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                std::ptr::null_mut::<libc::timespec>(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let got = rc as usize;
        for (len, m) in lens.iter_mut().zip(&self.headers.msgs).take(got) {
            *len = m.msg_len as usize;
        }
        if let Some(stamps) = stamps {
            for (stamp, m) in stamps.iter_mut().zip(&self.headers.msgs).take(got) {
                *stamp = arrival_ns(&m.msg_hdr);
            }
        }
        Ok(got)
    }
}

/// The `SCM_TIMESTAMPNS` of a received message, in nanoseconds (0: none).
fn arrival_ns(hdr: &libc::msghdr) -> u64 {
    // SAFETY: `hdr` is a header the kernel filled in: `msg_control` points at a live
    // `StampControl` and `msg_controllen` says how much of it the kernel wrote, so the
    // CMSG_* walk stays inside it; the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return (ts.tv_sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    0
}

/// Sends each datagram of `datagrams` to the address at the same place in `names`; a
/// failure never stops the others. Returns the failures by index. Builds its headers
/// afresh: a loop that sends often keeps a [`SendScratch`] instead.
pub fn send_many<A: SockAddr>(
    fd: RawFd,
    datagrams: &[&[u8]],
    names: &mut [A],
) -> Vec<(usize, io::Error)> {
    SendScratch::default().send(fd, datagrams, names)
}

/// The message headers and iovecs of `sendmmsg`, kept from one send to the next so a
/// send allocates nothing (see [`RecvScratch`]).
#[derive(Default)]
pub struct SendScratch {
    headers: Headers,
}

impl SendScratch {
    /// [`send_many`] with these headers.
    pub fn send<A: SockAddr>(
        &mut self,
        fd: RawFd,
        datagrams: &[&[u8]],
        names: &mut [A],
    ) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        let n = datagrams.len().min(names.len());
        self.headers.fit(n);
        for (k, (bytes, name)) in datagrams.iter().zip(names.iter_mut()).enumerate() {
            // The kernel only reads the bytes of a send.
            let data = (bytes.as_ptr() as *mut u8, bytes.len());
            let name = ((name as *mut A).cast(), size_of::<A>());
            self.headers.point(k, data, name, (std::ptr::null_mut(), 0));
        }
        let mut start = 0;
        while start < n {
            let rest = &mut self.headers.msgs[start..n];
            // The system call itself, for the reason given in `RecvScratch::recv`.
            // SAFETY: every header points at a live iovec (into `datagrams`, only read
            // by the kernel) and a live address of the size given.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_sendmmsg,
                    fd,
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first of the rest failed: count it and go on with the next.
                failed.push((start, err));
                start += 1;
            } else if rc == 0 {
                failed.push((start, io::Error::from(io::ErrorKind::WriteZero)));
                start += 1;
            } else {
                start += rc as usize;
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    fn now_ns() -> u64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        d.as_nanos() as u64
    }

    #[test]
    fn stamped_receives_read_each_datagrams_kernel_arrival_time() {
        let rx = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        rx.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        crate::opt::timestamp_ns(&rx).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel turns arrival stamping on in deferred work: until it runs, a
        // datagram is stamped when read, not when it arrived (out of order). One datagram
        // first, taken after a pause, so the three below are stamped on arrival.
        tx.send_to(b"warm-up", to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut warm = vec![vec![0u8; 64]];
        let got = RecvScratch::<libc::sockaddr_in>::default()
            .recv(rx.as_raw_fd(), &mut warm, &mut [0], None, Wait::UpToTimeout)
            .unwrap();
        assert_eq!(got, 1, "the warm-up datagram");
        let before = now_ns();
        for payload in [&b"one"[..], b"two", b"three"] {
            tx.send_to(payload, to).unwrap();
        }
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut lens = vec![0; 4];
        let mut stamps = vec![0u64; 4];
        let mut scratch = RecvScratch::<libc::sockaddr_in>::default();
        let fd = rx.as_raw_fd();
        let got = scratch
            .recv(fd, &mut bufs, &mut lens, Some(&mut stamps), Wait::No)
            .unwrap();
        let after = now_ns();
        assert_eq!((got, &lens[..3]), (3, &[3, 3, 5][..]));
        for s in &stamps[..3] {
            assert!((before..=after).contains(s), "{before} <= {s} <= {after}");
        }
        assert!(
            stamps[0] <= stamps[1] && stamps[1] <= stamps[2],
            "{stamps:?}"
        );
        assert_eq!(stamps[3], 0, "no fourth datagram");
        let port = |a: &libc::sockaddr_in| u16::from_be(a.sin_port);
        let from = tx.local_addr().unwrap().port();
        assert!(scratch.names()[..3].iter().all(|a| port(a) == from));
        // The same scratch again, unstamped: it still receives, and a receive that
        // finds nothing returns 0.
        tx.send_to(b"four", to).unwrap();
        let got = scratch
            .recv(fd, &mut bufs, &mut lens, None, Wait::UpToTimeout)
            .unwrap();
        assert_eq!((got, lens[0], &bufs[0][..4]), (1, 4, &b"four"[..]));
        let got = scratch
            .recv(fd, &mut bufs, &mut lens, None, Wait::No)
            .unwrap();
        assert_eq!(got, 0);
        // The one-off form reads names the same way.
        tx.send_to(b"five", to).unwrap();
        let mut names = vec![zeroed::<libc::sockaddr_in>(); 4];
        let got = recv_many(
            fd,
            &mut bufs,
            &mut lens,
            Some(&mut names),
            Wait::UpToTimeout,
        )
        .unwrap();
        assert_eq!((got, port(&names[0])), (1, from));
    }
}

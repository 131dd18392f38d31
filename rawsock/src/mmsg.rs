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
/// interruption, or when nothing was queued and `wait` is [`Wait::No`]).
pub fn recv_many<A: SockAddr>(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    names: Option<&mut [A]>,
    wait: Wait,
) -> io::Result<usize> {
    recv_many_stamped(fd, bufs, lens, names, None, wait)
}

/// Room for one `SCM_TIMESTAMPNS` control message (`CMSG_SPACE` of a timespec is 32
/// bytes on 64-bit Linux), as u64s so it is aligned for a `cmsghdr`.
type StampControl = [u64; 8];

/// [`recv_many`] that also reads each datagram's kernel arrival time into `stamps` (as
/// long as `bufs`), in nanoseconds of `CLOCK_REALTIME`, 0 where the kernel gave none.
/// The socket must have `SO_TIMESTAMPNS` on ([`crate::opt::timestamp_ns`]).
pub fn recv_many_stamped<A: SockAddr>(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    mut names: Option<&mut [A]>,
    stamps: Option<&mut [u64]>,
    wait: Wait,
) -> io::Result<usize> {
    let n = bufs.len().min(lens.len());
    let mut controls: Vec<StampControl> = match stamps {
        Some(_) => vec![[0; 8]; n],
        None => Vec::new(),
    };
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .take(n)
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is a valid "no name, no control" header.
    let mut msgs: Vec<libc::mmsghdr> = (0..n)
        .map(|_| unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() })
        .collect();
    for (k, (m, iov)) in msgs.iter_mut().zip(iovs.iter_mut()).enumerate() {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        if let Some(name) = names.as_deref_mut().and_then(|ns| ns.get_mut(k)) {
            m.msg_hdr.msg_name = (name as *mut A).cast();
            m.msg_hdr.msg_namelen = size_of::<A>() as libc::socklen_t;
        }
        if let Some(control) = controls.get_mut(k) {
            m.msg_hdr.msg_control = control.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = size_of::<StampControl>();
        }
    }
    // SAFETY: `msgs` holds `n` headers whose iovecs point into `bufs` and whose names
    // point into `names`, all outliving the call; the kernel writes at most `iov_len`
    // bytes into each buffer and `msg_namelen` bytes into each name.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            match wait {
                Wait::UpToTimeout => libc::MSG_WAITFORONE,
                Wait::No => libc::MSG_WAITFORONE | libc::MSG_DONTWAIT,
            },
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(0)
            }
            _ => Err(err),
        };
    }
    let got = rc as usize;
    for (len, m) in lens.iter_mut().zip(&msgs).take(got) {
        *len = m.msg_len as usize;
    }
    if let Some(stamps) = stamps {
        for (stamp, m) in stamps.iter_mut().zip(&msgs).take(got) {
            *stamp = arrival_ns(&m.msg_hdr);
        }
    }
    Ok(got)
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
/// failure never stops the others. Returns the failures by index.
pub fn send_many<A: SockAddr>(
    fd: RawFd,
    datagrams: &[&[u8]],
    names: &mut [A],
) -> Vec<(usize, io::Error)> {
    let mut failed = Vec::new();
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|bytes| libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..datagrams.len().min(names.len()))
        .map(|_| unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() })
        .collect();
    for ((m, iov), name) in msgs.iter_mut().zip(iovs.iter_mut()).zip(names.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = (name as *mut A).cast();
        m.msg_hdr.msg_namelen = size_of::<A>() as libc::socklen_t;
    }
    let mut start = 0;
    while start < msgs.len() {
        let rest = &mut msgs[start..];
        // SAFETY: every header points at a live iovec (into `datagrams`, only read by
        // the kernel) and a live address of the size given.
        let rc = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
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
        let before = now_ns();
        for payload in [&b"one"[..], b"two", b"three"] {
            tx.send_to(payload, to).unwrap();
        }
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut lens = vec![0; 4];
        let mut stamps = vec![0u64; 4];
        let got = recv_many_stamped::<libc::sockaddr_in>(
            rx.as_raw_fd(),
            &mut bufs,
            &mut lens,
            None,
            Some(&mut stamps),
            Wait::No,
        )
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
        // Unstamped receives on the same socket still work and leave no stamps behind.
        tx.send_to(b"four", to).unwrap();
        let got = recv_many::<libc::sockaddr_in>(
            rx.as_raw_fd(),
            &mut bufs,
            &mut lens,
            None,
            Wait::UpToTimeout,
        )
        .unwrap();
        assert_eq!((got, lens[0], &bufs[0][..4]), (1, 4, &b"four"[..]));
    }
}

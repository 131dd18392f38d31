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
    mut names: Option<&mut [A]>,
    wait: Wait,
) -> io::Result<usize> {
    let n = bufs.len().min(lens.len());
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
    Ok(got)
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

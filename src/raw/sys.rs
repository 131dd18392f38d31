//! The raw-socket [`Device`]: one `AF_INET/SOCK_RAW/IPPROTO_TCP` socket with
//! `IP_HDRINCL`, a classic BPF filter so only our ports reach user space, `SO_MARK` so the
//! firewall can tell our own packets (forwarded RSTs included) from the kernel's, and
//! `recvmmsg`/`sendmmsg` batching. The only `unsafe` of the balancer lives here.

use std::io;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use crate::raw::device::{Device, RecvBatch};

/// Receive buffer asked for (SO_RCVBUFFORCE), so bursts are not dropped by the kernel.
const RCVBUF: usize = 32 << 20;
/// Send buffer asked for.
const SNDBUF: usize = 8 << 20;

/// The classic BPF program: accept a TCP segment whose destination port is `listen` or in
/// `nat`; everything else stays in the kernel. Raw IPv4 sockets see the IP header at 0.
pub fn port_filter(listen: u16, nat: &RangeInclusive<u16>) -> Vec<SockFilter> {
    const LDX_B_MSH: u16 = 0xb1; // X = 4 * (pkt[k] & 0x0f): the IP header length
    const LD_H_IND: u16 = 0x48; // A = u16 at X + k
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const JGT_K: u16 = 0x25;
    const RET_K: u16 = 0x06;
    vec![
        SockFilter::new(LDX_B_MSH, 0, 0, 0),
        SockFilter::new(LD_H_IND, 0, 0, 2),
        SockFilter::new(JEQ_K, 2, 0, u32::from(listen)),
        SockFilter::new(JGE_K, 0, 2, u32::from(*nat.start())),
        SockFilter::new(JGT_K, 1, 0, u32::from(*nat.end())),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

/// The raw socket device.
pub struct RawDevice {
    socket: Socket,
}

impl RawDevice {
    /// Opens the socket (needs root or CAP_NET_RAW), marks it, installs the filter.
    pub fn open(mark: u32, listen: u16, nat: &RangeInclusive<u16>) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
        socket.set_header_included_v4(true)?;
        socket.set_mark(mark)?;
        socket.attach_filter(&port_filter(listen, nat))?;
        force_buffer(&socket, libc::SO_RCVBUFFORCE, RCVBUF)
            .or_else(|_| socket.set_recv_buffer_size(RCVBUF))?;
        force_buffer(&socket, libc::SO_SNDBUFFORCE, SNDBUF)
            .or_else(|_| socket.set_send_buffer_size(SNDBUF))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Self { socket })
    }
}

fn force_buffer(socket: &Socket, option: libc::c_int, size: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` is a live c_int and its exact size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Device for RawDevice {
    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let n = batch.bufs.len();
        let mut iovs: Vec<libc::iovec> = batch
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: an all-zero mmsghdr is a valid "no name, no control" header.
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|_| unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() })
            .collect();
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs` holds `n` headers whose iovecs point into `batch.bufs`, which
        // outlive the call; the kernel writes at most `iov_len` bytes into each. The
        // first datagram waits up to SO_RCVTIMEO; MSG_WAITFORONE returns after it.
        let rc = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
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
        for (len, m) in batch.lens.iter_mut().zip(&msgs).take(got) {
            *len = m.msg_len as usize;
        }
        Ok(got)
    }

    fn send(&mut self, packets: &[(&[u8], Ipv4Addr)]) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        let mut addrs: Vec<libc::sockaddr_in> = packets
            .iter()
            .map(|(_, dst)| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst.octets()),
                },
                sin_zero: [0; 8],
            })
            .collect();
        let mut iovs: Vec<libc::iovec> = packets
            .iter()
            .map(|(bytes, _)| libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            })
            .collect();
        // SAFETY: an all-zero mmsghdr is a valid empty header.
        let mut msgs: Vec<libc::mmsghdr> = (0..packets.len())
            .map(|_| unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() })
            .collect();
        for ((m, iov), addr) in msgs.iter_mut().zip(iovs.iter_mut()).zip(addrs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        let mut start = 0;
        while start < msgs.len() {
            let rest = &mut msgs[start..];
            // SAFETY: every header points at a live iovec (into `packets`, only read by
            // the kernel) and a live sockaddr_in of the size given.
            let rc = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
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

//! Socket options socket2 has no method for (`SO_RCVBUFFORCE`, `SO_MEMINFO`, `SOL_PACKET`
//! options).

use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// Sets a buffer size beyond the sysctl limit (root), e.g. `SO_RCVBUFFORCE`.
pub fn force_buffer(socket: &Socket, option: libc::c_int, size: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    set_int_option(socket, libc::SOL_SOCKET, option, value)
}

/// Asks for a receive buffer of `size` bytes, beyond the sysctl limit where allowed.
pub fn receive_buffer(socket: &Socket, size: usize) -> io::Result<()> {
    force_buffer(socket, libc::SO_RCVBUFFORCE, size).or_else(|_| socket.set_recv_buffer_size(size))
}

/// Asks for a send buffer of `size` bytes, beyond the sysctl limit where allowed.
pub fn send_buffer(socket: &Socket, size: usize) -> io::Result<()> {
    force_buffer(socket, libc::SO_SNDBUFFORCE, size).or_else(|_| socket.set_send_buffer_size(size))
}

/// Sets an integer socket option.
pub fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is open for the life of `socket`; `value` is a live c_int
    // and its exact size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
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

/// Turns on `SO_TIMESTAMPNS`: every received datagram carries its kernel arrival time
/// (`CLOCK_REALTIME`), read by [`crate::mmsg::RecvScratch::recv`].
pub fn timestamp_ns(socket: &Socket) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// Binds a packet socket to interface `ifindex` for link protocol `protocol` (network
/// order, e.g. `ETH_P_ALL`), so it receives only that interface's frames and sends out
/// of it.
pub fn bind_packet(socket: &Socket, ifindex: i32, protocol: u16) -> io::Result<()> {
    let mut addr: libc::sockaddr_ll = crate::mmsg::zeroed();
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex;
    // SAFETY: the descriptor is open for the life of `socket`; `addr` is a live, fully
    // initialised sockaddr_ll and its exact size is passed.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Frames the kernel dropped for packet socket `socket` since the last call, because its
/// receive buffer or its receive ring was full (`PACKET_STATISTICS`, whose counters the
/// kernel resets on every read: call it from one place only).
pub fn packet_drops(socket: &Socket) -> io::Result<u64> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the life of `socket`; `stats` is a live
    // tpacket_stats and `len` says its exact size, which the kernel writes at most.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(u64::from(stats.tp_drops))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SO_MEMINFO`, which the libc crate defines only in a module it does not export: 55 on
/// every Linux architecture but SPARC.
#[cfg(not(target_arch = "sparc64"))]
const SO_MEMINFO: libc::c_int = 55;
#[cfg(target_arch = "sparc64")]
const SO_MEMINFO: libc::c_int = 0x39;

/// Datagrams the kernel has dropped for `socket` since it was opened, mostly because its
/// receive buffer was full: the socket's own drop counter (`SO_MEMINFO`'s
/// `SK_MEMINFO_DROPS`, Linux 4.12+). Unlike [`packet_drops`] it never resets and wraps at
/// 2^32, so a caller keeps the last reading and takes the difference. On a raw IP socket
/// the kernel checks for room before it runs the socket's filter, so while the buffer is
/// full every datagram of the socket's protocol counts, whether the filter would have
/// passed it or not (a packet socket filters first).
pub fn socket_drops(socket: &Socket) -> io::Result<u32> {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: the descriptor is open for the life of `socket`; `info` is a live array and
    // `len` says its exact size, which the kernel writes at most (it writes fewer
    // entries, and says so in `len`, only on a kernel older than the drop counter).
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < std::mem::size_of_val(&info) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's SO_MEMINFO has no drop counter (Linux 4.12 or later has)",
        ));
    }
    Ok(info[libc::SK_MEMINFO_DROPS as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Type};
    use std::net::{SocketAddr, UdpSocket};

    #[test]
    fn a_full_receive_buffer_shows_in_the_sockets_drop_counter() {
        let rx = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        rx.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        // The smallest buffer the kernel allows holds a few datagrams, not 500.
        rx.set_recv_buffer_size(1).unwrap();
        rx.set_nonblocking(true).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let before = socket_drops(&rx).unwrap();
        assert_eq!(before, 0, "a new socket has dropped nothing");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 500u32;
        for _ in 0..sent {
            tx.send_to(&[7u8; 100], to).unwrap();
        }
        let mut read = 0u32;
        let mut buf = [std::mem::MaybeUninit::new(0u8); 128];
        while rx.recv(&mut buf).is_ok() {
            read += 1;
        }
        let dropped = socket_drops(&rx).unwrap();
        assert!(
            dropped > 0,
            "{read} read of {sent}, none counted as dropped"
        );
        assert_eq!(read + dropped, sent, "{read} read, {dropped} dropped");
        // It never resets: a second reading says the same.
        assert_eq!(socket_drops(&rx).unwrap(), dropped);
    }
}

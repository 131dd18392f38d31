//! Socket options socket2 has no method for (`SO_RCVBUFFORCE`, `SOL_PACKET` options).

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

//! A `PACKET_RX_RING` (`TPACKET_V2`) receive ring: the kernel copies each frame into a
//! slot of memory shared with this process and flips the slot's status word, so taking
//! a frame is a memory read, not a system call, and no socket buffer is cloned or freed.
//!
//! `TPACKET_V2`, not V3: a V3 block reaches user space only when it is full or its
//! timer (milliseconds) runs out, which would hold a request-response packet for a
//! millisecond; a V2 slot is ready as soon as its frame is in.
//!
//! Slots are [`SLOT`] bytes, room for an Ethernet frame of a 1500-byte MTU with its
//! offload header. A larger frame (a GRO/TSO super-packet) is copied whole onto the
//! socket's ordinary queue (`PACKET_COPY_THRESH`) and its slot says so
//! (`TP_STATUS_COPY`); [`RxRing::take`] then reads the frame from the queue, in order.
//! A frame too large for its slot that the queue had no room for either is dropped,
//! as a full receive buffer drops it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::Socket;

use crate::opt::set_int_option;
use crate::vnet;

/// Bytes per slot: the kernel's slot header, the link address, the offload header and
/// a 1514-byte Ethernet frame fit with room to spare.
pub const SLOT: usize = 2048;
/// Bytes per block of slots (the kernel allocates the ring in blocks).
const BLOCK: usize = 1 << 16;

/// One frame taken from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Bytes written into the buffer: the offload header, then the frame.
    pub len: usize,
    /// The interface it came in on.
    pub ifindex: i32,
    /// Kernel arrival time, nanoseconds of `CLOCK_REALTIME`.
    pub stamp_ns: u64,
}

/// A receive ring mapped onto a packet socket.
pub struct RxRing {
    fd: RawFd,
    map: *mut u8,
    map_len: usize,
    slots: usize,
    next: usize,
}

// SAFETY: the mapping is owned by this value alone (no copies of the pointer escape);
// moving it to another thread moves that ownership with it.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Maps a ring of at least `slots` slots onto `socket`, a packet socket that has
    /// `PACKET_VNET_HDR` set and no ring yet. The socket must outlive the ring.
    pub fn map(socket: &Socket, slots: usize) -> io::Result<Self> {
        let fd = socket.as_raw_fd();
        set_int_option(
            socket,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V2 as libc::c_int,
        )?;
        set_int_option(socket, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, 1)?;
        let per_block = BLOCK / SLOT;
        let blocks = slots.div_ceil(per_block).max(1);
        let req = libc::tpacket_req {
            tp_block_size: BLOCK as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: SLOT as u32,
            tp_frame_nr: (blocks * per_block) as u32,
        };
        // SAFETY: `req` is a live `tpacket_req` and its exact size is the option length.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                (&req as *const libc::tpacket_req).cast(),
                size_of::<libc::tpacket_req>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let map_len = blocks * BLOCK;
        // SAFETY: maps the ring the kernel just allocated for `fd`, shared, at an address
        // of the kernel's choosing; the result is checked before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            map: map.cast(),
            map_len,
            slots: blocks * per_block,
            next: 0,
        })
    }

    /// The number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The status word of slot `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: slot `i` lies inside the mapping (`i < slots`), starts on a 2048-byte
        // boundary and begins with `tp_status`, a u32 the kernel and we both access
        // atomically; the mapping lives as long as `self`.
        unsafe { &*(self.map.add(i * SLOT) as *const AtomicU32) }
    }

    /// Whether the next slot holds a frame.
    pub fn ready(&self) -> bool {
        self.status(self.next).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Takes the next frame, if one is ready, into `buf` as `[offload header][frame]`
    /// (as a `PACKET_VNET_HDR` socket's receive gives it) and hands its slot back to the
    /// kernel. `Ok(None)`: nothing ready. A frame the ring had to drop (too large for
    /// its slot and no room on the queue), or one larger than `buf`, frees its slot and
    /// is reported as `Taken { len: 0, .. }`.
    pub fn take(&mut self, buf: &mut [u8]) -> io::Result<Option<Taken>> {
        let i = self.next;
        let status = self.status(i).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return Ok(None);
        }
        // SAFETY: the slot is ours until its status goes back to TP_STATUS_KERNEL; its
        // header is a `tpacket2_hdr` at the slot's start, read unaligned.
        let hdr: libc::tpacket2_hdr = unsafe { std::ptr::read_unaligned(self.slot(i).cast()) };
        let addr_at = tpacket_align(size_of::<libc::tpacket2_hdr>());
        // SAFETY: the kernel writes the arrival interface's `sockaddr_ll` at this
        // aligned offset of every slot, inside the slot.
        let addr: libc::sockaddr_ll =
            unsafe { std::ptr::read_unaligned(self.slot(i).add(addr_at).cast()) };
        let mut taken = Taken {
            len: 0,
            ifindex: addr.sll_ifindex,
            stamp_ns: u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec),
        };
        // A failed read of the queued copy still hands the slot back (below), or the
        // ring would stop at it for good.
        let mut failed = None;
        if status & libc::TP_STATUS_COPY != 0 {
            match self.take_copied(buf) {
                Ok(len) => taken.len = len,
                Err(e) => failed = Some(e),
            }
        } else if hdr.tp_snaplen == hdr.tp_len {
            let mac = usize::from(hdr.tp_mac);
            let len = vnet::LEN + hdr.tp_snaplen as usize;
            if mac >= vnet::LEN && mac - vnet::LEN + len <= SLOT && len <= buf.len() {
                // SAFETY: `[mac - vnet::LEN, mac + snaplen)` lies inside the slot
                // (checked above), where the kernel wrote the offload header and frame.
                let src =
                    unsafe { std::slice::from_raw_parts(self.slot(i).add(mac - vnet::LEN), len) };
                buf[..len].copy_from_slice(src);
                taken.len = len;
            }
        }
        self.status(i)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next = (i + 1) % self.slots;
        match failed {
            Some(e) => Err(e),
            None => Ok(Some(taken)),
        }
    }

    /// Reads the frame a `TP_STATUS_COPY` slot stands for from the socket's queue.
    fn take_copied(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is live and writable for `buf.len()` bytes during the call.
        let rc = unsafe {
            libc::recv(
                self.fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        // MSG_TRUNC returns the frame's real length: a frame larger than `buf` is lost.
        let len = rc as usize;
        Ok(if len <= buf.len() { len } else { 0 })
    }

    /// Sleeps until the next slot holds a frame or `timeout_ms` passes.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one live pollfd for the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(())
    }

    fn slot(&self, i: usize) -> *const u8 {
        // SAFETY: `i < slots`, so the slot lies inside the mapping.
        unsafe { self.map.add(i * SLOT) }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once; nothing borrows it
        // past `self`.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// `TPACKET_ALIGN`: rounds up to the ring's 16-byte alignment.
fn tpacket_align(x: usize) -> usize {
    let a = libc::TPACKET_ALIGNMENT;
    x.div_ceil(a) * a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_size_ethernet_frame_fits_a_slot() {
        // The kernel puts the frame at TPACKET_ALIGN(header + 16) + offload header - 14.
        let mac = tpacket_align(size_of::<libc::tpacket2_hdr>() + 16) + vnet::LEN - 14;
        assert!(mac + 1514 <= SLOT, "frame ends at {}", mac + 1514);
        assert_eq!(BLOCK % SLOT, 0);
    }

    #[test]
    fn alignment_rounds_up_to_sixteen() {
        assert_eq!(
            (tpacket_align(0), tpacket_align(1), tpacket_align(32)),
            (0, 16, 32)
        );
    }
}

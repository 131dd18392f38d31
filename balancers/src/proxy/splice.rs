//! A pipe for splice(2): socket -> pipe -> socket without copying through user space.
//! No `unsafe` here: nix wraps the system calls.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{splice, OFlag, SpliceFFlags};

/// Linux's default pipe capacity: a fill that moves less found the socket drained.
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// Most bytes moved by one splice call (the pipe's capacity bounds it further).
const CHUNK: usize = 1 << 20;

/// The two ends of a non-blocking pipe.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A new non-blocking, close-on-exec pipe.
    pub fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(Self { read, write })
    }

    /// Moves what `src` has to read into the pipe; `Ok(0)` means end of stream.
    /// `WouldBlock` means `src` has nothing now (the pipe is always empty when called).
    pub fn fill(&self, src: impl AsFd) -> io::Result<usize> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        Ok(splice(src, None, &self.write, None, CHUNK, flags)?)
    }

    /// Moves up to `len` bytes from the pipe into `dst`; `WouldBlock` means `dst` is full.
    pub fn drain(&self, dst: impl AsFd, len: usize) -> io::Result<usize> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        Ok(splice(&self.read, None, dst, None, len, flags)?)
    }
}

//! The `virtio_net_hdr` an `AF_PACKET` socket with `PACKET_VNET_HDR` puts before every
//! frame it receives and expects before every frame it sends.
//!
//! It is how the kernel tells user space about offloads: whether a frame is a GSO
//! super-packet (and its segment size), and whether its TCP checksum is still only the
//! pseudo-header part (`NEEDS_CSUM`, with where the checksum starts and lies). Handing
//! the same header back with the rewritten frame lets the kernel send a 64 KB
//! super-packet whole and finish its checksum, instead of the balancer cutting it into
//! MTU-sized segments and summing every byte in user space.
//!
//! The layout is the legacy virtio one in the host's byte order (what the kernel's
//! `vio_le()` means on little-endian hosts, and big-endian hosts use their own order).

/// Length of the header in bytes.
pub const LEN: usize = 10;

/// `flags` bit: the checksum at `csum_start + csum_offset` must be completed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags` bit: the checksum was already verified (receive only).
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: not a super-packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 super-packet.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type` bit: the super-packet carries ECN's CWR on its first segment.
pub const GSO_ECN: u8 = 0x80;

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `F_*` bits.
    pub flags: u8,
    /// `GSO_*` value.
    pub gso_type: u8,
    /// Length of the headers (the part the kernel keeps linear).
    pub hdr_len: u16,
    /// Segment payload size of a super-packet.
    pub gso_size: u16,
    /// Where the checksummed part starts, from the start of the frame.
    pub csum_start: u16,
    /// Where the checksum field lies, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes the first [`LEN`] bytes; None if there are fewer.
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..LEN)?;
        let u16_at = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Encodes into the first [`LEN`] bytes of `out` (which must hold them).
    pub fn write(&self, out: &mut [u8]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// Whether the TCP checksum is only the pseudo-header part.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// Whether this is a super-packet (several segments in one frame).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// The header to send a received frame back out with: the same offload request
    /// (super-packet and checksum), without the receive-only "already verified" bit.
    pub fn for_sending(&self) -> Self {
        Self {
            flags: self.flags & F_NEEDS_CSUM,
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_meaning() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM | F_DATA_VALID,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; LEN];
        h.write(&mut b);
        assert_eq!(VnetHdr::read(&b), Some(h));
        assert!(h.needs_csum() && h.is_gso());
        let out = h.for_sending();
        assert_eq!(out.flags, F_NEEDS_CSUM);
        assert_eq!(out.gso_size, 1448);
        assert!(VnetHdr::read(&b[..LEN - 1]).is_none());
        let plain = VnetHdr {
            gso_type: GSO_ECN,
            ..VnetHdr::default()
        };
        assert!(!plain.is_gso() && !plain.needs_csum());
    }
}

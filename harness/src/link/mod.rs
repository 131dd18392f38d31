//! Links like real ones on any kernel: delay, jitter, loss (random and in bursts),
//! duplication, corruption, reordering and rate limits with a bounded queue, per direction
//! and seeded, without netem or fq.
//!
//! - [`spec`]: what a direction of a link does ([`spec::Impairment`]) and the netem
//!   syntax that says it.
//! - [`model`]: the seeded state machine that decides each frame's fate (pure).
//! - [`shaper`]: both ways of one link: frames held until they are due (pure).
//! - [`wire`]: the thread in the switch's namespace that carries a link's frames
//!   through a shaper (packet sockets from `l4lb-rawsock`).
pub mod model;
pub mod shaper;
pub mod spec;
pub mod wire;

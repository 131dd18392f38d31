//! process (to be written).

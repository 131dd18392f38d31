//! cleanup (to be written).

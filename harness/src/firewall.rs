//! firewall (to be written).

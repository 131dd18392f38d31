//! Helpers shared by namespace tests that include them with `mod support;`.

pub mod spoof;

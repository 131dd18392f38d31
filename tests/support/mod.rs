//! Helpers shared by namespace tests that include them with `mod support;`. Each test
//! binary uses only part of them.
#![allow(dead_code)]

pub mod raw_lab;
pub mod spoof;
pub mod stats;

//! Entering a network namespace safely.
//!
//! setns(2) changes only the calling thread, so this module never switches a tokio
//! worker: code runs in a namespace on a dedicated std thread ([`Namespace::run`]), and
//! processes enter it in the child between fork and exec ([`Namespace::command`]).

use std::path::PathBuf;

/// A named network namespace (a bind mount under /run/netns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Full name, as `ip netns list` shows it.
    pub name: String,
    /// Path of the bind mount, e.g. /run/netns/<name>.
    pub path: PathBuf,
}

impl Namespace {
    /// Runs `f` on a fresh std thread that has entered this namespace, and returns its result.
    pub fn run<T, F>(&self, _f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        todo!()
    }

    /// A `tokio::process::Command` whose child enters this namespace before exec.
    pub fn command(&self, _program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        todo!()
    }
}

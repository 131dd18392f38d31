//! Real processes inside a namespace: stdin/stdout piped, stderr captured, signalled.
//!
//! [`NsProcess::spawn`] starts a command in a namespace; every stdout and stderr line is
//! recorded with the time it arrived (a transcript the runner asserts on); stdin takes
//! lines. Dropping an `NsProcess` kills it (SIGKILL) and reaps it, so no process
//! outlives its run.

use std::time::Instant;

use crate::netns::Namespace;

/// A signal the harness sends to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: ask to stop.
    Term,
    /// SIGKILL: crash.
    Kill,
    /// SIGSTOP: hang.
    Stop,
    /// SIGCONT: resume after a hang.
    Cont,
}

/// One line a process printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When the harness read it.
    pub at: Instant,
    /// The line without its newline.
    pub text: String,
    /// True for stderr, false for stdout.
    pub stderr: bool,
}

/// A running process in a namespace.
#[derive(Debug)]
pub struct NsProcess {
    _private: (),
}

impl NsProcess {
    /// Starts `program args...` inside `ns`, with piped stdin/stdout/stderr.
    pub async fn spawn(
        _ns: &Namespace,
        _program: &std::path::Path,
        _args: &[String],
    ) -> anyhow::Result<NsProcess> {
        todo!()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        todo!()
    }

    /// Writes `line` and a newline to the process's stdin.
    pub async fn send_line(&mut self, _line: &str) -> anyhow::Result<()> {
        todo!()
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        todo!()
    }

    /// Sends a signal.
    pub fn signal(&self, _signal: Signal) -> anyhow::Result<()> {
        todo!()
    }

    /// Every line printed so far, in order.
    pub fn transcript(&self) -> Vec<Line> {
        todo!()
    }

    /// Waits until a stdout/stderr line satisfies `pred`, or `timeout` passes; returns the line.
    pub async fn wait_for_line(
        &self,
        _pred: impl Fn(&str) -> bool,
        _timeout: std::time::Duration,
    ) -> Option<Line> {
        todo!()
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_exit_code(&mut self) -> Option<std::process::ExitStatus> {
        todo!()
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; returns the exit status.
    pub async fn stop(
        &mut self,
        _grace: std::time::Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        todo!()
    }
}

//! Real processes inside a namespace: stdin/stdout piped, stderr captured, signalled.
//!
//! [`NsProcess::spawn`] starts a command in a namespace; every stdout and stderr line is
//! recorded with the time it arrived (a transcript the runner asserts on); stdin takes
//! lines. [`NsProcess::spawn_with_output_file`] sends both streams to a file instead
//! (the bench's balancers, which may print a line per connection). Dropping an
//! `NsProcess` kills it (SIGKILL) and reaps it, so no process outlives its run. Children
//! also carry `PR_SET_PDEATHSIG = SIGKILL` (see [`Namespace::command`]): spawn them from a
//! long-lived thread.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;

use crate::netns::Namespace;

/// Longest [`NsProcess::wait_exit`] waits, after the exit, for the output pipes to end.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

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

impl Signal {
    fn nix(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal as S;
        match self {
            Signal::Term => S::SIGTERM,
            Signal::Kill => S::SIGKILL,
            Signal::Stop => S::SIGSTOP,
            Signal::Cont => S::SIGCONT,
        }
    }
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

/// The shared transcript: lines so far, and a counter bumped on every new line (and
/// once more when both streams have ended).
#[derive(Debug)]
struct Transcript {
    lines: Mutex<Vec<Line>>,
    changed: watch::Sender<u64>,
}

impl Transcript {
    fn push(&self, line: Line) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A running process in a namespace.
#[derive(Debug)]
pub struct NsProcess {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    transcript: Arc<Transcript>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    exit: Option<ExitStatus>,
    /// What was started, for error messages.
    label: String,
    /// Where stdout and stderr go instead of the transcript, if they do.
    output_file: Option<std::path::PathBuf>,
}

impl NsProcess {
    /// Starts `program args...` inside `ns`, with piped stdin/stdout/stderr.
    pub async fn spawn(
        ns: &Namespace,
        program: &std::path::Path,
        args: &[String],
    ) -> anyhow::Result<NsProcess> {
        Self::spawn_env(ns, program, args, &[]).await
    }

    /// Like [`NsProcess::spawn`], with extra environment variables (e.g. `RUST_LOG`).
    pub async fn spawn_env(
        ns: &Namespace,
        program: &std::path::Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<NsProcess> {
        Self::start(ns, program, args, env, None)
    }

    /// Like [`NsProcess::spawn`], but stdout and stderr are appended to `output` (created
    /// if missing) instead of read into the transcript: for a process that prints a line
    /// per connection under load, whose reading would cost the harness's CPU (the bench's
    /// load core). [`NsProcess::output_tail`] reads the file; the transcript stays empty.
    pub async fn spawn_with_output_file(
        ns: &Namespace,
        program: &std::path::Path,
        args: &[String],
        output: &std::path::Path,
    ) -> anyhow::Result<NsProcess> {
        Self::start(ns, program, args, &[], Some(output))
    }

    /// Starts the process; its stdout and stderr go to `output` if given, else each to a
    /// task that reads it into the transcript (so call it inside a tokio runtime).
    fn start(
        ns: &Namespace,
        program: &std::path::Path,
        args: &[String],
        env: &[(&str, &str)],
        output: Option<&std::path::Path>,
    ) -> anyhow::Result<NsProcess> {
        let label = format!("{} {} (in {})", program.display(), args.join(" "), ns.name);
        let stream = || -> anyhow::Result<Stdio> {
            let Some(output) = output else {
                return Ok(Stdio::piped());
            };
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(output)
                .with_context(|| {
                    format!("cannot open {} for the output of {label}", output.display())
                })?;
            Ok(file.into())
        };
        let mut child = ns
            .command(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(stream()?)
            .stderr(stream()?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {label}"))?;
        let pid = child.id().context("child has no pid")?;
        let (changed, _) = watch::channel(0);
        let transcript = Arc::new(Transcript {
            lines: Mutex::new(Vec::new()),
            changed,
        });
        let mut readers = Vec::new();
        if let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) {
            readers.push(tokio::spawn(read_lines(stdout, false, transcript.clone())));
            readers.push(tokio::spawn(read_lines(stderr, true, transcript.clone())));
        }
        Ok(NsProcess {
            stdin: child.stdin.take(),
            child,
            pid,
            transcript,
            readers,
            exit: None,
            label,
            output_file: output.map(std::path::Path::to_path_buf),
        })
    }

    /// The last `n` lines the process printed (stdout and stderr), from the transcript or
    /// the output file; an unreadable file gives one line saying so.
    pub fn output_tail(&self, n: usize) -> Vec<String> {
        let all: Vec<String> = match &self.output_file {
            None => self.transcript().into_iter().map(|l| l.text).collect(),
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(String::from)
                    .collect(),
                Err(e) => vec![format!("(cannot read {}: {e})", path.display())],
            },
        };
        let skip = all.len().saturating_sub(n);
        all.into_iter().skip(skip).collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Writes `line` and a newline to the process's stdin.
    pub async fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("stdin of {} is closed", self.label))?;
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        stdin
            .write_all(&buf)
            .await
            .with_context(|| format!("cannot write to {} (has it exited?)", self.label))?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        if self.exit.is_some() {
            anyhow::bail!("{} has already exited", self.label);
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), signal.nix())
            .with_context(|| format!("cannot send {signal:?} to {}", self.label))
    }

    /// Every line printed so far, in order.
    pub fn transcript(&self) -> Vec<Line> {
        self.transcript
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until a stdout/stderr line satisfies `pred`, or `timeout` passes; returns the line.
    /// Lines printed before the call count too (the first match in the transcript wins).
    pub async fn wait_for_line(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: std::time::Duration,
    ) -> Option<Line> {
        let mut changed = self.transcript.changed.subscribe();
        let mut seen = 0;
        let search = async {
            loop {
                changed.borrow_and_update();
                {
                    let lines = self
                        .transcript
                        .lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if let Some(line) = lines[seen..].iter().find(|l| pred(&l.text)) {
                        return Some(line.clone());
                    }
                    seen = lines.len();
                }
                if changed.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, search).await.ok().flatten()
    }

    /// Waits until the process has closed stdout and stderr (usually: it exited) or
    /// `timeout` passes; true if both ended.
    pub async fn wait_output_closed(&self, timeout: Duration) -> bool {
        let readers_done = || self.readers.iter().all(|r| r.is_finished());
        let mut changed = self.transcript.changed.subscribe();
        let wait = async {
            while !readers_done() {
                if changed.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok() && readers_done()
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_exit_code(&mut self) -> Option<std::process::ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for the process to exit, up to `timeout`; None if it is still running.
    ///
    /// Once it reports an exit, the transcript holds everything the process printed:
    /// the pipes are read to their end (for at most [`OUTPUT_DRAIN`]; a child that
    /// handed its stdout to a grandchild still running keeps it open).
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(status) = self.exit {
            return Ok(Some(status));
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status.with_context(|| format!("cannot wait for {}", self.label))?;
                self.exit = Some(status);
                self.wait_output_closed(OUTPUT_DRAIN).await;
                Ok(Some(status))
            }
            Err(_) => Ok(None),
        }
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; returns the exit status.
    pub async fn stop(
        &mut self,
        grace: std::time::Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.try_exit_code() {
            return Ok(status);
        }
        // A stopped process would not act on SIGTERM until continued.
        let _ = self.signal(Signal::Term);
        let _ = self.signal(Signal::Cont);
        if let Some(status) = self.wait_exit(grace).await? {
            return Ok(status);
        }
        let _ = self.signal(Signal::Kill);
        let status = self
            .child
            .wait()
            .await
            .with_context(|| format!("cannot reap {}", self.label))?;
        self.exit = Some(status);
        Ok(status)
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        if self.try_exit_code().is_none() {
            for r in &self.readers {
                r.abort();
            }
            let _ = self.child.start_kill();
            // Reap now so no zombie outlives the run: SIGKILL is prompt, so this waits
            // only briefly (bounded, for a process stuck in the kernel).
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, stderr: bool, transcript: Arc<Transcript>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let at = Instant::now();
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                transcript.push(Line {
                    at,
                    text: String::from_utf8_lossy(&buf).into_owned(),
                    stderr,
                });
            }
        }
    }
    // Wake waiters so they can notice the stream ended.
    transcript.changed.send_modify(|n| *n += 1);
}

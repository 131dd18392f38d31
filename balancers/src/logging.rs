//! Structured logs for every subcommand, through `tracing`.
//!
//! Text by default (for people), one JSON object per line with `--log-format json`
//! (for tools). The level comes from `RUST_LOG` (default `info`). Logs go to stderr so
//! that stdout stays free for the chat programs' wire-compatible output.

use std::cell::{Cell, RefCell};
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        // Colour codes only for a person at a terminal, never into files and pipes.
        .with_ansi(io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A thread's log lines are held back past this many bytes only while it is batching.
const BATCH_BYTES: usize = 16 * 1024;

thread_local! {
    static BATCHING: Cell<bool> = const { Cell::new(false) };
    static BATCH: RefCell<Batch> = const { RefCell::new(Batch(Vec::new())) };
}

/// A thread's collected log lines; written when the thread exits, if not before.
struct Batch(Vec<u8>);

impl Batch {
    /// Adds a line; true once the batch should be written.
    fn push(&mut self, line: &[u8]) -> bool {
        self.0.extend_from_slice(line);
        self.0.len() >= BATCH_BYTES
    }

    fn write_out(&mut self) {
        if !self.0.is_empty() {
            let _ = io::stderr().lock().write_all(&self.0);
            self.0.clear();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.write_out();
    }
}

/// From now on this thread's log lines are collected and written together by
/// [`flush_batch`] (call it whenever the thread goes idle) or once 16 KiB (`BATCH_BYTES`) have
/// gathered: one write(2) for many lines on a busy event loop. Lines are never lost: a
/// batch left at thread exit is written then.
pub fn batch_this_thread() {
    BATCHING.with(|b| b.set(true));
}

/// Writes this thread's collected log lines, if any.
pub fn flush_batch() {
    let _ = BATCH.try_with(|batch| {
        if let Ok(mut batch) = batch.try_borrow_mut() {
            batch.write_out();
        }
    });
}

/// The writer: stderr, through this thread's batch when it batches.
struct Stderr;

/// One log line's writer (see [`Stderr`]).
enum LineWriter {
    Direct(io::Stderr),
    Batch,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        if BATCHING.with(Cell::get) {
            LineWriter::Batch
        } else {
            LineWriter::Direct(io::stderr())
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Direct(stderr) => stderr.write(buf),
            Self::Batch => {
                let full = BATCH.with(|b| b.borrow_mut().push(buf));
                if full {
                    flush_batch();
                }
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Direct(stderr) => stderr.flush(),
            Self::Batch => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batched() -> Vec<u8> {
        BATCH.with(|b| b.borrow().0.clone())
    }

    #[test]
    fn a_batching_thread_holds_lines_until_flushed_or_full() {
        std::thread::spawn(|| {
            assert!(matches!(Stderr.make_writer(), LineWriter::Direct(_)));
            batch_this_thread();
            let mut w = Stderr.make_writer();
            w.write_all(b"one line\n").unwrap();
            assert_eq!(batched(), b"one line\n", "held back");
            flush_batch();
            assert!(batched().is_empty(), "written on flush");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_batch_asks_to_be_written_once_full() {
        let mut batch = Batch(Vec::new());
        assert!(!batch.push(&vec![b'x'; BATCH_BYTES - 1]));
        assert!(batch.push(b"\n"));
        batch.0.clear(); // nothing to write when dropped
    }
}

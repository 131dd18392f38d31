//! SIGTERM and SIGINT as one future, for every subcommand that runs until told to stop.

use std::future::Future;
use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// The signal that asked for the shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (`kill`, service managers).
    Term,
    /// SIGINT (Ctrl-C).
    Int,
}

impl Signal {
    /// The signal's name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }
}

/// Watches SIGTERM and SIGINT from now on (call it on a tokio runtime); the future
/// resolves on the first of them that arrives. A registration failure is the error.
pub fn watch() -> io::Result<impl Future<Output = Signal>> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot watch SIGINT: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Signal::Term,
            _ = int.recv() => Signal::Int,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_with_the_signal_that_arrived() {
        let stop = watch().expect("signal handlers");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise");
        assert_eq!(stop.await, Signal::Term);
    }
}

//! Usage errors: invalid input from the person at the keyboard.
//!
//! A subcommand returns [`UsageError`] (inside `anyhow::Error`) when the arguments parse
//! but make no sense (no backends, a duplicate backend, a zero duration). `main` prints it
//! as one line and exits with code 2, like clap does for arguments that do not parse.

/// An argument that parsed but is not acceptable; the message says what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    /// Builds a usage error from anything printable.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Exit code for usage errors, the same as clap's.
pub const USAGE_EXIT_CODE: u8 = 2;

//! Scenario files: the model, the two-stage parser and the validation errors.
//!
//! - [`written`]: the file as written (serde, unknown keys rejected, values spanned).
//! - [`validate`]: [`written`] -> [`Scenario`], every problem located by file, line and column.
//! - [`model`]: the validated scenario the runner executes.
//! - [`balancers`]: which balancers a scenario runs against, and a user's own.
//! - [`error`]: [`ScenarioError`] and its rustc-like display.
//!
//! [`load`] reads and validates one file; [`discover`] expands directories.

pub mod balancers;
pub mod error;
pub mod model;
pub mod validate;
pub mod written;

use std::path::{Path, PathBuf};

pub use balancers::*;
pub use error::{ScenarioError, ScenarioErrors};
pub use model::*;
pub use validate::parse_str;

/// Reads and validates one scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        ScenarioErrors(vec![ScenarioError::whole_file(
            path,
            format!("cannot read the scenario file: {e}"),
        )])
    })?;
    parse_bytes(path, &bytes)
}

/// Parses and validates a file's bytes: text that is not UTF-8 is refused at its first
/// invalid byte.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Scenario, ScenarioErrors> {
    match std::str::from_utf8(bytes) {
        Ok(source) => parse_str(path, source),
        Err(e) => {
            // The text before the bad byte is valid, so its offset is the same in the
            // lossy copy, which the error shows.
            let shown = String::from_utf8_lossy(bytes);
            let at = e.valid_up_to();
            Err(ScenarioErrors(vec![ScenarioError::at(
                path,
                &shown,
                at..at + 1,
                format!("byte 0x{:02x} is not UTF-8 text", bytes[at]),
                Some("a file in UTF-8".into()),
            )]))
        }
    }
}

/// Every scenario file named or found (`*.toml`, sorted) in the directories named.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            out.extend(found);
        } else if path.exists() {
            out.push(path.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or directory", path.display()),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

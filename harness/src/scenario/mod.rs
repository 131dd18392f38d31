//! Scenario files: the model, the two-stage parser and the validation errors.
//!
//! - [`raw`]: the file as written (serde, unknown keys rejected, values spanned).
//! - [`validate`]: raw -> [`Scenario`], every problem located by file, line and column.
//! - [`model`]: the validated scenario the runner executes.
//! - [`error`]: [`ScenarioError`] and its rustc-like display.
//!
//! [`load`] reads and validates one file; [`discover`] expands directories.

pub mod error;
pub mod model;
pub mod raw;
pub mod validate;

use std::path::{Path, PathBuf};

pub use error::{ScenarioError, ScenarioErrors};
pub use model::*;
pub use validate::parse_str;

/// Reads and validates one scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ScenarioErrors(vec![ScenarioError::whole_file(
            path,
            format!("cannot read the scenario file: {e}"),
        )])
    })?;
    parse_str(path, &source)
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

//! Errors of a scenario file: file, line, column, what is wrong and what was expected.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a scenario file, located by line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line of the offending text (0 when the file could not be read).
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What would have been accepted, when that can be said.
    pub expected: Option<String>,
    /// The source line, for display.
    pub source_line: String,
    /// Width of the caret under the offending text (at least 1).
    pub width: usize,
}

/// Where each line of a text starts, found once, so that locating an error (or a step's
/// line) is a binary search and not a count of the newlines before it.
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    source: &'a str,
    /// Byte offset of the first character of each line; `starts[0] == 0`.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the lines of `source`.
    pub fn new(source: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { source, starts }
    }

    /// The 1-based line holding byte `offset` (the last line past the end).
    pub fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }

    /// An error located at byte range `span` of the indexed text.
    pub fn error(
        &self,
        file: &Path,
        span: Range<usize>,
        message: impl Into<String>,
        expected: Option<String>,
    ) -> ScenarioError {
        let source = self.source;
        let mut start = span.start.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let line = self.line_of(start);
        let line_start = self.starts[line - 1];
        let line_end = self
            .starts
            .get(line)
            .map_or(source.len(), |next_start| next_start - 1);
        let column = source[line_start..start].chars().count() + 1;
        let mut end = span.end.clamp(start, line_end);
        while !source.is_char_boundary(end) {
            end += 1;
        }
        let width = source[start..end].chars().count().max(1);
        ScenarioError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            expected,
            source_line: displayable(&source[line_start..line_end]),
            width,
        }
    }
}

impl ScenarioError {
    /// An error located at byte range `span` of `source` (for one error; index the lines
    /// with [`LineIndex`] to locate many).
    pub fn at(
        file: &Path,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
        expected: Option<String>,
    ) -> Self {
        LineIndex::new(source).error(file, span, message, expected)
    }

    /// An error about the file as a whole (unreadable, ...).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            expected: None,
            source_line: String::new(),
            width: 1,
        }
    }
}

/// A source line as shown under an error: the `\r` of a CRLF ending removed, other control
/// characters but tab as their Unicode pictures (`\r` as `␍`: printed raw, a stray one
/// would move the terminal's cursor back over the line). One character for one, so the
/// caret's column still lines up.
fn displayable(line: &str) -> String {
    line.strip_suffix('\r')
        .unwrap_or(line)
        .chars()
        .map(|c| match c {
            '\t' => c,
            c if u32::from(c) < 0x20 => char::from_u32(0x2400 + u32::from(c)).unwrap_or('?'),
            '\u{7f}' => '\u{2421}',
            c => c,
        })
        .collect()
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: error: {}", self.file.display(), self.message);
        }
        writeln!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.source_line)?;
        write!(
            f,
            "{:gutter$} | {}{}",
            "",
            caret_indent(&self.source_line, self.column),
            "^".repeat(self.width)
        )?;
        if let Some(expected) = &self.expected {
            write!(f, "\n{:gutter$} = expected: {expected}", "")?;
        }
        Ok(())
    }
}

/// What goes before the caret of an error at `column` (1-based) of `line`: a space per
/// character, a tab per tab, so the caret lands under its character either way.
fn caret_indent(line: &str, column: usize) -> String {
    line.chars()
        .chain(std::iter::repeat(' '))
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect()
}

impl std::error::Error for ScenarioError {}

/// Every problem found in one file (validation keeps going after the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

/// Errors of one file shown in full; the rest are counted (a generated or mangled file can
/// have thousands, and the first ones say what is wrong).
pub const MAX_SHOWN_ERRORS: usize = 20;

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().take(MAX_SHOWN_ERRORS).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{error}")?;
        }
        match self.0.len().saturating_sub(MAX_SHOWN_ERRORS) {
            0 => {}
            1 => writeln!(f, "\n... and 1 more error")?,
            more => writeln!(f, "\n... and {more} more errors")?,
        }
        match self.0.len() {
            1 => write!(f, "1 error; fix it and run `l4lb check` again"),
            n => write!(f, "{n} errors; fix them and run `l4lb check` again"),
        }
    }
}

impl ScenarioErrors {
    /// Checks that these errors, found in `text`, can be shown: at least one, each on a
    /// line of `text` and at a column of that line (at most one past its end: an error at
    /// the end of a line, or at a CRLF's `\r`). The fuzz target and the mutation test
    /// hold the parser to it; the error names the first one that is not.
    pub fn located_in(&self, text: &str) -> Result<(), String> {
        if self.0.is_empty() {
            return Err("an error result names no problem".into());
        }
        let lines = text.split('\n').count();
        for e in &self.0 {
            let on_a_line = (1..=lines).contains(&e.line);
            let in_the_line =
                e.column >= 1 && e.width >= 1 && e.column - 1 <= e.source_line.chars().count() + 1;
            if !on_a_line || !in_the_line {
                return Err(format!(
                    "error at line {} column {} (width {}) is outside the text's {lines} lines \
                     or its line {:?}: {e}",
                    e.line, e.column, e.width, e.source_line
                ));
            }
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

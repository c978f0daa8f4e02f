//! Positions in the configuration files users write (rule packs, inventories), so every error can name the
//! file, line and column to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A place in a file: `inventory.toml:12:5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line and column (both 1-based) of byte `offset` in `text`.
    pub fn of(file: &Path, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        Location { file: file.to_owned(), line, column }
    }

    /// Where a span starts, or the top of the file when the span is unknown.
    pub fn of_span(file: &Path, text: &str, span: Option<Range<usize>>) -> Location {
        Location::of(file, text, span.map_or(0, |s| s.start))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A TOML syntax or shape error, reduced to its location and one-line message.
pub fn toml_error(file: &Path, text: &str, err: &toml::de::Error) -> (Location, String) {
    (Location::of_span(file, text, err.span()), err.message().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        let p = Path::new("f.toml");
        assert_eq!(Location::of(p, text, 0).to_string(), "f.toml:1:1");
        assert_eq!(Location::of(p, text, 6).to_string(), "f.toml:2:1");
        assert_eq!(Location::of(p, text, 10).to_string(), "f.toml:2:4");
        assert_eq!(Location::of(p, text, 999).line, 3);
    }
}

//! The tail of a log file, read a little at a time: the lines appended since the last read.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// How far back the first read starts: the page shows the last lines, not the whole log.
const FIRST_READ: u64 = 64 * 1024;
/// Most read in one call (the rest comes next time): a burst of logging must not stall.
const MOST_PER_READ: u64 = 1 << 20;

pub struct LogTail {
    path: PathBuf,
    offset: Option<u64>,
    partial: String,
}

impl LogTail {
    pub fn new(path: PathBuf) -> LogTail {
        LogTail {
            path,
            offset: None,
            partial: String::new(),
        }
    }

    /// Complete lines appended since the last call (none if the file cannot be read).
    pub fn read_new(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut start = match self.offset {
            None => len.saturating_sub(FIRST_READ),
            Some(o) if o > len => 0, // truncated or replaced: from the start
            Some(o) => o,
        };
        let skip_partial_first = self.offset.is_none() && start > 0;
        if start > len {
            start = len;
        }
        if f.seek(SeekFrom::Start(start)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let n = f
            .take(MOST_PER_READ)
            .read_to_end(&mut buf)
            .unwrap_or_default();
        self.offset = Some(start + n as u64);
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        if skip_partial_first {
            // The first read began mid-line: drop that fragment.
            text = text
                .split_once('\n')
                .map(|x| x.1.to_string())
                .unwrap_or_default();
        }
        split_lines(&mut self.partial, &text)
    }
}

/// Appends `chunk` to `partial` and returns the complete lines; what follows the last
/// newline stays in `partial`.
pub fn split_lines(partial: &mut String, chunk: &str) -> Vec<String> {
    partial.push_str(chunk);
    let Some(end) = partial.rfind('\n') else {
        return Vec::new();
    };
    let rest = partial.split_off(end + 1);
    let lines = partial.lines().map(str::to_string).collect();
    *partial = rest;
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_are_given_whole_once() {
        let mut p = String::new();
        assert_eq!(split_lines(&mut p, "a\nb"), vec!["a"]);
        assert_eq!(split_lines(&mut p, "c\n"), vec!["bc"]);
        assert!(split_lines(&mut p, "").is_empty());
    }

    #[test]
    fn a_growing_file_is_followed_and_a_truncated_one_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let mut t = LogTail::new(path.clone());
        assert_eq!(t.read_new(), vec!["one", "two"]);
        assert!(t.read_new().is_empty());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "three\nfo").unwrap();
        assert_eq!(t.read_new(), vec!["three"]);
        writeln!(f, "ur").unwrap();
        assert_eq!(t.read_new(), vec!["four"]);
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(t.read_new(), vec!["new"]);
    }
}

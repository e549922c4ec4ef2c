//! Captured output of a process under test.
//!
//! A reader thread per stream (stdout, stderr) splits the bytes into lines and appends them to one
//! shared, bounded log, each line prefixed with `[name] ` so that the output of several servers
//! interleaved in one failing test stays readable. The log outlives restarts: the lines of every
//! incarnation are kept in order, separated by lines the harness itself adds (`spawned pid N`,
//! `exited: ...`).
//!
//! # Limits
//!
//! A chatty server must not exhaust the test's memory, so the log keeps at most
//! [`LOG_LINES_MAX`] lines (the oldest are dropped, and a marker line says how many) and each line
//! at most [`LOG_LINE_BYTES_MAX`] bytes (the rest of the line is dropped and the line is marked).
//! A process that never writes a newline therefore costs at most one line's worth of memory.
//!
//! # Echo
//!
//! Lines can also be written out as they arrive: to stderr with the `[name] ` prefix when the
//! environment has `HARNESS_LOG=1` (watching a test), or to stdout after a prefix of the
//! spec's choosing ([`crate::ProcessSpec::echo`]: the cluster launcher's coloured `name | `).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

/// Most lines a process log keeps; older ones are dropped first.
pub const LOG_LINES_MAX: usize = 10_000;

/// Longest line kept, in bytes, before the `[name] ` prefix; longer lines are cut.
pub const LOG_LINE_BYTES_MAX: usize = 4 * 1024;

/// Bytes read from a pipe at once.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// Environment variable that, set to `1`, echoes every captured line to stderr as it arrives.
const ECHO_ENV: &str = "HARNESS_LOG";

/// The shared log of one [`crate::Process`], appended to by its reader threads.
#[derive(Debug)]
pub(crate) struct ProcessLog {
    prefix: String,
    echo: Echo,
    lines: Mutex<Lines>,
}

/// Where lines go as they arrive, besides the log.
#[derive(Debug)]
enum Echo {
    Off,
    /// `HARNESS_LOG=1`: to stderr, with the log's own prefix.
    Stderr,
    /// To stdout after this prefix.
    Stdout(String),
}

#[derive(Debug, Default)]
struct Lines {
    kept: VecDeque<String>,
    dropped: u64,
}

impl ProcessLog {
    /// A log whose lines are prefixed `[name] `; `echo` is a prefix for echoing every line to
    /// stdout as it arrives.
    pub(crate) fn new(name: &str, echo: Option<&str>) -> Arc<ProcessLog> {
        let echo = match echo {
            Some(prefix) => Echo::Stdout(prefix.to_owned()),
            None if std::env::var(ECHO_ENV).is_ok_and(|v| v == "1") => Echo::Stderr,
            None => Echo::Off,
        };
        Arc::new(ProcessLog {
            prefix: format!("[{name}] "),
            echo,
            lines: Mutex::new(Lines::default()),
        })
    }

    /// Appends one line of the process's output, or a note from the harness.
    pub(crate) fn push(&self, text: &str) {
        let line = format!("{}{text}", self.prefix);
        match &self.echo {
            Echo::Off => {}
            Echo::Stderr => eprintln!("{line}"),
            Echo::Stdout(prefix) => {
                // A closed stdout (`cluster up | head`) must not take the reader thread down.
                let _ = writeln!(std::io::stdout().lock(), "{prefix}{text}");
            }
        }
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.kept.len() == LOG_LINES_MAX {
            lines.kept.pop_front();
            lines.dropped += 1;
        }
        lines.kept.push_back(line);
    }

    /// The whole log as one string, one line per line, starting with a marker if lines were
    /// dropped.
    pub(crate) fn render(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        if lines.dropped > 0 {
            out.push_str(&format!(
                "{}... {} earlier lines dropped (LOG_LINES_MAX = {LOG_LINES_MAX}) ...\n",
                self.prefix, lines.dropped
            ));
        }
        for line in &lines.kept {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Starts a thread that copies `stream` into `log` line by line until end of file.
///
/// The thread is started from the caller's thread on purpose: under `cargo test` a thread inherits
/// the output capture of the thread that spawned it, so echoed lines land with the right test.
pub(crate) fn capture(
    stream: impl Read + Send + 'static,
    log: Arc<ProcessLog>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("harness-log {}", log.prefix.trim()))
        .spawn(move || copy_lines(stream, &log))
}

fn copy_lines(mut stream: impl Read, log: &ProcessLog) {
    let mut splitter = LineSplitter::default();
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => splitter.feed(&chunk[..n], |line| log.push(line)),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log.push(&format!("(harness: reading output failed: {e})"));
                break;
            }
        }
    }
    splitter.finish(|line| log.push(line));
}

/// Splits a byte stream into lines of at most [`LOG_LINE_BYTES_MAX`] bytes.
#[derive(Debug, Default)]
struct LineSplitter {
    /// Bytes of the current, unfinished line; never longer than `LOG_LINE_BYTES_MAX`.
    pending: Vec<u8>,
    /// The current line was longer than the limit; its tail is being skipped.
    truncated: bool,
}

impl LineSplitter {
    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&str)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            let (piece, rest) = match end {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            let room = LOG_LINE_BYTES_MAX - self.pending.len();
            self.pending
                .extend_from_slice(&piece[..piece.len().min(room)]);
            self.truncated |= piece.len() > room;
            if end.is_some() {
                self.emit_line(&mut emit);
            }
            bytes = rest;
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.pending.is_empty() || self.truncated {
            self.emit_line(&mut emit);
        }
    }

    fn emit_line(&mut self, emit: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.pending);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if self.truncated {
            emit(&format!(
                "{text} ... (line cut at LOG_LINE_BYTES_MAX = {LOG_LINE_BYTES_MAX})"
            ));
        } else {
            emit(text);
        }
        self.pending.clear();
        self.truncated = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |l| lines.push(l.to_owned()));
        }
        splitter.finish(|l| lines.push(l.to_owned()));
        lines
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let lines = split(&[b"hel", b"lo\nwor", b"ld\r\n", b"tail"]);
        assert_eq!(lines, ["hello", "world", "tail"]);
    }

    #[test]
    fn an_overlong_line_is_cut_and_marked() {
        let long = vec![b'x'; LOG_LINE_BYTES_MAX + 10];
        let lines = split(&[&long, b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&"x".repeat(LOG_LINE_BYTES_MAX)));
        assert!(lines[0].ends_with("(line cut at LOG_LINE_BYTES_MAX = 4096)"));
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn the_log_drops_its_oldest_lines_with_a_marker() {
        let log = ProcessLog::new("srv", None);
        for i in 0..LOG_LINES_MAX + 5 {
            log.push(&i.to_string());
        }
        let text = log.render();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("[srv] ... 5 earlier lines dropped (LOG_LINES_MAX = 10000) ...")
        );
        assert_eq!(lines.next(), Some("[srv] 5"));
        assert_eq!(text.lines().count(), LOG_LINES_MAX + 1);
    }
}

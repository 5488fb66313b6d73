//! Everything the client commands print goes through [`line`] (or [`outln!`]): a reader that
//! stopped reading (`restock stock | head -1`, `restock replenishments | true`) is a normal,
//! quiet end of the command, not a panic ("failed printing to stdout: Broken pipe", which
//! `println!` gives).

use std::fmt;
use std::io::Write;

/// Stdout was closed by its reader: the command stops printing and exits 0, quietly.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `text` and a newline to stdout, flushed. A closed pipe is [`StdoutClosed`]; any
/// other write error is reported as such.
pub(crate) fn line(text: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("writing to stdout")),
    }
}

/// Writes `bytes` to stdout as they are (generated scripts, pages), flushed; like [`line`].
pub(crate) fn bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("writing to stdout")),
    }
}

/// Whether `err` is (or was caused by) [`StdoutClosed`].
pub(crate) fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// `println!` for client commands: writes through [`line`] and evaluates to its
/// `anyhow::Result<()>`, so a closed stdout ends the command quietly (`outln!(...)?`).
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_stdout_is_recognised_through_context() {
        let err = anyhow::Error::new(StdoutClosed).context("printing the stock table");
        assert!(is_stdout_closed(&err));
        assert!(!is_stdout_closed(&anyhow::anyhow!("other")));
    }
}

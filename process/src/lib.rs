//! Child processes for `restock dev`, the integration tests and the benchmark: one way to
//! start a process with its output in a log file, notice that it died (and show why), wait
//! until something it serves is ready, and stop it by its pid — politely first, then for good.
//!
//! # Layout
//! - [`Supervised`]: one child process, killed and reaped when dropped, so a panicking test
//!   or a failed start never leaves one behind.
//! - [`wait_until`] (and [`wait_until_every`]): polls a readiness check until it passes, a watched child exits, or time
//!   runs out; the error says which, with the end of the child's log.
//!
//! Signals go through the `kill` command: the workspace forbids `unsafe`, which `libc::kill`
//! would need.

use std::fmt::Display;
use std::fs::OpenOptions;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How many lines of a child's log an error shows.
const LOG_TAIL_LINES: usize = 20;

/// The first and the longest pause between two readiness checks of [`wait_until`]: quick for
/// what is up at once, light for what takes seconds.
const FIRST_POLL: Duration = Duration::from_millis(10);
const LONGEST_POLL: Duration = Duration::from_millis(100);

/// A running child process with its stdout and stderr in a log file. Dropping it kills the
/// process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
    /// Started in a process group of its own: signals go to the whole group (a child's own
    /// children too), and a terminal's Ctrl-C does not reach it.
    own_group: bool,
}

/// Why [`wait_until`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// A watched child exited first.
    #[error("the {name} exited ({status}) while waiting for {what}; its log ({log}) ends:\n{tail}")]
    Exited {
        /// What was awaited.
        what: String,
        /// The child that exited.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// The check did not pass in time.
    #[error("{what}: not ready within {timeout:?} (last check: {last})")]
    TimedOut {
        /// What was awaited.
        what: String,
        /// How long it was given.
        timeout: Duration,
        /// What the last check said.
        last: String,
    },
}

impl Supervised {
    /// Starts `command` as `name` (used in messages), appending its stdout and stderr to
    /// `log`; stdin is closed. It stays in the caller's process group, so a Ctrl-C that
    /// stops a test run stops it too.
    pub fn spawn(name: &str, command: Command, log: &Path) -> io::Result<Supervised> {
        Self::start(name, command, log, false)
    }

    /// [`Supervised::spawn`] in a process group of its own: a terminal's Ctrl-C reaches only
    /// the parent (which then stops its children in its own order), and signals reach the
    /// child's own children too (a browser under its driver).
    pub fn spawn_in_own_group(name: &str, command: Command, log: &Path) -> io::Result<Supervised> {
        Self::start(name, command, log, true)
    }

    fn start(
        name: &str,
        mut command: Command,
        log: &Path,
        own_group: bool,
    ) -> io::Result<Supervised> {
        let file = OpenOptions::new().create(true).append(true).open(log)?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if own_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("starting the {name} ({:?}): {e}", command.get_program()),
            )
        })?;
        Ok(Supervised {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            own_group,
        })
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// How it ended, once it has (reaping it); `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (a name `kill` knows: `TERM`, `INT`, `KILL`, ...) to the process, or to
    /// its group when it has its own. False when `kill` failed (it had already exited).
    pub fn signal(&self, signal: &str) -> bool {
        let target = if self.own_group {
            format!("-{}", self.pid())
        } else {
            self.pid().to_string()
        };
        Command::new("kill")
            .args([format!("-{signal}").as_str(), "--", &target])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace`, then kills it (SIGKILL). Returns
    /// how it ended, or `None` when it had to be killed.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        self.signal("TERM");
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        None
    }

    /// Kills it at once (SIGKILL: no chance to clean up) and reaps it. Does nothing when it
    /// has already exited.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            if !self.signal("KILL") {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }

    /// A `kB` field of `/proc/<pid>/status` (e.g. `VmRSS:`, `VmHWM:`), in KiB; `None` once
    /// it has exited.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn exited_error(&mut self, what: &str) -> Option<NotReady> {
        let status = self.exited()?;
        Some(NotReady::Exited {
            what: what.to_owned(),
            name: self.name.clone(),
            status,
            log: self.log.display().to_string(),
            tail: self.log_tail(LOG_TAIL_LINES),
        })
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A readiness check: an async closure answering `Ok(value)` when ready, else an error
/// that says what is missing (the timeout reports the last one).
pub trait Check {
    /// What a passing check gives.
    type Ready;
    /// One check.
    fn check(&mut self) -> impl Future<Output = Result<Self::Ready, String>>;
}

impl<T, E, F, Fut> Check for F
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Ready = T;

    async fn check(&mut self) -> Result<T, String> {
        self().await.map_err(|e| e.to_string())
    }
}

/// Polls `check` until it passes, one of `watch` exits, or `timeout` passes. Pauses grow
/// from 10 ms to 100 ms between checks.
pub async fn wait_until<C: Check>(
    what: &str,
    timeout: Duration,
    watch: &mut [Supervised],
    check: C,
) -> Result<C::Ready, NotReady> {
    poll(what, timeout, None, watch, check).await
}

/// [`wait_until`] checking every `every`, for a caller that times what it waits for (the
/// benchmark) and so wants a fixed, known polling error.
pub async fn wait_until_every<C: Check>(
    what: &str,
    timeout: Duration,
    every: Duration,
    watch: &mut [Supervised],
    check: C,
) -> Result<C::Ready, NotReady> {
    poll(what, timeout, Some(every), watch, check).await
}

async fn poll<C: Check>(
    what: &str,
    timeout: Duration,
    every: Option<Duration>,
    watch: &mut [Supervised],
    mut check: C,
) -> Result<C::Ready, NotReady> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = every.unwrap_or(FIRST_POLL);
    loop {
        let last = match check.check().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        for child in watch.iter_mut() {
            if let Some(exited) = child.exited_error(what) {
                return Err(exited);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NotReady::TimedOut {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(pause).await;
        if every.is_none() {
            pause = (pause * 2).min(LONGEST_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[tokio::test]
    async fn a_child_that_exits_ends_the_wait_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dies.log");
        let mut child =
            vec![Supervised::spawn("dier", sh("echo bad config; exit 3"), &log).unwrap()];
        let err = wait_until("it", Duration::from_secs(30), &mut child, || async {
            Err::<(), _>("not yet")
        })
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NotReady::Exited { .. }), "{text}");
        assert!(text.contains("the dier exited"), "{text}");
        assert!(text.contains("bad config"), "{text}");
    }

    #[tokio::test]
    async fn the_timeout_reports_the_last_check() {
        let err = wait_until("the answer", Duration::from_millis(50), &mut [], || async {
            Err::<(), _>("still 41")
        })
        .await
        .unwrap_err();
        assert!(matches!(err, NotReady::TimedOut { .. }));
        assert!(err.to_string().contains("still 41"), "{err}");
    }

    #[tokio::test]
    async fn a_passing_check_gives_its_value() {
        let mut calls = 0;
        let value = wait_until("three calls", Duration::from_secs(30), &mut [], || {
            calls += 1;
            let ready = calls >= 3;
            async move {
                if ready {
                    Ok(calls)
                } else {
                    Err("fewer than 3")
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn stop_ends_a_child_politely_and_kills_one_that_ignores_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut polite =
            Supervised::spawn("polite", sh("exec sleep 60"), &dir.path().join("p.log")).unwrap();
        assert!(
            polite.stop(Duration::from_secs(10)).await.is_some(),
            "sleep ends on SIGTERM"
        );

        let mut stubborn = Supervised::spawn_in_own_group(
            "stubborn",
            sh("trap '' TERM; echo ready; while true; do sleep 1; done"),
            &dir.path().join("s.log"),
        )
        .unwrap();
        wait_until("the trap set", Duration::from_secs(30), &mut [], || {
            let tail = stubborn.log_tail(1);
            async move { if tail == "ready" { Ok(()) } else { Err(tail) } }
        })
        .await
        .unwrap();
        assert!(
            stubborn.stop(Duration::from_millis(300)).await.is_none(),
            "it had to be killed"
        );
        assert!(stubborn.exited().is_some());
    }

    #[test]
    fn dropping_kills_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let child =
            Supervised::spawn("sleeper", sh("exec sleep 60"), &dir.path().join("z.log")).unwrap();
        let pid = child.pid();
        drop(child);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} is gone"
        );
    }
}

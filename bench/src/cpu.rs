//! Where a measured window's CPU time went, per operation: the whole machine's busy time
//! (`/proc/stat`) and that of the run's own processes (`/proc/<pid>/stat`): the load
//! generator (this process), the gateway, PostgreSQL's processes, the Temporal server and
//! restock's other processes. Beside a rate it shows
//! what each operation cost, so the report can tell a ratio the code could still gain from
//! one this machine's two cores cannot reach (BENCHMARKS.md, *Method*).
//!
//! Figures are shares of the machine's CPU time turned into microseconds per operation
//! (`share × cores × 1,000,000 ÷ rate`), so no clock-tick size is assumed.

use std::collections::HashMap;

/// The processes whose CPU time a window counts besides the whole machine's.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// The gateway under test.
    pub gateway: Option<u32>,
    /// Whether to count PostgreSQL's processes (the server and its backends).
    pub postgres: bool,
    /// The Temporal server.
    pub temporal: Option<u32>,
    /// restock's other processes (worker, factory simulator), counted together.
    pub others: Vec<u32>,
}

/// The CPU counters at one instant.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The machine's idle and total ticks (all CPUs).
    machine: Option<(u64, u64)>,
    /// CPUs in `/proc/stat`.
    cores: usize,
    /// This process (the load generator).
    generator: Option<u64>,
    /// The gateway.
    gateway: Option<u64>,
    /// PostgreSQL's processes by pid, when watched.
    postgres: Option<HashMap<u32, u64>>,
    /// The Temporal server.
    temporal: Option<u64>,
    /// The other processes, summed (`None` when none is watched or one cannot be read).
    others: Option<u64>,
}

impl Reading {
    /// Reads the machine's counters and those of `watch`.
    pub fn now(watch: &Watch) -> Reading {
        let (machine, cores) = machine_ticks().unzip();
        Reading {
            machine,
            cores: cores.unwrap_or(0),
            generator: process_ticks(std::process::id()),
            gateway: watch.gateway.and_then(process_ticks),
            postgres: watch.postgres.then(|| {
                postgres_pids()
                    .into_iter()
                    .filter_map(|pid| Some((pid, process_ticks(pid)?)))
                    .collect()
            }),
            temporal: watch.temporal.and_then(process_ticks),
            others: (!watch.others.is_empty())
                .then(|| watch.others.iter().map(|&pid| process_ticks(pid)).sum())
                .flatten(),
        }
    }
}

/// CPU time per operation over a window, in microseconds (`None`: not measured there).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuPerOp {
    /// Share of the machine's CPU time that was idle (0 to 1; I/O wait counts as idle).
    pub idle: Option<f64>,
    /// The whole machine's busy time: every process, the kernel, and any neighbour.
    pub machine_us: Option<f64>,
    /// The load generator's.
    pub generator_us: Option<f64>,
    /// The gateway's (on SQLite the database's too: it runs inside the gateway).
    pub gateway_us: Option<f64>,
    /// PostgreSQL's processes' (those alive through the whole window).
    pub database_us: Option<f64>,
    /// The Temporal server's.
    pub temporal_us: Option<f64>,
    /// restock's other processes' (worker, factory simulator).
    pub others_us: Option<f64>,
}

impl CpuPerOp {
    /// The window from `from` to `to`, in which `per_second` operations ran a second.
    pub fn between(from: &Reading, to: &Reading, per_second: f64) -> CpuPerOp {
        let Some((idle0, total0)) = from.machine else {
            return CpuPerOp::default();
        };
        let Some((idle1, total1)) = to.machine else {
            return CpuPerOp::default();
        };
        let Some(total) = total1.checked_sub(total0).filter(|t| *t > 0) else {
            return CpuPerOp::default();
        };
        let idle = idle1.saturating_sub(idle0);
        let cores = to.cores.max(1) as f64;
        // Microseconds per operation of `ticks` of the window's `total`.
        let per_op = |ticks: u64| {
            (per_second > 0.0)
                .then(|| ticks as f64 / total as f64 * cores * 1_000_000.0 / per_second)
        };
        let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        let database = match (&from.postgres, &to.postgres) {
            (Some(before), Some(after)) => Some(
                after
                    .iter()
                    .filter_map(|(pid, t)| Some(t.saturating_sub(*before.get(pid)?)))
                    .sum(),
            ),
            _ => None,
        };
        CpuPerOp {
            idle: Some(idle as f64 / total as f64),
            machine_us: per_op(total.saturating_sub(idle)),
            generator_us: delta(from.generator, to.generator).and_then(per_op),
            gateway_us: delta(from.gateway, to.gateway).and_then(per_op),
            database_us: database.and_then(per_op),
            temporal_us: delta(from.temporal, to.temporal).and_then(per_op),
            others_us: delta(from.others, to.others).and_then(per_op),
        }
    }
}

/// The machine's idle and total CPU time so far (`/proc/stat`'s first line, in ticks; idle
/// counts I/O wait too) and how many CPUs it sums.
fn machine_ticks() -> Option<((u64, u64), usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let ticks: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let total = ticks.iter().take(8).sum();
    let cores = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l[3..].starts_with(|c: char| c.is_ascii_digit()))
        .count();
    Some(((idle, total), cores))
}

/// User and system CPU time of `pid` so far, in ticks (`/proc/<pid>/stat`).
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_ticks(&stat)
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`: the state is field 3,
/// utime 14 and stime 15.
fn parse_process_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// PostgreSQL's processes on this machine: command name `postgres` (the server and every
/// backend, whatever their title).
fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(idle: u64, total: u64, generator: u64, pg: &[(u32, u64)]) -> Reading {
        Reading {
            machine: Some((idle, total)),
            cores: 2,
            generator: Some(generator),
            gateway: None,
            postgres: Some(pg.iter().copied().collect()),
            temporal: Some(generator * 2),
            others: None,
        }
    }

    #[test]
    fn shares_of_the_window_become_microseconds_per_operation() {
        // 1 s on 2 CPUs = 200 ticks: 50 idle; the generator 40, PostgreSQL 60 (pid 2 ended,
        // pid 3 began within the window: neither counts).
        let from = reading(1_000, 10_000, 500, &[(1, 100), (2, 50)]);
        let to = reading(1_050, 10_200, 540, &[(1, 160), (3, 30)]);
        let cpu = CpuPerOp::between(&from, &to, 10_000.0);
        assert_eq!(cpu.idle, Some(0.25));
        // 150 of 200 ticks busy = 1.5 CPUs for 10,000 operations a second: 150 µs each.
        assert_eq!(cpu.machine_us, Some(150.0));
        assert_eq!(cpu.generator_us, Some(40.0));
        assert_eq!(cpu.database_us, Some(60.0));
        assert_eq!(cpu.temporal_us, Some(80.0));
        assert_eq!(cpu.gateway_us, None);
        assert_eq!(cpu.others_us, None);
    }

    #[test]
    fn no_time_or_no_reading_gives_no_figure_rather_than_a_made_up_one() {
        let same = reading(1_000, 10_000, 500, &[]);
        assert_eq!(CpuPerOp::between(&same, &same, 10.0), CpuPerOp::default());
        assert_eq!(
            CpuPerOp::between(&Reading::default(), &same, 10.0),
            CpuPerOp::default()
        );
        let later = reading(1_050, 10_200, 540, &[]);
        assert_eq!(CpuPerOp::between(&same, &later, 0.0).machine_us, None);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped_whole() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        assert_eq!(parse_process_ticks(stat), Some(10));
    }

    #[test]
    fn this_machine_reports_its_own_and_this_process_cpu() {
        let r = Reading::now(&Watch::default());
        let ((idle, total), cores) = machine_ticks().expect("/proc/stat has a cpu line");
        assert!(total > 0 && idle <= total, "idle {idle} of {total}");
        assert!(cores >= 1 && r.cores == cores);
        assert!(r.generator.is_some(), "this process's /proc/self/stat");
        assert!(r.postgres.is_none());
    }
}

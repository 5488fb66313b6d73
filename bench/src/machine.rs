//! The machine and software a run measured, for the top of the report.

use std::process::Command;

use crate::plan::Plan;

/// What the report says about where it ran.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// PostgreSQL server version, when benchmarked.
    pub postgres: Option<String>,
    /// SQLite library version.
    pub sqlite: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Build profile of this binary.
    pub profile: &'static str,
    /// Git commit of the checkout.
    pub commit: String,
    /// When the run started (UTC).
    pub date: String,
}

impl Machine {
    /// One line.
    pub fn summary(&self) -> String {
        format!(
            "{} x {}, {:.0} GiB, {} build, commit {}",
            self.cpus, self.cpu, self.memory_gib, self.profile, self.commit
        )
    }
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The text `sql` answers on the database at `url`, if it answers.
async fn server_says(url: &str, sql: &str) -> Option<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(url).await.ok()?;
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .ok()
        .flatten();
    let text = row.and_then(|row| row.try_get_by_index::<String>(0).ok());
    db.close().await.ok();
    text
}

async fn sqlite_version() -> Option<String> {
    server_says("sqlite::memory:", "SELECT sqlite_version()").await
}

async fn postgres_version(url: &str) -> Option<String> {
    server_says(url, "SHOW server_version").await
}

/// Reads the machine description; what cannot be read is "unknown".
pub async fn describe(plan: &Plan) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let postgres = match &plan.postgres_url {
        Some(url) => postgres_version(url).await,
        None => None,
    };
    Machine {
        cpu,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_gib,
        kernel: command_line("uname", &["-r"]).unwrap_or_else(|| "unknown".to_owned()),
        postgres,
        sqlite: sqlite_version()
            .await
            .unwrap_or_else(|| "unknown".to_owned()),
        rustc: command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned()),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        commit: command_line("git", &["describe", "--always", "--dirty", "--abbrev=7"])
            .unwrap_or_else(|| "unknown".to_owned()),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

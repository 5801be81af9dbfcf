//! The ceiling: how many single-row INSERT transactions per second PostgreSQL itself commits on this machine,
//! measured with pgbench against a throwaway table in the same database, with the same number of clients as
//! the API run. Every accepted submission costs at least one such commit, so no API can beat this rate.

use super::LoadgenError;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The throwaway table; created before and dropped after each measurement.
pub const TABLE: &str = "bench_ceiling";

/// What pgbench runs.
#[derive(Debug, Clone)]
pub struct PgbenchOptions {
    pub database_url: String,
    pub clients: usize,
    pub threads: usize,
    pub duration: Duration,
    /// The jsonb document each INSERT stores (the API run's request body, so rows are of similar size).
    pub payload: String,
}

/// pgbench from PATH, else the newest `/usr/lib/postgresql/<version>/bin/pgbench` (Debian keeps it there).
pub fn find_pgbench() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbench"))
        .find(|candidate| candidate.is_file());
    in_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin/pgbench");
                bin.is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

/// The custom script: one INSERT, which pgbench runs as its own (autocommit) transaction.
pub fn script(payload: &str) -> String {
    format!("INSERT INTO {TABLE} (payload) VALUES ('{}');\n", payload.replace('\'', "''"))
}

/// The tps figure from pgbench's report. PostgreSQL 14+ prints one `tps = N (without initial connection
/// time)` line; older versions print an "including" and an "excluding connections establishing" line, of
/// which the excluding one is comparable.
pub fn parse_tps(output: &str) -> Option<f64> {
    let figures: Vec<(f64, &str)> = output
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("tps = ")?;
            let number = rest.split_whitespace().next()?.parse().ok()?;
            Some((number, rest))
        })
        .collect();
    figures
        .iter()
        .find(|(_, rest)| rest.contains("without initial") || rest.contains("excluding"))
        .or(figures.first())
        .map(|(tps, _)| *tps)
}

/// Runs fixed DDL (built from constants only, hence `AssertSqlSafe`) on a connection of its own.
async fn execute(database_url: &str, sql: String) -> Result<(), LoadgenError> {
    let mut conn = PgConnection::connect(database_url).await.map_err(LoadgenError::PgbenchSetup)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.map_err(LoadgenError::PgbenchSetup)?;
    // Closed before pgbench starts, so its clients get every free connection slot.
    conn.close().await.map_err(LoadgenError::PgbenchSetup)
}

async fn run_pgbench(pgbench: &Path, script_path: &Path, options: &PgbenchOptions) -> Result<f64, LoadgenError> {
    let clients = options.clients.max(1);
    let output = tokio::process::Command::new(pgbench)
        .arg("-n")
        .args(["-c", &clients.to_string()])
        .args(["-j", &options.threads.clamp(1, clients).to_string()])
        .args(["-T", &options.duration.as_secs().max(1).to_string()])
        .arg("-f")
        .arg(script_path)
        .arg(&options.database_url)
        .output()
        .await
        .map_err(LoadgenError::PgbenchSpawn)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(LoadgenError::PgbenchFailed {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    parse_tps(&stdout).ok_or_else(|| LoadgenError::PgbenchOutput { output: stdout.into_owned() })
}

/// Creates the table, runs pgbench, drops the table (also when pgbench failed) and returns the tps.
pub async fn insert_ceiling(options: &PgbenchOptions) -> Result<f64, LoadgenError> {
    let pgbench = find_pgbench().ok_or(LoadgenError::PgbenchMissing)?;
    execute(
        &options.database_url,
        format!(
            "DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} \
             (id bigserial PRIMARY KEY, payload jsonb, created_at timestamptz DEFAULT now())"
        ),
    )
    .await?;
    let script_path = std::env::temp_dir().join(format!("flow-like-loadgen-{}.sql", std::process::id()));
    let measured = match std::fs::write(&script_path, script(&options.payload)) {
        Ok(()) => run_pgbench(&pgbench, &script_path, options).await,
        Err(err) => Err(LoadgenError::PgbenchScript(err)),
    };
    let _ = std::fs::remove_file(&script_path);
    let dropped = execute(&options.database_url, format!("DROP TABLE IF EXISTS {TABLE}")).await;
    let tps = measured?;
    dropped?;
    Ok(tps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15_REPORT: &str = "transaction type: /tmp/x.sql
scaling factor: 1
query mode: simple
number of clients: 64
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 201234
number of failed transactions: 0 (0.000%)
latency average = 3.180 ms
initial connection time = 40.120 ms
tps = 20123.456789 (without initial connection time)
";

    const PG13_REPORT: &str = "latency average = 3.200 ms
tps = 19000.100000 (including connections establishing)
tps = 19500.250000 (excluding connections establishing)
";

    #[test]
    fn reads_the_tps_of_postgresql_15() {
        assert_eq!(parse_tps(PG15_REPORT), Some(20123.456789));
    }

    #[test]
    fn prefers_the_figure_without_connection_setup_on_older_versions() {
        assert_eq!(parse_tps(PG13_REPORT), Some(19500.25));
    }

    #[test]
    fn no_tps_line_is_none() {
        assert_eq!(parse_tps("pgbench: error: connection failed\n"), None);
    }

    #[test]
    fn the_script_is_one_insert_with_quotes_escaped() {
        assert_eq!(script(r#"{"a":"it's"}"#), "INSERT INTO bench_ceiling (payload) VALUES ('{\"a\":\"it''s\"}');\n");
    }

    /// pgbench against the shared test PostgreSQL: a positive rate, and the table is gone afterwards.
    #[tokio::test]
    async fn measures_a_rate_and_drops_its_table() {
        if find_pgbench().is_none() {
            eprintln!("pgbench not installed: skipped");
            return;
        }
        let api = flow_like_test_harness::TestApi::start().await.unwrap();
        let options = PgbenchOptions {
            database_url: api.configs.database.url.clone(),
            clients: 2,
            threads: 2,
            duration: Duration::from_secs(1),
            payload: r#"{"n":1}"#.into(),
        };
        let tps = insert_ceiling(&options).await.unwrap();
        assert!(tps > 0.0, "{tps}");
        let (left,): (Option<String>,) =
            sqlx::query_as("SELECT to_regclass('bench_ceiling')::text").fetch_one(&api.db).await.unwrap();
        assert_eq!(left, None);
    }
}

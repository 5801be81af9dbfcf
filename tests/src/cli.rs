//! Running the built `flow-like` command-line tool against a test API as a user would (its own process, its
//! settings from `FLOWLIKE_URL`/`FLOWLIKE_TOKEN`, stdout not a terminal), and the files its tests hand it.

use flow_like_test_harness::{TestApi, workspace_binary};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use uuid::Uuid;

/// How one run of the tool ended.
#[derive(Debug, Clone)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// Panics with both outputs unless the exit code is `code`.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// stdout as one JSON document per line (the `-o json` form).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON ({err}): {l}\n{}", self.stdout)))
            .collect()
    }

    /// The stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

/// Runs `flow-like args...` against `api` with `token` (none: no `FLOWLIKE_TOKEN`), failing after 120 s.
pub async fn flow_like(api: &TestApi, token: Option<&str>, args: &[&str]) -> CliRun {
    run_at(&api.base, token, args).await
}

/// Runs `flow-like args...` with `FLOWLIKE_URL=url`.
pub async fn run_at(url: &str, token: Option<&str>, args: &[&str]) -> CliRun {
    let binary = workspace_binary("flow-like").expect("the flow-like binary is built (cargo build --workspace --bins)");
    let mut command = tokio::process::Command::new(binary);
    command
        .args(args)
        .env("FLOWLIKE_URL", url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match token {
        Some(token) => command.env("FLOWLIKE_TOKEN", token),
        None => command.env_remove("FLOWLIKE_TOKEN"),
    };
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("flow-like {args:?} did not end within 120 s"))
        .expect("flow-like starts");
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fresh directory for the files a test hands the tool (removed when dropped).
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("flow-like-cli-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temp directory");
        Self { dir }
    }

    /// Writes `text` to `name`; returns its path as a string for the command line.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("a temp file");
        path.display().to_string()
    }

    /// Writes a JSON document to `name`.
    pub fn json(&self, name: &str, document: &Value) -> String {
        self.file(name, &document.to_string())
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The execution's status in PostgreSQL.
pub async fn status(api: &TestApi, id: &str) -> String {
    let id: Uuid = id.trim().parse().expect("an execution id");
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM executions WHERE id = $1").bind(id).fetch_one(&api.db).await.unwrap();
    status
}

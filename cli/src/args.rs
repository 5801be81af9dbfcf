//! The command line: global settings (`--url`/`FLOWLIKE_URL`, `--token`/`FLOWLIKE_TOKEN`, `-o table|json`) and
//! every command with its flags. Each command's `--help` ends with an example.

use crate::inputs::{self, WorkflowRef};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "flow-like",
    version,
    about = "Submit, follow and operate flow-like workflow executions through the HTTP API.",
    after_help = "Examples:\n  export FLOWLIKE_URL=http://127.0.0.1:8080 FLOWLIKE_TOKEN=<api key>\n  \
                  flow-like submit examples/invoice.json --input examples/invoice.input.json --watch\n  \
                  flow-like list --status failed --since 1h\n  \
                  flow-like -o json get <id>\n\n\
                  Exit codes: 0 success, 1 a watched execution ended other than succeeded, 2 a usage or API error."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the API is, who calls it, how answers are printed.
#[derive(Debug, Args)]
pub struct Settings {
    /// The API's base URL.
    #[arg(
        long,
        env = "FLOWLIKE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true,
        help_heading = "Settings"
    )]
    pub url: String,
    /// A tenant's API key, or the admin token for the admin commands.
    #[arg(long, env = "FLOWLIKE_TOKEN", hide_env_values = true, global = true, help_heading = "Settings")]
    pub token: Option<String>,
    /// `table` for people, `json` for scripts (the API's documents as returned, one per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table, global = true, help_heading = "Settings")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit an execution (a workflow file, or a registered workflow with --ref) and print its id.
    #[command(
        after_help = "Examples:\n  flow-like submit examples/invoice.json --input examples/invoice.input.json --watch\n  \
                            echo '{\"n\": 21}' | flow-like submit --ref double@2 --input - --label team=ops"
    )]
    Submit(Submit),
    /// Follow an execution live until it ends; then its outcome, timeline and output.
    #[command(after_help = "Example:\n  flow-like watch 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e\n\n\
                            Exits 1 when the execution ends other than succeeded.")]
    Watch(ExecutionId),
    /// Show one execution: status, timeline, why it waits.
    #[command(after_help = "Example:\n  flow-like get 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e")]
    Get(ExecutionId),
    /// List executions, newest first.
    #[command(after_help = "Examples:\n  flow-like list --status queued --workflow invoice\n  \
                            flow-like list --label team=ops --since 2h --limit 200\n  \
                            flow-like -o json list --since 1d | jq -r .id")]
    List(List),
    /// Print the result document of a finished execution: outcome, nodes, output.
    #[command(after_help = "Example:\n  flow-like result 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e")]
    Result(ExecutionId),
    /// Print the log lines of an attempt (the latest by default), or follow them while it runs.
    #[command(after_help = "Examples:\n  flow-like logs 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e --attempt 1\n  \
                            flow-like logs 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e --follow")]
    Logs(Logs),
    /// Say why a queued execution is not running yet, and its place in its tenant's queue.
    #[command(after_help = "Example:\n  flow-like why 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e")]
    Why(ExecutionId),
    /// Cancel executions by id, or every one matching a filter.
    #[command(after_help = "Examples:\n  flow-like cancel 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e\n  \
                            flow-like cancel --status queued --workflow nightly --dry-run\n  \
                            flow-like cancel --status queued --label batch=42 --since 1h")]
    Cancel(Cancel),
    /// The queue: per tenant and workflow what waits and runs, limits, wait times; the live dispatchers.
    #[command(
        after_help = "Examples:\n  flow-like queue\n  FLOWLIKE_TOKEN=$FLOWLIKE_ADMIN_TOKEN flow-like queue --tenant acme"
    )]
    Queue(Queue),
    /// Dead letters (admin): queue messages given up on, and their redrive.
    #[command(
        subcommand,
        name = "dead-letters",
        after_help = "Examples:\n  flow-like dead-letters list\n  flow-like dead-letters redrive --reason timeout"
    )]
    DeadLetters(DeadLetters),
    /// Registered workflows: register a version, read one.
    #[command(
        subcommand,
        after_help = "Examples:\n  flow-like workflows put invoice examples/invoice.json\n  flow-like submit --ref invoice --input examples/invoice.input.json"
    )]
    Workflows(Workflows),
    /// Tenants (admin): API keys, limits, pause and resume.
    #[command(
        subcommand,
        after_help = "Examples:\n  flow-like tenants create-key acme\n  flow-like tenants set-limits acme --concurrency 5\n  flow-like tenants pause acme"
    )]
    Tenants(Tenants),
}

#[derive(Debug, Args)]
pub struct Submit {
    /// The workflow document (JSON); leave out with --ref.
    #[arg(required_unless_present = "reference", conflicts_with = "reference")]
    pub file: Option<PathBuf>,
    /// A registered workflow instead of a file: NAME or NAME@VERSION (the latest version without @).
    #[arg(long = "ref", value_name = "NAME[@VERSION]", value_parser = inputs::workflow_ref)]
    pub reference: Option<WorkflowRef>,
    /// The execution's input: a JSON file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// 0 (lowest) to 9 (highest); the API's default is 5.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub priority: Option<u8>,
    /// A label, NAME=VALUE (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = inputs::label)]
    pub labels: Vec<(String, String)>,
    /// The same key and body return the execution submitted first instead of a new one.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Then follow the execution like `watch` (exit 1 when it does not succeed).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct ExecutionId {
    /// The execution id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct List {
    /// Only executions with this status (queued, dispatched, running, succeeded, failed, timed_out, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this workflow's.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only executions carrying this label, NAME=VALUE.
    #[arg(long, value_name = "K=V", value_parser = inputs::label)]
    pub label: Option<(String, String)>,
    /// Only those submitted within this long, e.g. 30m, 1h, 2d.
    #[arg(long, value_parser = inputs::since)]
    pub since: Option<Duration>,
    /// How many at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Admin: only this tenant's (every tenant's otherwise).
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct Logs {
    /// The execution id.
    pub id: String,
    /// The attempt, from 1 (the latest when absent).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: Option<u32>,
    /// Keep printing lines while the attempt runs, until it ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct Cancel {
    /// Execution ids; leave out to cancel by filter.
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: CancelFilter,
    /// Only count and list what the filter matches; cancel nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Which executions a bulk cancel takes (any of these makes it a bulk cancel).
#[derive(Debug, Args)]
pub struct CancelFilter {
    /// queued, dispatched or running (repeatable; all three when absent).
    #[arg(long = "status", value_name = "STATUS", value_delimiter = ',')]
    pub statuses: Vec<String>,
    /// Only this workflow's.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only executions carrying this label, NAME=VALUE (repeatable: all of them).
    #[arg(long = "label", value_name = "K=V", value_parser = inputs::label)]
    pub labels: Vec<(String, String)>,
    /// Admin: only this tenant's.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only those submitted within this long, e.g. 30m, 1h.
    #[arg(long, value_parser = inputs::since)]
    pub since: Option<Duration>,
}

impl CancelFilter {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
            && self.workflow.is_none()
            && self.labels.is_empty()
            && self.tenant.is_none()
            && self.since.is_none()
    }
}

#[derive(Debug, Args)]
pub struct Queue {
    /// Admin: only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    /// List dead letters, newest first.
    #[command(after_help = "Example:\n  FLOWLIKE_TOKEN=$FLOWLIKE_ADMIN_TOKEN flow-like dead-letters list")]
    List {
        /// How many at most.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Queue dead letters' executions for one more attempt: by entry id, or every one matching a filter.
    #[command(after_help = "Examples:\n  flow-like dead-letters redrive 1700000001000-0\n  \
                            flow-like dead-letters redrive --reason 'spec unreadable' --dry-run\n  \
                            flow-like dead-letters redrive --all")]
    Redrive(Redrive),
}

#[derive(Debug, Args)]
pub struct Redrive {
    /// Dead-letter entry ids (from `dead-letters list`).
    #[arg(conflicts_with_all = ["all", "reason", "tenant", "workflow", "dry_run"])]
    pub entries: Vec<String>,
    /// Every dead letter (narrowed by --reason, --tenant, --workflow).
    #[arg(long)]
    pub all: bool,
    /// Only letters whose reason contains this text.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only this tenant's.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this workflow's.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only count and list what matches; redrive nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum Workflows {
    /// Register a new version of a workflow from a file.
    #[command(after_help = "Example:\n  flow-like workflows put invoice examples/invoice.json")]
    Put {
        /// The workflow's name.
        name: String,
        /// The workflow document (JSON).
        file: PathBuf,
    },
    /// Show a registered workflow (its latest version, or --version N).
    #[command(
        after_help = "Examples:\n  flow-like workflows get invoice\n  flow-like -o json workflows get invoice --version 2"
    )]
    Get {
        name: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Tenants {
    /// Issue an API key for a tenant (created on first use); prints the key, shown only this once.
    #[command(
        name = "create-key",
        after_help = "Example:\n  KEY=$(FLOWLIKE_TOKEN=$FLOWLIKE_ADMIN_TOKEN flow-like tenants create-key acme)"
    )]
    CreateKey {
        tenant: String,
        /// An admin key (may call the admin commands).
        #[arg(long)]
        admin: bool,
    },
    /// Revoke an API key by its id.
    #[command(
        name = "revoke-key",
        after_help = "Example:\n  flow-like tenants revoke-key 0190f5c2-6a1e-7c3b-9d2e-3f4a5b6c7d8e"
    )]
    RevokeKey { key_id: String },
    /// Set a tenant's limits. Replaces them all: a limit not given falls back to the default.
    #[command(
        name = "set-limits",
        after_help = "Example:\n  flow-like tenants set-limits acme --concurrency 10 --workflow-concurrency 3 --weight 2 --submit-rate 50"
    )]
    SetLimits(SetLimits),
    /// Pause a tenant (or one of its workflows): nothing of it is admitted; what runs finishes.
    #[command(
        after_help = "Examples:\n  flow-like tenants pause acme\n  flow-like tenants pause acme --workflow nightly"
    )]
    Pause(PauseTarget),
    /// Resume a paused tenant (or workflow).
    #[command(after_help = "Example:\n  flow-like tenants resume acme")]
    Resume(PauseTarget),
}

#[derive(Debug, Args)]
pub struct SetLimits {
    pub tenant: String,
    /// Most executions of the tenant running at once.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Most executions of any one workflow of the tenant running at once.
    #[arg(long)]
    pub workflow_concurrency: Option<u32>,
    /// Its share of admissions when tenants compete (relative to the others'; default 1).
    #[arg(long)]
    pub weight: Option<f64>,
    /// Submissions per second it may sustain.
    #[arg(long)]
    pub submit_rate: Option<f64>,
    /// Submissions accepted at once after a quiet spell.
    #[arg(long)]
    pub submit_burst: Option<u32>,
}

#[derive(Debug, Args)]
pub struct PauseTarget {
    pub tenant: String,
    /// Only this workflow of the tenant.
    #[arg(long)]
    pub workflow: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command a user can run (the leaves of the tree) shows an example under `--help`.
    #[test]
    fn every_command_has_an_example() {
        fn leaves(command: &clap::Command, path: String, out: &mut Vec<(String, bool)>) {
            let subcommands: Vec<_> = command.get_subcommands().filter(|c| c.get_name() != "help").collect();
            if subcommands.is_empty() {
                let help = command.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                out.push((path, help.contains("Example")));
                return;
            }
            for sub in subcommands {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut found = Vec::new();
        leaves(&Cli::command(), "flow-like".to_owned(), &mut found);
        assert!(found.len() >= 18, "{found:?}");
        let missing: Vec<_> = found.iter().filter(|(_, has)| !has).map(|(path, _)| path.as_str()).collect();
        assert!(missing.is_empty(), "no example under --help: {missing:?}");
        Cli::command().debug_assert();
    }
}

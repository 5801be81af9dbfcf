//! `flow-like`, the command-line client of the flow-like API: the commands (`commands`), the live view of an
//! execution (`watch`), and what they share: settings and the HTTP client (`client`), errors and exit codes
//! (`error`), human output (`render`), Server-Sent Events (`sse`) and command-line values (`inputs`).
//!
//! Exit codes: 0 success, 1 a watched execution ended other than `succeeded`, 2 a usage or API error (one line
//! on stderr; a 422 adds one line per invalid part).

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod inputs;
pub mod render;
pub mod sse;
pub mod watch;

use args::{Cli, Output};
use client::Client;
use error::CliError;
use render::Palette;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Success,
    /// A watched execution ended other than `succeeded` (exit 1).
    NotSucceeded,
}

/// What every command gets: the client, the output format, the colours.
#[derive(Debug)]
pub struct Context {
    pub client: Client,
    pub output: Output,
    pub palette: Palette,
}

impl Context {
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    /// Prints lines on stdout.
    pub fn lines(&self, lines: impl IntoIterator<Item = impl AsRef<str>>) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        for line in lines {
            writeln!(out, "{}", line.as_ref())?;
        }
        out.flush()?;
        Ok(())
    }

    pub fn line(&self, line: impl AsRef<str>) -> Result<(), CliError> {
        self.lines([line])
    }

    /// Prints one JSON document on one line (the `-o json` form).
    pub fn document(&self, document: &Value) -> Result<(), CliError> {
        self.line(serde_json::to_string(document).unwrap_or_default())
    }
}

/// Runs the parsed command line and returns the process's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let outcome = match Client::new(&cli.settings.url, cli.settings.token.clone()) {
        Ok(client) => {
            let context = Context { client, output: cli.settings.output, palette: Palette::detect() };
            commands::run(&context, cli.command).await
        }
        Err(err) => Err(err),
    };
    match outcome {
        Ok(Finish::Success) => ExitCode::SUCCESS,
        Ok(Finish::NotSucceeded) => ExitCode::from(1),
        // `flow-like list | head`: the reader has what it wanted.
        Err(CliError::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            for line in err.lines() {
                let _ = writeln!(stderr, "{line}");
            }
            ExitCode::from(CliError::EXIT_CODE)
        }
    }
}

//! The three views of a watched execution's events: `Live` (a terminal: a spinner for the execution and one
//! per node, a tick or cross with attempts and duration when a node ends, log lines above them), `Plain`
//! (stdout is not a terminal: one timestamped line per event) and `Json` (`-o json`: each event's data object).

use crate::commands::logs;
use crate::render::{self, Palette};
use crate::{Context, args::Output};
use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

pub trait View {
    /// One event of the stream (`kind` is its SSE event name, `data` its JSON object).
    fn event(&mut self, kind: &str, data: &Value);
    /// A fresh read of the execution while it is queued.
    fn waiting(&mut self, execution: &Value);
    /// Whether the execution is still waiting to be dispatched, as far as the view knows.
    fn is_waiting(&self) -> bool;
    /// The execution ended (its last document).
    fn finish(&mut self, execution: &Value);
    /// The watch failed: leave the terminal clean.
    fn abandon(&mut self);
}

/// The view for this output: JSON, live on a terminal, plain lines otherwise.
pub fn view(context: &Context, execution: &Value) -> Box<dyn View> {
    let mut view: Box<dyn View> = if context.output == Output::Json {
        Box::new(Json)
    } else if std::io::stdout().is_terminal() {
        Box::new(Live::new(context.palette))
    } else {
        Box::new(Plain { waiting: None, said: String::new() })
    };
    view.waiting(execution);
    view
}

fn waiting_text(execution: &Value) -> Option<String> {
    let status = render::text(&execution["status"]);
    if status != "queued" {
        return None;
    }
    let mut text = format!("execution {} queued", render::text(&execution["id"]));
    if let Some(reason) = execution["waiting_reason"].as_str() {
        text.push_str(&format!(": {reason}"));
    }
    if let Some(position) = execution["queue_position"].as_u64() {
        text.push_str(&format!(" (position {position})"));
    }
    Some(text)
}

fn ms(value: &Value) -> String {
    render::ms_field(value)
}

/// A sentence about an attempt-level event.
fn attempt_text(kind: &str, data: &Value) -> Option<String> {
    let attempt = render::text(&data["attempt"]);
    Some(match kind {
        "dispatched" => {
            let reference = data["runner_ref"].as_str().map(|r| format!(", {r}")).unwrap_or_default();
            format!(
                "attempt {attempt} dispatched by {} ({} runner{reference})",
                render::text(&data["dispatcher"]),
                render::text(&data["runner"])
            )
        }
        "started" => format!("attempt {attempt} started (executor up in {})", ms(&data["startup_ms"])),
        "retrying" => {
            let at = data["retry_at_ms"].as_i64().and_then(DateTime::<Utc>::from_timestamp_millis);
            let when = at.map(|t| render::relative(t, Utc::now())).unwrap_or_else(|| "soon".to_owned());
            format!(
                "attempt {attempt} failed: {}; attempt {} {when}",
                render::text(&data["error"]),
                render::text(&data["next_attempt"])
            )
        }
        "finished" => {
            let error = data["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
            format!(
                "attempt {attempt} finished {} in {}{error}",
                render::text(&data["outcome"]),
                ms(&data["duration_ms"])
            )
        }
        _ => return None,
    })
}

fn attempts(data: &Value) -> String {
    match data["node_attempt"].as_u64() {
        Some(1) => "1 attempt".to_owned(),
        Some(n) => format!("{n} attempts"),
        None => "-".to_owned(),
    }
}

/// A sentence about a node event.
fn node_text(data: &Value) -> String {
    let node = render::text(&data["node"]);
    let error = data["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
    match data["phase"].as_str().unwrap_or_default() {
        "started" => format!("node {node} started (attempt {})", render::text(&data["node_attempt"])),
        "attempt_failed" => {
            let retry = data["retry_in_ms"].as_u64().map(|r| format!("; retry in {}", render::duration_ms(r as i64)));
            format!(
                "node {node} attempt {} failed{error}{}",
                render::text(&data["node_attempt"]),
                retry.unwrap_or_default()
            )
        }
        phase => format!("node {node} {phase} ({}, {}){error}", attempts(data), ms(&data["duration_ms"])),
    }
}

/// Timestamped lines.
struct Plain {
    /// The waiting text last printed.
    waiting: Option<String>,
    said: String,
}

impl Plain {
    fn say(&mut self, at: Option<DateTime<Utc>>, text: &str) {
        let at = at.unwrap_or_else(Utc::now).to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{at} {text}");
        let _ = out.flush();
        text.clone_into(&mut self.said);
    }
}

fn event_time(data: &Value) -> Option<DateTime<Utc>> {
    data["at"].as_i64().and_then(DateTime::<Utc>::from_timestamp_millis)
}

impl View for Plain {
    fn event(&mut self, kind: &str, data: &Value) {
        self.waiting = None;
        let text = match kind {
            "node" => node_text(data),
            "log" => format!("log {}", logs::body(Palette::plain(), data)),
            kind => attempt_text(kind, data).unwrap_or_else(|| format!("{kind} {data}")),
        };
        self.say(event_time(data), &text);
    }

    fn waiting(&mut self, execution: &Value) {
        let text = waiting_text(execution);
        if text.is_some() && text != self.waiting {
            self.say(None, text.as_deref().unwrap_or_default());
        }
        self.waiting = text;
    }

    fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    fn finish(&mut self, _execution: &Value) {}

    fn abandon(&mut self) {}
}

/// Each event's data object, one per line.
struct Json;

impl View for Json {
    fn event(&mut self, _kind: &str, data: &Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{data}");
        let _ = out.flush();
    }
    fn waiting(&mut self, _execution: &Value) {}
    fn is_waiting(&self) -> bool {
        false
    }
    fn finish(&mut self, _execution: &Value) {}
    fn abandon(&mut self) {}
}

/// Spinners on a terminal.
struct Live {
    palette: Palette,
    multi: MultiProgress,
    header: ProgressBar,
    /// The current attempt's nodes, by name.
    nodes: BTreeMap<String, ProgressBar>,
    waiting: bool,
}

const TICK: Duration = Duration::from_millis(100);

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", " "])
}

fn done_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Live {
    fn new(palette: Palette) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let header = multi.add(ProgressBar::new_spinner().with_style(spinner_style()));
        header.enable_steady_tick(TICK);
        Self { palette, multi, header, nodes: BTreeMap::new(), waiting: false }
    }

    fn node_bar(&mut self, node: &str) -> ProgressBar {
        let multi = &self.multi;
        self.nodes
            .entry(node.to_owned())
            .or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner().with_style(spinner_style()));
                bar.enable_steady_tick(TICK);
                bar
            })
            .clone()
    }

    fn node(&mut self, data: &Value) {
        let p = self.palette;
        let name = render::text(&data["node"]);
        let bar = self.node_bar(&name);
        let shown = format!("{name:<20}");
        let error = data["error"].as_str().map(|e| format!("  {}", p.red(e))).unwrap_or_default();
        let phase = data["phase"].as_str().unwrap_or_default();
        let done = |mark: String, phase: &str| {
            bar.set_style(done_style());
            bar.finish_with_message(format!(
                "{mark} {shown} {:<10} {:<11} {}{error}",
                p.status(phase),
                attempts(data),
                ms(&data["duration_ms"])
            ));
        };
        match phase {
            "started" => bar.set_message(format!("{shown} running    attempt {}", render::text(&data["node_attempt"]))),
            "attempt_failed" => {
                let retry =
                    data["retry_in_ms"].as_u64().map(|r| format!(", retry in {}", render::duration_ms(r as i64)));
                bar.set_message(format!(
                    "{shown} {}{}{error}",
                    p.yellow(&format!("attempt {} failed", render::text(&data["node_attempt"]))),
                    retry.unwrap_or_default()
                ));
            }
            "succeeded" => done(p.green("✔"), phase),
            "skipped" => done(p.dim("-"), phase),
            phase => done(p.red("✘"), phase),
        }
    }

    /// Ends the spinners of nodes still running (the attempt is over).
    fn close_nodes(&mut self, why: &str) {
        for (name, bar) in std::mem::take(&mut self.nodes) {
            if !bar.is_finished() {
                bar.set_style(done_style());
                bar.finish_with_message(format!("{} {name:<20} {why}", self.palette.dim("·")));
            }
        }
    }
}

impl View for Live {
    fn event(&mut self, kind: &str, data: &Value) {
        self.waiting = false;
        let p = self.palette;
        match kind {
            "node" => self.node(data),
            "log" => {
                let _ = self.multi.println(logs::line(p, data));
            }
            "dispatched" => {
                self.close_nodes("not finished in the previous attempt");
                self.header.set_message(attempt_text(kind, data).unwrap_or_default());
            }
            "finished" => {
                let outcome = render::text(&data["outcome"]);
                self.close_nodes(&outcome);
                self.header.set_message(attempt_text(kind, data).unwrap_or_default());
            }
            kind => self.header.set_message(attempt_text(kind, data).unwrap_or_else(|| kind.to_owned())),
        }
    }

    fn waiting(&mut self, execution: &Value) {
        match waiting_text(execution) {
            Some(text) => {
                self.header.set_message(text);
                self.waiting = true;
            }
            None => {
                self.header.set_message(format!(
                    "execution {} {}",
                    render::text(&execution["id"]),
                    render::text(&execution["status"])
                ));
                self.waiting = false;
            }
        }
    }

    fn is_waiting(&self) -> bool {
        self.waiting
    }

    fn finish(&mut self, execution: &Value) {
        let status = render::text(&execution["status"]);
        self.close_nodes(&status);
        let mark = if status == "succeeded" { self.palette.green("✔") } else { self.palette.red("✘") };
        self.header.set_style(done_style());
        self.header.finish_with_message(format!(
            "{mark} execution {} {}",
            render::text(&execution["id"]),
            self.palette.status(&status)
        ));
    }

    fn abandon(&mut self) {
        for bar in self.nodes.values() {
            bar.abandon();
        }
        self.header.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_as_sentences() {
        let node = json!({"node": "fetch", "phase": "succeeded", "node_attempt": 3, "duration_ms": 850});
        assert_eq!(node_text(&node), "node fetch succeeded (3 attempts, 850 ms)");
        let failed =
            json!({"node": "fetch", "phase": "attempt_failed", "node_attempt": 1, "error": "503", "retry_in_ms": 200});
        assert_eq!(node_text(&failed), "node fetch attempt 1 failed: 503; retry in 200 ms");
        let dispatched = json!({"attempt": 1, "dispatcher": "d0", "runner": "process", "runner_ref": "pid 42"});
        assert_eq!(
            attempt_text("dispatched", &dispatched).unwrap(),
            "attempt 1 dispatched by d0 (process runner, pid 42)"
        );
        let finished = json!({"attempt": 1, "outcome": "failed", "duration_ms": 2400, "error": "node `reject`: no"});
        assert_eq!(
            attempt_text("finished", &finished).unwrap(),
            "attempt 1 finished failed in 2.4 s: node `reject`: no"
        );
        let queued =
            json!({"id": "x", "status": "queued", "waiting_reason": "tenant acme is paused", "queue_position": 2});
        assert_eq!(waiting_text(&queued).unwrap(), "execution x queued: tenant acme is paused (position 2)");
        assert_eq!(waiting_text(&json!({"status": "running"})), None);
    }
}

//! Reading executions: `get`, `list`, `result`, `why`, and the pieces of their human form that `watch` shares
//! (the timeline and the result's nodes and output).

use crate::args::List;
use crate::client::segment;
use crate::error::CliError;
use crate::inputs;
use crate::render::{self, Palette, Table};
use crate::{Context, Finish};
use chrono::{DateTime, Local, Utc};
use serde_json::Value;

pub fn path(id: &str) -> String {
    format!("/api/v1/executions/{}", segment(id))
}

pub async fn fetch(context: &Context, id: &str) -> Result<Value, CliError> {
    context.client.get(&path(id), &[]).await
}

/// `key  value` lines, the keys aligned.
pub fn pairs(palette: Palette, pairs: &[(&str, String)]) -> Vec<String> {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{}  {v}", palette.bold(&format!("{k:<width$}")))).collect()
}

pub async fn get(context: &Context, id: &str) -> Result<Finish, CliError> {
    let execution = fetch(context, id).await?;
    if context.json() {
        context.document(&execution)?;
        return Ok(Finish::Success);
    }
    let p = context.palette;
    let version = execution["workflow_version"].as_i64().map(|v| format!(" (version {v})")).unwrap_or_default();
    let mut rows = vec![
        ("id", render::text(&execution["id"])),
        ("workflow", format!("{}{version}", render::text(&execution["workflow"]))),
        ("status", p.status(&render::text(&execution["status"]))),
        ("priority", render::text(&execution["priority"])),
        ("attempts", render::text(&execution["attempts"])),
        ("labels", render::labels(&execution["labels"])),
        ("submitted", render::ago(&execution["timeline"]["queued_at"])),
    ];
    if !execution["error"].is_null() {
        rows.push(("error", p.red(&render::text(&execution["error"]))));
    }
    if !execution["waiting_reason"].is_null() {
        rows.push(("waiting", render::text(&execution["waiting_reason"])));
    }
    if !execution["queue_position"].is_null() {
        rows.push(("position", render::text(&execution["queue_position"])));
    }
    let mut lines = pairs(p, &rows);
    lines.push(String::new());
    lines.extend(timeline(p, &execution));
    context.lines(lines)?;
    Ok(Finish::Success)
}

/// The timeline as a table: each moment, the time since the one before and since queued.
pub fn timeline(palette: Palette, execution: &Value) -> Vec<String> {
    let steps = ["queued", "claimed", "dispatched", "started", "finished"];
    let queued = render::time(&execution["timeline"]["queued_at"]);
    let mut table = Table::new(&["TIMELINE", "AT", "STEP", "SINCE QUEUED"]);
    let mut previous: Option<DateTime<Utc>> = None;
    for step in steps {
        let at = render::time(&execution["timeline"][format!("{step}_at")]);
        let since = |from: Option<DateTime<Utc>>| match (from, at) {
            (Some(from), Some(at)) => render::duration_ms((at - from).num_milliseconds()),
            _ => "-".to_owned(),
        };
        let shown = at.map_or_else(|| "-".to_owned(), |t| t.with_timezone(&Local).format("%H:%M:%S%.3f").to_string());
        let step_took = if step == "queued" { "-".to_owned() } else { since(previous) };
        let from_queued = if step == "queued" { "-".to_owned() } else { since(queued) };
        table.row(vec![step.to_owned(), shown, step_took, from_queued]);
        if at.is_some() {
            previous = at;
        }
    }
    table.render(palette, |_, _| None)
}

pub async fn list(context: &Context, list: List) -> Result<Finish, CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(status) = list.status {
        query.push(("status", status));
    }
    if let Some(workflow) = list.workflow {
        query.push(("workflow", workflow));
    }
    if let Some((name, value)) = list.label {
        query.push(("label", format!("{name}={value}")));
    }
    if let Some(since) = list.since {
        query.push(("submitted_after", inputs::submitted_after(since, Utc::now())?));
    }
    if let Some(tenant) = list.tenant {
        query.push(("tenant", tenant));
    }
    let items = context.client.list("/api/v1/executions", &query, list.limit).await?;
    if context.json() {
        for item in &items {
            context.document(item)?;
        }
        return Ok(Finish::Success);
    }
    let mut table = Table::new(&["ID", "WORKFLOW", "STATUS", "PRI", "ATTEMPTS", "SUBMITTED", "RAN", "LABELS"]);
    for item in &items {
        let timeline = &item["timeline"];
        let ran = match (render::time(&timeline["started_at"]), render::time(&timeline["finished_at"])) {
            (Some(start), Some(end)) => render::duration_ms((end - start).num_milliseconds()),
            (Some(start), None) => format!("{}…", render::duration_ms((Utc::now() - start).num_milliseconds())),
            _ => "-".to_owned(),
        };
        table.row(vec![
            render::text(&item["id"]),
            render::text(&item["workflow"]),
            render::text(&item["status"]),
            render::text(&item["priority"]),
            render::text(&item["attempts"]),
            render::ago(&timeline["queued_at"]),
            ran,
            render::labels(&item["labels"]),
        ]);
    }
    if table.is_empty() {
        eprintln!("no executions match");
        return Ok(Finish::Success);
    }
    let palette = context.palette;
    context.lines(table.render(palette, |column, cell| (column == 2).then(|| palette.status(cell))))?;
    Ok(Finish::Success)
}

pub async fn result(context: &Context, id: &str) -> Result<Finish, CliError> {
    let result = context.client.get(&format!("{}/result", path(id)), &[]).await?;
    if context.json() {
        context.document(&result)?;
        return Ok(Finish::Success);
    }
    context.lines(result_lines(context.palette, &result))?;
    Ok(Finish::Success)
}

/// A result document for people: the outcome, each node, the output.
pub fn result_lines(palette: Palette, result: &Value) -> Vec<String> {
    let outcome = &result["outcome"];
    let status = render::text(&outcome["status"]);
    let mut said = palette.status(&status);
    if let Some(node) = outcome["node"].as_str() {
        said.push_str(&format!(" at node {node}"));
    }
    if let Some(error) = outcome["error"].as_str() {
        said.push_str(&format!(": {error}"));
    }
    let mut lines = pairs(palette, &[("outcome", said)]);
    let mut nodes: Vec<(&String, &Value)> = result["nodes"].as_object().map(|n| n.iter().collect()).unwrap_or_default();
    nodes.sort_by_key(|(name, report)| {
        (render::time(&report["started_at"]).is_none(), render::time(&report["started_at"]), name.to_string())
    });
    if !nodes.is_empty() {
        let mut table = Table::new(&["NODE", "STATUS", "ATTEMPTS", "DURATION", "ERROR"]);
        for (name, report) in nodes {
            let took = match (render::time(&report["started_at"]), render::time(&report["finished_at"])) {
                (Some(start), Some(end)) => render::duration_ms((end - start).num_milliseconds()),
                _ => "-".to_owned(),
            };
            let error = report["error"].as_str().unwrap_or_default().to_owned();
            table.row(vec![
                name.clone(),
                render::text(&report["status"]),
                render::text(&report["attempts"]),
                took,
                error,
            ]);
        }
        lines.push(String::new());
        lines.extend(table.render(palette, |column, cell| (column == 1).then(|| palette.status(cell))));
    }
    lines.push(String::new());
    lines.push(palette.bold("output"));
    lines.extend(serde_json::to_string_pretty(&result["output"]).unwrap_or_default().lines().map(str::to_owned));
    lines
}

pub async fn why(context: &Context, id: &str) -> Result<Finish, CliError> {
    let execution = fetch(context, id).await?;
    if context.json() {
        context.document(&execution)?;
        return Ok(Finish::Success);
    }
    let status = render::text(&execution["status"]);
    let p = context.palette;
    let lines = if status == "queued" {
        let mut rows = vec![
            ("status", p.status(&status)),
            ("waiting", render::text(&execution["waiting_reason"])),
            ("position", render::text(&execution["queue_position"])),
        ];
        rows.push(("submitted", render::ago(&execution["timeline"]["queued_at"])));
        pairs(p, &rows)
    } else {
        let state = match status.as_str() {
            "dispatched" | "running" => "it is not waiting".to_owned(),
            _ => format!("it finished {}", render::ago(&execution["timeline"]["finished_at"])),
        };
        vec![format!("execution {} is {}: {state}", render::text(&execution["id"]), p.status(&status))]
    };
    context.lines(lines)?;
    Ok(Finish::Success)
}

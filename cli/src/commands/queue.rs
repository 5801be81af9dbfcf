//! `queue`: `GET /api/v1/queue` as tables: the dispatchers alive, per tenant what waits and runs under which
//! limits and how long work waits, and per workflow the same. Fields the API leaves out show as "-"; an answer
//! of the older one-tenant shape (the tenant's fields at the top) is shown as one tenant.

use crate::args::Queue;
use crate::render::{self, Table};
use crate::{Context, Finish, error::CliError};
use serde_json::Value;

pub async fn run(context: &Context, queue: Queue) -> Result<Finish, CliError> {
    let query: Vec<(&str, String)> = queue.tenant.into_iter().map(|t| ("tenant", t)).collect();
    let view = context.client.get("/api/v1/queue", &query).await?;
    if context.json() {
        context.document(&view)?;
        return Ok(Finish::Success);
    }
    context.lines(lines(context, &view))?;
    Ok(Finish::Success)
}

/// The tenants of either shape.
fn tenants(view: &Value) -> Vec<&Value> {
    match view["tenants"].as_array() {
        Some(tenants) => tenants.iter().collect(),
        None if view.get("tenant").is_some() => vec![view],
        None => Vec::new(),
    }
}

/// `running/limit`, or the running count alone when there is no limit.
fn of_limit(running: &Value, limit: &Value) -> String {
    match limit {
        Value::Null => render::text(running),
        limit => format!("{}/{}", render::text(running), render::text(limit)),
    }
}

fn seconds(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".to_owned(), |s| render::duration_ms((s * 1000.0).round() as i64))
}

fn lines(context: &Context, view: &Value) -> Vec<String> {
    let p = context.palette;
    let mut lines = Vec::new();
    let global = view["global_running"].clone();
    let global_limit = tenants(view).first().map(|t| t["limits"]["global"].clone()).unwrap_or_default();
    lines.push(format!(
        "{} {} alive, {} running across all tenants",
        p.bold("dispatchers"),
        render::text(&view["dispatchers_alive"]),
        of_limit(&global, &global_limit)
    ));
    if let Some(dispatchers) = view["dispatchers"].as_array().filter(|d| !d.is_empty()) {
        let mut table = Table::new(&["DISPATCHER", "LAST HEARTBEAT", "IN FLIGHT"]);
        for d in dispatchers {
            table.row(vec![render::text(&d["id"]), render::ago(&d["last_heartbeat"]), render::text(&d["in_flight"])]);
        }
        lines.extend(table.render(p, |_, _| None));
    }
    let tenants = tenants(view);
    if tenants.is_empty() {
        lines.push("no tenant has queued or running work".to_owned());
        return lines;
    }
    let mut table = Table::new(&[
        "TENANT",
        "WAITING",
        "RUNNING",
        "WEIGHT",
        "SUBMIT RATE",
        "PAUSED",
        "OLDEST",
        "ADMITTED/MIN",
        "WAIT P50",
        "WAIT P99",
        "BY PRIORITY",
    ]);
    let mut workflows = Table::new(&[
        "TENANT",
        "WORKFLOW",
        "QUEUED",
        "RUNNING",
        "PAUSED",
        "OLDEST",
        "ADMITTED/MIN",
        "WAIT P50",
        "WAIT P99",
    ]);
    for tenant in &tenants {
        let admission = &tenant["admission"];
        let rate = match (&admission["submit_rate"], &admission["submit_burst"]) {
            (Value::Null, _) => "-".to_owned(),
            (rate, Value::Null) => format!("{}/s", render::text(rate)),
            (rate, burst) => format!("{}/s (burst {})", render::text(rate), render::text(burst)),
        };
        let paused = if admission["paused"].as_bool() == Some(true) {
            "yes".to_owned()
        } else {
            match admission["paused_workflows"].as_array().filter(|w| !w.is_empty()) {
                Some(w) => w.iter().map(render::text).collect::<Vec<_>>().join(","),
                None => "no".to_owned(),
            }
        };
        let by_priority = tenant["queue"]["waiting_by_priority"]
            .as_object()
            .map(|lanes| lanes.iter().rev().map(|(p, n)| format!("{p}:{}", render::text(n))).collect::<Vec<_>>())
            .filter(|lanes| !lanes.is_empty())
            .map_or_else(|| "-".to_owned(), |lanes| lanes.join(" "));
        table.row(vec![
            render::text(&tenant["tenant"]),
            render::text(&tenant["queue"]["waiting"]),
            of_limit(&tenant["queue"]["running"], &tenant["limits"]["tenant"]),
            render::text(&admission["weight"]),
            rate,
            paused,
            seconds(&tenant["oldest_queued_age_secs"]),
            render::text(&tenant["admitted_last_minute"]),
            render::ms_field(&tenant["wait_p50_ms"]),
            render::ms_field(&tenant["wait_p99_ms"]),
            by_priority,
        ]);
        for w in tenant["workflows"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let limit = if w["limit"].is_null() { &tenant["limits"]["workflow"] } else { &w["limit"] };
            workflows.row(vec![
                render::text(&tenant["tenant"]),
                render::text(&w["workflow"]),
                render::text(&w["queued"]),
                of_limit(&w["running"], limit),
                render::text(&w["paused"]),
                seconds(&w["oldest_queued_age_secs"]),
                render::text(&w["admitted_last_minute"]),
                render::ms_field(&w["wait_p50_ms"]),
                render::ms_field(&w["wait_p99_ms"]),
            ]);
        }
    }
    lines.push(String::new());
    lines.extend(table.render(p, |column, cell| (column == 5 && cell != "no").then(|| p.yellow(cell))));
    if !workflows.is_empty() {
        lines.push(String::new());
        lines.extend(workflows.render(p, |column, cell| (column == 4 && cell == "yes").then(|| p.yellow(cell))));
    }
    lines
}

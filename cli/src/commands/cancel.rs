//! `cancel`: by id (`POST /executions/{id}/cancel` each), or by filter (`POST /executions/cancel`, called again
//! with `next_cursor` until the API says there are no more), with `--dry-run` to only count.

use crate::args::Cancel;
use crate::commands::executions;
use crate::error::CliError;
use crate::inputs;
use crate::{Context, Finish};
use chrono::Utc;
use serde_json::{Map, Value};

pub async fn run(context: &Context, cancel: Cancel) -> Result<Finish, CliError> {
    match (cancel.ids.is_empty(), cancel.filter.is_empty()) {
        (false, true) if cancel.dry_run => {
            Err(CliError::Usage("--dry-run goes with a filter (--status, --workflow, ...), not with ids".into()))
        }
        (false, true) => by_id(context, &cancel.ids).await,
        (true, false) => by_filter(context, &cancel).await,
        (false, false) => Err(CliError::Usage("give execution ids or a filter, not both".into())),
        (true, true) => Err(CliError::Usage(
            "give execution ids, or a filter: --status, --workflow, --label, --tenant, --since".into(),
        )),
    }
}

/// Cancels each; the first failure stops (and is the error), what was cancelled before it is printed.
async fn by_id(context: &Context, ids: &[String]) -> Result<Finish, CliError> {
    for id in ids {
        let execution = context.client.post(&format!("{}/cancel", executions::path(id)), None).await?;
        if context.json() {
            context.document(&execution)?;
        } else {
            context.line(format!("{id} {}", context.palette.status(&crate::render::text(&execution["status"]))))?;
        }
    }
    Ok(Finish::Success)
}

/// The request body of a bulk cancel (without cursor).
pub fn filter_body(cancel: &Cancel) -> Result<Map<String, Value>, CliError> {
    let filter = &cancel.filter;
    let mut body = Map::new();
    if !filter.statuses.is_empty() {
        body.insert("status".into(), filter.statuses.iter().map(|s| Value::from(s.as_str())).collect());
    }
    if let Some(workflow) = &filter.workflow {
        body.insert("workflow".into(), workflow.as_str().into());
    }
    if !filter.labels.is_empty() {
        body.insert("labels".into(), Value::Object(inputs::labels_object(&filter.labels)));
    }
    if let Some(tenant) = &filter.tenant {
        body.insert("tenant".into(), tenant.as_str().into());
    }
    if let Some(since) = filter.since {
        body.insert("submitted_after".into(), inputs::submitted_after(since, Utc::now())?.into());
    }
    body.insert("dry_run".into(), cancel.dry_run.into());
    Ok(body)
}

async fn by_filter(context: &Context, cancel: &Cancel) -> Result<Finish, CliError> {
    let body = filter_body(cancel)?;
    let totals = bulk(context, "/api/v1/executions/cancel", body).await?;
    if !context.json() {
        let line = if cancel.dry_run {
            format!("matched {} (dry run: nothing cancelled)", totals.matched)
        } else {
            format!("matched {}, cancelled {}", totals.matched, totals.acted)
        };
        context.line(context.palette.bold(&line))?;
    }
    Ok(Finish::Success)
}

/// What a whole bulk operation matched and did, over all its calls.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub matched: u64,
    pub acted: u64,
}

/// Calls a bulk endpoint until `next_cursor` is null: in table form each matched id on its own line, in json
/// form each answer document on its own line.
pub async fn bulk(context: &Context, path: &str, body: Map<String, Value>) -> Result<Totals, CliError> {
    let mut totals = Totals::default();
    let mut cursor: Option<String> = None;
    loop {
        let mut call = body.clone();
        if let Some(cursor) = &cursor {
            call.insert("cursor".into(), cursor.as_str().into());
        }
        let answer = context.client.post(path, Some(&Value::Object(call))).await?;
        totals.matched += answer["matched"].as_u64().unwrap_or(0);
        totals.acted += answer["acted"].as_u64().unwrap_or(0);
        if context.json() {
            context.document(&answer)?;
        } else {
            let ids = answer["ids"].as_array().map(Vec::as_slice).unwrap_or_default();
            context.lines(ids.iter().map(crate::render::text))?;
        }
        let next = answer["next_cursor"].as_str().map(str::to_owned);
        // A cursor that does not move would loop forever: stop.
        if next.is_none() || next == cursor {
            break;
        }
        cursor = next;
    }
    Ok(totals)
}

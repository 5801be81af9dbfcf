//! `dead-letters list` (`GET /dead-letters`, page by page) and `dead-letters redrive`: by entry id
//! (`POST /dead-letters/{entry}/redrive` each) or by filter (`POST /dead-letters/redrive` until no cursor).

use crate::args::{DeadLetters, Redrive};
use crate::client::segment;
use crate::commands::cancel;
use crate::error::CliError;
use crate::render::{self, Table};
use crate::{Context, Finish};
use serde_json::Map;

pub async fn run(context: &Context, command: DeadLetters) -> Result<Finish, CliError> {
    match command {
        DeadLetters::List { limit } => list(context, limit).await,
        DeadLetters::Redrive(redrive) => self::redrive(context, redrive).await,
    }
}

async fn list(context: &Context, limit: u32) -> Result<Finish, CliError> {
    let items = context.client.list("/api/v1/dead-letters", &[], limit).await?;
    if context.json() {
        for item in &items {
            context.document(item)?;
        }
        return Ok(Finish::Success);
    }
    if items.is_empty() {
        eprintln!("no dead letters");
        return Ok(Finish::Success);
    }
    let mut table =
        Table::new(&["ENTRY", "EXECUTION", "TENANT", "WORKFLOW", "ATTEMPT", "DELIVERIES", "DEAD", "REASON"]);
    for item in &items {
        table.row(vec![
            render::text(&item["entry_id"]),
            render::text(&item["execution_id"]),
            render::text(&item["tenant"]),
            render::text(&item["workflow"]),
            render::text(&item["attempt"]),
            render::text(&item["deliveries"]),
            render::ago(&item["dead_at"]),
            render::text(&item["reason"]),
        ]);
    }
    context.lines(table.render(context.palette, |_, _| None))?;
    Ok(Finish::Success)
}

async fn redrive(context: &Context, redrive: Redrive) -> Result<Finish, CliError> {
    let filtered = redrive.reason.is_some() || redrive.tenant.is_some() || redrive.workflow.is_some();
    if !redrive.entries.is_empty() {
        for entry in &redrive.entries {
            let path = format!("/api/v1/dead-letters/{}/redrive", segment(entry));
            let answer = context.client.post(&path, None).await?;
            if context.json() {
                context.document(&answer)?;
            } else {
                let execution = &answer["execution"];
                context.line(format!(
                    "{entry} redriven: execution {} queued for attempt {}",
                    render::text(&execution["id"]),
                    render::text(&execution["attempts"])
                ))?;
            }
        }
        return Ok(Finish::Success);
    }
    if !redrive.all && !filtered {
        return Err(CliError::Usage(
            "give dead-letter entry ids, or --all (narrowed by --reason, --tenant, --workflow)".into(),
        ));
    }
    let mut body = Map::new();
    for (name, value) in [("reason", &redrive.reason), ("tenant", &redrive.tenant), ("workflow", &redrive.workflow)] {
        if let Some(value) = value {
            body.insert(name.into(), value.as_str().into());
        }
    }
    body.insert("dry_run".into(), redrive.dry_run.into());
    let totals = cancel::bulk(context, "/api/v1/dead-letters/redrive", body).await?;
    if !context.json() {
        let line = if redrive.dry_run {
            format!("matched {} (dry run: nothing redriven)", totals.matched)
        } else {
            format!("matched {}, redriven {}", totals.matched, totals.acted)
        };
        context.line(context.palette.bold(&line))?;
    }
    Ok(Finish::Success)
}

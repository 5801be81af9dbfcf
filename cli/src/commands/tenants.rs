//! The admin commands on tenants: `create-key` (`POST /tenants/{t}/api-keys`), `revoke-key`
//! (`DELETE /api-keys/{id}`), `set-limits` (`PUT /tenants/{t}/limits`), `pause` and `resume`
//! (`POST /tenants/{t}[/workflows/{w}]/pause|resume`).

use crate::args::{PauseTarget, SetLimits, Tenants};
use crate::client::segment;
use crate::commands::executions::pairs;
use crate::error::CliError;
use crate::render;
use crate::{Context, Finish};
use reqwest::Method;
use serde_json::{Map, Value, json};

pub async fn run(context: &Context, command: Tenants) -> Result<Finish, CliError> {
    match command {
        Tenants::CreateKey { tenant, admin } => {
            let path = format!("/api/v1/tenants/{}/api-keys", segment(&tenant));
            let body = admin.then(|| json!({"admin": true}));
            let issued = context.client.post(&path, body.as_ref()).await?;
            if context.json() {
                context.document(&issued)?;
            } else {
                // The key alone on stdout, so `KEY=$(flow-like tenants create-key acme)` works.
                context.line(render::text(&issued["key"]))?;
                eprintln!(
                    "key {} for tenant {}{} (shown only this once; revoke with: flow-like tenants revoke-key {})",
                    render::text(&issued["id"]),
                    render::text(&issued["tenant"]),
                    if issued["admin"].as_bool() == Some(true) { ", admin" } else { "" },
                    render::text(&issued["id"]),
                );
            }
        }
        Tenants::RevokeKey { key_id } => {
            context.client.call(Method::DELETE, &format!("/api/v1/api-keys/{}", segment(&key_id)), None, &[]).await?;
            if context.json() {
                context.document(&json!({"id": key_id, "revoked": true}))?;
            } else {
                context.line(format!("revoked key {key_id}"))?;
            }
        }
        Tenants::SetLimits(limits) => set_limits(context, limits).await?,
        Tenants::Pause(target) => pause(context, target, true).await?,
        Tenants::Resume(target) => pause(context, target, false).await?,
    }
    Ok(Finish::Success)
}

/// The body of `PUT /tenants/{t}/limits`: only the limits given (the others fall back to the defaults).
pub fn limits_body(limits: &SetLimits) -> Value {
    let mut body = Map::new();
    let counts = [
        ("concurrency_limit", limits.concurrency),
        ("workflow_limit", limits.workflow_concurrency),
        ("submit_burst", limits.submit_burst),
    ];
    for (name, value) in counts {
        if let Some(value) = value {
            body.insert(name.into(), value.into());
        }
    }
    for (name, value) in [("weight", limits.weight), ("submit_rate", limits.submit_rate)] {
        if let Some(value) = value {
            body.insert(name.into(), value.into());
        }
    }
    Value::Object(body)
}

async fn set_limits(context: &Context, limits: SetLimits) -> Result<(), CliError> {
    let path = format!("/api/v1/tenants/{}/limits", segment(&limits.tenant));
    let answer = context.client.call(Method::PUT, &path, Some(&limits_body(&limits)), &[]).await?;
    if context.json() {
        return context.document(&answer);
    }
    let default = |value: &Value| if value.is_null() { "default".to_owned() } else { render::text(value) };
    let rows = [
        ("tenant", limits.tenant.clone()),
        ("concurrency", default(&answer["concurrency_limit"])),
        ("workflow concurrency", default(&answer["workflow_limit"])),
        ("weight", default(&answer["weight"])),
        ("submit rate", default(&answer["submit_rate"])),
        ("submit burst", default(&answer["submit_burst"])),
    ];
    context.lines(pairs(context.palette, &rows))
}

async fn pause(context: &Context, target: PauseTarget, paused: bool) -> Result<(), CliError> {
    let verb = if paused { "pause" } else { "resume" };
    let tenant = segment(&target.tenant);
    let path = match &target.workflow {
        Some(workflow) => format!("/api/v1/tenants/{tenant}/workflows/{}/{verb}", segment(workflow)),
        None => format!("/api/v1/tenants/{tenant}/{verb}"),
    };
    let state = context.client.post(&path, None).await?;
    if context.json() {
        return context.document(&state);
    }
    let what = match &target.workflow {
        Some(workflow) => format!("workflow {workflow} of tenant {}", target.tenant),
        None => format!("tenant {}", target.tenant),
    };
    let now = if state["paused"].as_bool() == Some(true) { "paused" } else { "resumed" };
    context.line(format!("{what} {now}"))
}

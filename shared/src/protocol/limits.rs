//! Concurrency limits as the admission script reads them: the `limits` hash holds `global`, `tenant` and
//! `workflow` (the dispatchers' defaults, written by every dispatcher at start) and `tenant:<t>` /
//! `workflow:<t>` (per-tenant overrides from the admin API; PostgreSQL keeps the durable copy and the
//! reconciler restores them if Redis loses its data).

use super::keys::Keys;
use super::message::QueueError;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::Serialize;

/// The dispatchers' default limits (0 for `workflow` means "no per-workflow limit") and admission settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DefaultLimits {
    pub global: u32,
    pub tenant: u32,
    pub workflow: u32,
    /// Milliseconds of waiting worth one priority level within a tenant; 0 is strict priority.
    pub priority_aging_ms: u32,
}

/// Overrides of one tenant; `None` falls back to the default (the dispatchers' for concurrency, the API's for the
/// submit rate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct TenantOverrides {
    pub concurrency_limit: Option<i32>,
    pub workflow_limit: Option<i32>,
    /// The fair-share weight (1 when absent).
    pub weight: Option<f64>,
    /// Submissions per second.
    pub submit_rate: Option<f64>,
    /// Submissions accepted at once from a full bucket.
    pub submit_burst: Option<i32>,
}

pub fn tenant_field(tenant: &str) -> String {
    format!("tenant:{tenant}")
}

pub fn workflow_field(tenant: &str) -> String {
    format!("workflow:{tenant}")
}

/// The field of a tenant's fair-share weight (read by `admit.lua`).
pub fn weight_field(tenant: &str) -> String {
    format!("weight:{tenant}")
}

/// The field of a tenant's submit rate (read by `submit_rate.lua`).
pub fn rate_field(tenant: &str) -> String {
    format!("rate:{tenant}")
}

/// The field of a tenant's submit burst (read by `submit_rate.lua`).
pub fn burst_field(tenant: &str) -> String {
    format!("burst:{tenant}")
}

/// Writes the defaults (every dispatcher does this at start; replicas are expected to agree).
pub async fn publish_defaults(
    conn: &mut ConnectionManager,
    keys: &Keys,
    limits: DefaultLimits,
) -> Result<(), QueueError> {
    let _: () = conn
        .hset_multiple(
            keys.limits(),
            &[
                ("global", limits.global),
                ("tenant", limits.tenant),
                ("workflow", limits.workflow),
                ("aging", limits.priority_aging_ms),
            ],
        )
        .await?;
    Ok(())
}

/// Writes (or clears) one tenant's overrides.
pub async fn publish_tenant(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
    limits: impl Into<TenantOverrides>,
) -> Result<(), QueueError> {
    let limits = limits.into();
    let mut pipe = redis::pipe();
    pipe.atomic();
    let [weight, rate] = [limits.weight, limits.submit_rate].map(|v| v.map(|v| v.to_string()));
    let counts =
        [limits.concurrency_limit, limits.workflow_limit, limits.submit_burst].map(|v| v.map(|v| v.to_string()));
    let [concurrency, workflow, burst] = counts;
    for (field, value) in [
        (tenant_field(tenant), concurrency),
        (workflow_field(tenant), workflow),
        (weight_field(tenant), weight),
        (rate_field(tenant), rate),
        (burst_field(tenant), burst),
    ] {
        match value {
            Some(v) => pipe.hset(keys.limits(), field, v).ignore(),
            None => pipe.hdel(keys.limits(), field).ignore(),
        };
    }
    let _: () = pipe.query_async(conn).await?;
    Ok(())
}

/// The limits that apply to one tenant, as the dispatchers see them now. `None` when no dispatcher has
/// published its defaults yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EffectiveLimits {
    pub global: Option<u32>,
    pub tenant: Option<u32>,
    pub workflow: Option<u32>,
}

pub async fn effective(conn: &mut ConnectionManager, keys: &Keys, tenant: &str) -> Result<EffectiveLimits, QueueError> {
    let values: Vec<Option<u32>> = redis::cmd("HMGET")
        .arg(keys.limits())
        .arg("global")
        .arg("tenant")
        .arg("workflow")
        .arg(tenant_field(tenant))
        .arg(workflow_field(tenant))
        .query_async(conn)
        .await?;
    let [global, tenant_default, workflow_default, tenant_override, workflow_override] = values[..] else {
        return Err(QueueError::Malformed(format!("HMGET returned {} values for 5 fields", values.len())));
    };
    Ok(EffectiveLimits {
        global,
        tenant: tenant_override.or(tenant_default),
        workflow: workflow_override.or(workflow_default).filter(|w| *w > 0),
    })
}

/// The member of `Keys::paused` that pauses the whole tenant (no workflow can be named `*`).
pub const WHOLE_TENANT: &str = "*";

/// Pauses or resumes a tenant (`member` [`WHOLE_TENANT`]) or one workflow of it (`member` its name), as
/// `record::set_paused` records it; a resume wakes idle dispatchers. Returns whether this changed anything (it is
/// idempotent).
pub async fn set_paused(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
    member: &str,
    paused: bool,
) -> Result<bool, QueueError> {
    let changed: i64 = if paused {
        conn.sadd(keys.paused(tenant), member).await?
    } else {
        let (removed, _): (i64, i64) =
            redis::pipe().srem(keys.paused(tenant), member).publish(keys.wake(), "resumed").query_async(conn).await?;
        removed
    };
    Ok(changed > 0)
}

/// What of `tenant` is paused: [`WHOLE_TENANT`] and workflow names.
pub async fn paused(conn: &mut ConnectionManager, keys: &Keys, tenant: &str) -> Result<Vec<String>, QueueError> {
    Ok(conn.smembers(keys.paused(tenant)).await?)
}

/// The tenants with a submit rate of their own (`rate:<tenant>` fields).
pub async fn tenants_with_own_rate(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> Result<std::collections::HashSet<String>, QueueError> {
    let fields: Vec<String> = conn.hkeys(keys.limits()).await?;
    Ok(fields.into_iter().filter_map(|f| f.strip_prefix("rate:").map(str::to_owned)).collect())
}

/// One tenant's admission settings as Redis holds them: its own weight, submit rate and burst (None: the default
/// applies) and what of it is paused ([`WHOLE_TENANT`] and workflow names). One round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantAdmission {
    pub weight: Option<f64>,
    pub submit_rate: Option<f64>,
    pub submit_burst: Option<u32>,
    pub paused: Vec<String>,
}

pub async fn tenant_admission(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
) -> Result<TenantAdmission, QueueError> {
    type Own = (Option<f64>, Option<f64>, Option<u32>);
    let ((weight, submit_rate, submit_burst), mut paused): (Own, Vec<String>) = redis::pipe()
        .cmd("HMGET")
        .arg(keys.limits())
        .arg(weight_field(tenant))
        .arg(rate_field(tenant))
        .arg(burst_field(tenant))
        .smembers(keys.paused(tenant))
        .query_async(conn)
        .await?;
    paused.sort();
    Ok(TenantAdmission { weight, submit_rate, submit_burst, paused })
}

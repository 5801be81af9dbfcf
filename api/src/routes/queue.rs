//! `GET /api/v1/queue`: per tenant (the caller's; every tenant with work for an admin) and per workflow: what
//! waits and since when, what runs against which limit, what was admitted in the last minute and how long it
//! had waited; the admission settings; and the live dispatchers with their in-flight counts.
//!
//! Where each figure comes from: `queue` (lanes), `running`, the limits and the admission settings from Redis,
//! as admission sees them; per-workflow `queued` and the oldest queued age from PostgreSQL (one grouped scan of
//! the unfinished executions); `admitted_last_minute` and the wait percentiles from the documents the live
//! dispatchers write every 2 s (`protocol::dispatcher_stats`: a window of 55-60 s, percentiles at most 19%
//! above the true value; admissions of a dispatcher that has stopped are no longer counted).

use crate::auth::Scope;
use crate::error::ApiError;
use crate::params::{self, ParamsRejection, QueryParams};
use crate::rules::DISPATCHER_ALIVE_WITHIN;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use flow_like_shared::protocol::dispatcher_stats::{self, Admissions, AdmittedByWorkflow};
use flow_like_shared::protocol::limits::{self, EffectiveLimits};
use flow_like_shared::protocol::{self, reads::TenantQueue};
use flow_like_shared::record::backlog::{self, Backlog};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which tenant.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    /// Admins: only this tenant (every tenant with work when absent). A tenant key may name only its own.
    pub tenant: Option<String>,
}

/// The queue view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    /// The caller's tenant; for an admin every tenant with queued, running or recently admitted work (or the one
    /// asked for), by name.
    pub tenants: Vec<TenantQueueView>,
    /// Executions running across all tenants.
    pub global_running: u64,
    /// Dispatchers with a recent heartbeat.
    pub dispatchers_alive: u64,
    /// Those dispatchers.
    pub dispatchers: Vec<DispatcherView>,
}

/// One tenant's queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantQueueView {
    pub tenant: String,
    #[schema(value_type = Object)]
    pub queue: TenantQueue,
    #[schema(value_type = Object)]
    pub limits: EffectiveLimits,
    pub admission: AdmissionView,
    /// Seconds the oldest queued execution has waited since it was submitted; null when none is queued.
    pub oldest_queued_age_secs: Option<f64>,
    /// Executions admitted (claimed by a dispatcher) in the last minute.
    pub admitted_last_minute: u64,
    /// Median queue wait (ms, submit or retry to claim) of those admissions; null when there were none.
    pub wait_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub wait_p99_ms: Option<f64>,
    /// Its workflows with unfinished or recently admitted work, by name.
    pub workflows: Vec<WorkflowQueueView>,
}

/// Waiting and recent admissions, of a tenant or of one workflow (the views' last four fields).
struct Recent {
    oldest_queued_age_secs: Option<f64>,
    admitted_last_minute: u64,
    wait_p50_ms: Option<f64>,
    wait_p99_ms: Option<f64>,
}

impl Recent {
    fn of(oldest: Option<DateTime<Utc>>, admissions: &Admissions, now: DateTime<Utc>) -> Self {
        Self {
            oldest_queued_age_secs: oldest.map(|t| ((now - t).num_milliseconds().max(0) as f64) / 1000.0),
            admitted_last_minute: admissions.admitted,
            wait_p50_ms: admissions.waits.quantile(0.5),
            wait_p99_ms: admissions.waits.quantile(0.99),
        }
    }
}

/// One workflow of a tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowQueueView {
    pub workflow: String,
    /// Executions queued (the record's count, including ones claimed and not yet dispatched).
    pub queued: u64,
    /// Executions holding a concurrency lease (dispatched or running).
    pub running: u64,
    /// The workflow limit that applies (the tenant's override or the default); null: none.
    pub limit: Option<u32>,
    /// Paused, by itself or with its whole tenant.
    pub paused: bool,
    /// Seconds the oldest queued execution has waited since it was submitted; null when none is queued.
    pub oldest_queued_age_secs: Option<f64>,
    /// Executions admitted (claimed by a dispatcher) in the last minute.
    pub admitted_last_minute: u64,
    /// Median queue wait (ms, submit or retry to claim) of those admissions; null when there were none.
    pub wait_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub wait_p99_ms: Option<f64>,
}

/// A live dispatcher.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DispatcherView {
    pub id: String,
    pub last_heartbeat: DateTime<Utc>,
    /// Attempts it runs, as of its last stats write (null before the first one).
    pub in_flight: Option<u64>,
}

/// How admission treats the tenant: its fair-share weight, its submit rate limit, what of it is paused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdmissionView {
    /// Its share of admissions when tenants compete, relative to the others' weights.
    #[schema(exclusive_minimum = 0)]
    pub weight: f64,
    /// Submissions per second it may sustain (its own rate or the API's default); null: no limit.
    pub submit_rate: Option<f64>,
    /// Submissions it may make at once after a quiet spell; null when there is no limit.
    #[schema(minimum = 1)]
    pub submit_burst: Option<u32>,
    /// Nothing of the tenant is admitted (`POST /tenants/{tenant}/pause`).
    pub paused: bool,
    /// Its paused workflows.
    pub paused_workflows: Vec<String>,
}

/// Queue depth, in-flight work, limits and recent admissions, per tenant and workflow; the live dispatchers.
#[utoipa::path(
    get, path = "/api/v1/queue", operation_id = "getQueue", tag = "queue",
    params(QueueParams),
    responses(
        (status = 200, body = QueueView),
        (status = 400, description = "A malformed tenant name", body = crate::error::Problem),
        (status = 403, description = "A tenant key named another tenant", body = crate::error::Problem),
        (status = 503, body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    scope: Scope,
    query: Result<QueryParams<QueueParams>, ParamsRejection>,
) -> Result<Json<QueueView>, ApiError> {
    let params = params::query(query)?;
    crate::rules::check_tenant_query(params.tenant.as_deref())?;
    let tenant = scope.narrow(params.tenant.as_deref())?;
    let mut redis = state.redis.clone();
    let live = dispatcher_stats::live(&mut redis, &state.keys, DISPATCHER_ALIVE_WITHIN).await?;
    let (global_running, _) = protocol::reads::global_running(&mut redis, &state.keys, DISPATCHER_ALIVE_WITHIN).await?;
    // Tenant -> workflow -> admissions, merged across the live dispatchers.
    let mut admitted = AdmittedByWorkflow::new();
    for stats in live.iter().filter_map(|d| d.stats.as_ref()) {
        for (t, workflows) in &stats.admitted {
            if tenant.as_deref().is_some_and(|only| only != t) {
                continue;
            }
            let into = admitted.entry(t.clone()).or_default();
            for (workflow, admissions) in workflows {
                into.entry(workflow.clone()).or_default().merge(admissions);
            }
        }
    }
    let mut backlog: BTreeMap<String, Vec<Backlog>> = BTreeMap::new();
    for row in backlog::backlog(&state.db, tenant.as_deref()).await? {
        backlog.entry(row.tenant.clone()).or_default().push(row);
    }
    let names: BTreeSet<String> = match &tenant {
        Some(one) => BTreeSet::from([one.clone()]),
        None => backlog.keys().chain(admitted.keys()).cloned().collect(),
    };
    let now = Utc::now();
    let mut tenants = Vec::with_capacity(names.len());
    for name in names {
        let rows = backlog.remove(&name).unwrap_or_default();
        let admissions = admitted.remove(&name).unwrap_or_default();
        tenants.push(tenant_view(&state, name, rows, admissions, now).await?);
    }
    let dispatchers = live
        .iter()
        .map(|d| DispatcherView {
            id: d.id.clone(),
            last_heartbeat: DateTime::<Utc>::from_timestamp_millis(d.heartbeat_ms).unwrap_or_default(),
            in_flight: d.stats.as_ref().map(|s| s.in_flight),
        })
        .collect();
    Ok(Json(QueueView { tenants, global_running, dispatchers_alive: live.len() as u64, dispatchers }))
}

async fn tenant_view(
    state: &AppState,
    tenant: String,
    backlog: Vec<Backlog>,
    mut admitted: BTreeMap<String, Admissions>,
    now: DateTime<Utc>,
) -> Result<TenantQueueView, ApiError> {
    let mut redis = state.redis.clone();
    let queue = protocol::reads::tenant_queue(&mut redis, &state.keys, &tenant).await?;
    let limits = limits::effective(&mut redis, &state.keys, &tenant).await?;
    let admission = admission_view(state, limits::tenant_admission(&mut redis, &state.keys, &tenant).await?);
    let mut names: BTreeSet<String> = backlog.iter().map(|b| b.workflow_name.clone()).collect();
    names.extend(admitted.keys().cloned());
    let names: Vec<String> = names.into_iter().collect();
    let running = protocol::reads::workflow_running(&mut redis, &state.keys, &tenant, &names).await?;
    let mut rows: BTreeMap<String, Backlog> = backlog.into_iter().map(|b| (b.workflow_name.clone(), b)).collect();
    let (mut whole, mut oldest) = (Admissions::default(), None::<DateTime<Utc>>);
    let workflows = names
        .into_iter()
        .zip(running)
        .map(|(workflow, running)| {
            let row = rows.remove(&workflow);
            let admissions = admitted.remove(&workflow).unwrap_or_default();
            whole.merge(&admissions);
            let queued_since = row.as_ref().and_then(|r| r.oldest_queued_at);
            oldest = match (oldest, queued_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Recent { oldest_queued_age_secs, admitted_last_minute, wait_p50_ms, wait_p99_ms } =
                Recent::of(queued_since, &admissions, now);
            WorkflowQueueView {
                paused: admission.paused || admission.paused_workflows.contains(&workflow),
                queued: row.map_or(0, |r| r.queued.max(0) as u64),
                running,
                limit: limits.workflow,
                oldest_queued_age_secs,
                admitted_last_minute,
                wait_p50_ms,
                wait_p99_ms,
                workflow,
            }
        })
        .collect();
    let Recent { oldest_queued_age_secs, admitted_last_minute, wait_p50_ms, wait_p99_ms } =
        Recent::of(oldest, &whole, now);
    Ok(TenantQueueView {
        tenant,
        queue,
        limits,
        admission,
        oldest_queued_age_secs,
        admitted_last_minute,
        wait_p50_ms,
        wait_p99_ms,
        workflows,
    })
}

fn admission_view(state: &AppState, own: limits::TenantAdmission) -> AdmissionView {
    let defaults = state.settings.submit_rate;
    let submit_rate = own.submit_rate.or((defaults.rate > 0.0).then_some(defaults.rate));
    // As the rate script sizes the bucket: the tenant's burst, else the default, else the rate rounded up.
    let submit_burst = submit_rate.map(|rate| {
        own.submit_burst.or((defaults.burst > 0).then_some(defaults.burst)).unwrap_or(rate.ceil().max(1.0) as u32)
    });
    let paused = own.paused.iter().any(|m| m == limits::WHOLE_TENANT);
    let paused_workflows = own.paused.into_iter().filter(|m| m != limits::WHOLE_TENANT).collect();
    AdmissionView {
        weight: own.weight.filter(|w| *w > 0.0).unwrap_or(1.0),
        submit_rate,
        submit_burst,
        paused,
        paused_workflows,
    }
}

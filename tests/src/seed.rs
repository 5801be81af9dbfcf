//! Putting executions in states that take long to reach for real, exactly as the product leaves them.

use flow_like_shared::protocol::{QueueBody, QueueMessage};
use flow_like_test_harness::TestApi;
use redis::AsyncCommands;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A dead letter as the dispatcher writes one.
#[derive(Debug, Clone)]
pub struct DeadLetterSeed<'a> {
    pub tenant: &'a str,
    pub workflow: &'a str,
    pub attempts: i32,
    pub reason: &'a str,
    pub dead_at_ms: i64,
}

impl<'a> DeadLetterSeed<'a> {
    pub fn new(tenant: &'a str, reason: &'a str) -> Self {
        Self { tenant, workflow: "double", attempts: 1, reason, dead_at_ms: chrono::Utc::now().timestamp_millis() }
    }
}

/// Leaves `id` as the dispatcher leaves a dead-lettered execution: `failed` with the reason, out of its lane
/// (if it was in one), and an entry on the dead-letter stream. Returns the entry id.
pub async fn dead_letter(api: &TestApi, id: Uuid, seed: &DeadLetterSeed<'_>) -> String {
    sqlx::query(
        "UPDATE executions SET status = 'failed', attempts = $2, error = $3, finished_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(seed.attempts)
    .bind(seed.reason)
    .execute(&api.db)
    .await
    .unwrap();
    let mut redis = api.redis.clone();
    let entry: Option<String> = redis.hget(api.keys.queued(), id.to_string()).await.unwrap();
    if let Some((lane, entry_id)) = entry.as_deref().and_then(|e| e.split_once(' ')) {
        let _: () = redis.xdel(lane, &[entry_id]).await.unwrap();
        let _: () = redis.hdel(api.keys.queued(), id.to_string()).await.unwrap();
    }
    let message = QueueMessage {
        execution_id: id,
        tenant: seed.tenant.into(),
        workflow: seed.workflow.into(),
        priority: 5,
        attempt: u32::try_from(seed.attempts).unwrap(),
        queued_at_ms: 1_700_000_000_000,
        body: QueueBody { workflow_version: None, labels: BTreeMap::new(), traceparent: None },
    };
    let mut fields = message.to_fields().unwrap();
    fields.push(("reason", seed.reason.as_bytes().to_vec()));
    fields.push(("dead_at", seed.dead_at_ms.to_string().into_bytes()));
    fields.push(("deliveries", b"5".to_vec()));
    redis.xadd(api.keys.dead_letters(), "*", &fields).await.unwrap()
}

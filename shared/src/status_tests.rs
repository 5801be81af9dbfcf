//! Unit tests of `status.rs`.

use super::*;

fn as_redis(fields: Vec<(&'static str, Vec<u8>)>) -> HashMap<String, redis::Value> {
    fields.into_iter().map(|(name, value)| (name.to_owned(), redis::Value::BulkString(value))).collect()
}

fn every_event() -> Vec<StatusEvent> {
    vec![
        StatusEvent::Dispatched {
            dispatcher: "d-1".into(),
            runner: "process".into(),
            runner_ref: Some("pid 42".into()),
            claimed_at_ms: 1_700_000_000_000,
        },
        StatusEvent::Retrying { error: "exit 137".into(), next_attempt: 2, retry_at_ms: 1_700_000_001_000 },
        StatusEvent::Started { startup_ms: 7 },
        StatusEvent::Node {
            node: "fetch".into(),
            phase: NodePhase::AttemptFailed,
            attempt: 2,
            duration_ms: None,
            error: Some("http status 503".into()),
            retry_in_ms: Some(250),
        },
        StatusEvent::Node {
            node: "total".into(),
            phase: NodePhase::Succeeded,
            attempt: 1,
            duration_ms: Some(12),
            error: None,
            retry_in_ms: None,
        },
        StatusEvent::Log { node: Some("say".into()), item: Some(3), level: LogLevel::Warn, message: "hello".into() },
        StatusEvent::Log { node: None, item: None, level: LogLevel::Error, message: "spec unreadable".into() },
        StatusEvent::Finished {
            outcome: FinishedOutcome::TimedOut,
            error: Some("deadline".into()),
            result_key: Some("executions/x/attempts/1/result.json".into()),
            duration_ms: 1500,
            nodes: vec![
                NodeRun {
                    node_type: "transform".into(),
                    phase: NodePhase::Succeeded,
                    attempts: 1,
                    duration_ms: Some(2),
                },
                NodeRun { node_type: "fail".into(), phase: NodePhase::Skipped, attempts: 0, duration_ms: None },
            ],
        },
    ]
}

#[test]
fn every_event_round_trips_through_stream_fields() {
    let execution = Uuid::now_v7();
    for (i, event) in every_event().into_iter().enumerate() {
        let entry =
            StatusEntry { execution, attempt: 2, seq: i as u64 + 1, at_ms: 1_700_000_000_000 + i as i64, event };
        let parsed = StatusEntry::from_fields(&as_redis(entry.to_fields().unwrap())).unwrap();
        assert_eq!(parsed, entry);
    }
}

#[test]
fn readable_fields_carry_the_header() {
    let execution = Uuid::now_v7();
    let event = StatusEvent::Finished {
        outcome: FinishedOutcome::Cancelled,
        error: None,
        result_key: None,
        duration_ms: 3,
        nodes: Vec::new(),
    };
    let fields: HashMap<_, _> = event.to_fields(execution, 4, 9, 1234).unwrap().into_iter().collect();
    assert_eq!(fields["execution"], execution.to_string().into_bytes());
    assert_eq!(fields["attempt"], b"4");
    assert_eq!(fields["seq"], b"9");
    assert_eq!(fields["kind"], b"finished");
    assert_eq!(fields["at"], b"1234");
}

#[test]
fn mismatched_kind_and_missing_fields_are_malformed() {
    let execution = Uuid::now_v7();
    let mut fields = as_redis(StatusEvent::Started { startup_ms: 1 }.to_fields(execution, 1, 1, 1).unwrap());
    fields.insert("kind".into(), redis::Value::BulkString(b"finished".to_vec()));
    assert!(matches!(StatusEntry::from_fields(&fields), Err(StatusError::Malformed(_))));
    fields.insert("kind".into(), redis::Value::BulkString(b"started".to_vec()));
    fields.remove("seq");
    assert!(matches!(StatusEntry::from_fields(&fields), Err(StatusError::Malformed(_))));
}

#[test]
fn outcomes_map_to_exit_codes_and_names() {
    assert_eq!(FinishedOutcome::Succeeded.exit_code(), exit_code::SUCCEEDED);
    assert_eq!(FinishedOutcome::Failed.exit_code(), exit_code::WORKFLOW_FAILED);
    assert_eq!(FinishedOutcome::TimedOut.exit_code(), exit_code::WORKFLOW_FAILED);
    assert_eq!(FinishedOutcome::Cancelled.exit_code(), exit_code::CANCELLED);
    assert_eq!(FinishedOutcome::TimedOut.as_str(), "timed_out");
    assert_eq!(serde_json::to_value(FinishedOutcome::TimedOut).unwrap(), serde_json::json!("timed_out"));
    for kind in [
        EventKind::Dispatched,
        EventKind::Started,
        EventKind::Node,
        EventKind::Log,
        EventKind::Retrying,
        EventKind::Finished,
    ] {
        assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
    }
}

//! A finished execution's progress leaves Redis: the status pipeline archives the progress stream in PostgreSQL
//! with the execution's end and deletes it, and the event stream serves the archive with the same event ids, so
//! a client that connects or resumes after the end gets what it would have got live. Against real PostgreSQL,
//! Redis and S3, with a dispatcher on the process runner.

use flow_like_shared::status::FinishedOutcome;
use flow_like_test_harness::{DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::fixtures::{Submission, WorkflowDoc, submit, wait_terminal, wait_until};
use flow_like_tests::inspect::{finished_outcomes, progress_events};
use flow_like_tests::sse::{open_events, read_events};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_execution_leaves_no_progress_in_redis_and_its_events_stream_from_postgresql() -> anyhow::Result<()>
{
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "archive-d1")?).await?;
    let workflow = WorkflowDoc::new().transform("double", ".input * 2").output("double").build();
    let ids = [
        submit(&api, &key, &Submission::of(workflow.clone()).input(json!(2)).body()).await?,
        submit(&api, &key, &Submission::of(workflow).input(json!(3)).body()).await?,
    ];
    assert_eq!(wait_terminal(&api.db, &ids, Duration::from_secs(60)).await?, ["succeeded", "succeeded"]);
    let api_ref = &api;
    wait_until(Duration::from_secs(10), "the progress streams to leave Redis", || async move {
        let keys = api_ref.redis_keys().await?;
        Ok(ids.iter().all(|id| !keys.iter().any(|k| k.contains(&id.to_string()))))
    })
    .await?;

    for id in ids {
        // Everything that was on the stream is in the archive, in order, ending with the end.
        let archived = progress_events(&api, id).await?;
        let kinds: Vec<&str> = archived.iter().map(|(_, e)| e.event.kind().as_str()).collect();
        assert_eq!(kinds.first(), Some(&"dispatched"), "{kinds:?}");
        assert!(kinds.contains(&"started") && kinds.contains(&"node"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"finished"), "{kinds:?}");
        assert_eq!(finished_outcomes(&api, id).await?, [FinishedOutcome::Succeeded]);
        let archived_ids: Vec<String> = archived.iter().map(|(entry_id, _)| entry_id.clone()).collect();

        // A client that connects after the end gets every event with its stream id, and the stream ends.
        let events = read_events(open_events(&api, &key, id, None).await, Duration::from_secs(20)).await;
        assert_eq!(events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), archived_ids);
        assert_eq!(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), kinds);
        let last = events.last().unwrap();
        assert_eq!(
            (last.data["outcome"].as_str(), last.data["execution"].as_str()),
            (Some("succeeded"), Some(&*id.to_string()))
        );

        // Resuming from an event id gets only what followed it; from the last one, nothing.
        let resumed =
            read_events(open_events(&api, &key, id, Some(&archived_ids[1])).await, Duration::from_secs(20)).await;
        assert_eq!(resumed.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), archived_ids[2..]);
        let after_end = read_events(
            open_events(&api, &key, id, archived_ids.last().map(String::as_str)).await,
            Duration::from_secs(20),
        )
        .await;
        assert!(after_end.is_empty(), "{} events after the last one", after_end.len());
    }
    dispatcher.stop().await?;
    Ok(())
}

//! Unit tests of `watch.rs`.

use super::*;
use serde_json::json;

fn job(name: &str, execution: Uuid, attempt: u32, complete: bool) -> SlimJob {
    let conditions = if complete { json!([{"type": "Complete", "status": "True"}]) } else { json!([]) };
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "creationTimestamp": "2026-11-26T01:00:00Z",
            "labels": {LABEL_EXECUTION: execution.to_string(), LABEL_ATTEMPT: attempt.to_string()}
        },
        "status": {"conditions": conditions}
    }))
    .unwrap()
}

fn names(tracker: &Tracker) -> BTreeMap<String, (Uuid, u32)> {
    let jobs = tracker.unfinished_jobs().expect("listed");
    jobs.into_iter().map(|j| (j.job_name, (j.execution_id, j.attempt))).collect()
}

#[test]
fn the_sweeps_view_follows_events_and_relists() {
    let tracker = Tracker::default();
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(tracker.unfinished_jobs(), None, "not listed yet");

    tracker.apply_job(watcher::Event::Init);
    tracker.apply_job(watcher::Event::InitApply(job("a", a, 1, false)));
    tracker.apply_job(watcher::Event::InitApply(job("b", b, 2, false)));
    tracker.apply_job(watcher::Event::InitApply(job("done", c, 1, true)));
    let unlabelled: SlimJob = serde_json::from_value(json!({"metadata": {"name": "someone-elses"}})).unwrap();
    tracker.apply_job(watcher::Event::InitApply(unlabelled));
    tracker.apply_job(watcher::Event::InitDone);
    assert_eq!(names(&tracker), BTreeMap::from([("a".into(), (a, 1)), ("b".into(), (b, 2))]));
    let created = tracker.unfinished_jobs().unwrap()[0].created_at_ms;
    assert_eq!(created, Some(1_795_654_800_000));

    // b finishes, c's next attempt starts, a is deleted.
    tracker.apply_job(watcher::Event::Apply(job("b", b, 2, true)));
    tracker.apply_job(watcher::Event::Apply(job("c2", c, 2, false)));
    tracker.apply_job(watcher::Event::Delete(job("a", a, 1, false)));
    assert_eq!(names(&tracker), BTreeMap::from([("c2".into(), (c, 2))]));

    // A relist after the watch was down: c2 was deleted meanwhile (no event), d was created.
    let d = Uuid::now_v7();
    tracker.apply_job(watcher::Event::Init);
    tracker.apply_job(watcher::Event::InitApply(job("d", d, 1, false)));
    tracker.apply_job(watcher::Event::InitDone);
    assert_eq!(names(&tracker), BTreeMap::from([("d".into(), (d, 1))]));
}

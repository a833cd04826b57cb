//! Whether a success is a restore is decided from the pipeline's earlier executions as they stood when it ended,
//! so a late delivery cannot turn it into one, and an earlier execution whose end is not recorded yet defers it.

use chrono::{DateTime, TimeZone, Utc};
use tollgate_domain::record::keys::ExecutionKey;
use tollgate_domain::record::ports::ExecutionSummary;
use tollgate_domain::record::timeline::ExecutionTimeline;
use tollgate_domain::tell::notify::{execution_notifications, restore_undecided, NotificationKind};

fn at(min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, min, 0).unwrap()
}

fn key(id: &str) -> ExecutionKey {
    ExecutionKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "orders".into(),
        execution_id: id.into(),
    }
}

fn summary(id: &str, started: u32, states: &[(u32, &str)]) -> ExecutionSummary {
    ExecutionSummary {
        key: key(id),
        started_at: at(started),
        pipeline_states: states.iter().map(|(m, s)| (at(*m), s.to_string())).collect(),
    }
}

/// Execution `this` started at minute 20 and succeeded at minute 30.
fn succeeded() -> (ExecutionKey, ExecutionTimeline, ExecutionTimeline) {
    let k = key("this");
    let mut before = ExecutionTimeline::fold(&k, &[]);
    before.state = "STARTED".into();
    before.started_at = Some(at(20));
    let mut after = before.clone();
    after.state = "SUCCEEDED".into();
    after.ended_at = Some(at(30));
    (k, before, after)
}

fn restored(previous: &[ExecutionSummary]) -> bool {
    let (k, before, after) = succeeded();
    execution_notifications(&k, &before, &after, Some(previous))
        .iter()
        .any(|n| n.kind == NotificationKind::ExecutionRestored)
}

#[test]
fn a_success_after_a_failure_is_a_restore() {
    let previous = [summary("older", 10, &[(10, "STARTED"), (15, "FAILED")])];
    assert!(restored(&previous));
}

#[test]
fn an_earlier_execution_that_failed_only_after_this_one_ended_does_not_make_it_a_restore() {
    // `overlap` started before `this` and failed at minute 40, after `this` succeeded; the one before it succeeded.
    let previous = [
        summary("overlap", 15, &[(15, "STARTED"), (40, "FAILED")]),
        summary("older", 5, &[(5, "STARTED"), (9, "SUCCEEDED")]),
    ];
    assert!(
        !restored(&previous),
        "a failure after the success is not what it restored"
    );
    // Nor does a later success hide a failure that came before: read as of minute 30, `overlap` was running.
    let previous = [
        summary("overlap", 15, &[(15, "STARTED"), (40, "SUCCEEDED")]),
        summary("older", 5, &[(5, "STARTED"), (9, "FAILED")]),
    ];
    assert!(restored(&previous));
}

#[test]
fn an_earlier_execution_with_no_recorded_end_leaves_the_restore_undecided() {
    let (k, _, after) = succeeded();
    let running = [
        summary("late", 15, &[(15, "STARTED")]),
        summary("older", 5, &[(5, "STARTED"), (9, "FAILED")]),
    ];
    assert!(restore_undecided(&k, &after, &running));
    // Once its end (before this one's) is recorded, the answer is known: it succeeded, so nothing was restored.
    let ended = [
        summary("late", 15, &[(15, "STARTED"), (18, "SUCCEEDED")]),
        summary("older", 5, &[(5, "STARTED"), (9, "FAILED")]),
    ];
    assert!(!restore_undecided(&k, &after, &ended));
    assert!(!restored(&ended));
    // Terminal earlier executions (failed, superseded) never leave it undecided.
    let done = [
        summary("superseded", 15, &[(15, "STARTED"), (17, "SUPERSEDED")]),
        summary("older", 5, &[(5, "STARTED"), (9, "FAILED")]),
    ];
    assert!(!restore_undecided(&k, &after, &done));
    assert!(restored(&done));
}

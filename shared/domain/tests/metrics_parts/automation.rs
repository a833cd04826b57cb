//! Automation health: the audit trail's actions, their error rates, durations and manual fallbacks.

use super::*;

// ---------------------------------------------------------------------------------------------------------------
// Automation health

const SHOP_SCOPE: &str = "pipeline:111122223333/eu-west-1/shop";

/// An audit entry of `SHOP_SCOPE` (seq `seq`; the chain's hashes do not matter to the metrics).
fn entry(seq: u64, at: DateTime<Utc>, actor: &str, action: &str, subject: &str, detail: Value) -> AuditEntry {
    AuditEntry {
        scope: SHOP_SCOPE.into(),
        seq,
        at,
        actor: actor.into(),
        action: action.into(),
        subject: subject.into(),
        detail,
        prev_hash: GENESIS.into(),
        hash: String::new(),
    }
}

fn gate_entry(seq: u64, at: DateTime<Utc>, decision_id: &str, outcome: &str, summary: &str) -> AuditEntry {
    entry(
        seq,
        at,
        "tollgate:gate",
        "gate.decision",
        "e1/Production",
        serde_json::json!({ "decision_id": decision_id, "outcome": outcome, "summary": summary }),
    )
}

/// A gate decision first evaluated at `first` and decided at `decided`, with one evaluated check unless `evaluated`
/// is false (the gate could not read its policy).
fn decision(id: &str, outcome: Outcome, first: DateTime<Utc>, decided: DateTime<Utc>, evaluated: bool) -> GateDecision {
    GateDecision {
        id: id.into(),
        job_id: id.into(),
        decided_by: "tollgate:gate".into(),
        decided_at: decided,
        context: Some(JobContext {
            account: ACCOUNT.into(),
            region: REGION.into(),
            pipeline: "shop".into(),
            stage: "Production".into(),
            action: "Gate".into(),
            execution_id: "e1".into(),
        }),
        policy: None,
        outcome,
        summary: String::new(),
        checks: if evaluated {
            vec![CheckResult {
                check: CheckKind::Window,
                status: CheckStatus::Pass,
                observed: "inside".into(),
                required: "inside".into(),
                earliest_pass: None,
                message: "inside the window".into(),
            }]
        } else {
            Vec::new()
        },
        explanation: String::new(),
        first_evaluated_at: first,
        previous: Vec::new(),
        answer: JobAnswer::Failure {
            kind: FailureKind::JobFailed,
            message: String::new(),
            external_execution_id: id.into(),
        },
        override_applied: None,
    }
}

#[test]
fn gate_decisions_give_the_gate_families_error_rate_and_time_to_a_final_decision() {
    let day = day("2026-11-20");
    // j1: passed after waiting 30 min (09:00 -> 09:30); j2: a wait at 10:00 (no latency); j3: failed by the policy
    // at once (not an error, latency 0); j4: could not read its policy (an error, latency 0); j5: its record is
    // missing, and its summary says it could not evaluate (an error, latency unknown).
    let decisions = vec![
        decision("j1", Outcome::Pass, nov20("09:00"), nov20("09:30"), true),
        decision(
            "j2",
            Outcome::Wait {
                recheck_at: nov20("10:05"),
            },
            nov20("10:00"),
            nov20("10:00"),
            true,
        ),
        decision("j3", Outcome::Fail, nov20("11:00"), nov20("11:00"), true),
        decision("j4", Outcome::Fail, nov20("12:00"), nov20("12:00"), false),
    ];
    let audit = vec![
        gate_entry(1, nov20("09:30"), "j1", "pass", "all checks pass"),
        gate_entry(2, nov20("10:00"), "j2", "wait", "bake time"),
        gate_entry(3, nov20("11:00"), "j3", "fail", "alarm in ALARM"),
        gate_entry(
            4,
            nov20("12:00"),
            "j4",
            "fail",
            "the gate cannot evaluate: p.yaml:1:1: ...",
        ),
        gate_entry(
            5,
            nov20("13:00"),
            "j5",
            "fail",
            "the gate cannot evaluate: no input artifact",
        ),
        // Outside the period: not counted.
        gate_entry(
            6,
            at("2026-11-21T00:00:00Z"),
            "j6",
            "fail",
            "the gate cannot evaluate: x",
        ),
    ];
    let r = compute_with_audit(&[], &no_configs(), &day, &audit, &decisions);
    let a = &r.automation;
    assert_eq!(a.audit_entries, 5);
    assert_eq!((a.actions, a.errors, a.error_rate), (5, 2, Some(0.4)));
    assert_eq!(
        a.families["gate"],
        FamilyHealth {
            actions: 5,
            errors: 2,
            error_rate: Some(0.4),
            // Latencies 0, 0, 1,800,000 ms: median rank 2 -> 0, p90 rank 3 -> 1,800,000, mean 600,000.
            latency_ms: LatencyStats {
                measured: 3,
                median: Some(0),
                p90: Some(1_800_000),
                mean: Some(600_000),
            },
        }
    );
    assert_eq!(a.manual.total, 0);
}

#[test]
fn any_new_action_family_is_counted_from_its_outcome_and_duration() {
    let day = day("2026-11-20");
    let guard = "tollgate:guard";
    let audit = vec![
        entry(
            1,
            nov20("09:00"),
            guard,
            "rollback.stop_deployment",
            "d-1",
            serde_json::json!({ "outcome": "ok", "duration_ms": 1200 }),
        ),
        entry(
            2,
            nov20("09:10"),
            guard,
            "rollback.stop_deployment",
            "d-2",
            serde_json::json!({ "outcome": "Refused", "duration_ms": 800 }),
        ),
        entry(
            3,
            nov20("09:20"),
            "tollgate:hook",
            "hook.verdict",
            "d-3",
            serde_json::json!({ "outcome": "ok", "started_at": "2026-11-20T09:19:57Z" }),
        ),
        entry(
            4,
            nov20("09:30"),
            "tollgate:hook",
            "hook.verdict",
            "d-4",
            serde_json::json!({ "error": "throttled" }),
        ),
        entry(
            5,
            nov20("09:40"),
            "tollgate:changeset",
            "changeset.execute",
            "s",
            serde_json::json!({ "outcome": "succeeded" }),
        ),
        // A negative duration and a start after the entry are not latencies.
        entry(
            6,
            nov20("09:50"),
            "tollgate:changeset",
            "changeset.execute",
            "s",
            serde_json::json!({ "duration_ms": -5, "error": false }),
        ),
    ];
    let r = compute_with_audit(&[], &no_configs(), &day, &audit, &[]);
    let a = &r.automation;
    assert_eq!((a.actions, a.errors), (6, 2));
    assert_eq!(a.error_rate, Some(2.0 / 6.0));
    let rollback = &a.families["rollback"];
    assert_eq!((rollback.actions, rollback.errors), (2, 1));
    // 800 and 1,200 ms: median rank 1 -> 800, p90 rank 2 -> 1,200, mean 1,000.
    assert_eq!(
        rollback.latency_ms,
        LatencyStats {
            measured: 2,
            median: Some(800),
            p90: Some(1200),
            mean: Some(1000),
        }
    );
    let hook = &a.families["hook"];
    assert_eq!((hook.actions, hook.errors, hook.error_rate), (2, 1, Some(0.5)));
    assert_eq!(hook.latency_ms.measured, 1);
    assert_eq!(hook.latency_ms.median, Some(3000));
    let changeset = &a.families["changeset"];
    assert_eq!(
        (changeset.actions, changeset.errors, changeset.latency_ms.measured),
        (2, 0, 0)
    );
    assert_eq!(a.families.keys().collect::<Vec<_>>(), ["changeset", "hook", "rollback"]);
}

#[test]
fn approvals_overrides_and_manual_rollbacks_are_manual_fallbacks() {
    let day = day("2026-11-20");
    let alice = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
    let audit = vec![
        entry(
            1,
            nov20("09:00"),
            alice,
            "approval.approve",
            "e1/Production",
            serde_json::json!({}),
        ),
        // Recorded by a Tollgate function on a person's behalf: still a person's decision.
        entry(
            2,
            nov20("09:05"),
            "tollgate:approval",
            "approval.reject",
            "e2/Production",
            serde_json::json!({}),
        ),
        entry(
            3,
            nov20("09:10"),
            alice,
            "override",
            "e3/Production",
            serde_json::json!({ "reason": "INC-1" }),
        ),
        entry(4, nov20("09:20"), alice, "freeze", SHOP_SCOPE, serde_json::json!({})),
        // Tollgate's guard rolled back execution r-guard and stopped d-guard: not manual.
        entry(
            5,
            nov20("07:55"),
            "tollgate:guard",
            "rollback.rollback_stage",
            "shop/Production",
            serde_json::json!({ "outcome": "ok", "rollback_execution_id": "r-guard" }),
        ),
        entry(
            6,
            nov20("08:55"),
            "tollgate:guard",
            "rollback.stop_deployment",
            "d-guard",
            serde_json::json!({ "outcome": "ok" }),
        ),
    ];
    // Two successful deployments, then: a person's rollback (ManualRollback), one by RollbackStage, Tollgate's
    // rollback (named by entry 5), CodePipeline's own automated rollback, and a person's rollback the day before.
    let mut timelines = vec![
        deploy("shop", "e1", nov20("06:00"), "SUCCEEDED", nov20("06:30")).done(),
        deploy("shop", "e2", nov20("07:00"), "SUCCEEDED", nov20("07:30")).done(),
    ];
    for (id, trigger, start) in [
        ("r-person", "ManualRollback", nov20("12:00")),
        ("r-api", "RollbackStage", nov20("13:00")),
        ("r-guard", "ManualRollback", nov20("08:00")),
        ("r-codepipeline", "AutomatedRollback", nov20("14:00")),
        ("r-yesterday", "ManualRollback", at("2026-11-19T12:00:00Z")),
    ] {
        timelines.push(
            Exec::new("shop", id, start)
                .trigger(trigger)
                .stage("Production", "SUCCEEDED", start, Some(start + secs(60)))
                .ended("SUCCEEDED", start + secs(61))
                .done(),
        );
    }
    // Deployments stopped: one by a person (d-stop), one by Tollgate (d-guard), one that failed (not a stop).
    for (id, state, start) in [
        ("d-stop", "STOP", nov20("15:00")),
        ("d-guard", "STOP", nov20("08:50")),
        ("d-fail", "FAILURE", nov20("16:00")),
    ] {
        timelines.push(
            Exec::new("shop", &format!("x-{id}"), start)
                .stage("Staging", "FAILED", start, Some(start + secs(120)))
                .action(
                    "Deploy",
                    "Deploy",
                    "CodeDeploy",
                    "FAILED",
                    start,
                    Some(start + secs(100)),
                )
                .deployment(id, state)
                .ended("FAILED", start + secs(121))
                .done(),
        );
    }
    let r = compute_with_audit(&timelines, &no_configs(), &day, &audit, &[]);
    let m = &r.automation.manual;
    assert_eq!((m.approvals, m.overrides), (2, 1));
    assert_eq!(m.manual_rollbacks, 2, "r-person and r-api");
    assert_eq!(m.manual_deployment_stops, 1, "d-stop");
    assert_eq!(m.total, 6);
    // Two production deployments in the period (e1, e2): 6 fallbacks / 2.
    assert_eq!(r.pipelines[0].deployments, 2);
    assert_eq!(m.per_production_deployment, Some(3.0));
    assert_eq!(m.other_manual_actions, BTreeMap::from([("freeze".to_string(), 1)]));
    // Tollgate's two rollback entries are its actions, not fallbacks.
    assert_eq!(r.automation.families["rollback"].actions, 2);
    assert_eq!(r.automation.audit_entries, 6);

    // Without the audit trail, Tollgate's own rollback and stop look like a person's: that is why the metrics
    // function reads the trail; compute() says so with audit_entries 0.
    let alone = compute(&timelines, &no_configs(), &day);
    assert_eq!(alone.automation.audit_entries, 0);
    assert_eq!(alone.automation.manual.manual_rollbacks, 3);
    assert_eq!(alone.automation.manual.manual_deployment_stops, 2);
    assert!(alone.automation.families.is_empty());
}

#[test]
fn an_audit_entry_given_twice_counts_once_and_empty_input_has_no_rates() {
    let day = day("2026-11-20");
    let e = entry(
        1,
        nov20("09:00"),
        "tollgate:guard",
        "rollback.x",
        "d",
        serde_json::json!({ "outcome": "error" }),
    );
    let r = compute_with_audit(&[], &no_configs(), &day, &[e.clone(), e], &[]);
    assert_eq!((r.automation.actions, r.automation.errors), (1, 1));
    let empty = compute_with_audit(&[], &no_configs(), &day, &[], &[]);
    assert_eq!(empty.automation.error_rate, None);
    assert_eq!(empty.automation.manual.per_production_deployment, None);
    let json = serde_json::to_value(&empty.automation).unwrap();
    assert_eq!(json["error_rate"], Value::Null);
    // Sorted: the workspace's test build orders JSON objects by insertion (a test-only SDK feature turns on
    // serde_json's preserve_order), the functions' builds by key.
    let mut keys: Vec<&String> = json["manual"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "approvals",
            "manual_deployment_stops",
            "manual_rollbacks",
            "other_manual_actions",
            "overrides",
            "per_production_deployment",
            "total"
        ]
    );
}

#[test]
fn a_rollback_execution_named_inside_the_guards_sentence_is_not_a_manual_rollback() {
    let day = day("2026-11-20");
    // As the guard writes it: the subject is the incident (the failing execution), the rollback execution's id is
    // only in the sentence AWS's answer produced.
    let audit = vec![entry(
        1,
        nov20("09:01"),
        "tollgate:guard",
        "rollback.rollback_stage",
        "e-bad",
        serde_json::json!({
            "outcome": "rolled_back",
            "detail": "rollback execution r-guard of shop / Production started, back to execution e1",
        }),
    )];
    let mut timelines = vec![deploy("shop", "e1", nov20("06:00"), "SUCCEEDED", nov20("06:30")).done()];
    for (id, start) in [("r-guard", nov20("09:02")), ("r-person", nov20("12:00"))] {
        timelines.push(
            Exec::new("shop", id, start)
                .trigger("RollbackStage")
                .stage("Production", "SUCCEEDED", start, Some(start + secs(60)))
                .ended("SUCCEEDED", start + secs(61))
                .done(),
        );
    }
    let r = compute_with_audit(&timelines, &no_configs(), &day, &audit, &[]);
    assert_eq!(r.automation.manual.manual_rollbacks, 1, "only r-person");
}

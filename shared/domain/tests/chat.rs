//! Chat approvals and CodePipeline Manual approvals in memory: parsing what the chat platform signed, identity from
//! the signed payload only, authorisation and recorded refusals, the enriched manual approval message, and
//! PutApprovalResult called once per decision.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tollgate_domain::audit::{verify, AuditLog};
use tollgate_domain::gate::approval::*;
use tollgate_domain::gate::policy::ApprovalDecision;
use tollgate_domain::gate::{ApprovalKey, ApprovalRecords, GateControls, GateDecision, GateDecisions};
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::{
    MemoryApprovalResults, MemoryChatStore, MemoryEffectivePolicies, MemoryGateStore, MemoryPipelineApprovals,
};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::parse::{parse_event, parse_inbound, ApprovalRequest, Inbound};
use tollgate_domain::record::ports::EventRecorder;

const EXECUTION: &str = "b7f3c2a1-5d4e-4f6a-9b8c-7d6e5f4a3b2c";
const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
const MALLORY: &str = "arn:aws:sts::111122223333:assumed-role/Developer/mallory";
const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";
const TOKEN: &str = "0c5e8a7b-573f-4ea7-a67e-EXAMPLETOKEN1";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn approvers() -> EndpointApprovers {
    parse_approvers(
        "approval:
  approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']
  groups: [sre]
groups:
  sre: ['arn:aws:sts::111122223333:assumed-role/SRE/*']
",
    )
    .unwrap()
}

/// The effective policy the gate recorded for checkout-service / Production: the same approvers.
fn effective(reason_required: bool) -> EffectivePolicyRecord {
    let text = format!(
        "version: 1
name: production
max_wait: 2h
approval:
  approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']
  groups: [sre]
  reason_required: {reason_required}
groups:
  sre: ['arn:aws:sts::111122223333:assumed-role/SRE/*']
"
    );
    EffectivePolicyRecord {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
        policy: tollgate_domain::gate::policy::parse_policy("production.yaml", &text).unwrap(),
        baseline: None,
        separation_of_duties: true,
        at: now(),
    }
}

fn settings() -> ChatSettings {
    ChatSettings {
        default_account: "111122223333".into(),
        default_region: "eu-west-1".into(),
    }
}

fn key() -> ApprovalKey {
    ApprovalKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        execution_id: EXECUTION.into(),
        stage: "Production".into(),
    }
}

struct World {
    gate: MemoryGateStore,
    chat: MemoryChatStore,
    results: MemoryApprovalResults,
    audit: MemoryAuditLog,
    timelines: MemoryStore,
    notifier: MemoryNotifier,
    pipelines: MemoryPipelineApprovals,
    effective: MemoryEffectivePolicies,
}

impl World {
    async fn new() -> World {
        let w = World {
            gate: MemoryGateStore::new(),
            chat: MemoryChatStore::new(),
            results: MemoryApprovalResults::new(),
            audit: MemoryAuditLog::default(),
            timelines: MemoryStore::new(),
            notifier: MemoryNotifier::new(),
            pipelines: MemoryPipelineApprovals::new(),
            effective: MemoryEffectivePolicies::new(),
        };
        w.pipelines
            .wait("checkout-service", "Production", "Approve", EXECUTION, TOKEN);
        w.effective.record_effective(&effective(true)).await.unwrap();
        let events: Vec<Value> = serde_json::from_str(include_str!(
            "../../../events/approval/execution-waiting-for-approval.json"
        ))
        .unwrap();
        for e in events {
            w.timelines
                .record(&parse_event(e.to_string().as_bytes()).unwrap())
                .await
                .unwrap();
        }
        for (user, principal) in [("U0001", ALICE), ("U0666", MALLORY)] {
            w.chat
                .link(&LinkedIdentity {
                    chat_user: ChatUser::new("T0001", user).unwrap(),
                    principal_arn: principal.into(),
                    linked_by: "arn:aws:iam::111122223333:role/Admin".into(),
                    at: now(),
                })
                .await
                .unwrap();
        }
        w
    }

    fn decisions(&self) -> DecisionPorts<'_> {
        DecisionPorts {
            approvals: &self.gate,
            controls: &self.gate,
            manual: &self.chat,
            results: &self.results,
            audit: &self.audit,
            timelines: &self.timelines,
            effective: &self.effective,
        }
    }

    fn requests(&self) -> RequestPorts<'_> {
        RequestPorts {
            manual: &self.chat,
            timelines: &self.timelines,
            audit: &self.audit,
            decisions: &self.gate,
            notifier: &self.notifier,
            pipelines: &self.pipelines,
        }
    }

    async fn chat(&self, body: &str) -> ChatReply {
        let command = parse_chat_body(body).unwrap();
        handle_chat_command(&self.decisions(), &self.chat, &settings(), &command, now())
            .await
            .unwrap()
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        let entries = self.audit.entries(SCOPE).await.unwrap();
        verify(SCOPE, &entries, self.audit.head(SCOPE).await.unwrap().as_ref()).unwrap();
        entries.into_iter().map(|e| (e.actor, e.action)).collect()
    }
}

fn slash(user: &str, text: &str) -> String {
    format!(
        "team_id=T0001&user_id={user}&command=%2Ftollgate&text={}",
        text.replace(' ', "+")
    )
}

fn approval_request() -> ApprovalRequest {
    let event: Value =
        serde_json::from_str(include_str!("../../../events/approval/manual-approval-sns-event.json")).unwrap();
    let message = event["Records"][0]["Sns"]["Message"].as_str().unwrap();
    match parse_inbound(message.as_bytes()).unwrap() {
        Inbound::ApprovalRequest(r) => r,
        other => panic!("not an approval request: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing.

#[test]
fn a_slash_command_names_the_signed_user_the_stage_and_the_reason() {
    let c = parse_chat_body(&slash(
        "U0001",
        &format!("approve checkout-service Production {EXECUTION} canary ok"),
    ))
    .unwrap();
    assert_eq!(c.user.id(), "chat:T0001:U0001");
    assert_eq!(c.decision, DecisionKind::Approve);
    assert_eq!(
        (c.target.pipeline.as_str(), c.target.stage.as_str()),
        ("checkout-service", "Production")
    );
    assert_eq!(c.target.execution_id, EXECUTION);
    assert_eq!(c.reason.as_deref(), Some("canary ok"));
    assert_eq!(c.target.key("111122223333", "eu-west-1"), key());
}

#[test]
fn an_interactive_button_payload_is_read_with_the_platforms_user() {
    let value = button_value(DecisionKind::Reject, &key());
    let payload = json!({"type": "block_actions", "team": {"id": "T0001"}, "user": {"id": "U0001"},
        "actions": [{"action_id": "tollgate", "value": value}]});
    let body = format!("payload={}", urlencode(&payload.to_string()));
    let c = parse_chat_body(&body).unwrap();
    assert_eq!(
        (c.user.id().as_str(), c.decision),
        ("chat:T0001:U0001", DecisionKind::Reject)
    );
    assert_eq!(c.target.key("x", "y"), key());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn malformed_commands_are_refused_with_the_usage() {
    for (body, expect) in [
        (slash("U0001", "approve checkout-service"), "missing pipeline"),
        (
            slash("U0001", "deploy checkout-service Production e-1"),
            "unknown command",
        ),
        (
            slash("U0001", "approve checkout#x Production e-1 ok"),
            "pipeline \"checkout#x\" is not valid",
        ),
        ("user_id=U1&text=approve+a+b+c".to_string(), "no `team_id` field"),
        (
            "team_id=T1&team_id=T2&user_id=U1&text=approve+a+b+c".to_string(),
            "repeats the field",
        ),
        (
            "payload=%7Bnot-json".to_string(),
            "interactive payload is not understood",
        ),
        ("team_id=T1&user_id=U1&text=%ZZ".to_string(), "malformed %-escape"),
    ] {
        let err = parse_chat_body(&body).unwrap_err().to_string();
        assert!(err.contains(expect), "{body}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Identity and authorisation.

#[tokio::test]
async fn identity_comes_from_the_signed_user_never_from_a_principal_field_of_the_body() {
    let w = World::new().await;
    // Mallory's chat user claims Alice's ARN in extra fields: they are not read.
    let body = format!(
        "{}&principal={}&approver={}&user_name=alice",
        slash(
            "U0666",
            &format!("approve checkout-service Production {EXECUTION} trust me")
        ),
        urlencode(ALICE),
        urlencode(ALICE)
    );
    let reply = w.chat(&body).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.text.contains(MALLORY), "{reply:?}");
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());

    // A button whose value names a principal is not a Tollgate button at all.
    let value = json!({"decision": "approve", "pipeline": "checkout-service", "stage": "Production",
        "execution_id": EXECUTION, "principal_arn": ALICE});
    let payload = json!({"team": {"id": "T0001"}, "user": {"id": "U0666"}, "actions": [{"value": value.to_string()}]});
    let err = parse_chat_body(&format!("payload={}", urlencode(&payload.to_string()))).unwrap_err();
    assert!(err.to_string().contains("principal_arn"), "{err}");
}

#[tokio::test]
async fn an_unauthorised_approver_is_refused_and_the_refusal_is_recorded() {
    let w = World::new().await;
    let reply = w
        .chat(&slash(
            "U0666",
            &format!("approve checkout-service Production {EXECUTION} ship it"),
        ))
        .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.text.contains("Refused") && reply.text.contains("recorded"),
        "{}",
        reply.text
    );
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    assert!(w.results.calls().is_empty());
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (e.actor.as_str(), e.action.as_str()),
        ("chat:T0001:U0666", "approval.refused")
    );
    assert_eq!(e.subject, format!("{EXECUTION}/Production"));
    assert!(e.detail["refused"].as_str().unwrap().contains(MALLORY), "{}", e.detail);
    assert_eq!(e.detail["reason"], "ship it");
    assert_eq!(e.detail["decision"], "approve");
}

#[tokio::test]
async fn an_unlinked_chat_user_is_refused_and_recorded() {
    let w = World::new().await;
    let reply = w
        .chat(&slash(
            "U9999",
            &format!("reject checkout-service Production {EXECUTION} no"),
        ))
        .await;
    assert_eq!(reply.status, 403);
    assert!(reply.text.contains("chat:T0001:U9999 is not linked"), "{}", reply.text);
    assert_eq!(
        w.audit_actions().await,
        vec![("chat:T0001:U9999".to_string(), "approval.refused".to_string())]
    );
}

#[tokio::test]
async fn an_authorised_approval_is_recorded_as_the_linked_principal_with_its_groups() {
    let w = World::new().await;
    let sre = "arn:aws:sts::111122223333:assumed-role/SRE/bob";
    w.chat
        .link(&LinkedIdentity {
            chat_user: ChatUser::new("T0001", "U0002").unwrap(),
            principal_arn: sre.into(),
            linked_by: "arn:aws:iam::111122223333:role/Admin".into(),
            at: now(),
        })
        .await
        .unwrap();
    let reply = w
        .chat(&slash(
            "U0002",
            &format!("approve checkout-service Production {EXECUTION} canary ok"),
        ))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let a = w.gate.latest_approval(&key()).await.unwrap().unwrap();
    assert_eq!(
        (a.principal_arn.as_str(), a.groups.clone()),
        (sre, vec!["sre".to_string()])
    );
    assert_eq!(
        (a.decision, a.reason.as_deref(), a.at),
        (ApprovalDecision::Approve, Some("canary ok"), now())
    );
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].action.as_str()),
        (sre, "approval.approve")
    );
    assert_eq!(entries[0].detail["chat_user"], "chat:T0001:U0002");
    assert_eq!(entries[0].detail["via"], "chat");
    assert_eq!(entries[0].at, now());
}

#[tokio::test]
async fn a_decision_without_a_reason_is_refused_and_an_override_needs_one_whatever_the_policy() {
    let w = World::new().await;
    let reply = w
        .chat(&slash(
            "U0001",
            &format!("approve checkout-service Production {EXECUTION}"),
        ))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.text.contains("reason is required to approve"), "{}", reply.text);

    w.effective.record_effective(&effective(false)).await.unwrap();
    let cmd = parse_chat_body(&slash(
        "U0001",
        &format!("override checkout-service Production {EXECUTION}"),
    ))
    .unwrap();
    let reply = handle_chat_command(&w.decisions(), &w.chat, &settings(), &cmd, now())
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(w.gate.latest_override(&key()).await.unwrap().is_none());

    let reply = w
        .chat(&slash(
            "U0001",
            &format!("override checkout-service Production {EXECUTION} INC-42 hotfix"),
        ))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let o = w.gate.latest_override(&key()).await.unwrap().unwrap();
    assert_eq!((o.by.as_str(), o.reason.as_str()), (ALICE, "INC-42 hotfix"));
    assert_eq!(
        w.audit_actions().await,
        vec![(ALICE.to_string(), "override".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Manual approvals.

async fn with_gate_decision(w: &World) {
    let decision: GateDecision = serde_json::from_value(json!({
        "id": "3c9a5f0e-1b2d-4e6f-8a7b-9c0d1e2f3a4b", "job_id": "3c9a5f0e-1b2d-4e6f-8a7b-9c0d1e2f3a4b",
        "decided_by": "tollgate:gate", "decided_at": "2026-11-20T13:58:00Z",
        "context": {"account": "111122223333", "region": "eu-west-1", "pipeline": "checkout-service",
            "stage": "Staging", "action": "Gate", "execution_id": EXECUTION},
        "policy": {"file": "policies/production.yaml", "name": "production-gate"},
        "outcome": {"outcome": "pass"}, "summary": "every check passes",
        "checks": [
            {"check": "alarms", "status": "pass", "observed": "", "required": "", "earliest_pass": null,
             "message": "alarm checkout-service-5xx OK for 3h"},
            {"check": "bake", "status": "pass", "observed": "", "required": "", "earliest_pass": null,
             "message": "baked 2h 10m of 2h in Staging"}],
        "explanation": "", "first_evaluated_at": "2026-11-20T13:58:00Z", "previous": [],
        "answer": {"answer": "success", "external_execution_id": "3c9a5f0e", "summary": "pass"}
    }))
    .unwrap();
    w.gate.record_decision(&decision).await.unwrap();
    w.audit
        .append(tollgate_domain::audit::NewAuditEntry {
            scope: SCOPE.into(),
            at: decision.decided_at,
            actor: "tollgate:gate".into(),
            action: "gate.decision".into(),
            subject: format!("{EXECUTION}/Staging"),
            detail: json!({"decision_id": decision.id, "outcome": "pass", "summary": decision.summary}),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_manual_approval_request_is_stored_and_announced_with_tollgates_context() {
    let w = World::new().await;
    with_gate_decision(&w).await;
    let announced = handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now())
        .await
        .unwrap();
    assert!(matches!(announced, Announced::Published { .. }));
    let stored = w.chat.manual_approvals();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].execution_id.as_deref(), Some(EXECUTION));
    // Only the token's digest is kept: a decision reads the token fresh from CodePipeline.
    assert_eq!(stored[0].token.expose(), None);
    assert!(stored[0].token.matches(TOKEN));
    assert_eq!((stored[0].action.as_str(), stored[0].notified), ("Approve", true));

    let sent = w.notifier.sent();
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.title, "checkout-service: approval needed at Production / Approve");
    assert_eq!(n.thread, format!("checkout-service/{EXECUTION}"));
    let lines = n.lines.join("\n");
    for expected in [
        "Note from the pipeline: Check the canary dashboard before approving.",
        &format!("Execution `{EXECUTION}` waits at Production / Approve."),
        "Change: `4f1d2c3b4a59` Raise the checkout timeout to 5s",
        "Gate at Staging: pass (every check passes)",
        "  ✓ alarm checkout-service-5xx OK for 3h",
        "  ✓ baked 2h 10m of 2h in Staging",
        "Expires: 2026-11-27T14:00Z",
    ] {
        assert!(lines.contains(expected), "missing {expected:?} in\n{lines}");
    }
    assert!(n.next_steps.contains(&format!(
        "tollgate approve --pipeline checkout-service --stage Production --execution {EXECUTION} --reason \"...\""
    )));
    assert!(n.next_steps.contains(&format!(
        "/tollgate approve checkout-service Production {EXECUTION} <reason>"
    )));
    // The token decides the action: it is in no message, link or log-facing text.
    let whole = serde_json::to_string(n).unwrap() + &n.chat_message().to_string() + &n.email_text();
    assert!(!whole.contains(TOKEN) && !whole.contains("EXAMPLETOKEN"), "{whole}");
    assert!(!format!("{:?}", stored[0]).contains(TOKEN));
}

#[tokio::test]
async fn a_request_codepipeline_is_not_waiting_for_is_neither_stored_nor_announced() {
    let w = World::new().await;
    // Someone publishes a request of their own on the topic: same stage and action, another token.
    let mut forged = approval_request();
    forged.token = "forged-token-0000".into();
    let got = handle_approval_request(&w.requests(), &forged, "111122223333", "eu-west-1", now())
        .await
        .unwrap();
    let Announced::NotPending { token_digest, why } = got else {
        panic!("announced a forged request: {got:?}")
    };
    assert!(why.contains("another token"), "{why}");
    assert!(!token_digest.contains("forged"));
    // The approval is no longer waiting (decided in the console): the genuine token is refused too.
    w.pipelines.done("checkout-service", "Production", "Approve");
    let got = handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now())
        .await
        .unwrap();
    assert!(
        matches!(&got, Announced::NotPending { why, .. } if why.contains("no approval waiting")),
        "{got:?}"
    );
    assert!(w.chat.manual_approvals().is_empty());
    assert!(w.notifier.sent().is_empty());
    assert_eq!(w.pipelines.reads(), 2);
}

#[tokio::test]
async fn a_duplicate_sns_delivery_does_not_publish_twice() {
    let w = World::new().await;
    for _ in 0..3 {
        handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now())
            .await
            .unwrap();
    }
    assert_eq!(w.notifier.sent().len(), 1);
    assert_eq!(w.chat.manual_approvals().len(), 1);
}

#[tokio::test]
async fn a_failed_publish_is_retried_by_the_next_delivery() {
    let w = World::new().await;
    w.notifier.fail_next(1);
    let err = handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now()).await;
    assert!(matches!(err, Err(AnnounceError::Notify(_))), "{err:?}");
    let again = handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now()).await;
    assert!(matches!(again, Ok(Announced::Published { .. })), "{again:?}");
    assert_eq!(w.notifier.sent().len(), 1);
}

#[tokio::test]
async fn an_approval_in_chat_sends_put_approval_result_once_and_a_repeat_sends_nothing() {
    let w = World::new().await;
    handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now())
        .await
        .unwrap();
    let reply = w
        .chat(&slash(
            "U0001",
            &format!("approve checkout-service Production {EXECUTION} canary ok"),
        ))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .text
            .contains("CodePipeline's Manual approval Production / Approve approved"),
        "{}",
        reply.text
    );
    assert_eq!(
        w.results.calls(),
        vec![ApprovalResultRequest {
            pipeline: "checkout-service".into(),
            stage: "Production".into(),
            action: "Approve".into(),
            token: ApprovalToken::new(TOKEN),
            decision: ApprovalDecision::Approve,
            summary: format!("Approved by {ALICE} (chat:T0001:U0001) via Tollgate: canary ok"),
        }]
    );
    let stored = &w.chat.manual_approvals()[0];
    let outcome = stored.outcome.clone().unwrap();
    assert_eq!((outcome.state, outcome.by.as_str()), (ManualState::Accepted, ALICE));

    // The same decision again (a second click, another engineer): nothing is sent again.
    let reply = w
        .chat(&slash(
            "U0001",
            &format!("reject checkout-service Production {EXECUTION} changed my mind"),
        ))
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(
        reply.text.contains("already decided") && reply.text.contains("approved by"),
        "{}",
        reply.text
    );
    assert_eq!(w.results.calls().len(), 1);
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].detail["manual_approval"]["result"], "accepted");
    assert_eq!(entries[0].detail["manual_approval"]["action"], "Approve");
}

#[tokio::test]
async fn codepipeline_refusing_the_result_is_reported_recorded_and_not_retried() {
    let w = World::new().await;
    handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now())
        .await
        .unwrap();
    w.results.answer_next(Err(ApprovalResultError::Refused {
        code: "InvalidApprovalTokenException".into(),
        message: "The approval request already received a response or has expired.".into(),
    }));
    let reply = w
        .chat(&slash(
            "U0001",
            &format!("reject checkout-service Production {EXECUTION} bad canary"),
        ))
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(
        reply.text.contains("already received a response or has expired"),
        "{}",
        reply.text
    );
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].action.as_str()),
        (ALICE, "approval.refused")
    );
    assert_eq!(entries[0].detail["manual_approval"]["result"], "refused");
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());

    let again = w
        .chat(&slash(
            "U0001",
            &format!("reject checkout-service Production {EXECUTION} bad canary"),
        ))
        .await;
    assert_eq!(again.status, 409);
    assert!(again.text.contains("CodePipeline refused"), "{}", again.text);
    assert_eq!(w.results.calls().len(), 1, "a refused token is not sent again");
}

#[tokio::test]
async fn a_transient_failure_leaves_the_approval_undecided_for_the_next_attempt() {
    let w = World::new().await;
    handle_approval_request(&w.requests(), &approval_request(), "111122223333", "eu-west-1", now())
        .await
        .unwrap();
    w.results
        .answer_next(Err(ApprovalResultError::Transient("throttled".into())));
    let who = Decider {
        principal_arn: ALICE.into(),
        groups: vec![],
        chat_user: None,
    };
    let err = decide(
        &w.decisions(),
        &key(),
        &who,
        DecisionKind::Approve,
        Some("ok"),
        true,
        now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DecideError::Transient(_)), "{err:?}");
    assert!(w.chat.manual_approvals()[0].outcome.is_none());
    assert!(w.audit.entries(SCOPE).await.unwrap().is_empty());
    let done = decide(
        &w.decisions(),
        &key(),
        &who,
        DecisionKind::Approve,
        Some("ok"),
        true,
        now(),
    )
    .await
    .unwrap();
    assert!(matches!(done, Decided::Recorded { manual: Some(_), .. }), "{done:?}");
    assert_eq!(w.results.calls().len(), 2);
    assert_eq!(
        w.results.calls()[1].summary,
        format!("Approved by {ALICE} via Tollgate: ok")
    );
}

#[tokio::test]
async fn a_decision_on_a_stage_without_a_manual_approval_is_recorded_for_the_gate_only() {
    let w = World::new().await;
    let who = Decider {
        principal_arn: ALICE.into(),
        groups: vec![],
        chat_user: None,
    };
    let done = decide(
        &w.decisions(),
        &key(),
        &who,
        DecisionKind::Reject,
        Some("no"),
        true,
        now(),
    )
    .await
    .unwrap();
    assert!(matches!(done, Decided::Recorded { manual: None, .. }), "{done:?}");
    assert!(w.results.calls().is_empty());
    assert_eq!(
        w.gate.latest_approval(&key()).await.unwrap().unwrap().decision,
        ApprovalDecision::Reject
    );
    assert_eq!(
        w.audit_actions().await,
        vec![(ALICE.to_string(), "approval.reject".to_string())]
    );
}

#[test]
fn approvers_must_declare_the_groups_they_name() {
    let err = parse_approvers("approval: {groups: [sre]}").unwrap_err();
    assert!(err.contains("group sre is not declared"), "{err}");
    let a = approvers();
    assert!(authorise(&a, ALICE).is_ok());
    assert!(authorise(&a, "arn:aws:sts::111122223333:assumed-role/SRE/bob").is_ok());
    let why = authorise(&a, MALLORY).unwrap_err();
    assert!(why.contains(MALLORY), "{why}");
}

#[tokio::test]
async fn chat_decisions_are_authorised_per_pipeline_by_the_effective_policy_the_gate_recorded() {
    let w = World::new().await;
    // A pipeline no gate has evaluated: no one may decide on it from chat (no endpoint-wide list any more).
    let reply = w
        .chat(&slash("U0001", &format!("approve payments Production {EXECUTION} ok")))
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.text.contains("fail closed"), "{reply:?}");
    // The stage's effective policy names other approvers: Alice, an approver elsewhere, is refused here.
    let mut other = effective(true);
    other.policy.approval.as_mut().unwrap().approvers =
        vec![tollgate_domain::gate::policy::ArnPattern::parse("arn:aws:iam::111122223333:role/Payments*").unwrap()];
    other.policy.approval.as_mut().unwrap().groups.clear();
    w.effective.record_effective(&other).await.unwrap();
    let reply = w
        .chat(&slash(
            "U0001",
            &format!("approve checkout-service Production {EXECUTION} ok"),
        ))
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    let refused: Vec<String> = w.audit_actions().await.into_iter().map(|(_, a)| a).collect();
    assert_eq!(refused, vec!["approval.refused"]);
}

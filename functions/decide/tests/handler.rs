//! The decide function on AWS's documented function URL event (events/decide/function-url-request.json): the caller
//! comes from `requestContext.authorizer.iam`, never from the body; the time is the server's; a request without an
//! IAM context is refused; authorisation refusals answer 403 and are audited.

use chrono::{DateTime, Utc};
use decide::handler::{caller, handle, Settings};
use serde_json::{json, Value};
use tollgate_domain::audit::AuditLog;
use tollgate_domain::gate::approval::{DecisionPorts, EffectivePolicies, EffectivePolicyRecord, ServerPorts};
use tollgate_domain::gate::policy::{parse_policy, ArnPattern};
use tollgate_domain::gate::{ApprovalKey, ApprovalRecords, GateControls};
use tollgate_domain::memory::{
    MemoryApprovalResults, MemoryAuditLog, MemoryChatStore, MemoryEffectivePolicies, MemoryGateStore, MemoryStore,
};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;

const BOB: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/bob";
const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
const MALLORY: &str = "arn:aws:sts::111122223333:assumed-role/Developer/mallory";
const ADMIN: &str = "arn:aws:sts::111122223333:assumed-role/PlatformAdmin/pat";
const EXECUTION: &str = "b7f3c2a1-5d4e-4f6a-9b8c-7d6e5f4a3b2c";
const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .unwrap()
        .with_timezone(&Utc)
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

/// AWS's documented function URL request, for `caller` (None: no IAM context) with `body`.
fn event(caller: Option<&str>, body: Value) -> Value {
    let mut e: Value = serde_json::from_str(include_str!("../../../events/decide/function-url-request.json")).unwrap();
    match caller {
        Some(arn) => e["requestContext"]["authorizer"]["iam"]["userArn"] = json!(arn),
        None => {
            e["requestContext"].as_object_mut().unwrap().remove("authorizer");
        }
    }
    e["body"] = json!(body.to_string());
    e
}

fn approve_body() -> Value {
    json!({"operation": "approve", "account": "111122223333", "region": "eu-west-1", "pipeline": "checkout-service",
        "execution_id": EXECUTION, "stage": "Production", "reason": "canary ok"})
}

struct World {
    gate: MemoryGateStore,
    chat: MemoryChatStore,
    results: MemoryApprovalResults,
    audit: MemoryAuditLog,
    timelines: MemoryStore,
    effective: MemoryEffectivePolicies,
}

impl World {
    /// checkout-service / Production, evaluated by the gate (release managers approve, separation of duties on),
    /// its execution started by Alice.
    async fn new() -> World {
        let w = World {
            gate: MemoryGateStore::new(),
            chat: MemoryChatStore::new(),
            results: MemoryApprovalResults::new(),
            audit: MemoryAuditLog::default(),
            timelines: MemoryStore::new(),
            effective: MemoryEffectivePolicies::new(),
        };
        let mut events: Vec<Value> = serde_json::from_str(include_str!(
            "../../../events/approval/execution-waiting-for-approval.json"
        ))
        .unwrap();
        events[0]["detail"]["execution-trigger"] =
            json!({"trigger-type": "StartPipelineExecution", "trigger-detail": ALICE});
        for e in events {
            w.timelines
                .record(&parse_event(e.to_string().as_bytes()).unwrap())
                .await
                .unwrap();
        }
        let text = "version: 1\nname: production\nmax_wait: 2h\napproval: {approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']}\n";
        w.effective
            .record_effective(&EffectivePolicyRecord {
                account: "111122223333".into(),
                region: "eu-west-1".into(),
                pipeline: "checkout-service".into(),
                stage: "Production".into(),
                policy: parse_policy("production.yaml", text).unwrap(),
                baseline: Some("baseline org, rule production".into()),
                separation_of_duties: true,
                at: now(),
            })
            .await
            .unwrap();
        w
    }

    async fn call(&self, event: &Value) -> (u64, String) {
        let ports = ServerPorts {
            decisions: DecisionPorts {
                approvals: &self.gate,
                controls: &self.gate,
                manual: &self.chat,
                results: &self.results,
                audit: &self.audit,
                timelines: &self.timelines,
                effective: &self.effective,
            },
            identities: &self.chat,
        };
        let settings = Settings {
            administrators: vec![ArnPattern::parse("arn:aws:sts::111122223333:assumed-role/PlatformAdmin/*").unwrap()],
        };
        let out = handle(event, &ports, &settings, now()).await.unwrap();
        let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        (
            out["statusCode"].as_u64().unwrap(),
            body["message"].as_str().unwrap().to_string(),
        )
    }

    async fn audit_actions(&self, scope: &str) -> Vec<(String, String)> {
        self.audit
            .entries(scope)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.actor, e.action))
            .collect()
    }
}

#[tokio::test]
async fn the_documented_event_is_decided_as_the_iam_caller_at_the_servers_time() {
    let w = World::new().await;
    let documented: Value =
        serde_json::from_str(include_str!("../../../events/decide/function-url-request.json")).unwrap();
    assert_eq!(caller(&documented).as_deref(), Some(BOB));
    let (status, message) = w.call(&documented).await;
    assert_eq!(status, 200, "{message}");
    assert!(
        message.starts_with("approved checkout-service / Production"),
        "{message}"
    );
    let a = w.gate.latest_approval(&key()).await.unwrap().unwrap();
    assert_eq!(
        (a.principal_arn.as_str(), a.at, a.reason.as_deref()),
        (BOB, now(), Some("canary ok"))
    );
    assert_eq!(
        w.audit_actions(SCOPE).await,
        vec![(BOB.to_string(), "approval.approve".to_string())]
    );
}

#[tokio::test]
async fn a_body_naming_a_principal_or_a_time_is_refused_and_nothing_is_recorded() {
    let w = World::new().await;
    for (field, value) in [
        ("principal_arn", json!(BOB)),
        ("by", json!(BOB)),
        ("at", json!("2099-01-01T00:00:00Z")),
        ("time", json!("2099-01-01T00:00:00Z")),
    ] {
        let mut body = approve_body();
        body[field] = value;
        let (status, message) = w.call(&event(Some(MALLORY), body)).await;
        assert_eq!(status, 400, "{field}: {message}");
        assert!(message.contains(field), "{field}: {message}");
    }
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    assert!(w.audit_actions(SCOPE).await.is_empty());
}

#[tokio::test]
async fn a_request_without_an_iam_request_context_is_refused() {
    let w = World::new().await;
    let (status, message) = w.call(&event(None, approve_body())).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("SigV4"), "{message}");
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    // Not a function URL request at all.
    let ports_free = json!({"Records": []});
    let ports = ServerPorts {
        decisions: DecisionPorts {
            approvals: &w.gate,
            controls: &w.gate,
            manual: &w.chat,
            results: &w.results,
            audit: &w.audit,
            timelines: &w.timelines,
            effective: &w.effective,
        },
        identities: &w.chat,
    };
    assert!(handle(&ports_free, &ports, &Settings { administrators: vec![] }, now())
        .await
        .is_err());
}

#[tokio::test]
async fn a_non_approver_gets_403_and_the_refusal_is_audited() {
    let w = World::new().await;
    let (status, message) = w.call(&event(Some(MALLORY), approve_body())).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains(MALLORY) && message.contains("recorded"), "{message}");
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].action.as_str()),
        (MALLORY, "approval.refused")
    );
    assert_eq!(entries[0].at, now(), "the refusal is dated by the server");
}

#[tokio::test]
async fn the_principal_that_started_the_execution_cannot_approve_it() {
    let w = World::new().await;
    let (status, message) = w.call(&event(Some(ALICE), approve_body())).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("separation of duties"), "{message}");
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    assert_eq!(
        w.audit_actions(SCOPE).await,
        vec![(ALICE.to_string(), "approval.refused".to_string())]
    );
}

#[tokio::test]
async fn freezes_are_for_administrators_and_dated_by_the_server() {
    let w = World::new().await;
    let body = json!({"operation": "freeze", "scope": SCOPE, "until": "2026-11-27", "reason": "INC-42"});
    let (status, _) = w.call(&event(Some(BOB), body.clone())).await;
    assert_eq!(status, 403);
    assert!(w.gate.active_freezes(&[SCOPE.to_string()]).await.unwrap().is_empty());
    let (status, message) = w.call(&event(Some(ADMIN), body)).await;
    assert_eq!(status, 200, "{message}");
    let f = &w.gate.active_freezes(&[SCOPE.to_string()]).await.unwrap()[0];
    assert_eq!((f.by.as_str(), f.at), (ADMIN, now()));
    let link = json!({"operation": "identity_link", "chat": "T0001:U0001", "principal": BOB});
    assert_eq!(w.call(&event(Some(MALLORY), link.clone())).await.0, 403);
    assert_eq!(w.call(&event(Some(ADMIN), link)).await.0, 200);
    let unknown = json!({"operation": "delete_everything"});
    assert_eq!(w.call(&event(Some(ADMIN), unknown)).await.0, 400);
}

//! The decide service in memory: decisions authorised by the effective policy the gate recorded (fail closed without
//! one), separation of duties, administrators alone freeze and link identities, every refusal audited, and the
//! server's clock on every record.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tollgate_domain::audit::{verify, AuditLog};
use tollgate_domain::gate::approval::*;
use tollgate_domain::gate::policy::{parse_policy, ArnPattern};
use tollgate_domain::gate::{ApprovalKey, ApprovalRecords, GateControls};
use tollgate_domain::memory::{
    MemoryApprovalResults, MemoryAuditLog, MemoryChatStore, MemoryEffectivePolicies, MemoryGateStore, MemoryStore,
};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;

const EXECUTION: &str = "b7f3c2a1-5d4e-4f6a-9b8c-7d6e5f4a3b2c";
const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
const BOB: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/bob";
const MALLORY: &str = "arn:aws:sts::111122223333:assumed-role/Developer/mallory";
const ADMIN: &str = "arn:aws:sts::111122223333:assumed-role/PlatformAdmin/pat";
const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn key(stage: &str) -> ApprovalKey {
    ApprovalKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        execution_id: EXECUTION.into(),
        stage: stage.into(),
    }
}

fn effective(stage: &str, separation_of_duties: bool) -> EffectivePolicyRecord {
    let text = "version: 1\nname: production\nmax_wait: 2h\napproval:\n  approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']\n";
    EffectivePolicyRecord {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        stage: stage.into(),
        policy: parse_policy("production.yaml", text).unwrap(),
        baseline: Some("baseline org, rule production".into()),
        separation_of_duties,
        at: now(),
    }
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
    /// The execution was started by Alice (StartPipelineExecution), waiting at Production.
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
            serde_json::json!({"trigger-type": "StartPipelineExecution", "trigger-detail": ALICE});
        for e in events {
            w.timelines
                .record(&parse_event(e.to_string().as_bytes()).unwrap())
                .await
                .unwrap();
        }
        w.effective
            .record_effective(&effective("Production", true))
            .await
            .unwrap();
        w
    }

    fn ports(&self) -> ServerPorts<'_> {
        ServerPorts {
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
        }
    }

    async fn serve(&self, caller: &str, request: DecideRequest) -> DecideReply {
        let admins = [ArnPattern::parse("arn:aws:sts::111122223333:assumed-role/PlatformAdmin/*").unwrap()];
        serve(&self.ports(), &admins, caller, request, now()).await.unwrap()
    }

    async fn actions(&self, scope: &str) -> Vec<(String, String)> {
        let entries = self.audit.entries(scope).await.unwrap();
        verify(scope, &entries, self.audit.head(scope).await.unwrap().as_ref()).unwrap();
        entries.into_iter().map(|e| (e.actor, e.action)).collect()
    }
}

fn approve(stage: &str, reason: &str) -> DecideRequest {
    DecideRequest::Decide {
        key: key(stage),
        decision: DecisionKind::Approve,
        reason: Some(reason.into()),
    }
}

#[tokio::test]
async fn an_approver_of_the_effective_policy_approves_at_the_servers_time() {
    let w = World::new().await;
    let reply = w.serve(BOB, approve("Production", "canary ok")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let a = w.gate.latest_approval(&key("Production")).await.unwrap().unwrap();
    assert_eq!((a.principal_arn.as_str(), a.at), (BOB, now()));
    assert_eq!(
        w.actions(SCOPE).await,
        vec![(BOB.to_string(), "approval.approve".to_string())]
    );
}

#[tokio::test]
async fn a_principal_the_effective_policy_does_not_name_is_refused_and_audited() {
    let w = World::new().await;
    let reply = w.serve(MALLORY, approve("Production", "ship it")).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply.message.contains(MALLORY) && reply.message.contains("recorded"),
        "{reply:?}"
    );
    assert!(w.gate.latest_approval(&key("Production")).await.unwrap().is_none());
    assert_eq!(
        w.actions(SCOPE).await,
        vec![(MALLORY.to_string(), "approval.refused".to_string())]
    );
}

#[tokio::test]
async fn a_stage_no_gate_has_evaluated_is_refused_fail_closed() {
    let w = World::new().await;
    let reply = w.serve(BOB, approve("Staging", "ok")).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.message.contains("fail closed"), "{reply:?}");
    assert!(w.gate.latest_approval(&key("Staging")).await.unwrap().is_none());
}

#[tokio::test]
async fn the_principal_that_started_the_execution_cannot_approve_or_override_it_but_can_reject() {
    let w = World::new().await;
    let reply = w.serve(ALICE, approve("Production", "my own change")).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.message.contains("separation of duties"), "{reply:?}");
    let overriding = DecideRequest::Decide {
        key: key("Production"),
        decision: DecisionKind::Override,
        reason: Some("hotfix".into()),
    };
    assert_eq!(w.serve(ALICE, overriding).await.status, 403);
    assert!(w.gate.latest_override(&key("Production")).await.unwrap().is_none());
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries[0].detail["refused"]
        .as_str()
        .unwrap()
        .starts_with("separation of duties"));
    let rejecting = DecideRequest::Decide {
        key: key("Production"),
        decision: DecisionKind::Reject,
        reason: Some("found a bug".into()),
    };
    assert_eq!(w.serve(ALICE, rejecting).await.status, 200);
    // Where the baseline turns it off for the class, the same approval counts.
    w.effective
        .record_effective(&effective("Production", false))
        .await
        .unwrap();
    assert_eq!(w.serve(ALICE, approve("Production", "ok")).await.status, 200);
}

#[tokio::test]
async fn only_administrators_freeze_and_link_identities_and_refusals_are_audited() {
    let w = World::new().await;
    let freeze = DecideRequest::Freeze {
        scope: SCOPE.into(),
        from: None,
        until: "2026-11-27".into(),
        reason: "INC-42".into(),
    };
    let reply = w.serve(BOB, freeze.clone()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(w.gate.active_freezes(&[SCOPE.to_string()]).await.unwrap().is_empty());
    let reply = w.serve(ADMIN, freeze).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let f = &w.gate.active_freezes(&[SCOPE.to_string()]).await.unwrap()[0];
    assert_eq!((f.by.as_str(), f.at), (ADMIN, now()));
    assert_eq!(
        w.actions(SCOPE).await,
        vec![
            (BOB.to_string(), ADMIN_REFUSED.to_string()),
            (ADMIN.to_string(), "freeze".to_string())
        ]
    );
    let unfreeze = DecideRequest::Unfreeze {
        scope: SCOPE.into(),
        reason: "resolved".into(),
    };
    assert_eq!(w.serve(ADMIN, unfreeze.clone()).await.status, 200);
    assert_eq!(w.serve(ADMIN, unfreeze).await.status, 404);

    let link = DecideRequest::Link {
        chat: "T0001:U0001".into(),
        principal: BOB.into(),
    };
    assert_eq!(w.serve(MALLORY, link.clone()).await.status, 403);
    assert_eq!(w.serve(ADMIN, link).await.status, 200);
    let user = ChatUser::parse("T0001:U0001").unwrap();
    assert_eq!(w.chat.identity(&user).await.unwrap().unwrap().linked_by, ADMIN);
    let unlink = DecideRequest::Unlink {
        chat: "T0001:U0001".into(),
    };
    assert_eq!(w.serve(ADMIN, unlink).await.status, 200);
    let global: Vec<String> = w.actions("global").await.into_iter().map(|(_, a)| a).collect();
    assert_eq!(global, vec![ADMIN_REFUSED, "identity.link", "identity.unlink"]);
}

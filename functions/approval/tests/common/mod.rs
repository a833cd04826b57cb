//! What the approval function's tests share: the fixtures, a signed function URL request, and the ports in memory
//! with a chosen CodePipeline adapter.

#![allow(dead_code)]

use approval::handler::{handle, Ports, Settings};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tollgate_aws::chat_auth::{sign, SigningSecret};
use tollgate_domain::audit::AuditLog;
use tollgate_domain::gate::approval::{
    ApprovalResults, ChatIdentities, ChatSettings, ChatUser, DecisionPorts, EffectivePolicies, EffectivePolicyRecord,
    LinkedIdentity, RequestPorts,
};
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::MemoryChatStore;
use tollgate_domain::memory::MemoryGateStore;
use tollgate_domain::memory::{MemoryNotifier, MemoryPipelineApprovals, MemoryStore};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;

pub const EXECUTION: &str = "b7f3c2a1-5d4e-4f6a-9b8c-7d6e5f4a3b2c";
pub const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
pub const MALLORY: &str = "arn:aws:sts::111122223333:assumed-role/Developer/mallory";
pub const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";
pub const TOKEN: &str = "0c5e8a7b-573f-4ea7-a67e-EXAMPLETOKEN1";
pub const SECRET: &[u8] = b"test-signing-secret-0123456789abcdef";

pub const SNS_EVENT: &str = include_str!("../../../../events/approval/manual-approval-sns-event.json");
pub const URL_EVENT: &str = include_str!("../../../../events/approval/chat-slash-command-url-event.json");
const TIMELINE: &str = include_str!("../../../../events/approval/execution-waiting-for-approval.json");

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn secret() -> SigningSecret {
    SigningSecret::new(SECRET.to_vec()).unwrap()
}

/// The fixture's function URL request with `body`, signed at `signed_at` (None: no signature headers at all).
pub fn url_event(body: &str, signed_at: Option<DateTime<Utc>>) -> Value {
    let mut event: Value = serde_json::from_str(URL_EVENT).unwrap();
    event["body"] = Value::String(body.to_string());
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("x-slack-request-timestamp");
    headers.remove("x-slack-signature");
    if let Some(at) = signed_at {
        let ts = at.timestamp();
        headers.insert("x-slack-request-timestamp".into(), Value::String(ts.to_string()));
        headers.insert(
            "x-slack-signature".into(),
            Value::String(sign(&secret(), ts, body.as_bytes())),
        );
    }
    event
}

/// The fixture's own body: `/tollgate approve checkout-service Production <execution> canary looks healthy` by
/// chat user T0001/U0001.
pub fn fixture_body() -> String {
    let event: Value = serde_json::from_str(URL_EVENT).unwrap();
    event["body"].as_str().unwrap().to_string()
}

pub fn slash(user: &str, text: &str) -> String {
    format!(
        "team_id=T0001&user_id={user}&command=%2Ftollgate&text={}",
        text.replace(' ', "+")
    )
}

pub fn sns_event() -> Value {
    serde_json::from_str(SNS_EVENT).unwrap()
}

pub struct World {
    pub gate: MemoryGateStore,
    pub chat: MemoryChatStore,
    pub audit: MemoryAuditLog,
    pub store: MemoryStore,
    pub notifier: MemoryNotifier,
    pub pipelines: MemoryPipelineApprovals,
    pub effective: tollgate_domain::memory::MemoryEffectivePolicies,
}

impl World {
    pub async fn new() -> World {
        let w = World {
            gate: MemoryGateStore::new(),
            chat: MemoryChatStore::new(),
            audit: MemoryAuditLog::default(),
            store: MemoryStore::new(),
            notifier: MemoryNotifier::new(),
            pipelines: MemoryPipelineApprovals::new(),
            effective: Default::default(),
        };
        w.pipelines
            .wait("checkout-service", "Production", "Approve", EXECUTION, TOKEN);
        // The gate evaluated checkout-service / Production: its effective policy names who may decide.
        w.effective.record_effective(&effective_policy()).await.unwrap();
        let events: Vec<Value> = serde_json::from_str(TIMELINE).unwrap();
        for e in events {
            w.store
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

    pub fn ports<'a>(&'a self, results: &'a dyn ApprovalResults) -> Ports<'a> {
        Ports {
            decisions: DecisionPorts {
                approvals: &self.gate,
                controls: &self.gate,
                manual: &self.chat,
                results,
                audit: &self.audit,
                timelines: &self.store,
                effective: &self.effective,
            },
            requests: RequestPorts {
                manual: &self.chat,
                timelines: &self.store,
                audit: &self.audit,
                decisions: &self.gate,
                notifier: &self.notifier,
                pipelines: &self.pipelines,
            },
            identities: &self.chat,
            replay: &self.chat,
            rejected: &self.store,
        }
    }

    pub async fn audit_actions(&self) -> Vec<(String, String)> {
        self.audit
            .entries(SCOPE)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.actor, e.action))
            .collect()
    }
}

/// What the gate recorded for checkout-service / Production: release managers approve, separation of duties on.
pub fn effective_policy() -> EffectivePolicyRecord {
    let text = "version: 1\nname: production\nmax_wait: 2h\napproval: {approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']}\n";
    EffectivePolicyRecord {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
        policy: tollgate_domain::gate::policy::parse_policy("production.yaml", text).unwrap(),
        baseline: None,
        separation_of_duties: true,
        at: Utc::now(),
    }
}

pub fn settings() -> Settings {
    Settings {
        chat: ChatSettings {
            default_account: "111122223333".into(),
            default_region: "eu-west-1".into(),
        },
        secret: secret(),
        workspace: "T0001".into(),
    }
}

/// Runs the handler and returns (status, text) of a function URL answer.
pub async fn call(ports: &Ports<'_>, event: &Value, at: DateTime<Utc>) -> (u64, String) {
    let out = handle(event, ports, &settings(), at).await.unwrap();
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["response_type"], "ephemeral");
    (
        out["statusCode"].as_u64().unwrap(),
        body["text"].as_str().unwrap().to_string(),
    )
}

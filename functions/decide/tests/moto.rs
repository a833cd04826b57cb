//! The decide function end to end against a real DynamoDB API (moto server): the gate's recorded effective policy,
//! the execution's timeline and every decision item read and written through the DynamoDB adapters. Runs only when
//! `TOLLGATE_TEST_ENDPOINT` is set (`make test`); otherwise prints SKIPPED.

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use decide::handler::{handle, Settings};
use serde_json::{json, Value};
use tollgate_aws::chat_auth::DynamoDbChatIdentities;
use tollgate_aws::effective_policies::DynamoDbEffectivePolicies;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::manual_approvals::DynamoDbManualApprovals;
use tollgate_aws::DynamoDbStore;
use tollgate_domain::audit::AuditLog;
use tollgate_domain::gate::approval::{DecisionPorts, EffectivePolicies, EffectivePolicyRecord, ServerPorts};
use tollgate_domain::gate::policy::{parse_policy, ArnPattern};
use tollgate_domain::gate::{ApprovalKey, ApprovalRecords, GateControls};
use tollgate_domain::memory::MemoryApprovalResults;
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;

const BOB: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/bob";
const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
const MALLORY: &str = "arn:aws:sts::111122223333:assumed-role/Developer/mallory";
const ADMIN: &str = "arn:aws:sts::111122223333:assumed-role/PlatformAdmin/pat";
const EXECUTION: &str = "b7f3c2a1-5d4e-4f6a-9b8c-7d6e5f4a3b2c";
const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";

fn now() -> DateTime<Utc> {
    Utc::now()
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

fn event(caller: &str, body: Value) -> Value {
    let mut e: Value = serde_json::from_str(include_str!("../../../events/decide/function-url-request.json")).unwrap();
    e["requestContext"]["authorizer"]["iam"]["userArn"] = json!(caller);
    e["body"] = json!(body.to_string());
    e
}

fn approve(stage: &str) -> Value {
    json!({"operation": "approve", "account": "111122223333", "region": "eu-west-1", "pipeline": "checkout-service",
        "execution_id": EXECUTION, "stage": stage, "reason": "canary ok"})
}

#[tokio::test]
async fn decisions_are_authorised_against_the_recorded_effective_policy_and_written_to_the_table() {
    let Some(endpoint) = tollgate_test_support::endpoint("decide_moto") else {
        return;
    };
    let client = Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tollgate-test"))
            .build(),
    );
    let table = tollgate_test_support::unique_name("tollgate-decide", "e2e");
    tollgate_test_support::create_table(&client, &table).await;
    let store = DynamoDbStore::new(client.clone(), table.clone(), 400);
    let gate = DynamoDbGateStore::new(client.clone(), table.clone(), 400);
    let manual = DynamoDbManualApprovals::new(client.clone(), table.clone(), 400);
    let identities = DynamoDbChatIdentities::new(client.clone(), table.clone());
    let effective = DynamoDbEffectivePolicies::new(client, table);
    let results = MemoryApprovalResults::new();

    // The execution Alice started, waiting at Production, and what the gate evaluated for that stage.
    let mut events: Vec<Value> = serde_json::from_str(include_str!(
        "../../../events/approval/execution-waiting-for-approval.json"
    ))
    .unwrap();
    events[0]["detail"]["execution-trigger"] =
        json!({"trigger-type": "StartPipelineExecution", "trigger-detail": ALICE});
    for e in events {
        store
            .record(&parse_event(e.to_string().as_bytes()).unwrap())
            .await
            .unwrap();
    }
    let text = "version: 1\nname: production\nmax_wait: 2h\napproval: {approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']}\n";
    effective
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

    let ports = ServerPorts {
        decisions: DecisionPorts {
            approvals: &gate,
            controls: &gate,
            manual: &manual,
            results: &results,
            audit: &store,
            timelines: &store,
            effective: &effective,
        },
        identities: &identities,
    };
    let settings = Settings {
        administrators: vec![ArnPattern::parse("arn:aws:sts::111122223333:assumed-role/PlatformAdmin/*").unwrap()],
    };
    let call = |caller: &'static str, body: Value| {
        let (ports, settings) = (&ports, &settings);
        async move {
            let out = handle(&event(caller, body), ports, settings, now()).await.unwrap();
            let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
            (
                out["statusCode"].as_u64().unwrap(),
                body["message"].as_str().unwrap().to_string(),
            )
        }
    };

    // Refused: not an approver; the change's own trigger; a stage no gate evaluated. Nothing is recorded.
    let (status, message) = call(MALLORY, approve("Production")).await;
    assert_eq!(status, 403, "{message}");
    let (status, message) = call(ALICE, approve("Production")).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("separation of duties"), "{message}");
    let (status, message) = call(BOB, approve("Staging")).await;
    assert_eq!(status, 403, "{message}");
    assert!(gate.latest_approval(&key("Production")).await.unwrap().is_none());

    // Bob approves: recorded as Bob, at the server's time.
    let before = Utc::now();
    let (status, message) = call(BOB, approve("Production")).await;
    assert_eq!(status, 200, "{message}");
    let a = gate.latest_approval(&key("Production")).await.unwrap().unwrap();
    assert_eq!(a.principal_arn, BOB);
    assert!(
        a.at >= before - chrono::Duration::seconds(1) && a.at <= Utc::now(),
        "{}",
        a.at
    );
    let actions: Vec<(String, String)> = store
        .entries(SCOPE)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action))
        .collect();
    assert_eq!(
        actions,
        [
            (MALLORY.to_string(), "approval.refused".to_string()),
            (ALICE.to_string(), "approval.refused".to_string()),
            (BOB.to_string(), "approval.refused".to_string()),
            (BOB.to_string(), "approval.approve".to_string()),
        ]
    );

    // Freezes: administrators only.
    let freeze = json!({"operation": "freeze", "scope": SCOPE, "until": "2099-12-31", "reason": "INC-42"});
    assert_eq!(call(BOB, freeze.clone()).await.0, 403);
    assert!(gate.active_freezes(&[SCOPE.to_string()]).await.unwrap().is_empty());
    let (status, message) = call(ADMIN, freeze).await;
    assert_eq!(status, 200, "{message}");
    let frozen = gate.active_freezes(&[SCOPE.to_string()]).await.unwrap();
    assert_eq!(frozen[0].by, ADMIN);
}

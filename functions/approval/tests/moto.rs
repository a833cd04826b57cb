//! The approval function's DynamoDB adapters against a real DynamoDB API (moto server): the replay guard's
//! conditional write, manual approvals stored once and claimed once, chat identities linked and unlinked.
//!
//! Runs only when `TOLLGATE_TEST_ENDPOINT` names the endpoint (`scripts/with-moto.sh cargo test -p approval`);
//! otherwise each test prints SKIPPED and passes. Every test creates its own table.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};
use tollgate_aws::chat_auth::{DynamoDbChatIdentities, DynamoDbReplayGuard};
use tollgate_aws::manual_approvals::DynamoDbManualApprovals;
use tollgate_domain::gate::approval::{
    ApprovalToken, ChatIdentities, ChatUser, Claim, LinkedIdentity, ManualApproval, ManualApprovals, ManualOutcome,
    ManualState, ReplayGuard,
};
use tollgate_domain::gate::policy::ApprovalDecision;

const ENDPOINT_VAR: &str = "TOLLGATE_TEST_ENDPOINT";

async fn table(test: &str) -> Option<(Client, String)> {
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        println!("SKIPPED: set {ENDPOINT_VAR} (e.g. http://127.0.0.1:5055) to run {test} against a local DynamoDB");
        return None;
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tollgate-test"))
        .build();
    let client = Client::from_conf(config);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("tollgate-approval-{test}-{nanos}").replace('_', "-");
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    Some((client, name))
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00.123Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn request(token: &str, at: DateTime<Utc>) -> ManualApproval {
    ManualApproval {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
        action: "Approve".into(),
        token: ApprovalToken::new(token),
        execution_id: Some("b7f3c2a1-5d4e-4f6a-9b8c-7d6e5f4a3b2c".into()),
        requested_at: at,
        expires: Some("2026-11-27T14:00Z".into()),
        custom_data: Some("Check the canary".into()),
        notified: false,
        outcome: None,
    }
}

fn outcome(state: ManualState, by: &str) -> ManualOutcome {
    ManualOutcome {
        state,
        decision: ApprovalDecision::Approve,
        by: by.into(),
        summary: "Approved".into(),
        at: now(),
        refusal: None,
    }
}

#[tokio::test]
async fn the_replay_guard_accepts_a_signature_once() {
    let Some((client, name)) = table("replay").await else {
        return;
    };
    let guard = DynamoDbReplayGuard::new(client.clone(), &name);
    let keep = now() + Duration::minutes(11);
    assert!(guard.first_sighting("a1b2", keep).await.unwrap());
    assert!(
        !guard.first_sighting("a1b2", keep).await.unwrap(),
        "a replay is refused"
    );
    assert!(guard.first_sighting("c3d4", keep).await.unwrap());
    let item = client
        .get_item()
        .table_name(&name)
        .key("pk", AttributeValue::S("CHATSIG#a1b2".into()))
        .key("sk", AttributeValue::S("SEEN".into()))
        .send()
        .await
        .unwrap();
    let ttl = item.item().unwrap()["ttl"].as_n().unwrap().clone();
    assert_eq!(ttl, keep.timestamp().to_string(), "expires by TTL after the window");
    client.delete_table().table_name(&name).send().await.unwrap();
}

#[tokio::test]
async fn a_manual_approval_is_stored_once_and_claimed_once() {
    let Some((client, name)) = table("manual").await else {
        return;
    };
    let store = DynamoDbManualApprovals::new(client.clone(), &name, 30);
    let first = request("token-one-0123456789", now() - Duration::hours(2));
    let stored = store.record_request(&first).await.unwrap();
    assert_eq!(stored, first);
    store.mark_notified(&first).await.unwrap();
    // A duplicate delivery gets the stored copy, announced already.
    let dup = store
        .record_request(&request("token-one-0123456789", now()))
        .await
        .unwrap();
    assert_eq!((dup.notified, dup.requested_at), (true, first.requested_at));
    let second = request("token-two-0123456789", now());
    store.record_request(&second).await.unwrap();
    let listed = store
        .requests("111122223333", "eu-west-1", "checkout-service", "Production")
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].token.matches("token-two-0123456789"), "newest first");
    assert_eq!(listed[0].token.expose(), None, "the token itself is never stored");
    assert_eq!(listed[1].custom_data.as_deref(), Some("Check the canary"));

    assert_eq!(
        store
            .claim(&second, &outcome(ManualState::Deciding, "alice"))
            .await
            .unwrap(),
        Claim::Claimed
    );
    match store
        .claim(&second, &outcome(ManualState::Deciding, "bob"))
        .await
        .unwrap()
    {
        Claim::AlreadyDecided(o) => assert_eq!((o.by.as_str(), o.state), ("alice", ManualState::Deciding)),
        other => panic!("expected the first claim, got {other:?}"),
    }
    store.release(&second).await.unwrap();
    assert_eq!(
        store
            .claim(&second, &outcome(ManualState::Deciding, "bob"))
            .await
            .unwrap(),
        Claim::Claimed
    );
    store
        .settle(&second, &outcome(ManualState::Accepted, "bob"))
        .await
        .unwrap();
    let listed = store
        .requests("111122223333", "eu-west-1", "checkout-service", "Production")
        .await
        .unwrap();
    assert_eq!(listed[0].outcome.as_ref().map(|o| o.state), Some(ManualState::Accepted));
    assert!(listed[1].outcome.is_none());
    // The key holds the token's digest, never the token.
    let scan = client.scan().table_name(&name).send().await.unwrap();
    for item in scan.items() {
        assert!(!item["sk"].as_s().unwrap().contains("token-"), "{:?}", item["sk"]);
    }
    client.delete_table().table_name(&name).send().await.unwrap();
}

#[tokio::test]
async fn a_chat_identity_is_linked_read_and_unlinked() {
    let Some((client, name)) = table("identity").await else {
        return;
    };
    let ids = DynamoDbChatIdentities::new(client.clone(), &name);
    let user = ChatUser::new("T0001", "U0001").unwrap();
    assert!(ids.identity(&user).await.unwrap().is_none());
    let link = LinkedIdentity {
        chat_user: user.clone(),
        principal_arn: "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice".into(),
        linked_by: "arn:aws:iam::111122223333:role/Admin".into(),
        at: now(),
    };
    ids.link(&link).await.unwrap();
    assert_eq!(ids.identity(&user).await.unwrap(), Some(link.clone()));
    assert_eq!(ids.unlink(&user).await.unwrap(), Some(link));
    assert!(ids.identity(&user).await.unwrap().is_none());
    assert!(ids.unlink(&user).await.unwrap().is_none());
    client.delete_table().table_name(&name).send().await.unwrap();
}

//! The metrics run with its real adapters against the local AWS endpoint (moto server): the demo story recorded in a
//! DynamoDB table, the pipeline's tags asked of CodePipeline, the digest published to an SNS topic that an SQS queue
//! subscribes to. Counts the DynamoDB requests of a run.
//!
//! Runs only when `TOLLGATE_TEST_ENDPOINT` names the endpoint (`make test` sets it); otherwise prints SKIPPED.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics::digest::ClaimedDigest;
use metrics::handler::{run, DigestStatus, Settings};
use metrics::ports::AuditAndDecisions;
use serde_json::Value;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::{CodePipelineTags, DynamoDbStore, SnsNotifier};
use tollgate_domain::audit::{AuditLog, NewAuditEntry};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;
use tollgate_test_support::{create_table, Requests, STORY};

#[tokio::test]
async fn the_run_measures_the_story_and_sends_the_digest_once_through_the_real_adapters() {
    let Some(endpoint) = tollgate_test_support::endpoint("metrics local endpoint") else {
        return;
    };
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    let requests = Requests::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(requests.clone())
            .build(),
    );
    let (sns, sqs) = (aws_sdk_sns::Client::new(&sdk), aws_sdk_sqs::Client::new(&sdk));
    let name = tollgate_test_support::unique_name("tollgate", "metrics");

    create_table(&dynamodb, &name).await;
    let topic_arn = sns.create_topic().name(&name).send().await.unwrap().topic_arn.unwrap();
    let inbox = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let inbox_arn = sqs
        .get_queue_attributes()
        .queue_url(&inbox)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&inbox_arn)
        .send()
        .await
        .unwrap();

    let store = Arc::new(DynamoDbStore::new(dynamodb.clone(), &name, 30));
    let events: Vec<Value> = serde_json::from_str(STORY).unwrap();
    for event in &events {
        let event = parse_event(event.to_string().as_bytes()).unwrap();
        store.record(&event).await.unwrap();
    }
    // Two of Tollgate's actions in the pipeline's audit trail (a gate decision whose record is not in the table, and a
    // rollback that failed) and a person's freeze of everything.
    let scope = "pipeline:111122223333/eu-west-1/checkout-service";
    for (scope, actor, action, detail) in [
        (
            scope,
            "tollgate:gate",
            "gate.decision",
            serde_json::json!({ "decision_id": "job-1", "outcome": "pass", "summary": "ok" }),
        ),
        (
            scope,
            "tollgate:guard",
            "rollback.stop_deployment",
            serde_json::json!({ "outcome": "refused", "duration_ms": 900 }),
        ),
        (
            "global",
            "arn:aws:sts::111122223333:assumed-role/Ops/alice",
            "freeze",
            serde_json::json!({ "reason": "INC-1" }),
        ),
    ] {
        store
            .append(NewAuditEntry {
                scope: scope.into(),
                at: "2026-11-20T12:00:00Z".parse().unwrap(),
                actor: actor.into(),
                action: action.into(),
                subject: "s".into(),
                detail,
            })
            .await
            .unwrap();
    }
    let automation = AuditAndDecisions {
        audit: store.clone(),
        decisions: Arc::new(DynamoDbGateStore::new(dynamodb.clone(), &name, 30)),
    };
    requests.take_counts();

    let digest = ClaimedDigest::new(store.clone(), Arc::new(SnsNotifier::new(sns.clone(), &topic_arn)));
    // No such pipeline in the endpoint's CodePipeline: ResourceNotFound, so the default configuration.
    let tags = CodePipelineTags::new(aws_sdk_codepipeline::Client::new(&sdk), "team");
    let monday = "2026-11-23T06:00:00Z".parse().unwrap();
    let settings = Settings::default();

    let first = run(store.as_ref(), &digest, &tags, &automation, &settings, monday, "r-1")
        .await
        .unwrap();
    let reads = requests.take_counts();
    println!("DynamoDB requests of a run over 2 executions: {reads:?}");
    assert_eq!(first.digest, DigestStatus::Published);
    assert_eq!((first.executions, first.timelines), (2, 2));
    let line: Value = serde_json::from_str(&first.emf_lines[0]).unwrap();
    assert_eq!(
        (
            &line["Pipeline"],
            &line["Team"],
            &line["Deployments"],
            &line["ChangeFailureRate"]
        ),
        (
            &Value::from("checkout-service"),
            &Value::from("unassigned"),
            &Value::from(2),
            &Value::from(50.0)
        )
    );
    // 37 days listed, one Query each; 4 GetItem per execution (itself, its build, its two deployments); one Query
    // per audit scope (the pipeline's and `global`), one GetItem per gate decision named; the digest claimed and
    // marked sent.
    assert_eq!(
        reads,
        BTreeMap::from([
            ("GetItem".to_string(), 9),
            ("Query".to_string(), 39),
            ("UpdateItem".to_string(), 2),
        ])
    );
    assert_eq!((first.audit_entries, first.gate_decisions), (3, 0));
    let automation_line: Value = serde_json::from_str(&first.automation_emf_lines[0]).unwrap();
    assert_eq!(
        (
            &automation_line["Actions"],
            &automation_line["ActionErrors"],
            &automation_line["ActionErrorRate"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(50.0))
    );
    assert_eq!(first.report.automation.manual.other_manual_actions["freeze"], 1);

    // The same scheduled invocation retried: measured again, not sent again.
    let second = run(store.as_ref(), &digest, &tags, &automation, &settings, monday, "r-2")
        .await
        .unwrap();
    assert_eq!(second.digest, DigestStatus::AlreadySent);
    assert_eq!(second.emf_lines, first.emf_lines);
    assert_eq!(requests.take_counts()["UpdateItem"], 1, "one refused claim, no read");

    let received = sqs
        .receive_message()
        .queue_url(&inbox)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1, "the digest reached the subscriber once");
    let envelope: Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    let chat: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(chat["id"], Value::from("weekly_digest@2026-11-23"));
    assert_eq!(
        envelope["MessageAttributes"]["kind"]["Value"],
        Value::from("weekly_digest")
    );

    dynamodb.delete_table().table_name(&name).send().await.unwrap();
    sns.delete_topic().topic_arn(&topic_arn).send().await.unwrap();
    sqs.delete_queue().queue_url(&inbox).send().await.unwrap();
}

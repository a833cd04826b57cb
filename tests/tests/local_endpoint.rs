//! Integration tests against the local AWS endpoint (moto server): EventBridge rules from the template route events
//! into SQS, the real ingest handler records them in DynamoDB, notifications reach an SQS queue subscribed to SNS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use tollgate::demo::{self, DemoOptions};
use tollgate::local::{self, DeliveryPlan, Names};
use tollgate::template::Template;
use tollgate_aws::DynamoDbStore;
use tollgate_domain::ingest::service::{Ingestor, MessageContext};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::event::DeliveryEvent;
use tollgate_domain::record::keys::{ExecutionKey, Subject};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{EventRecorder, TimelineQueries};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::ExecutionTimeline;
use tollgate_integration_tests::{local_clients, unique_prefix, workspace};

fn story() -> Vec<Value> {
    tollgate_test_support::story_json()
}

/// The timelines of the story ingested in order, in memory: what any delivery order must end with.
async fn in_order_timelines() -> Vec<ExecutionTimeline> {
    let store = Arc::new(MemoryStore::new());
    let ingestor = Ingestor::new(store.clone(), Arc::new(MemoryNotifier::new()));
    let ctx = MessageContext::new("in-order", chrono::Utc::now());
    for e in story() {
        ingestor.ingest(&e.to_string(), &ctx).await.expect("in-order ingest");
    }
    let mut out = Vec::new();
    for key in store.execution_keys() {
        out.push(execution_timeline(store.as_ref(), &key).await.unwrap().unwrap());
    }
    out.sort_by_key(|t| t.started_at);
    out
}

#[tokio::test]
async fn story_through_eventbridge_is_recorded_exactly_once_and_notified_once() {
    let Some(clients) = local_clients("story").await else {
        return;
    };
    let events = story();
    let distinct: BTreeSet<String> = events
        .iter()
        .map(|e| parse_event(e.to_string().as_bytes()).unwrap().id)
        .collect();
    let opts = DemoOptions {
        story: workspace("events/story/failed-deploy-and-fix.json"),
        template: workspace("infra/template.yaml"),
        prefix: unique_prefix("story"),
        plan: DeliveryPlan {
            seed: 11,
            window: 8,
            duplicate_rate: 0.3,
        },
        lose_ack_rate: 0.15,
        account: "111122223333".into(),
        region: "eu-west-1".into(),
    };
    let report = demo::run(&clients, &opts)
        .await
        .expect("the demo runs against the local endpoint");

    // Exactly once: every distinct event recorded new once, everything else seen as a duplicate.
    assert_eq!(report.pump.recorded as usize, distinct.len(), "{:?}", report.pump);
    assert!(report.sent > events.len() + 1, "duplicates were sent: {}", report.sent);
    assert!(
        report.pump.unacknowledged > 0,
        "some acknowledgements were lost on purpose"
    );
    assert_eq!(
        report.pump.deliveries,
        report.pump.recorded + report.pump.duplicates + report.pump.rejected + report.pump.retried,
        "every delivery is accounted for"
    );
    assert!(report.pump.duplicates as usize >= report.sent - events.len() - 1);

    // Whatever the order and duplication, the timelines equal the in-order ones.
    assert_eq!(report.timelines, in_order_timelines().await);
    let [failed, fixed] = &report.timelines[..] else {
        panic!("two executions: {:#?}", report.timelines)
    };
    assert_eq!((failed.state.as_str(), fixed.state.as_str()), ("FAILED", "SUCCEEDED"));
    let production = failed.stage("Production").expect("a Production stage");
    assert_eq!(production.state, "FAILED");
    let deploy = &production.actions[0];
    assert_eq!(deploy.deployment.as_ref().map(|d| d.state.as_str()), Some("FAILURE"));
    let build = failed
        .stages
        .iter()
        .flat_map(|s| &s.actions)
        .find_map(|a| a.build.as_ref());
    assert_eq!(build.map(|b| b.status.as_str()), Some("SUCCEEDED"));
    assert_eq!(failed.source_revisions.len(), 1);

    // Notifications arrived through SNS -> SQS, each once.
    let kinds: BTreeMap<String, usize> = report.notifications.iter().fold(BTreeMap::new(), |mut m, n| {
        *m.entry(n.attributes.get("kind").cloned().unwrap_or_default())
            .or_default() += 1;
        m
    });
    let expected: BTreeMap<String, usize> = [
        ("deployment_failed", 1),
        ("execution_failed", 1),
        ("execution_restored", 1),
        ("stage_failed", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds, expected, "{:#?}", report.notifications);
    let ids: BTreeSet<&str> = report
        .notifications
        .iter()
        .filter_map(|n| n.chat["id"].as_str())
        .collect();
    assert_eq!(ids.len(), report.notifications.len(), "no notification is duplicated");
    let failed_note = report
        .notifications
        .iter()
        .find(|n| n.attributes.get("kind").map(String::as_str) == Some("execution_failed"))
        .unwrap();
    assert_eq!(
        failed_note.attributes.get("pipeline").map(String::as_str),
        Some("checkout-service")
    );
    assert_eq!(
        failed_note.attributes.get("severity").map(String::as_str),
        Some("critical")
    );
    let title = failed_note.chat["content"]["title"].as_str().unwrap();
    assert!(title.contains("Production"), "{title}");
    let restored = report
        .notifications
        .iter()
        .find(|n| n.attributes.get("kind").map(String::as_str) == Some("execution_restored"))
        .unwrap();
    let restored_after = (fixed.ended_at.unwrap() - failed.ended_at.unwrap()).num_seconds();
    let title = restored.chat["content"]["title"].as_str().unwrap();
    assert!(
        title.contains(&tollgate_domain::tell::notify::human_duration(restored_after)),
        "{title} should say {restored_after}s"
    );

    // The malformed event was kept with a reason that names the field.
    assert_eq!(report.pump.rejected, 1);
    assert_eq!(report.rejected.len(), 1, "{:#?}", report.rejected);
    assert!(
        report.rejected[0].reason.contains("execution-id"),
        "{}",
        report.rejected[0].reason
    );
}

fn execution_event(key: &ExecutionKey, i: usize) -> DeliveryEvent {
    let body = serde_json::json!({
        "source": "aws.codepipeline",
        "detail-type": "CodePipeline Action Execution State Change",
        "account": key.account, "region": key.region,
        "time": format!("2026-11-20T09:{:02}:{:02}Z", i / 60, i % 60),
        "detail": {"pipeline": key.pipeline, "execution-id": key.execution_id, "stage": "Build",
                   "action": format!("Shard{i}"), "state": "SUCCEEDED",
                   "type": {"owner": "AWS", "provider": "CodeBuild", "category": "Build", "version": "1"}}
    });
    parse_event(body.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn concurrent_writers_of_one_execution_lose_no_event() {
    let Some(clients) = local_clients("concurrent").await else {
        return;
    };
    let template = Template::load(&workspace("infra/template.yaml")).unwrap();
    let env = local::provision(&clients, &template, &Names::with_prefix(&unique_prefix("conc")))
        .await
        .unwrap();
    let store = Arc::new(DynamoDbStore::new(
        clients.dynamodb.clone(),
        env.names.table.clone(),
        400,
    ));
    let key = ExecutionKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "fan-out".into(),
        execution_id: "e-concurrent".into(),
    };
    let events: Vec<DeliveryEvent> = (0..40).map(|i| execution_event(&key, i)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for e in events.iter().cloned().chain(events.iter().take(10).cloned()) {
        let store = store.clone();
        tasks.spawn(async move { store.record(&e).await });
    }
    let mut new = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().expect("record").new {
            new += 1;
        }
    }
    assert_eq!(new, 40, "each distinct event is new exactly once");
    let stored = store.execution_events(&key).await.unwrap();
    assert_eq!(stored.len(), 40, "no concurrent update was lost");
    let timeline = ExecutionTimeline::fold(&key, &stored);
    assert_eq!(timeline.stages[0].actions.len(), 40);
}

#[tokio::test]
async fn one_conditional_write_per_event_and_no_read() {
    let Some(clients) = local_clients("requests").await else {
        return;
    };
    let template = Template::load(&workspace("infra/template.yaml")).unwrap();
    let env = local::provision(&clients, &template, &Names::with_prefix(&unique_prefix("req")))
        .await
        .unwrap();
    let store = DynamoDbStore::new(clients.dynamodb.clone(), env.names.table.clone(), 400);
    let key = ExecutionKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "metered".into(),
        execution_id: "e-1".into(),
    };
    let mut per_new = Vec::new();
    let mut per_duplicate = Vec::new();
    for i in 0..5 {
        let e = execution_event(&key, i);
        let before = clients.counter.snapshot();
        assert!(store.record(&e).await.unwrap().new);
        per_new.push(clients.counter.since(&before));
        let before = clients.counter.snapshot();
        assert!(!store.record(&e).await.unwrap().new);
        per_duplicate.push(clients.counter.since(&before));
    }
    let one_update: BTreeMap<String, u64> = [("DynamoDB.UpdateItem".to_string(), 1)].into_iter().collect();
    for counts in per_new.iter().chain(per_duplicate.iter()) {
        assert_eq!(counts, &one_update, "exactly one UpdateItem, no read");
    }
    // A series subject (an alarm) is one PutItem.
    let alarm = std::fs::read_to_string(workspace("events/cloudwatch-alarm-state-change.json")).unwrap();
    let alarm = parse_event(alarm.as_bytes()).unwrap();
    assert!(matches!(alarm.subject(), Subject::Alarm(_)));
    let before = clients.counter.snapshot();
    assert!(store.record(&alarm).await.unwrap().new);
    assert!(!store.record(&alarm).await.unwrap().new);
    let counts = clients.counter.since(&before);
    assert_eq!(counts, [("DynamoDB.PutItem".to_string(), 2)].into_iter().collect());
}

//! Fault injection: the ingest path with 10% of its AWS calls failing (throttling, 5xx, connection resets, answers
//! lost after the request was applied), through a real SQS queue with a dead-letter queue in moto, and `tollgate dlq
//! redrive` bringing kept messages back. Whatever fails, every event ends recorded once, the timelines and metrics
//! equal the clean in-order stream's, and every notification is published once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::json;
use tollgate::dlq;
use tollgate::local::{self, Clients, Names};
use tollgate::simulate::{simulate, SimOptions};
use tollgate::template::Template;
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::ingest::service::{FailureWait, Ingestor};
use tollgate_domain::record::ports::TimelineQueries;
use tollgate_integration_tests::driver::{drain, queue_depth, sdk_config, CountingNotifier, DrainReport, QueueTiming};
use tollgate_integration_tests::fault::{FaultConfig, FaultKind, FaultProxy, FaultStats};
use tollgate_integration_tests::load::{
    approvals_overtaken, differences, executions_listed, expected, stored_counts, timelines_of, LoadReport,
};
use tollgate_integration_tests::{local_clients, unique_prefix, workspace};

/// Two messages that can never be processed: kept with their reason, never retried, never dead-lettered.
const MALFORMED: [&str; 2] = [
    "{ not json",
    r#"{"source":"aws.codepipeline","detail-type":"CodePipeline Stage Execution State Change","detail":{}}"#,
];

/// The function timeout the test's queue is sized for: its visibility timeout follows the template's ratio to it.
/// A batch that takes longer is delivered again meanwhile, which the handler is built for; that changes how many
/// deliveries and dead letters happen, never what is recorded.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(4);
/// Each SDK attempt's timeout, which fails a stalled answer (the proxy holds it until the client hangs up). Far above
/// what a healthy answer takes from a busy local endpoint: a healthy request that timed out after the endpoint applied
/// it would be an answer lost that the proxy did not count.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Drain and redrive rounds before the test gives up: a message needs maxReceiveCount failures in a row to be
/// dead-lettered again, which 10% faults make rare.
const MAX_ROUNDS: u32 = 10;
/// Only against a hang (a stuck message); no outcome depends on it.
const HANG_GUARD: Duration = Duration::from_secs(1800);

struct Outcome {
    drains: Vec<DrainReport>,
    dead_lettered: u64,
    redriven: u64,
    faults: FaultStats,
    sent: usize,
    notifications_delivered: usize,
    notifications_distinct: usize,
}

async fn send_all(direct: &Clients, queue_url: &str, bodies: &[String]) {
    for (c, chunk) in bodies.chunks(10).enumerate() {
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("e{c}-{i}"))
                    .message_body(b)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let out = direct
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("the direct client sends to the ingest queue");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
}

/// Runs the scenario with `max_attempts` SDK attempts per call (1: every fault reaches the handler).
async fn run(test: &str, seed: u64, max_attempts: u32) -> Option<Outcome> {
    let direct = local_clients(test).await?;
    let endpoint = std::env::var("TOLLGATE_TEST_ENDPOINT").ok()?;
    let template = Template::load(&workspace("infra/template.yaml")).expect("the template loads");
    let env = local::provision(&direct, &template, &Names::with_prefix(&unique_prefix(test)))
        .await
        .expect("provisioned on the local endpoint");
    // The template's proportions (visibility timeout = 7 function timeouts, 5 receives before the dead-letter queue)
    // around a function timeout short enough for a test. The timeouts only decide how often a message is retried or
    // dead-lettered, never whether it is recorded: the assertions below are on outcomes.
    let timing = QueueTiming::of_template(&workspace("infra/template.yaml")).scaled_to(FUNCTION_TIMEOUT);
    let dlq_arn = direct
        .sqs
        .get_queue_attributes()
        .queue_url(&env.dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("the DLQ's ARN")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("the DLQ has an ARN");
    direct
        .sqs
        .set_queue_attributes()
        .queue_url(&env.queue_url)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            timing.visibility_timeout.as_secs().to_string(),
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": timing.max_receive_count.to_string()})
                .to_string(),
        )
        .send()
        .await
        .expect("queue attributes set");

    let proxy = FaultProxy::start(&endpoint, FaultConfig::ten_percent(seed))
        .await
        .expect("the fault proxy starts");
    let faulty = Clients::new(&sdk_config(&proxy.endpoint(), max_attempts, ATTEMPT_TIMEOUT).await);
    let store = Arc::new(DynamoDbStore::new(
        faulty.dynamodb.clone(),
        env.names.table.clone(),
        400,
    ));
    let notifier = Arc::new(CountingNotifier::new(SnsNotifier::new(
        faulty.sns.clone(),
        env.topic_arn.clone(),
    )));
    let ingestor = Ingestor::new(store, notifier.clone()).with_failure_wait(FailureWait {
        settle: Duration::from_millis(200),
        defer_receives: 1,
    });

    let sim = SimOptions {
        seed,
        pipelines: 3,
        executions_per_pipeline: 3,
        duplicate_rate: 0.2,
        reorder_window: 6,
        ..SimOptions::default()
    };
    let want = expected(&sim).await;
    let mut bodies: Vec<String> = simulate(&sim).map(|e| e.to_string()).collect();
    bodies.insert(bodies.len() / 3, MALFORMED[0].to_string());
    bodies.insert(2 * bodies.len() / 3, MALFORMED[1].to_string());
    send_all(&direct, &env.queue_url, &bodies).await;

    // Drain, then redrive what was dead-lettered and drain again, until nothing is left anywhere. A notification
    // claim whose answer was lost holds for its lease (60 s), so a few rounds may be needed; each round needs
    // `max_receive_count` failed receives in a row of some message, so the rounds are few whatever the machine's speed.
    let mut drains = Vec::new();
    let (mut dead_lettered, mut redriven) = (0, 0);
    for round in 1.. {
        let report = drain(&faulty.sqs, &direct.sqs, &env.queue_url, &ingestor, 3, HANG_GUARD)
            .await
            .expect("the ingest queue drains");
        drains.push(report);
        let kept = dlq::depth(&direct.sqs, &env.dlq_url).await.expect("DLQ depth");
        if kept == 0 {
            break;
        }
        assert!(round < MAX_ROUNDS, "still dead-lettering after {round} rounds");
        let listed = dlq::list(&direct.sqs, &env.dlq_url, usize::MAX)
            .await
            .expect("DLQ list");
        assert_eq!(listed.len() as u64, kept, "the list pages through every kept message");
        assert!(
            listed.iter().all(|d| d.receive_count >= timing.max_receive_count),
            "dead-lettered only after maxReceiveCount receives: {listed:?}"
        );
        let source = dlq::source_queue(&direct.sqs, &env.dlq_url)
            .await
            .expect("the DLQ's source");
        assert_eq!(source.rsplit('/').next(), env.queue_url.rsplit('/').next());
        let moved = dlq::redrive(&direct.sqs, &env.dlq_url, &env.queue_url, None)
            .await
            .expect("redrive");
        assert_eq!(
            (moved.moved, moved.send_failures, moved.delete_failures),
            (listed.len() as u64, 0, 0),
            "every listed dead letter moved back"
        );
        assert_eq!(dlq::depth(&direct.sqs, &env.dlq_url).await.expect("DLQ depth"), 0);
        dead_lettered += listed.len() as u64;
        redriven += moved.moved;
    }
    assert_eq!(queue_depth(&direct.sqs, &env.queue_url).await, Ok(0));
    proxy.set_enabled(false);

    // Everything recorded once: the timelines, the stored events and the metrics equal the clean stream's.
    let check = DynamoDbStore::new(direct.dynamodb.clone(), env.names.table.clone(), 400);
    let timelines = timelines_of(&check, &want.keys).await.expect("timelines");
    let listed = executions_listed(&check, &want.keys).await.expect("executions");
    let stored = stored_counts(&check, &want.keys).await.expect("stored events");
    let published = notifier.published();
    let total = drains.iter().fold(LoadReport::default(), |mut t, d| {
        t.deliveries += d.deliveries;
        t.recorded += d.recorded;
        t.duplicates += d.duplicates;
        t.retried += d.retried;
        t
    });
    // The two malformed messages are kept, not retried: counted apart from the simulated events.
    let rejected: u64 = drains.iter().map(|d| d.rejected).sum();
    let faults = proxy.stats();
    let lost_writes: u64 = ["DynamoDB.UpdateItem", "DynamoDB.PutItem"]
        .iter()
        .map(|op| faults.count(FaultKind::ResponseLost, op) + faults.count(FaultKind::Stall, op))
        .sum();
    let diffs = differences(
        &want,
        &total_without(&total, rejected),
        &timelines,
        listed,
        &stored,
        &published,
        lost_writes,
    );
    assert!(diffs.is_empty(), "{diffs:#?}");
    // A malformed message whose acknowledgement was lost is rejected again, onto the same kept item.
    assert!(rejected >= 2, "both malformed messages rejected: {rejected}");
    let kept = check
        .rejected(chrono::Utc::now().date_naive(), 10)
        .await
        .expect("rejected messages");
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().any(|r| r.body == MALFORMED[0]));

    // Notifications: the handler saw each published once; a subscriber gets each at least once, and twice only when
    // SNS applied a Publish whose answer was lost (SNS has no idempotent publish; the copy carries the same id).
    let inbox = local::drain_inbox(&direct, &env.inbox_url).await.expect("inbox");
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for n in &inbox {
        *by_id
            .entry(n.chat["id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        by_id.len(),
        published.len(),
        "every published notification reached the subscriber"
    );
    let copies = inbox.len() - by_id.len();
    let publish_answers_lost =
        faults.count(FaultKind::ResponseLost, "SNS.Publish") + faults.count(FaultKind::Stall, "SNS.Publish");
    assert!(
        copies as u64 <= publish_answers_lost,
        "{copies} copies but only {publish_answers_lost} Publish answers were lost"
    );
    eprintln!(
        "{test}: {} messages sent ({} events, 2 malformed); approvals overtaken: {}",
        bodies.len(),
        want.events,
        approvals_overtaken(&want, &published)
    );
    Some(Outcome {
        drains,
        dead_lettered,
        redriven,
        faults,
        sent: bodies.len(),
        notifications_delivered: inbox.len(),
        notifications_distinct: by_id.len(),
    })
}

/// The totals with the malformed messages taken out, so they compare with the clean stream's events.
fn total_without(total: &LoadReport, rejected: u64) -> LoadReport {
    LoadReport {
        deliveries: total.deliveries - rejected,
        ..total.clone()
    }
}

fn summary(test: &str, o: &Outcome) -> String {
    let d = o.drains.iter().fold(DrainReport::default(), |mut t, d| {
        t.deliveries += d.deliveries;
        t.redeliveries += d.redeliveries;
        t.recorded += d.recorded;
        t.duplicates += d.duplicates;
        t.retried += d.retried;
        t.receive_errors += d.receive_errors;
        t.delete_errors += d.delete_errors;
        t
    });
    let kinds: Vec<String> = o
        .faults
        .by_kind()
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    format!(
        "{test}: {} AWS requests through the proxy, {} faulted ({}); {} messages sent, {} SQS deliveries in {} drain(s), \
         {} redeliveries, {} retried by the handler, {} receive and {} delete failures; {} dead-lettered, {} redriven; \
         {} recorded new, {} duplicates ignored; notifications: {} distinct, {} delivered to the subscriber",
        o.faults.requests,
        o.faults.total(),
        kinds.join(", "),
        o.sent,
        d.deliveries,
        o.drains.len(),
        d.redeliveries,
        d.retried,
        d.receive_errors,
        d.delete_errors,
        o.dead_lettered,
        o.redriven,
        d.recorded,
        d.duplicates,
        o.notifications_distinct,
        o.notifications_delivered,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_percent_faults_with_sdk_retries_off_lose_nothing_and_record_everything_once() {
    let Some(o) = run("faults-noretry", 101, 1).await else {
        return;
    };
    eprintln!("{}", summary("faults-noretry", &o));
    // With no SDK retry, faults reach the handler: SQS redelivered messages.
    assert!(o.faults.total() > 0);
    let redeliveries: u64 = o.drains.iter().map(|d| d.redeliveries).sum();
    assert!(redeliveries > 0, "faults caused redeliveries");
    assert_eq!(o.dead_lettered, o.redriven, "every dead letter was redriven");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_percent_faults_with_sdk_retries_on_lose_nothing_and_record_everything_once() {
    let Some(o) = run("faults-retry", 202, 3).await else {
        return;
    };
    eprintln!("{}", summary("faults-retry", &o));
    assert!(o.faults.total() > 0);
    assert_eq!(o.dead_lettered, o.redriven, "every dead letter was redriven");
}

//! Load and ordering at CI size: a simulated stream with 20% duplicates and reordering within 8 positions, driven
//! through the real ingest handler with 4 concurrent invocations, ends with the timelines, stored events, delivery
//! metrics and notifications of the clean in-order stream. The full-size run (100,000 events) is `make load`.

use std::sync::Arc;
use std::time::Duration;

use tollgate::local::{self, Names};
use tollgate::template::Template;
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::ingest::service::{FailureWait, Ingestor};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_integration_tests::driver::CountingNotifier;
use tollgate_integration_tests::load::{
    differences, drive, executions_listed, expected, sim_options, stored_counts, timelines_of, LoadOptions,
};
use tollgate_integration_tests::{local_clients, unique_prefix, workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reordered_duplicated_stream_in_memory_ends_equal_to_the_clean_in_order_stream() {
    let opts = LoadOptions {
        events: 5_000,
        ..LoadOptions::default()
    };
    let sim = sim_options(&opts);
    let want = expected(&sim).await;
    assert!(want.events >= 5_000, "{}", want.events);
    let store = Arc::new(MemoryStore::new());
    let notifier = Arc::new(CountingNotifier::new(MemoryNotifier::new()));
    let ingestor = Ingestor::new(store.clone(), notifier.clone()).with_failure_wait(FailureWait {
        settle: Duration::from_millis(20),
        defer_receives: 2,
    });
    let report = drive(&ingestor, &sim, opts.concurrency).await;
    let duplicates_sent = report.deliveries - want.events - report.retried;
    assert!(
        (0.15..0.25).contains(&(duplicates_sent as f64 / want.events as f64)),
        "about 20% duplicates: {duplicates_sent} of {}",
        want.events
    );
    let timelines = timelines_of(store.as_ref(), &want.keys).await.expect("timelines");
    let listed = executions_listed(store.as_ref(), &want.keys).await.expect("executions");
    let stored = stored_counts(store.as_ref(), &want.keys).await.expect("stored");
    let diffs = differences(&want, &report, &timelines, listed, &stored, &notifier.published(), 0);
    assert!(diffs.is_empty(), "{diffs:#?}");
    eprintln!(
        "load-memory: {} deliveries in {:.2}s = {:.0}/s",
        report.deliveries,
        report.wall.as_secs_f64(),
        report.per_second()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reordered_duplicated_stream_against_the_local_endpoint_ends_equal_to_the_clean_in_order_stream() {
    let Some(clients) = local_clients("load").await else {
        return;
    };
    // moto serves one request at a time (~100 requests/s): a small stream keeps CI fast.
    let opts = LoadOptions {
        events: 800,
        ..LoadOptions::default()
    };
    let sim = sim_options(&opts);
    let want = expected(&sim).await;
    let template = Template::load(&workspace("infra/template.yaml")).expect("template");
    let env = local::provision(&clients, &template, &Names::with_prefix(&unique_prefix("load")))
        .await
        .expect("provisioned");
    let store = Arc::new(DynamoDbStore::new(
        clients.dynamodb.clone(),
        env.names.table.clone(),
        400,
    ));
    let notifier = Arc::new(CountingNotifier::new(SnsNotifier::new(
        clients.sns.clone(),
        env.topic_arn.clone(),
    )));
    let ingestor = Ingestor::new(store.clone(), notifier.clone()).with_failure_wait(FailureWait {
        settle: Duration::from_millis(200),
        defer_receives: 2,
    });
    let before = clients.counter.snapshot();
    let report = drive(&ingestor, &sim, opts.concurrency).await;
    let requests: u64 = clients.counter.since(&before).values().sum();
    let timelines = timelines_of(store.as_ref(), &want.keys).await.expect("timelines");
    let listed = executions_listed(store.as_ref(), &want.keys).await.expect("executions");
    let stored = stored_counts(store.as_ref(), &want.keys).await.expect("stored");
    let diffs = differences(&want, &report, &timelines, listed, &stored, &notifier.published(), 0);
    assert!(diffs.is_empty(), "{diffs:#?}");
    // One conditional write per delivery, plus the reads and writes of notifications: well under 1.5 per delivery.
    let per_delivery = requests as f64 / report.deliveries as f64;
    assert!(
        per_delivery < 1.5,
        "{requests} requests for {} deliveries",
        report.deliveries
    );
    eprintln!(
        "load-moto: {} deliveries in {:.1}s = {:.0}/s, {per_delivery:.2} requests each",
        report.deliveries,
        report.wall.as_secs_f64(),
        report.per_second()
    );
}

//! `DynamoDbStore` against a real DynamoDB API (moto server), checked against the in-memory store that defines the
//! semantics: the demo story recorded twice, in order and out of order, and concurrently.
//!
//! Runs only when `TOLLGATE_TEST_ENDPOINT` names the endpoint (e.g. `http://127.0.0.1:5055`, see scripts/moto.sh);
//! otherwise each test prints SKIPPED and passes. Every test creates its own table, so tests run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use tollgate_aws::DynamoDbStore;
use tollgate_domain::memory::MemoryStore;
use tollgate_domain::record::event::{DeliveryEvent, EventBody};
use tollgate_domain::record::keys::{PipelineKey, StackKey, Subject};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{EventRecorder, Mark, Rejected, StoreError, TimelineQueries};
use tollgate_domain::record::query::execution_timeline;

mod common;

use common::Fixture;

/// Items of a GSI2 partition (deployments by coarse status), as `deployment_id`s.
async fn deployments_with_status(fx: &Fixture, status: &str) -> Vec<String> {
    let out = fx
        .client
        .query()
        .table_name(&fx.table)
        .index_name("gsi2")
        .key_condition_expression("gsi2pk = :s")
        .expression_attribute_values(":s", AttributeValue::S(format!("DEPLOY#{status}")))
        .send()
        .await
        .expect("Query gsi2");
    out.items()
        .iter()
        .map(|i| i["deployment_id"].as_s().unwrap().clone())
        .collect()
}

fn story() -> Vec<DeliveryEvent> {
    tollgate_test_support::story_json()
        .into_iter()
        .map(|v| parse_event(v.to_string().as_bytes()).unwrap())
        .collect()
}

fn pipeline() -> PipelineKey {
    PipelineKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
    }
}

fn stack_of(events: &[DeliveryEvent]) -> StackKey {
    events
        .iter()
        .find_map(|e| match e.subject() {
            Subject::Stack(k) => Some(k),
            _ => None,
        })
        .expect("the story has stack events")
}

/// Every query of the port answers as the in-memory store does after the same events.
async fn assert_same_answers(store: &DynamoDbStore, memory: &MemoryStore, events: &[DeliveryEvent]) {
    let mut subjects: Vec<Subject> = events.iter().map(DeliveryEvent::subject).collect();
    subjects.sort();
    subjects.dedup();
    for subject in &subjects {
        let (ours, theirs) = match subject {
            Subject::Execution(k) => (store.execution_events(k).await, memory.execution_events(k).await),
            Subject::Build(k) => (store.build_events(k).await, memory.build_events(k).await),
            Subject::Deployment(k) => (store.deployment_events(k).await, memory.deployment_events(k).await),
            _ => continue,
        };
        assert_eq!(ours.unwrap(), theirs.unwrap(), "events of {subject:?}");
    }
    let stack = stack_of(events);
    let (from, to): (DateTime<Utc>, DateTime<Utc>) = (
        "2026-11-20T00:00:00Z".parse().unwrap(),
        "2026-11-21T00:00:00Z".parse().unwrap(),
    );
    let ours = store.stack_events(&stack, from, to).await.unwrap();
    assert!(!ours.is_empty());
    assert_eq!(ours, memory.stack_events(&stack, from, to).await.unwrap());
    // A window that cuts inside the stack's events, to the second.
    let cut = ours[ours.len() / 2].time;
    assert_eq!(
        store.stack_events(&stack, cut, to).await.unwrap(),
        memory.stack_events(&stack, cut, to).await.unwrap()
    );
    assert_eq!(
        store
            .stack_events(&stack, from, cut - chrono::Duration::seconds(1))
            .await
            .unwrap(),
        memory
            .stack_events(&stack, from, cut - chrono::Duration::seconds(1))
            .await
            .unwrap()
    );
    for limit in [1, 2, 10] {
        assert_eq!(
            store.executions(&pipeline(), limit).await.unwrap(),
            memory.executions(&pipeline(), limit).await.unwrap(),
            "executions, limit {limit}"
        );
    }
    // Executions by start time (GSI2, by day): whole days around the story, and windows that cut at the second
    // execution's start (10:05:00), which is in [10:05:00, ...) and not in [..., 10:05:00).
    let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
    for (from, to, expected) in [
        ("2026-11-13T00:00:00Z", "2026-11-23T00:00:00Z", 2),
        ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", 2),
        ("2026-11-20T10:05:00Z", "2026-11-21T00:00:00Z", 1),
        ("2026-11-19T00:00:00Z", "2026-11-20T10:05:00Z", 1),
        ("2026-11-21T00:00:00Z", "2026-11-28T00:00:00Z", 0),
    ] {
        let (from, to) = (at(from), at(to));
        let ours = store.executions_started_between(from, to).await.unwrap();
        assert_eq!(ours.len(), expected, "executions started in [{from}, {to})");
        assert_eq!(
            ours,
            memory.executions_started_between(from, to).await.unwrap(),
            "executions started in [{from}, {to})"
        );
    }
}

#[tokio::test]
async fn story_recorded_twice_is_recorded_once() {
    let Some(fx) = Fixture::new("story-twice").await else {
        return;
    };
    let memory = MemoryStore::new();
    let events = story();

    let mut per_new = BTreeMap::<String, usize>::new();
    for event in &events {
        let ours = fx.store.record(event).await.unwrap();
        let sent = fx.requests.take();
        *per_new.entry(sent.join("+")).or_default() += 1;
        let theirs = memory.record(event).await.unwrap();
        assert!(ours.new, "first delivery of {} must be new", event.id);
        assert_eq!(ours, theirs, "recording {} ({:?})", event.id, event.kind());
    }
    println!("requests per new event: {per_new:?}");
    assert_eq!(
        per_new.keys().map(String::as_str).collect::<Vec<_>>(),
        ["PutItem", "UpdateItem"]
    );

    let mut per_duplicate = BTreeMap::<String, usize>::new();
    for event in &events {
        let ours = fx.store.record(event).await.unwrap();
        let sent = fx.requests.take();
        *per_duplicate.entry(sent.join("+")).or_default() += 1;
        assert!(!ours.new, "second delivery of {} must be a duplicate", event.id);
        assert_eq!(ours, memory.record(event).await.unwrap(), "duplicate {}", event.id);
    }
    println!("requests per duplicate: {per_duplicate:?}");

    // History sizes: the execution aggregates hold every event of their execution.
    let executions = fx.store.executions(&pipeline(), 10).await.unwrap();
    assert_eq!(executions.len(), 2);
    assert_eq!(
        executions[0].key.execution_id, "ab085ce4-dd66-42b3-88e3-098729751027",
        "newest first"
    );
    assert_eq!(executions[1].key.execution_id, "ed085d02-372a-4b03-ba8a-c1df62a84ced");
    assert_eq!(executions[0].resolved().state, "SUCCEEDED");
    assert_eq!(executions[1].resolved().state, "FAILED");
    for summary in &executions {
        let history = fx.store.execution_events(&summary.key).await.unwrap();
        let expected = events
            .iter()
            .filter(|e| e.subject() == Subject::Execution(summary.key.clone()))
            .count();
        assert_eq!(history.len(), expected);
        println!("execution {}: {} events", summary.key.execution_id, history.len());
    }
    fx.requests.take();
    assert_same_answers(&fx.store, &memory, &events).await;

    // Deployments by coarse status (GSI2).
    assert_eq!(deployments_with_status(&fx, "FAILURE").await, ["d-RAPGQL0KO"]);
    assert!(deployments_with_status(&fx, "IN_PROGRESS").await.is_empty());
    assert_eq!(deployments_with_status(&fx, "SUCCESS").await.len(), 3);
    fx.drop_table().await;
}

#[tokio::test]
async fn out_of_order_delivery_converges() {
    let Some(fx) = Fixture::new("out-of-order").await else {
        return;
    };
    let memory = MemoryStore::new();
    let events = story();
    // Reversed: every terminal state arrives before its start. Memory in story order is the reference for what
    // does not depend on order.
    for event in events.iter().rev() {
        assert!(fx.store.record(event).await.unwrap().new);
    }
    for event in &events {
        memory.record(event).await.unwrap();
    }
    assert_same_answers(&fx.store, &memory, &events).await;
    assert_eq!(deployments_with_status(&fx, "FAILURE").await, ["d-RAPGQL0KO"]);
    assert!(deployments_with_status(&fx, "IN_PROGRESS").await.is_empty());
    fx.drop_table().await;
}

#[tokio::test]
async fn concurrent_writers_lose_no_event() {
    let Some(fx) = Fixture::new("concurrent").await else {
        return;
    };
    let events = story();
    // moto is not DynamoDB under concurrency: its threaded server evaluates a condition on the item without a lock,
    // and two simultaneous writes that both create an item each start from an empty one, so one is lost. DynamoDB
    // applies each write to an item atomically. So the items exist first (one event of each subject, in turn), and
    // then every other event is delivered twice, all at once, onto the same few items.
    let mut seeded = BTreeSet::new();
    for event in &events {
        if seeded.insert(event.subject()) {
            assert!(fx.store.record(event).await.unwrap().new);
        }
    }
    let store = Arc::new(fx.store.clone());
    let tasks: Vec<_> = events
        .iter()
        .chain(events.iter())
        .cloned()
        .map(|event| {
            let store = store.clone();
            tokio::spawn(async move { store.record(&event).await.map(|r| (event.id, r.new)) })
        })
        .collect();
    let mut new = BTreeMap::<String, usize>::new();
    for task in tasks {
        let (id, is_new) = task.await.unwrap().unwrap();
        *new.entry(id).or_default() += usize::from(is_new);
    }
    // On DynamoDB each event not seeded is new exactly once; moto's unlocked condition check can let both
    // simultaneous deliveries through, which changes nothing stored (the same attribute is set twice).
    let seeded_ids: BTreeSet<&str> = seeded_events(&events).into_iter().collect();
    for (id, n) in &new {
        let expected = if seeded_ids.contains(id.as_str()) { 0..=0 } else { 1..=2 };
        assert!(expected.contains(n), "event {id} reported new {n} times");
    }
    let doubled = new.values().filter(|n| **n > 1).count();
    println!("events reported new twice by simultaneous writers (moto's race; DynamoDB: 0): {doubled}");
    let memory = MemoryStore::new();
    for event in &events {
        memory.record(event).await.unwrap();
    }
    // Nothing lost: the record of every subject holds all its events, and every index agrees.
    assert_same_answers(&fx.store, &memory, &events).await;
    fx.drop_table().await;
}

/// The first event of each subject, in story order.
fn seeded_events(events: &[DeliveryEvent]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    events
        .iter()
        .filter(|e| seen.insert(e.subject()))
        .map(|e| e.id.as_str())
        .collect()
}

/// The notification markers of the record of `event`, read by recording it again (a duplicate).
async fn marks(store: &DynamoDbStore, event: &DeliveryEvent) -> BTreeMap<String, Mark> {
    let recorded = store.record(event).await.unwrap();
    assert!(!recorded.new, "{} was recorded before", event.id);
    recorded.notified
}

#[tokio::test]
async fn notification_claims_are_exclusive_until_stale_and_returned_with_the_record() {
    let Some(fx) = Fixture::new("markers").await else {
        return;
    };
    let events = story();
    let failed = events
        .iter()
        .find(|e| matches!(&e.body, EventBody::PipelineExecution(p) if p.state == "FAILED"))
        .unwrap();
    let stack_event = events
        .iter()
        .find(|e| matches!(e.subject(), Subject::Stack(_)))
        .unwrap();
    let t0: DateTime<Utc> = "2026-11-20T09:25:03Z".parse().unwrap();
    let secs = chrono::Duration::seconds;
    let claim = |at: DateTime<Utc>, token: &str| Mark::Claimed {
        at,
        token: token.into(),
    };
    let key = "execution_failed@2026-11-20T09:25:01Z";
    for event in [failed, stack_event] {
        let what = format!("{:?}", event.kind());
        fx.store.record(event).await.unwrap();
        fx.requests.take();

        // The first publisher claims: one conditional UpdateItem.
        let first = claim(t0, "m-1.1");
        assert!(
            fx.store
                .claim_notification(event, key, &first, t0 - secs(60))
                .await
                .unwrap(),
            "{what}"
        );
        assert_eq!(fx.requests.take(), ["UpdateItem"], "{what}");
        assert_eq!(
            marks(&fx.store, event).await,
            BTreeMap::from([(key.to_string(), first.clone())]),
            "{what}"
        );

        // A second delivery a second later is refused while the claim is fresh.
        let second = claim(t0 + secs(1), "m-2.1");
        fx.requests.take();
        assert!(
            !fx.store
                .claim_notification(event, key, &second, t0 + secs(1) - secs(60))
                .await
                .unwrap(),
            "{what}"
        );
        println!("{what}: requests per refused claim: {:?}", fx.requests.take());
        assert_eq!(
            marks(&fx.store, event).await[key],
            first,
            "{what}: a refused claim changes nothing"
        );

        // Once the first claim is older than the lease (its publisher died), the next delivery takes it over.
        let third = claim(t0 + secs(120), "m-3.1");
        assert!(
            fx.store
                .claim_notification(event, key, &third, t0 + secs(60))
                .await
                .unwrap(),
            "{what}"
        );
        assert_eq!(marks(&fx.store, event).await[key], third, "{what}");

        // The first publisher coming back late cannot mark it sent nor release it: the claim is no longer its own.
        fx.store.finish_notification(event, key, &first).await.unwrap();
        fx.store.release_notification(event, key, &first).await.unwrap();
        assert_eq!(marks(&fx.store, event).await[key], third, "{what}");

        // The holder finishes: the record says sent, and nothing can claim it again, however late.
        fx.store.finish_notification(event, key, &third).await.unwrap();
        assert_eq!(
            marks(&fx.store, event).await,
            BTreeMap::from([(key.to_string(), Mark::Sent)]),
            "{what}"
        );
        let much_later = t0 + chrono::Duration::days(1);
        assert!(
            !fx.store
                .claim_notification(event, key, &claim(much_later, "m-4.1"), much_later)
                .await
                .unwrap(),
            "{what}: a sent notification is never claimed again"
        );
        assert_eq!(marks(&fx.store, event).await[key], Mark::Sent, "{what}");

        // Release (after a failed publish) makes another key claimable again at once; markers are independent.
        let other = "stage_failed:Production@2026-11-20T09:25:00Z";
        let failing = claim(t0 + secs(5), "m-5.1");
        assert!(fx
            .store
            .claim_notification(event, other, &failing, t0 + secs(5) - secs(60))
            .await
            .unwrap());
        fx.store
            .release_notification(event, other, &claim(t0 + secs(5), "someone-else"))
            .await
            .unwrap();
        assert_eq!(
            marks(&fx.store, event).await.get(other),
            Some(&failing),
            "{what}: only the holder releases"
        );
        fx.store.release_notification(event, other, &failing).await.unwrap();
        assert_eq!(
            marks(&fx.store, event).await,
            BTreeMap::from([(key.to_string(), Mark::Sent)]),
            "{what}"
        );
        let retry = claim(t0 + secs(6), "m-6.1");
        assert!(
            fx.store
                .claim_notification(event, other, &retry, t0 + secs(6) - secs(60))
                .await
                .unwrap(),
            "{what}: a released notification is claimable before any lease runs out"
        );
        assert_eq!(marks(&fx.store, event).await.get(other), Some(&retry), "{what}");
    }

    // No record, no marker: the adapter says so rather than creating an item holding only a marker.
    let unrecorded = events
        .iter()
        .find(|e| matches!(e.subject(), Subject::Build(_)))
        .unwrap();
    let mark = claim(t0, "m-7.1");
    let results = [
        fx.store
            .claim_notification(unrecorded, key, &mark, t0 - secs(60))
            .await
            .map(|_| ()),
        fx.store.finish_notification(unrecorded, key, &mark).await,
        fx.store.release_notification(unrecorded, key, &mark).await,
    ];
    for result in results {
        assert!(
            matches!(&result, Err(StoreError::Permanent(m)) if m.contains(&unrecorded.id)),
            "{result:?}"
        );
    }
    let Subject::Build(build) = unrecorded.subject() else {
        unreachable!()
    };
    assert!(
        fx.store.build_events(&build).await.unwrap().is_empty(),
        "no item was created"
    );
    fx.drop_table().await;
}

#[tokio::test]
async fn rejected_messages_are_kept_once_newest_first() {
    let Some(fx) = Fixture::new("rejected").await else {
        return;
    };
    let memory = MemoryStore::new();
    let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
    let messages = [
        Rejected::new("m-1", at("2026-11-20T09:00:00.100Z"), "not JSON".into(), "{"),
        Rejected::new("m-2", at("2026-11-20T10:00:00Z"), "no detail".into(), "{}"),
        Rejected::new("m-3", at("2026-11-21T00:00:01Z"), "next day".into(), "[]"),
    ];
    for r in messages.iter().chain(messages.iter()) {
        fx.store.keep_rejected(r).await.unwrap();
        memory.keep_rejected(r).await.unwrap();
    }
    let day = at("2026-11-20T12:00:00Z").date_naive();
    let ours = fx.store.rejected(day, 10).await.unwrap();
    assert_eq!(
        ours.iter().map(|r| r.message_id.as_str()).collect::<Vec<_>>(),
        ["m-2", "m-1"]
    );
    assert_eq!(ours, memory.rejected(day, 10).await.unwrap());
    assert_eq!(
        fx.store.rejected(day, 1).await.unwrap(),
        memory.rejected(day, 1).await.unwrap()
    );
    fx.drop_table().await;
}

#[tokio::test]
async fn sdk_config_honours_aws_endpoint_url() {
    let Ok(expected) = std::env::var("AWS_ENDPOINT_URL") else {
        println!("SKIPPED: set AWS_ENDPOINT_URL to check that sdk_config() uses it");
        return;
    };
    let config = tollgate_aws::sdk_config().await;
    assert_eq!(config.endpoint_url(), Some(expected.as_str()));
    let store = DynamoDbStore::new(Client::new(&config), "no-such-table", 30);
    if std::env::var(tollgate_test_support::ENDPOINT_VAR).is_ok() {
        // The real endpoint answers: a missing table is a permanent failure that says which table.
        let Subject::Execution(key) = story()[0].subject() else {
            panic!("the story starts with an execution event")
        };
        let err = store.execution_events(&key).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Permanent(m) if m.contains("no-such-table")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn loading_the_timelines_of_a_period_costs_one_query_per_day_and_one_read_per_record() {
    let Some(fx) = Fixture::new("metrics-reads").await else {
        return;
    };
    let events = story();
    let memory = MemoryStore::new();
    for event in &events {
        fx.store.record(event).await.unwrap();
        memory.record(event).await.unwrap();
    }
    fx.requests.take();

    // What the metrics function does: list a period's executions by start day, then load each timeline.
    let from: DateTime<Utc> = "2026-10-17T00:00:00Z".parse().unwrap();
    let to: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
    let keys = fx.store.executions_started_between(from, to).await.unwrap();
    let listing = fx.requests.take();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0].execution_id, "ed085d02-372a-4b03-ba8a-c1df62a84ced",
        "oldest first"
    );
    // 37 days: one Query each (a day's executions fit in one page here).
    assert_eq!(listing.len(), 37, "{listing:?}");
    assert!(listing.iter().all(|op| op == "Query"), "{listing:?}");

    for key in &keys {
        let ours = execution_timeline(&fx.store, key).await.unwrap().expect("recorded");
        let sent = fx.requests.take();
        let theirs = execution_timeline(&memory, key).await.unwrap().expect("recorded");
        assert_eq!(ours, theirs, "timeline of {}", key.execution_id);
        // One consistent GetItem for the execution, one per build and deployment its actions ran.
        let runs = ours.external_runs().len();
        assert_eq!(sent.len(), 1 + runs, "{sent:?}");
        assert!(sent.iter().all(|op| op == "GetItem"), "{sent:?}");
        println!(
            "execution {}: {} requests (GetItem: 1 execution + {runs} builds and deployments)",
            key.execution_id,
            sent.len()
        );
    }
    fx.drop_table().await;
}

#[tokio::test]
async fn digest_marker_is_claimed_once_until_stale_then_sent_for_good() {
    let Some(fx) = Fixture::new("digest").await else {
        return;
    };
    let key = "weekly_digest@2026-11-23";
    let t0: DateTime<Utc> = "2026-11-23T06:00:05Z".parse().unwrap();
    let secs = chrono::Duration::seconds;
    let claim = |at: DateTime<Utc>, token: &str| Mark::Claimed {
        at,
        token: token.into(),
    };
    let first = claim(t0, "r-1");
    assert_eq!(fx.store.claim_digest(key, &first, t0 - secs(60)).await.unwrap(), None);
    assert_eq!(
        fx.requests.take(),
        ["UpdateItem"],
        "one conditional write creates the marker"
    );
    // A second run while the first holds a fresh claim learns who holds it, in one request.
    let second = claim(t0 + secs(1), "r-2");
    assert_eq!(
        fx.store
            .claim_digest(key, &second, t0 + secs(1) - secs(60))
            .await
            .unwrap(),
        Some(first.clone())
    );
    println!("requests per refused digest claim: {:?}", fx.requests.take());
    // Released after a failed publish: claimable again at once.
    assert!(fx.store.release_digest(key, &first).await.unwrap());
    assert_eq!(fx.store.claim_digest(key, &second, t0 - secs(59)).await.unwrap(), None);
    // The late first run cannot finish the second's claim; the second one can.
    assert!(!fx.store.finish_digest(key, &first).await.unwrap());
    assert!(fx.store.finish_digest(key, &second).await.unwrap());
    // Sent is for good, however late the next claim.
    let much_later = t0 + chrono::Duration::days(2);
    assert_eq!(
        fx.store
            .claim_digest(key, &claim(much_later, "r-3"), much_later)
            .await
            .unwrap(),
        Some(Mark::Sent)
    );
    fx.drop_table().await;
}

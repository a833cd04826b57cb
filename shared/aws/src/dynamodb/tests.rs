//! The adapter at the SDK's HTTP layer: the exact requests it sends, and what it makes of DynamoDB's answers
//! (errors are real HTTP answers, parsed by the SDK as in production).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use serde_json::{json, Value};
use tollgate_domain::record::event::DeliveryEvent;
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{EventRecorder, Mark, Rejected, StoreError};

use super::*;

const TABLE: &str = "tollgate-test";

fn client(rules: &[&Rule]) -> Client {
    // No retries: each answer below is the final one, and a test of "transient" must not wait out a backoff.
    mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, rules, |b| b
        .retry_config(RetryConfig::disabled()))
}

fn store(rules: &[&Rule]) -> DynamoDbStore {
    DynamoDbStore::new(client(rules), TABLE, 30)
}

fn fixture(name: &str) -> DeliveryEvent {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_event(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The demo story's events, in file order.
fn story() -> Vec<DeliveryEvent> {
    let text = include_str!("../../../../events/story/failed-deploy-and-fix.json");
    let values: Vec<Value> = serde_json::from_str(text).unwrap();
    values
        .into_iter()
        .map(|v| parse_event(v.to_string().as_bytes()).unwrap())
        .collect()
}

fn pipeline_started() -> DeliveryEvent {
    story().into_iter().next().unwrap()
}

/// The item as DynamoDB JSON (`{"attr": {"S": ...}}`), for HTTP answers.
fn wire_item(item: &HashMap<String, AttributeValue>) -> Value {
    let attrs = item.iter().map(|(k, v)| {
        let v = match v {
            AttributeValue::S(s) => json!({ "S": s }),
            AttributeValue::N(n) => json!({ "N": n }),
            AttributeValue::Ss(ss) => json!({ "SS": ss }),
            other => panic!("no wire form for {other:?} in these tests"),
        };
        (k.clone(), v)
    });
    Value::Object(attrs.collect())
}

/// An aggregate item holding `events`, with notification markers as stored: (notification key, stored value).
fn aggregate_item(events: &[&DeliveryEvent], markers: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
    let pk = events[0].subject().pk();
    let mut item = HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(AGGREGATE_SK))]);
    for e in events {
        item.insert(item::event_attr(&e.id), s(serde_json::to_string(e).unwrap()));
    }
    for (key, value) in markers {
        item.insert(item::marker_attr(key), s(*value));
    }
    item
}

fn error_body(code: &str, message: &str, item: Option<&HashMap<String, AttributeValue>>) -> String {
    let mut body = json!({ "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": message });
    if let Some(item) = item {
        body["Item"] = wire_item(item);
    }
    body.to_string()
}

#[tokio::test]
async fn new_execution_event_is_one_conditional_update_returning_the_history() {
    let event = pipeline_started();
    let pk = event.subject().pk();
    let ev_name = format!("ev:{}", event.id);
    let stored = aggregate_item(&[&event], &[]);
    let expected_pk = pk.clone();
    let rule = mock!(Client::update_item)
        .match_requests(move |req| {
            let names = req.expression_attribute_names().cloned().unwrap_or_default();
            let values = req.expression_attribute_values().cloned().unwrap_or_default();
            let expr = req.update_expression().unwrap_or_default();
            let mut value_names: Vec<&str> = values.keys().map(String::as_str).collect();
            value_names.sort_unstable();
            req.table_name() == Some(TABLE)
                && req.key().and_then(|k| k.get("pk")) == Some(&s(&expected_pk))
                && req.key().and_then(|k| k.get("sk")) == Some(&s("STATE"))
                && req.condition_expression() == Some("attribute_not_exists(#ev)")
                && names.get("#ev") == Some(&ev_name)
                && req.return_values() == Some(&ReturnValue::AllNew)
                && req.return_values_on_condition_check_failure() == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
                // The whole expression: descriptive attributes fill in; a pipeline STARTED sets the start time in
                // both indexes unconditionally (GSI1 by pipeline, GSI2 by day) and adds its state.
                && expr
                    == "SET #ev = :ev, #ttl = if_not_exists(#ttl, :ttl), #account = if_not_exists(#account, :account), \
                        #region = if_not_exists(#region, :region), #kind = if_not_exists(#kind, :kind), \
                        #pipeline = if_not_exists(#pipeline, :pipeline), \
                        #execution_id = if_not_exists(#execution_id, :execution_id), \
                        #gsi1pk = if_not_exists(#gsi1pk, :gsi1pk), #gsi1sk = :gsi1sk, #gsi2pk = :gsi2pk, \
                        #gsi2sk = :gsi2sk ADD #pstates :pstates"
                && names.len() == 12
                && names.get("#gsi2pk").map(String::as_str) == Some("gsi2pk")
                && names.get("#gsi2sk").map(String::as_str) == Some("gsi2sk")
                && value_names
                    == [
                        ":account",
                        ":ev",
                        ":execution_id",
                        ":gsi1pk",
                        ":gsi1sk",
                        ":gsi2pk",
                        ":gsi2sk",
                        ":kind",
                        ":pipeline",
                        ":pstates",
                        ":region",
                        ":ttl",
                    ]
                && values.get(":kind") == Some(&s("execution"))
                && values.get(":gsi1pk") == Some(&s("PIPE#111122223333#eu-west-1#checkout-service"))
                && values.get(":gsi1sk") == Some(&s("2026-11-20T09:00:00Z#ed085d02-372a-4b03-ba8a-c1df62a84ced"))
                && values.get(":gsi2pk") == Some(&s("EXECDAY#2026-11-20"))
                && values.get(":gsi2sk")
                    == Some(&s(
                        "2026-11-20T09:00:00Z#111122223333#eu-west-1#checkout-service#ed085d02-372a-4b03-ba8a-c1df62a84ced"
                    ))
                && values.get(":pstates") == Some(&AttributeValue::Ss(vec!["2026-11-20T09:00:00Z|STARTED".into()]))
                && values.get(":ttl") == Some(&AttributeValue::N((1_795_165_200 + 30 * 86_400).to_string()))
                && serde_json::from_str::<DeliveryEvent>(values[":ev"].as_s().unwrap()).ok().as_ref()
                    == Some(&pipeline_started())
        })
        .then_output(move || UpdateItemOutput::builder().set_attributes(Some(stored.clone())).build());
    let recorded = store(&[&rule]).record(&event).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert!(recorded.new);
    assert_eq!(recorded.history, vec![event]);
    assert!(recorded.notified.is_empty());
}

#[tokio::test]
async fn duplicate_event_returns_the_stored_history_without_a_read() {
    let events = story();
    let (started, stage) = (&events[0], &events[1]);
    let old = aggregate_item(
        &[started, stage],
        &[
            ("execution_failed#x", "sent"),
            ("stage_failed#y", "claim@2026-11-20T09:25:40Z@m-9.1"),
        ],
    );
    let rule = mock!(Client::update_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ConditionalCheckFailedException",
                "The conditional request failed",
                Some(&old),
            )),
        )
        .build();
    // Sequential rules: a GetItem here would panic for want of a rule.
    let recorded = store(&[&rule]).record(stage).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert!(!recorded.new);
    let mut expected = vec![started.clone(), stage.clone()];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(recorded.history, expected);
    assert_eq!(
        recorded.notified,
        BTreeMap::from([
            ("execution_failed#x".to_string(), Mark::Sent),
            (
                "stage_failed#y".to_string(),
                Mark::Claimed {
                    at: "2026-11-20T09:25:40Z".parse().unwrap(),
                    token: "m-9.1".into()
                }
            ),
        ])
    );
}

#[tokio::test]
async fn duplicate_without_the_old_item_reads_it_once() {
    let event = pipeline_started();
    let old = aggregate_item(&[&event], &[]);
    let update = mock!(Client::update_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ConditionalCheckFailedException",
                "The conditional request failed",
                None,
            )),
        )
        .build();
    let get = mock!(Client::get_item)
        .match_requests(|req| {
            req.consistent_read() == Some(true) && req.key().and_then(|k| k.get("sk")) == Some(&s("STATE"))
        })
        .then_output(move || GetItemOutput::builder().set_item(Some(old.clone())).build());
    let recorded = store(&[&update, &get]).record(&event).await.unwrap();
    assert_eq!((update.num_calls(), get.num_calls()), (1, 1));
    assert!(!recorded.new);
    assert_eq!(recorded.history, vec![event]);
}

#[tokio::test]
async fn throttling_is_transient() {
    for code in [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    ] {
        let rule = mock!(Client::update_item)
            .sequence()
            .http_status(400, Some(error_body(code, "slow down", None)))
            .build();
        let err = store(&[&rule]).record(&pipeline_started()).await.unwrap_err();
        let StoreError::Transient(message) = &err else {
            panic!("{code}: expected transient, got {err:?}")
        };
        assert!(
            message.contains("UpdateItem") && message.contains(TABLE) && message.contains(code),
            "{message}"
        );
    }
}

#[tokio::test]
async fn server_errors_are_transient() {
    let rule = mock!(Client::get_item)
        .sequence()
        .http_status(500, Some(error_body("InternalServerError", "internal", None)))
        .build();
    let key = ExecutionKey {
        account: "1".into(),
        region: "r".into(),
        pipeline: "p".into(),
        execution_id: "e".into(),
    };
    let err = store(&[&rule]).execution_events(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn validation_error_is_permanent_and_says_what_failed() {
    let rule = mock!(Client::update_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ValidationException",
                "Item size has exceeded the maximum allowed size",
                None,
            )),
        )
        .build();
    let event = pipeline_started();
    let err = store(&[&rule]).record(&event).await.unwrap_err();
    let StoreError::Permanent(message) = &err else {
        panic!("expected permanent, got {err:?}")
    };
    assert!(message.contains("UpdateItem"), "{message}");
    assert!(message.contains(TABLE), "{message}");
    assert!(message.contains(&event.subject().pk()), "{message}");
    assert!(message.contains("Item size has exceeded"), "{message}");
}

#[tokio::test]
async fn missing_table_is_permanent() {
    let rule = mock!(Client::put_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ResourceNotFoundException",
                "Requested resource not found",
                None,
            )),
        )
        .build();
    let r = Rejected::new("m-1", "2026-11-20T09:00:00Z".parse().unwrap(), "bad".into(), "{}");
    let err = store(&[&rule]).keep_rejected(&r).await.unwrap_err();
    assert!(matches!(err, StoreError::Permanent(_)), "{err:?}");
}

#[tokio::test]
async fn unreadable_stored_event_is_permanent_and_names_the_attribute() {
    let event = pipeline_started();
    let mut stored = aggregate_item(&[&event], &[]);
    stored.insert("ev:garbage".into(), s("{not json"));
    let rule = mock!(Client::update_item)
        .then_output(move || UpdateItemOutput::builder().set_attributes(Some(stored.clone())).build());
    let err = store(&[&rule]).record(&event).await.unwrap_err();
    let StoreError::Permanent(message) = &err else {
        panic!("expected permanent, got {err:?}")
    };
    assert!(
        message.contains(&event.subject().pk()) && message.contains("ev:garbage"),
        "{message}"
    );
}

#[tokio::test]
async fn later_execution_events_only_fill_in_the_start_time() {
    let stage = story().into_iter().nth(1).unwrap();
    let stored = aggregate_item(&[&stage], &[]);
    let rule = mock!(Client::update_item)
        .match_requests(|req| {
            let expr = req.update_expression().unwrap_or_default();
            let values = req.expression_attribute_values().cloned().unwrap_or_default();
            expr.contains("#gsi1sk = if_not_exists(#gsi1sk, :gsi1sk)")
                && expr.contains("#gsi2pk = if_not_exists(#gsi2pk, :gsi2pk)")
                && expr.contains("#gsi2sk = if_not_exists(#gsi2sk, :gsi2sk)")
                && !expr.contains("ADD")
                && values.get(":gsi1sk") == Some(&s("2026-11-20T09:00:01Z#ed085d02-372a-4b03-ba8a-c1df62a84ced"))
                && values.get(":gsi2pk") == Some(&s("EXECDAY#2026-11-20"))
                && values.get(":gsi2sk")
                    == Some(&s(
                        "2026-11-20T09:00:01Z#111122223333#eu-west-1#checkout-service#ed085d02-372a-4b03-ba8a-c1df62a84ced"
                    ))
        })
        .then_output(move || UpdateItemOutput::builder().set_attributes(Some(stored.clone())).build());
    assert!(store(&[&rule]).record(&stage).await.unwrap().new);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn deployment_status_index_is_set_by_terminal_states_and_filled_in_by_others() {
    let events = story();
    let deployments: Vec<&DeliveryEvent> = events
        .iter()
        .filter(|e| matches!(e.body, tollgate_domain::record::event::EventBody::DeploymentState(_)))
        .collect();
    let failure = deployments
        .iter()
        .find(|e| matches!(&e.body, tollgate_domain::record::event::EventBody::DeploymentState(d) if d.state == "FAILURE"))
        .copied()
        .expect("the story has a failed deployment");
    let start = deployments
        .iter()
        .find(
            |e| matches!(&e.body, tollgate_domain::record::event::EventBody::DeploymentState(d) if d.state == "START"),
        )
        .copied()
        .expect("the story has a started deployment");
    for (event, status, conditional) in [(failure, "DEPLOY#FAILURE", false), (start, "DEPLOY#IN_PROGRESS", true)] {
        let stored = aggregate_item(&[event], &[]);
        let Subject::Deployment(key) = event.subject() else {
            unreachable!()
        };
        let suffix = format!("#111122223333#eu-west-1#{}", key.deployment_id);
        let rule = mock!(Client::update_item)
            .match_requests(move |req| {
                let expr = req.update_expression().unwrap_or_default();
                let values = req.expression_attribute_values().cloned().unwrap_or_default();
                let set = if conditional {
                    "#gsi2pk = if_not_exists(#gsi2pk, :gsi2pk)"
                } else {
                    "#gsi2pk = :gsi2pk,"
                };
                expr.contains(set)
                    && values.get(":gsi2pk") == Some(&s(status))
                    && values.get(":kind") == Some(&s("deployment"))
                    && values[":gsi2sk"].as_s().unwrap().ends_with(&suffix)
            })
            .then_output(move || UpdateItemOutput::builder().set_attributes(Some(stored.clone())).build());
        store(&[&rule]).record(event).await.unwrap();
        assert_eq!(rule.num_calls(), 1, "{status}");
    }
}

#[tokio::test]
async fn series_event_is_one_conditional_put() {
    let event = fixture("cloudformation-stack-status-change.json");
    let pk = event.subject().pk();
    let sk = series_sk(&event.time, &event.id);
    let rule = mock!(Client::put_item)
        .match_requests(move |req| {
            let item = req.item().cloned().unwrap_or_default();
            item.get("pk") == Some(&s(&pk))
                && item.get("sk") == Some(&s(&sk))
                && item.get("kind") == Some(&s("stack_status"))
                && item.contains_key("event")
                && item.contains_key("ttl")
                && req.condition_expression() == Some("attribute_not_exists(pk)")
                && req.return_values_on_condition_check_failure() == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
        })
        .then_output(|| PutItemOutput::builder().build());
    let recorded = store(&[&rule]).record(&event).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert!(recorded.new);
    assert_eq!(recorded.history, vec![event]);
}

#[tokio::test]
async fn duplicate_series_event_returns_its_markers() {
    let event = fixture("cloudformation-stack-status-change.json");
    let mut old = item::series_item(&event, event.subject().pk(), series_sk(&event.time, &event.id), 30).unwrap();
    // Markers written before claims existed hold the time the notification was sent: they read as sent.
    old.insert("n:stack_rollback#1".into(), s("2026-11-18T14:00:00Z"));
    let rule = mock!(Client::put_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ConditionalCheckFailedException",
                "The conditional request failed",
                Some(&old),
            )),
        )
        .build();
    let recorded = store(&[&rule]).record(&event).await.unwrap();
    assert!(!recorded.new);
    assert_eq!(recorded.history, vec![event]);
    assert_eq!(
        recorded.notified,
        BTreeMap::from([("stack_rollback#1".to_string(), Mark::Sent)])
    );
}

// Notification markers: a publisher claims, publishes, then finishes (marks sent) or releases.

const MARKER_KEY: &str = "execution_failed@2026-11-20T09:25:01Z";
const MARKER_ATTR: &str = "n:execution_failed@2026-11-20T09:25:01Z";
/// `our_claim()` as stored: the time in whole seconds, then the token.
const OUR_CLAIM: &str = "claim@2026-11-20T09:25:03Z@m-1.250000000";
const CLAIM_CONDITION: &str =
    "attribute_exists(pk) AND (attribute_not_exists(#n) OR (begins_with(#n, :claimed) AND #n < :stale))";

fn our_claim() -> Mark {
    Mark::Claimed {
        at: "2026-11-20T09:25:03.250Z".parse().unwrap(),
        token: "m-1.250000000".into(),
    }
}

/// The service's lease is 60 s: claims made before this are abandoned (subseconds are not stored).
fn stale_before() -> DateTime<Utc> {
    "2026-11-20T09:24:03.250Z".parse().unwrap()
}

fn stack_event() -> DeliveryEvent {
    fixture("cloudformation-stack-status-change.json")
}

/// The key of the item that recorded `event`, spelled out rather than asked of the adapter.
fn expected_key(event: &DeliveryEvent) -> HashMap<String, AttributeValue> {
    let sk = match event.subject() {
        Subject::Stack(_) => series_sk(&event.time, &event.id),
        _ => AGGREGATE_SK.to_string(),
    };
    HashMap::from([("pk".to_string(), s(event.subject().pk())), ("sk".to_string(), s(sk))])
}

type Seen = Arc<Mutex<Vec<UpdateItemInput>>>;

/// Accepts one UpdateItem and keeps it in `seen`, to be checked after the call.
fn accept_update(seen: &Seen) -> Rule {
    let seen = seen.clone();
    mock!(Client::update_item)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

/// `seen` is exactly one UpdateItem of `MARKER_KEY`'s marker on the item of `event`, with this expression,
/// condition and values (all of them: no other placeholder is sent).
fn assert_one_marker_update(
    seen: &Seen,
    event: &DeliveryEvent,
    update: &str,
    condition: &str,
    values: &[(&str, &str)],
) {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let req = &seen[0];
    assert_eq!(req.table_name(), Some(TABLE));
    assert_eq!(req.key(), Some(&expected_key(event)));
    assert_eq!(req.update_expression(), Some(update));
    assert_eq!(req.condition_expression(), Some(condition));
    assert_eq!(
        req.expression_attribute_names(),
        Some(&HashMap::from([("#n".to_string(), MARKER_ATTR.to_string())]))
    );
    let values: HashMap<String, AttributeValue> = values.iter().map(|(k, v)| (k.to_string(), s(*v))).collect();
    assert_eq!(req.expression_attribute_values(), Some(&values));
    // A refused condition answers with the item, which tells "someone else holds it" from "no such record".
    assert_eq!(
        req.return_values_on_condition_check_failure(),
        Some(&ReturnValuesOnConditionCheckFailure::AllOld)
    );
}

fn condition_failed(item: Option<&HashMap<String, AttributeValue>>) -> Rule {
    mock!(Client::update_item)
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ConditionalCheckFailedException",
                "The conditional request failed",
                item,
            )),
        )
        .build()
}

#[tokio::test]
async fn claim_is_one_conditional_update_of_the_marker_on_the_item_that_recorded_the_event() {
    for event in [pipeline_started(), stack_event()] {
        let seen = Seen::default();
        let rule = accept_update(&seen);
        let claimed = store(&[&rule])
            .claim_notification(&event, MARKER_KEY, &our_claim(), stale_before())
            .await
            .unwrap();
        assert!(claimed, "{:?}", event.kind());
        assert_eq!(rule.num_calls(), 1);
        assert_one_marker_update(
            &seen,
            &event,
            "SET #n = :claim",
            CLAIM_CONDITION,
            &[
                (":claim", OUR_CLAIM),
                (":claimed", "claim@"),
                // Claims sort by time as text: a claim made before 09:24:03 is below this prefix.
                (":stale", "claim@2026-11-20T09:24:03Z@"),
            ],
        );
    }
}

#[tokio::test]
async fn finish_marks_the_notification_sent_only_if_our_claim_still_holds() {
    let event = pipeline_started();
    let seen = Seen::default();
    let rule = accept_update(&seen);
    store(&[&rule])
        .finish_notification(&event, MARKER_KEY, &our_claim())
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert_one_marker_update(
        &seen,
        &event,
        "SET #n = :sent",
        "#n = :claim",
        &[(":sent", "sent"), (":claim", OUR_CLAIM)],
    );
}

#[tokio::test]
async fn release_removes_the_marker_only_if_our_claim_still_holds() {
    let event = stack_event();
    let seen = Seen::default();
    let rule = accept_update(&seen);
    store(&[&rule])
        .release_notification(&event, MARKER_KEY, &our_claim())
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert_one_marker_update(&seen, &event, "REMOVE #n", "#n = :claim", &[(":claim", OUR_CLAIM)]);
}

#[tokio::test]
async fn claim_refused_with_the_old_item_is_false_without_a_read() {
    let event = pipeline_started();
    // Another delivery's fresh claim, or a notification already sent.
    for held in ["claim@2026-11-20T09:25:02Z@m-2.1", "sent"] {
        let old = aggregate_item(&[&event], &[(MARKER_KEY, held)]);
        let rule = condition_failed(Some(&old));
        // Sequential rules: a GetItem here would panic for want of a rule.
        let claimed = store(&[&rule])
            .claim_notification(&event, MARKER_KEY, &our_claim(), stale_before())
            .await
            .unwrap();
        assert!(!claimed, "held by {held}");
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn claim_refused_without_the_old_item_reads_it_once() {
    let event = pipeline_started();
    let old = aggregate_item(&[&event], &[(MARKER_KEY, "claim@2026-11-20T09:25:02Z@m-2.1")]);
    let update = condition_failed(None);
    let get = mock!(Client::get_item)
        .match_requests(|req| {
            req.consistent_read() == Some(true) && req.key().and_then(|k| k.get("sk")) == Some(&s(AGGREGATE_SK))
        })
        .then_output(move || GetItemOutput::builder().set_item(Some(old.clone())).build());
    let claimed = store(&[&update, &get])
        .claim_notification(&event, MARKER_KEY, &our_claim(), stale_before())
        .await
        .unwrap();
    assert!(!claimed);
    assert_eq!((update.num_calls(), get.num_calls()), (1, 1));
}

#[tokio::test]
async fn finish_or_release_after_a_takeover_succeeds_without_a_read() {
    let event = pipeline_started();
    // Our claim expired and another delivery took the notification over: its marker stays as it is.
    let old = aggregate_item(&[&event], &[(MARKER_KEY, "claim@2026-11-20T09:26:30Z@m-3.1")]);
    let finish = condition_failed(Some(&old));
    store(&[&finish])
        .finish_notification(&event, MARKER_KEY, &our_claim())
        .await
        .unwrap();
    let release = condition_failed(Some(&old));
    store(&[&release])
        .release_notification(&event, MARKER_KEY, &our_claim())
        .await
        .unwrap();
    assert_eq!((finish.num_calls(), release.num_calls()), (1, 1));
}

#[derive(Debug, Clone, Copy)]
enum MarkerOp {
    Claim,
    Finish,
    Release,
}

async fn marker_op(store: &DynamoDbStore, op: MarkerOp, event: &DeliveryEvent) -> Result<(), StoreError> {
    match op {
        MarkerOp::Claim => store
            .claim_notification(event, MARKER_KEY, &our_claim(), stale_before())
            .await
            .map(|_| ()),
        MarkerOp::Finish => store.finish_notification(event, MARKER_KEY, &our_claim()).await,
        MarkerOp::Release => store.release_notification(event, MARKER_KEY, &our_claim()).await,
    }
}

#[tokio::test]
async fn a_marker_on_an_unrecorded_event_is_permanent_and_says_which_item() {
    let event = pipeline_started();
    for op in [MarkerOp::Claim, MarkerOp::Finish, MarkerOp::Release] {
        let update = condition_failed(None);
        let get = mock!(Client::get_item).then_output(|| GetItemOutput::builder().build());
        let err = marker_op(&store(&[&update, &get]), op, &event).await.unwrap_err();
        let StoreError::Permanent(message) = &err else {
            panic!("{op:?}: expected permanent, got {err:?}")
        };
        for part in [event.id.as_str(), MARKER_KEY, TABLE, &event.subject().pk()] {
            assert!(message.contains(part), "{op:?}: {message} does not name {part}");
        }
        assert_eq!((update.num_calls(), get.num_calls()), (1, 1), "{op:?}");
    }
}

#[tokio::test]
async fn throttled_marker_writes_are_transient() {
    let event = pipeline_started();
    for op in [MarkerOp::Claim, MarkerOp::Finish, MarkerOp::Release] {
        let rule = mock!(Client::update_item)
            .sequence()
            .http_status(400, Some(error_body("ThrottlingException", "slow down", None)))
            .build();
        let err = marker_op(&store(&[&rule]), op, &event).await.unwrap_err();
        let StoreError::Transient(message) = &err else {
            panic!("{op:?}: expected transient, got {err:?}")
        };
        assert!(
            message.contains("UpdateItem") && message.contains("notification") && message.contains(TABLE),
            "{op:?}: {message}"
        );
    }
}

#[tokio::test]
async fn rejected_message_kept_twice_is_one_item() {
    let r = Rejected::new("m-1", "2026-11-20T09:00:00.250Z".parse().unwrap(), "bad".into(), "{}");
    let put = |expect_sk: &'static str| {
        mock!(Client::put_item).match_requests(move |req| {
            let item = req.item().cloned().unwrap_or_default();
            item.get("pk") == Some(&s("REJECTED#2026-11-20"))
                && item.get("sk") == Some(&s(expect_sk))
                && req.condition_expression() == Some("attribute_not_exists(pk)")
        })
    };
    let first = put("2026-11-20T09:00:00.250Z#m-1").then_output(|| PutItemOutput::builder().build());
    let second = put("2026-11-20T09:00:00.250Z#m-1")
        .sequence()
        .http_status(
            400,
            Some(error_body(
                "ConditionalCheckFailedException",
                "The conditional request failed",
                None,
            )),
        )
        .build();
    let store = store(&[&first, &second]);
    store.keep_rejected(&r).await.unwrap();
    store.keep_rejected(&r).await.unwrap();
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

// Executions listed by start day (GSI2).

fn started_item(started: &str, pipeline: &str, execution_id: &str) -> HashMap<String, AttributeValue> {
    let key = ExecutionKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: pipeline.into(),
        execution_id: execution_id.into(),
    };
    HashMap::from([
        ("pk".to_string(), s(execution_pk(&key))),
        ("account".to_string(), s(&key.account)),
        ("region".to_string(), s(&key.region)),
        ("pipeline".to_string(), s(&key.pipeline)),
        ("execution_id".to_string(), s(&key.execution_id)),
        (
            "gsi2sk".to_string(),
            s(item::execution_day_sk(&started.parse().unwrap(), &key)),
        ),
    ])
}

/// A Query of GSI2's partition `day`, continuing from `start` (`None`: the first page), with the exact key condition,
/// bounds and projection.
fn day_query(
    day: &'static str,
    start: Option<&'static str>,
) -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_dynamodb::operation::query::QueryInput,
    aws_sdk_dynamodb::operation::query::QueryOutput,
    aws_sdk_dynamodb::operation::query::QueryError,
> {
    mock!(Client::query).match_requests(move |req| {
        let values = req.expression_attribute_values().cloned().unwrap_or_default();
        let names = req.expression_attribute_names().cloned().unwrap_or_default();
        let continues = req
            .exclusive_start_key()
            .and_then(|k| k.get("gsi2sk"))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str);
        req.table_name() == Some(TABLE)
            && req.index_name() == Some("gsi2")
            && req.key_condition_expression() == Some("#gsi2pk = :pk AND #gsi2sk BETWEEN :from AND :to")
            && names.get("#gsi2pk").map(String::as_str) == Some("gsi2pk")
            && names.get("#gsi2sk").map(String::as_str) == Some("gsi2sk")
            && values.get(":pk") == Some(&s(format!("EXECDAY#{day}")))
            && values.get(":from") == Some(&s("2026-11-19T12:00:00Z"))
            && values.get(":to") == Some(&s("2026-11-21T00:00:00Z~"))
            && req.projection_expression() == Some("#pk, #account, #region, #pipeline, #execution_id, #gsi2sk")
            && req.scan_index_forward() == Some(true)
            && req.limit().is_none()
            && continues == start
    })
}

#[tokio::test]
async fn executions_started_between_queries_gsi2_day_by_day_across_pages() {
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    let from: DateTime<Utc> = "2026-11-19T12:00:00Z".parse().unwrap();
    let to: DateTime<Utc> = "2026-11-21T00:00:00Z".parse().unwrap();
    // Nov 19: one execution in the range. Nov 20: two pages, the second one empty-keyed (the last).
    let nov19 = day_query("2026-11-19", None).then_output(|| {
        QueryOutput::builder()
            .items(started_item("2026-11-19T23:59:59Z", "search", "e-3"))
            .build()
    });
    let first_page = started_item("2026-11-20T10:05:00Z", "checkout-service", "e-2");
    let last_key: HashMap<String, AttributeValue> = first_page
        .iter()
        .filter(|(k, _)| k.as_str() == "pk" || k.as_str() == "gsi2sk")
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([
            ("sk".to_string(), s("STATE")),
            ("gsi2pk".to_string(), s("EXECDAY#2026-11-20")),
        ])
        .collect();
    let nov20_page1 = day_query("2026-11-20", None).then_output(move || {
        QueryOutput::builder()
            .items(first_page.clone())
            .set_last_evaluated_key(Some(last_key.clone()))
            .build()
    });
    let nov20_page2 = day_query(
        "2026-11-20",
        Some("2026-11-20T10:05:00Z#111122223333#eu-west-1#checkout-service#e-2"),
    )
    .then_output(|| {
        QueryOutput::builder()
            .items(started_item("2026-11-20T09:00:00Z", "checkout-service", "e-1"))
            .build()
    });
    // Sequential rules: the days are asked for in order, each page once, and no other request is made.
    let keys = store(&[&nov19, &nov20_page1, &nov20_page2])
        .executions_started_between(from, to)
        .await
        .unwrap();
    assert_eq!(
        (nov19.num_calls(), nov20_page1.num_calls(), nov20_page2.num_calls()),
        (1, 1, 1)
    );
    // Oldest first, across days and pages.
    let ids: Vec<&str> = keys.iter().map(|k| k.execution_id.as_str()).collect();
    assert_eq!(ids, ["e-3", "e-1", "e-2"]);
    assert_eq!(keys[0].pipeline, "search");
}

#[tokio::test]
async fn executions_started_between_cuts_the_range_exactly() {
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    // Bounds inside one day, with a fraction of a second: the query widens them to whole seconds, the answer is cut
    // to [from, to) exactly.
    let from: DateTime<Utc> = "2026-11-20T09:00:00Z".parse().unwrap();
    let to: DateTime<Utc> = "2026-11-20T10:05:00.500Z".parse().unwrap();
    let rule = mock!(Client::query)
        .match_requests(|req| {
            let values = req.expression_attribute_values().cloned().unwrap_or_default();
            values.get(":pk") == Some(&s("EXECDAY#2026-11-20"))
                && values.get(":from") == Some(&s("2026-11-20T09:00:00Z"))
                && values.get(":to") == Some(&s("2026-11-20T10:05:00Z~"))
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(started_item("2026-11-20T08:59:59Z", "p", "before"))
                .items(started_item("2026-11-20T09:00:00Z", "p", "at-from"))
                .items(started_item("2026-11-20T10:05:00Z", "p", "inside-the-last-second"))
                .items(started_item("2026-11-20T10:05:01Z", "p", "after"))
                .build()
        });
    let keys = store(&[&rule]).executions_started_between(from, to).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
    let ids: Vec<&str> = keys.iter().map(|k| k.execution_id.as_str()).collect();
    assert_eq!(ids, ["at-from", "inside-the-last-second"]);
    // An empty or inverted range asks nothing (no rule: a request would fail).
    assert!(store(&[])
        .executions_started_between(to, from)
        .await
        .unwrap()
        .is_empty());
    assert!(store(&[]).executions_started_between(to, to).await.unwrap().is_empty());
}

// Digest markers: one item per digest key, the claim protocol of notification markers.

const DIGEST_KEY: &str = "weekly_digest@2026-11-23";

fn digest_claim() -> Mark {
    Mark::Claimed {
        at: "2026-11-23T06:00:05Z".parse().unwrap(),
        token: "r-1".into(),
    }
}

#[tokio::test]
async fn digest_claim_creates_its_own_marker_item_with_one_conditional_update() {
    let seen = Seen::default();
    let rule = accept_update(&seen);
    let held = store(&[&rule])
        .claim_digest(DIGEST_KEY, &digest_claim(), "2026-11-23T06:04:05Z".parse().unwrap())
        .await
        .unwrap();
    assert_eq!((held, rule.num_calls()), (None, 1));
    let seen = seen.lock().unwrap();
    let req = &seen[0];
    assert_eq!(
        req.key(),
        Some(&HashMap::from([
            ("pk".to_string(), s("DIGEST#weekly_digest@2026-11-23")),
            ("sk".to_string(), s("STATE")),
        ]))
    );
    assert_eq!(
        req.update_expression(),
        Some("SET #n = :claim, #kind = if_not_exists(#kind, :kind), #ttl = if_not_exists(#ttl, :ttl)")
    );
    // No attribute_exists(pk): the claim creates the item.
    assert_eq!(
        req.condition_expression(),
        Some("attribute_not_exists(#n) OR (begins_with(#n, :claimed) AND #n < :stale)")
    );
    assert_eq!(
        req.expression_attribute_names(),
        Some(&HashMap::from([
            ("#n".to_string(), "n:weekly_digest@2026-11-23".to_string()),
            ("#kind".to_string(), "kind".to_string()),
            ("#ttl".to_string(), "ttl".to_string()),
        ]))
    );
    assert_eq!(
        req.expression_attribute_values(),
        Some(&HashMap::from([
            (":claim".to_string(), s("claim@2026-11-23T06:00:05Z@r-1")),
            (":claimed".to_string(), s("claim@")),
            (":stale".to_string(), s("claim@2026-11-23T06:04:05Z@")),
            (":kind".to_string(), s("digest")),
            (
                ":ttl".to_string(),
                AttributeValue::N((1_795_413_605 + 30 * 86_400).to_string())
            ),
        ]))
    );
}

#[tokio::test]
async fn digest_claim_refused_says_who_holds_it_without_a_read() {
    for (held, expected) in [
        ("sent", Mark::Sent),
        (
            "claim@2026-11-23T06:00:01Z@r-0",
            Mark::Claimed {
                at: "2026-11-23T06:00:01Z".parse().unwrap(),
                token: "r-0".into(),
            },
        ),
    ] {
        let old = HashMap::from([
            ("pk".to_string(), s("DIGEST#weekly_digest@2026-11-23")),
            ("sk".to_string(), s("STATE")),
            (item::marker_attr(DIGEST_KEY), s(held)),
        ]);
        let rule = condition_failed(Some(&old));
        // Sequential rules: a GetItem here would fail for want of a rule.
        let got = store(&[&rule])
            .claim_digest(DIGEST_KEY, &digest_claim(), "2026-11-23T05:59:05Z".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(got, Some(expected), "held by {held}");
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn digest_finish_and_release_are_conditional_on_our_claim() {
    let seen = Seen::default();
    let finish = accept_update(&seen);
    assert!(store(&[&finish])
        .finish_digest(DIGEST_KEY, &digest_claim())
        .await
        .unwrap());
    let release = accept_update(&seen);
    assert!(store(&[&release])
        .release_digest(DIGEST_KEY, &digest_claim())
        .await
        .unwrap());
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].update_expression(), seen[0].condition_expression()),
            (Some("SET #n = :sent"), Some("#n = :claim"))
        );
        assert_eq!(
            (seen[1].update_expression(), seen[1].condition_expression()),
            (Some("REMOVE #n"), Some("#n = :claim"))
        );
        for req in seen.iter() {
            assert_eq!(
                req.expression_attribute_values().and_then(|v| v.get(":claim")),
                Some(&s("claim@2026-11-23T06:00:05Z@r-1"))
            );
        }
    }
    // Taken over in between: nothing changes, and the caller learns it.
    let lost = condition_failed(None);
    assert!(!store(&[&lost])
        .finish_digest(DIGEST_KEY, &digest_claim())
        .await
        .unwrap());
}

//! The audit adapter at the SDK's HTTP layer: the exact requests of an append (a consistent read of HEAD, then one
//! transaction), what it makes of a cancelled transaction (a lost race, a tampered log, throttling), and reading
//! entries back page by page.

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use aws_sdk_dynamodb::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use serde_json::{json, Value};
use tollgate_domain::audit::{verify, AuditEntry, AuditHead, AuditLog, NewAuditEntry, GENESIS};
use tollgate_domain::record::ports::StoreError;

use super::*;

const TABLE: &str = "tollgate-test";
const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";
const PK: &str = "AUDIT#pipeline:111122223333/eu-west-1/checkout-service";

fn store(rules: &[&Rule]) -> DynamoDbStore {
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, rules, |b| b
        .retry_config(RetryConfig::disabled()));
    DynamoDbStore::new(client, TABLE, 30)
}

fn decision(n: u64) -> NewAuditEntry {
    NewAuditEntry {
        scope: SCOPE.into(),
        at: "2026-11-20T09:25:03.123456789Z".parse().unwrap(),
        actor: "arn:aws:sts::111122223333:assumed-role/deployer/alice".into(),
        action: "approval.approve".into(),
        subject: format!("ed085d02-{n}"),
        detail: json!({ "stage": "Production", "comment": "ship it", "ratio": 0.25, "n": n }),
    }
}

/// The first `n` entries of the scope, as the log would have sealed them.
fn chain(n: u64) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = Vec::new();
    for i in 1..=n {
        let head = out.last().map(AuditEntry::as_head);
        out.push(AuditEntry::seal(decision(i), head.as_ref()));
    }
    out
}

fn head_item(head: &AuditHead) -> Item {
    HashMap::from([
        ("pk".to_string(), s(PK)),
        ("sk".to_string(), s("HEAD")),
        ("kind".to_string(), s("audit_head")),
        ("scope".to_string(), s(SCOPE)),
        ("seq".to_string(), AttributeValue::N(head.seq.to_string())),
        ("hash".to_string(), s(&head.hash)),
    ])
}

fn wire_item(item: &Item) -> Value {
    let attrs = item.iter().map(|(k, v)| {
        let v = match v {
            AttributeValue::S(s) => json!({ "S": s }),
            AttributeValue::N(n) => json!({ "N": n }),
            other => panic!("no wire form for {other:?} in these tests"),
        };
        (k.clone(), v)
    });
    Value::Object(attrs.collect())
}

/// A `TransactionCanceledException` answer with one reason per item: (code, old item).
fn cancelled_body(reasons: &[(&str, Option<&Item>)]) -> String {
    let reasons: Vec<Value> = reasons
        .iter()
        .map(|(code, item)| {
            let mut r = json!({ "Code": code });
            if *code != "None" {
                r["Message"] = json!("The conditional request failed");
            }
            if let Some(item) = item {
                r["Item"] = wire_item(item);
            }
            r
        })
        .collect();
    json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": reasons,
    })
    .to_string()
}

fn cancelled_rule(reasons: &[(&str, Option<&Item>)]) -> Rule {
    mock!(Client::transact_write_items)
        .sequence()
        .http_status(400, Some(cancelled_body(reasons)))
        .build()
}

/// A consistent GetItem of the scope's HEAD, answering `head`.
fn head_read(head: Option<AuditHead>) -> Rule {
    mock!(Client::get_item)
        .match_requests(|req| {
            req.table_name() == Some(TABLE)
                && req.consistent_read() == Some(true)
                && req.key().and_then(|k| k.get("pk")) == Some(&s(PK))
                && req.key().and_then(|k| k.get("sk")) == Some(&s("HEAD"))
        })
        .then_output(move || GetItemOutput::builder().set_item(head.as_ref().map(head_item)).build())
}

/// A transaction that appends `entry` after `expected`, checked to the attribute; answers success.
fn append_transaction(entry: AuditEntry, expected: Option<AuditHead>) -> Rule {
    mock!(Client::transact_write_items)
        .match_requests(move |req| {
            let items = req.transact_items();
            let [first, second] = items else { return false };
            let (Some(put), Some(update)) = (first.put(), second.update()) else {
                return false;
            };
            let names = update.expression_attribute_names().cloned().unwrap_or_default();
            let values = update.expression_attribute_values().cloned().unwrap_or_default();
            let condition_ok = match &expected {
                None => update.condition_expression() == Some("attribute_not_exists(pk)") && values.len() == 4,
                Some(prev) => {
                    update.condition_expression() == Some("#seq = :prev_seq AND #hash = :prev_hash")
                        && values.get(":prev_seq") == Some(&AttributeValue::N(prev.seq.to_string()))
                        && values.get(":prev_hash") == Some(&s(&prev.hash))
                        && values.len() == 6
                }
            };
            put.table_name() == TABLE
                && put.item() == &entry_item(&entry).unwrap()
                && put.condition_expression() == Some("attribute_not_exists(pk)")
                && update.table_name() == TABLE
                && update.key().get("pk") == Some(&s(PK))
                && update.key().get("sk") == Some(&s("HEAD"))
                && update.update_expression() == "SET #seq = :seq, #hash = :hash, #kind = :kind, #scope = :scope"
                && names.len() == 4
                && values.get(":seq") == Some(&AttributeValue::N(entry.seq.to_string()))
                && values.get(":hash") == Some(&s(&entry.hash))
                && values.get(":kind") == Some(&s("audit_head"))
                && update.return_values_on_condition_check_failure()
                    == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
                && condition_ok
                && req.client_request_token() == Some(&entry.hash[..36])
        })
        .then_output(|| TransactWriteItemsOutput::builder().build())
}

#[tokio::test]
async fn first_append_is_a_head_read_and_one_transaction_that_creates_head() {
    let expected = AuditEntry::seal(decision(1), None);
    let (get, put) = (head_read(None), append_transaction(expected.clone(), None));
    let entry = store(&[&get, &put]).append(decision(1)).await.unwrap();
    assert_eq!((get.num_calls(), put.num_calls()), (1, 1));
    assert_eq!(entry, expected);
    assert_eq!((entry.seq, entry.prev_hash.as_str()), (1, GENESIS));
    // The stored item: every field, `at` to the microsecond, the padded sort key.
    let item = entry_item(&entry).unwrap();
    assert_eq!(item["sk"], s("SEQ#00000000000000000001"));
    assert_eq!(item["at"], s("2026-11-20T09:25:03.123456Z"));
    assert_eq!(item["kind"], s("audit"));
    assert!(!item.contains_key("ttl"), "audit entries never expire");
    assert_eq!(
        serde_json::from_str::<Value>(item["detail"].as_s().unwrap()).unwrap(),
        decision(1).detail
    );
}

#[tokio::test]
async fn next_append_is_conditioned_on_the_head_it_follows() {
    let log = chain(7);
    let head = log[6].as_head();
    let expected = AuditEntry::seal(decision(8), Some(&head));
    let (get, put) = (
        head_read(Some(head.clone())),
        append_transaction(expected.clone(), Some(head)),
    );
    let entry = store(&[&get, &put]).append(decision(8)).await.unwrap();
    assert_eq!((get.num_calls(), put.num_calls()), (1, 1));
    assert_eq!(entry, expected);
    assert_eq!(entry_item(&entry).unwrap()["sk"], s("SEQ#00000000000000000008"));
}

#[tokio::test]
async fn lost_race_retries_at_once_on_the_head_returned_with_the_cancellation() {
    let log = chain(8);
    let (seven, eight) = (log[6].as_head(), log[7].as_head());
    let get = head_read(Some(seven));
    let lost = cancelled_rule(&[("None", None), ("ConditionalCheckFailed", Some(&head_item(&eight)))]);
    let expected = AuditEntry::seal(decision(9), Some(&eight));
    let put = append_transaction(expected.clone(), Some(eight));
    // Sequential rules: a second GetItem would not match the next rule and fail the test.
    let entry = store(&[&get, &lost, &put]).append(decision(9)).await.unwrap();
    assert_eq!(
        (get.num_calls(), lost.num_calls(), put.num_calls()),
        (1, 1, 1),
        "3 requests: no read after the lost race"
    );
    assert_eq!(entry, expected);
}

#[tokio::test]
async fn transaction_conflict_reads_head_again_and_retries() {
    let log = chain(3);
    let get = head_read(Some(log[1].as_head()));
    let conflict = cancelled_rule(&[("TransactionConflict", None), ("None", None)]);
    let reread = head_read(Some(log[2].as_head()));
    let expected = AuditEntry::seal(decision(4), Some(&log[2].as_head()));
    let put = append_transaction(expected.clone(), Some(log[2].as_head()));
    let entry = store(&[&get, &conflict, &reread, &put])
        .append(decision(4))
        .await
        .unwrap();
    assert_eq!(entry, expected);
    assert_eq!(put.num_calls(), 1);
}

#[tokio::test]
async fn won_race_whose_answer_was_lost_is_not_appended_twice() {
    // The transaction went through but its answer was lost, and the retried request was refused: HEAD, returned
    // with the refusal, is this very entry.
    let log = chain(2);
    let get = head_read(Some(log[0].as_head()));
    let mine = AuditEntry::seal(decision(2), Some(&log[0].as_head()));
    let refused = cancelled_rule(&[
        ("ConditionalCheckFailed", None),
        ("ConditionalCheckFailed", Some(&head_item(&mine.as_head()))),
    ]);
    let entry = store(&[&get, &refused]).append(decision(2)).await.unwrap();
    assert_eq!(entry, mine);
}

#[tokio::test]
async fn entry_beyond_head_is_a_permanent_error_naming_the_scope() {
    // HEAD says 4, yet entry 5 exists: someone rewrote HEAD. Retrying cannot help.
    let log = chain(4);
    let get = head_read(Some(log[3].as_head()));
    let refused = cancelled_rule(&[("ConditionalCheckFailed", None), ("None", None)]);
    let err = store(&[&get, &refused]).append(decision(5)).await.unwrap_err();
    let StoreError::Permanent(message) = &err else {
        panic!("expected permanent, got {err:?}")
    };
    assert!(
        message.contains("entry 5 exists although HEAD is at 4") && message.contains(SCOPE),
        "{message}"
    );
    assert!(message.contains("tollgate audit verify"), "{message}");
}

#[tokio::test]
async fn throttled_transaction_is_retried() {
    let log = chain(1);
    let get = head_read(Some(log[0].as_head()));
    let throttled = cancelled_rule(&[("ThrottlingError", None), ("None", None)]);
    let reread = head_read(Some(log[0].as_head()));
    let expected = AuditEntry::seal(decision(2), Some(&log[0].as_head()));
    let put = append_transaction(expected.clone(), Some(log[0].as_head()));
    let entry = store(&[&get, &throttled, &reread, &put])
        .append(decision(2))
        .await
        .unwrap();
    assert_eq!(entry, expected);
}

#[tokio::test]
async fn invalid_transaction_is_permanent() {
    let get = head_read(None);
    let refused = cancelled_rule(&[("ValidationError", None), ("None", None)]);
    let err = store(&[&get, &refused]).append(decision(1)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Permanent(m) if m.contains("ValidationError") && m.contains(TABLE)),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_entry_sends_nothing() {
    // No rule: any request would fail the test.
    let err = store(&[])
        .append(NewAuditEntry {
            scope: String::new(),
            ..decision(1)
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Permanent("audit entry refused: `scope` is empty".into())
    );
}

#[tokio::test]
async fn entries_are_read_consistently_page_by_page_in_seq_order() {
    let log = chain(5);
    let items: Vec<Item> = log.iter().map(|e| entry_item(e).unwrap()).collect();
    let (first_page, second_page) = (items[..3].to_vec(), items[3..].to_vec());
    let last_key = HashMap::from([("pk".to_string(), s(PK)), ("sk".to_string(), s(audit_sk(3)))]);
    let next_start = last_key.clone();
    let query = |page: Vec<Item>, start: Option<Item>, last: Option<Item>| {
        mock!(Client::query)
            .match_requests(move |req| {
                let values = req.expression_attribute_values().cloned().unwrap_or_default();
                req.table_name() == Some(TABLE)
                    && req.key_condition_expression() == Some("#pk = :pk AND begins_with(#sk, :seq)")
                    && values.get(":pk") == Some(&s(PK))
                    && values.get(":seq") == Some(&s("SEQ#"))
                    && req.consistent_read() == Some(true)
                    && req.scan_index_forward() == Some(true)
                    && req.exclusive_start_key() == start.as_ref()
            })
            .then_output(move || {
                QueryOutput::builder()
                    .set_items(Some(page.clone()))
                    .set_last_evaluated_key(last.clone())
                    .build()
            })
    };
    let (one, two) = (
        query(first_page, None, Some(last_key)),
        query(second_page, Some(next_start), None),
    );
    let entries = store(&[&one, &two]).entries(SCOPE).await.unwrap();
    assert_eq!(entries, log);
    assert!(verify(SCOPE, &entries, Some(&log[4].as_head())).is_ok());
}

#[tokio::test]
async fn recent_entries_are_one_descending_query_with_a_limit() {
    let log = chain(5);
    let newest: Vec<Item> = log.iter().rev().take(2).map(|e| entry_item(e).unwrap()).collect();
    let rule = mock!(Client::query)
        .match_requests(|req| req.scan_index_forward() == Some(false) && req.limit() == Some(2))
        .then_output(move || QueryOutput::builder().set_items(Some(newest.clone())).build());
    let recent = store(&[&rule]).recent(SCOPE, 2).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 4]);
}

#[tokio::test]
async fn unreadable_entry_is_permanent_and_names_the_item() {
    let mut item = entry_item(&chain(1)[0]).unwrap();
    item.insert("detail".into(), s("{not json"));
    let rule = mock!(Client::query).then_output(move || QueryOutput::builder().items(item.clone()).build());
    let err = store(&[&rule]).entries(SCOPE).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Permanent(m) if m.contains("SEQ#00000000000000000001") && m.contains("detail")),
        "{err:?}"
    );
}

#[test]
fn stored_entries_read_back_equal() {
    for entry in chain(3) {
        assert_eq!(entry_from_item(&entry_item(&entry).unwrap()).unwrap(), entry);
    }
}

//! The audit trail against a real DynamoDB API (moto server): appends, tampering done directly on the stored items
//! with the raw client, and concurrent appenders.
//!
//! Runs only when `TOLLGATE_TEST_ENDPOINT` names the endpoint (`make test` sets it); otherwise each test prints
//! SKIPPED and passes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tollgate_domain::audit::{check, AuditBreak, AuditEntry, AuditLog, NewAuditEntry};

mod common;

use common::Fixture;

const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";

fn decision(n: u64) -> NewAuditEntry {
    let t0: DateTime<Utc> = "2026-11-20T09:00:00Z".parse().unwrap();
    NewAuditEntry {
        scope: SCOPE.into(),
        at: t0 + Duration::microseconds(1_000_123 * n as i64),
        actor: format!("arn:aws:sts::111122223333:assumed-role/deployer/user{}", n % 3),
        action: ["gate.decision", "approval.approve", "override", "rollback"][n as usize % 4].into(),
        subject: format!("execution-{n}"),
        detail: json!({ "n": n, "outcome": "pass", "checks": { "alarms": "ok", "bake": 0.5 } }),
    }
}

/// The table key of entry `seq`, in the documented layout (docs/table-design.md).
fn key(seq: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(format!("AUDIT#{SCOPE}"))),
        ("sk".to_string(), AttributeValue::S(format!("SEQ#{seq:020}"))),
    ])
}

/// A fresh table holding entries 1..=n of the scope, appended one by one through the adapter.
async fn seeded(test: &str, n: u64) -> Option<(Fixture, Vec<AuditEntry>)> {
    let fx = Fixture::new(test).await?;
    let mut entries = Vec::new();
    for i in 1..=n {
        entries.push(fx.store.append(decision(i)).await.unwrap());
    }
    fx.requests.take();
    Some((fx, entries))
}

async fn first_break(fx: &Fixture) -> AuditBreak {
    let found = check(&fx.store, SCOPE)
        .await
        .unwrap()
        .expect_err("the tampered log must not verify");
    println!("detected: {found}");
    found
}

async fn stored(fx: &Fixture, seq: u64) -> HashMap<String, AttributeValue> {
    fx.client
        .get_item()
        .table_name(&fx.table)
        .set_key(Some(key(seq)))
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("entry {seq} is stored"))
}

async fn delete(fx: &Fixture, seq: u64) {
    fx.client
        .delete_item()
        .table_name(&fx.table)
        .set_key(Some(key(seq)))
        .send()
        .await
        .unwrap();
}

/// Puts `attributes` (pk and sk excepted) at entry `seq`'s key, replacing the item.
async fn overwrite(fx: &Fixture, seq: u64, mut attributes: HashMap<String, AttributeValue>) {
    attributes.extend(key(seq));
    fx.client
        .put_item()
        .table_name(&fx.table)
        .set_item(Some(attributes))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn audit_entries_append_in_two_requests_and_verify() {
    let Some(fx) = Fixture::new("audit-append").await else {
        return;
    };
    let mut per_append = BTreeMap::<String, usize>::new();
    let mut appended = Vec::new();
    for i in 1..=20 {
        let entry = fx.store.append(decision(i)).await.unwrap();
        assert_eq!(entry.seq, i);
        *per_append.entry(fx.requests.take().join("+")).or_default() += 1;
        appended.push(entry);
    }
    println!("requests per audit append: {per_append:?}");
    assert_eq!(
        per_append,
        BTreeMap::from([("GetItem+TransactWriteItems".to_string(), 20)])
    );

    assert_eq!(
        fx.store.entries(SCOPE).await.unwrap(),
        appended,
        "entries read back as appended"
    );
    assert_eq!(fx.store.head(SCOPE).await.unwrap(), Some(appended[19].as_head()));
    fx.requests.take();
    let report = check(&fx.store, SCOPE).await.unwrap().unwrap();
    assert_eq!(report.entries, 20);
    println!("{report}");
    println!("requests per verify of 20 entries: {:?}", fx.requests.take());
    let recent = fx.store.recent(SCOPE, 3).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), [20, 19, 18]);
    // Another scope is another partition and another chain.
    let other = fx
        .store
        .append(NewAuditEntry {
            scope: "global".into(),
            ..decision(1)
        })
        .await
        .unwrap();
    assert_eq!(other.seq, 1);
    assert_eq!(check(&fx.store, "global").await.unwrap().unwrap().entries, 1);
    // Nothing expires: no entry or HEAD carries a ttl.
    let item = stored(&fx, 7).await;
    assert!(!item.contains_key("ttl"));
    fx.drop_table().await;
}

#[tokio::test]
async fn audit_entry_detail_updated_in_the_table_is_detected() {
    let Some((fx, _)) = seeded("audit-update", 20).await else {
        return;
    };
    fx.client
        .update_item()
        .table_name(&fx.table)
        .set_key(Some(key(7)))
        .update_expression("SET detail = :d")
        .expression_attribute_values(":d", AttributeValue::S(r#"{"n":7,"outcome":"fail"}"#.into()))
        .send()
        .await
        .unwrap();
    let found = first_break(&fx).await;
    assert_eq!(found, AuditBreak::Altered { seq: 7 });
    assert_eq!(
        found.to_string(),
        "entry 7 was altered: its stored hash does not match its content"
    );
    fx.drop_table().await;
}

#[tokio::test]
async fn audit_entry_rewritten_with_a_new_hash_breaks_the_chain() {
    let Some((fx, entries)) = seeded("audit-rehash", 20).await else {
        return;
    };
    let mut forged = entries[4].clone();
    forged.actor = "arn:aws:iam::111122223333:user/mallory".into();
    forged.hash = forged.content_hash();
    let mut item = stored(&fx, 5).await;
    item.insert("actor".into(), AttributeValue::S(forged.actor.clone()));
    item.insert("hash".into(), AttributeValue::S(forged.hash.clone()));
    overwrite(&fx, 5, item).await;
    let found = first_break(&fx).await;
    assert_eq!(
        found,
        AuditBreak::BrokenChain {
            seq: 6,
            found: entries[4].hash.clone(),
            expected: forged.hash
        }
    );
    assert!(found
        .to_string()
        .starts_with("entry 6 does not follow entry 5: its prev_hash"));
    fx.drop_table().await;
}

#[tokio::test]
async fn audit_entry_deleted_in_the_middle_is_detected() {
    let Some((fx, _)) = seeded("audit-delete-middle", 20).await else {
        return;
    };
    delete(&fx, 7).await;
    let found = first_break(&fx).await;
    assert_eq!(found.to_string(), "seq 7 is missing: entries jump from 6 to 8");
    fx.drop_table().await;
}

#[tokio::test]
async fn audit_entry_deleted_at_the_end_is_detected_by_head() {
    let Some((fx, _)) = seeded("audit-delete-last", 20).await else {
        return;
    };
    delete(&fx, 20).await;
    let found = first_break(&fx).await;
    assert_eq!(found, AuditBreak::Truncated { head: 20, last: 19 });
    assert!(found
        .to_string()
        .starts_with("HEAD says 20 entries, the log ends at 19"));
    // And deleting HEAD as well leaves a log whose HEAD is missing.
    fx.client
        .delete_item()
        .table_name(&fx.table)
        .key("pk", AttributeValue::S(format!("AUDIT#{SCOPE}")))
        .key("sk", AttributeValue::S("HEAD".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(first_break(&fx).await, AuditBreak::MissingHead { last: 19 });
    fx.drop_table().await;
}

#[tokio::test]
async fn audit_entries_swapped_in_the_table_are_detected() {
    let Some((fx, _)) = seeded("audit-swap", 20).await else {
        return;
    };
    // Whole contents swapped (each item now holds the other's seq): out of order.
    let (ten, eleven) = (stored(&fx, 10).await, stored(&fx, 11).await);
    overwrite(&fx, 10, eleven).await;
    overwrite(&fx, 11, ten).await;
    let found = first_break(&fx).await;
    assert_eq!(
        found.to_string(),
        "entries are out of order: entry 11 comes right after entry 9, where entry 10 belongs"
    );
    fx.drop_table().await;

    // Contents swapped but each item keeps its own seq: both are altered; the first is named.
    let Some((fx, _)) = seeded("audit-swap-keep-seq", 20).await else {
        return;
    };
    let (mut three, mut four) = (stored(&fx, 3).await, stored(&fx, 4).await);
    let (seq3, seq4) = (three["seq"].clone(), four["seq"].clone());
    three.insert("seq".into(), seq4);
    four.insert("seq".into(), seq3);
    overwrite(&fx, 3, four).await;
    overwrite(&fx, 4, three).await;
    assert_eq!(first_break(&fx).await, AuditBreak::Altered { seq: 3 });
    fx.drop_table().await;
}

#[tokio::test]
async fn twenty_concurrent_audit_appenders_do_not_fork_the_chain() {
    let Some(fx) = Fixture::new("audit-concurrent").await else {
        return;
    };
    let store = Arc::new(fx.store.clone());
    let tasks: Vec<_> = (1..=20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.append(decision(n)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "every appender got its own seq");
    let mut by_operation = BTreeMap::<String, usize>::new();
    for op in fx.requests.take() {
        *by_operation.entry(op).or_default() += 1;
    }
    println!("20 concurrent appends: requests {by_operation:?} (TransactWriteItems beyond 20 lost a race)");
    let entries = fx.store.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 20);
    let mut subjects: Vec<&str> = entries.iter().map(|e| e.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(subjects.len(), 20, "each appender's entry is stored once");
    assert_eq!(check(&fx.store, SCOPE).await.unwrap().unwrap().entries, 20);
    fx.drop_table().await;
}

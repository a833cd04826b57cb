//! The audit trail over the in-memory log: a chain that verifies; every kind of tampering with stored entries
//! (altered, re-hashed, deleted in the middle, at the start and at the end, swapped, duplicated, moved between
//! scopes, HEAD removed or rewritten) detected at the first broken link, named; and concurrent appenders that lose
//! nothing and fork nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tollgate_domain::audit::{
    action, append_chained, check, pipeline_scope, verify, AppendOutcome, AppendRetry, AuditBreak, AuditEntry,
    AuditHead, AuditLog, NewAuditEntry, GENESIS,
};
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::record::keys::PipelineKey;
use tollgate_domain::record::ports::StoreError;

fn scope() -> String {
    pipeline_scope(&PipelineKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
    })
}

fn t0() -> DateTime<Utc> {
    "2026-11-20T09:00:00Z".parse().unwrap()
}

/// The n-th decision of a day of deployments, varied over the actions Tollgate records.
fn decision(scope: &str, n: u64) -> NewAuditEntry {
    let actions = [
        action::GATE_DECISION,
        action::APPROVAL_APPROVE,
        action::OVERRIDE,
        action::ROLLBACK,
        action::CHANGESET_EXECUTE,
    ];
    NewAuditEntry {
        scope: scope.to_string(),
        at: t0() + Duration::milliseconds(1_500 * n as i64),
        actor: if n % 2 == 0 {
            "tollgate:gate".into()
        } else {
            format!("arn:aws:sts::111122223333:assumed-role/deployer/user{n}")
        },
        action: actions[n as usize % actions.len()].into(),
        subject: format!("execution-{n}"),
        detail: json!({ "n": n, "outcome": if n % 3 == 0 { "fail" } else { "pass" }, "checks": ["alarms", "bake"] }),
    }
}

/// A log with `n` entries in `scope`.
async fn log_with(n: u64) -> MemoryAuditLog {
    let log = MemoryAuditLog::new();
    for i in 1..=n {
        let entry = log.append(decision(&scope(), i)).await.unwrap();
        assert_eq!(entry.seq, i);
    }
    log
}

async fn first_break(log: &MemoryAuditLog) -> AuditBreak {
    check(log, &scope())
        .await
        .unwrap()
        .expect_err("the log must not verify")
}

#[tokio::test]
async fn twenty_appended_entries_verify() {
    let log = log_with(20).await;
    let entries = log.entries(&scope()).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(entries[0].prev_hash, GENESIS);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let report = check(&log, &scope()).await.unwrap().unwrap();
    assert_eq!(report.entries, 20);
    assert_eq!(report.last_hash.as_deref(), Some(entries[19].hash.as_str()));
    assert_eq!(report.head, Some(entries[19].as_head()));
    assert!(report.to_string().contains("20 entries"), "{report}");
    // Another scope is another chain.
    assert!(check(&log, "global").await.unwrap().unwrap().last_hash.is_none());
    let recent = log.recent(&scope(), 3).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), [20, 19, 18]);
}

#[tokio::test]
async fn altered_detail_is_detected_at_the_altered_entry() {
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| {
        entries[6].detail["outcome"] = json!("overridden")
    });
    let found = first_break(&log).await;
    assert_eq!(found, AuditBreak::Altered { seq: 7 });
    assert_eq!(
        found.to_string(),
        "entry 7 was altered: its stored hash does not match its content"
    );
}

#[tokio::test]
async fn every_altered_field_is_detected() {
    type Change = fn(&mut AuditEntry);
    let changes: [(&str, Change); 6] = [
        ("actor", |e| e.actor = "arn:aws:iam::111122223333:user/mallory".into()),
        ("action", |e| e.action = action::APPROVAL_REJECT.into()),
        ("subject", |e| e.subject.push('x')),
        ("at", |e| e.at += Duration::microseconds(1)),
        ("detail key", |e| {
            e.detail["Outcome"] = e.detail["outcome"].clone();
            e.detail.as_object_mut().unwrap().remove("outcome");
        }),
        ("hash", |e| e.hash = e.hash.replace(|c: char| c.is_ascii_digit(), "0")),
    ];
    for (what, change) in changes {
        let log = log_with(5).await;
        log.tamper(&scope(), |entries, _| change(&mut entries[2]));
        assert_eq!(first_break(&log).await, AuditBreak::Altered { seq: 3 }, "{what}");
    }
}

#[tokio::test]
async fn rewritten_and_rehashed_entry_breaks_the_chain_at_the_next_one() {
    let log = log_with(20).await;
    let (old, new) = log.tamper(&scope(), |entries, _| {
        let e = &mut entries[4];
        let old = e.hash.clone();
        e.detail = json!({ "n": 5, "outcome": "pass" });
        e.hash = e.content_hash();
        (old, e.hash.clone())
    });
    let found = first_break(&log).await;
    assert_eq!(
        found,
        AuditBreak::BrokenChain {
            seq: 6,
            found: old.clone(),
            expected: new.clone()
        }
    );
    assert_eq!(
        found.to_string(),
        format!("entry 6 does not follow entry 5: its prev_hash is {old}, entry 5's hash is {new} (one of them was rewritten)")
    );
}

#[tokio::test]
async fn deleted_middle_entry_is_a_gap_named_by_its_seq() {
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| entries.remove(6));
    let found = first_break(&log).await;
    assert_eq!(
        found,
        AuditBreak::Gap {
            missing: 7,
            before: 6,
            after: 8
        }
    );
    assert_eq!(found.to_string(), "seq 7 is missing: entries jump from 6 to 8");
    assert_eq!(found.seq(), 7);
}

#[tokio::test]
async fn deleted_first_entries_are_a_gap_at_the_start() {
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| entries.drain(..2).count());
    assert_eq!(
        first_break(&log).await.to_string(),
        "seq 1 is missing: the log starts at 3"
    );
}

#[tokio::test]
async fn deleted_last_entry_is_caught_by_head() {
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| entries.pop());
    let found = first_break(&log).await;
    assert_eq!(found, AuditBreak::Truncated { head: 20, last: 19 });
    assert_eq!(
        found.to_string(),
        "HEAD says 20 entries, the log ends at 19: entries 20 to 20 were deleted"
    );
    // Every entry deleted: HEAD still says how many there were.
    log.tamper(&scope(), |entries, _| entries.clear());
    assert_eq!(first_break(&log).await, AuditBreak::Truncated { head: 20, last: 0 });
}

#[tokio::test]
async fn swapped_entries_are_out_of_order() {
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| entries.swap(9, 10));
    let found = first_break(&log).await;
    assert_eq!(
        found,
        AuditBreak::OutOfOrder {
            seq: 11,
            after: 9,
            expected: 10
        }
    );
    assert_eq!(
        found.to_string(),
        "entries are out of order: entry 11 comes right after entry 9, where entry 10 belongs"
    );
    // Entries far apart.
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| entries.swap(2, 15));
    assert_eq!(
        first_break(&log).await,
        AuditBreak::OutOfOrder {
            seq: 16,
            after: 2,
            expected: 3
        }
    );
}

#[tokio::test]
async fn swapped_contents_under_the_same_seqs_are_altered() {
    // Someone swaps everything but the sequence numbers: each entry's content no longer matches its hash.
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| {
        let (a, b) = (entries[3].clone(), entries[4].clone());
        entries[3] = AuditEntry { seq: 4, ..b };
        entries[4] = AuditEntry { seq: 5, ..a };
    });
    assert_eq!(first_break(&log).await, AuditBreak::Altered { seq: 4 });
}

#[tokio::test]
async fn duplicated_entry_is_named() {
    let log = log_with(10).await;
    log.tamper(&scope(), |entries, _| {
        let copy = entries[2].clone();
        entries.insert(5, copy);
    });
    let found = first_break(&log).await;
    assert_eq!(found, AuditBreak::Duplicate { seq: 3, after: 5 });
    assert_eq!(
        found.to_string(),
        "seq 3 appears twice: a second entry 3 comes after entry 5"
    );
}

#[tokio::test]
async fn entry_moved_from_another_scope_is_named() {
    let log = log_with(5).await;
    let other = log
        .append(NewAuditEntry {
            scope: "global".into(),
            ..decision("global", 1)
        })
        .await
        .unwrap();
    log.tamper(&scope(), |entries, _| entries[0] = other.clone());
    assert_eq!(
        first_break(&log).await.to_string(),
        format!("entry 1 belongs to scope `global`, not `{}`", scope())
    );
}

#[tokio::test]
async fn head_removed_or_rewritten_is_detected() {
    let log = log_with(5).await;
    log.tamper(&scope(), |_, head| *head = None);
    assert_eq!(
        first_break(&log).await.to_string(),
        "HEAD is missing, the log has 5 entries"
    );

    let log = log_with(5).await;
    let forged = "f".repeat(64);
    let stored = log.tamper(&scope(), |entries, head| {
        *head = Some(AuditHead {
            seq: 5,
            hash: forged.clone(),
        });
        entries[4].hash.clone()
    });
    assert_eq!(
        first_break(&log).await,
        AuditBreak::HeadMismatch {
            seq: 5,
            head_hash: forged,
            entry_hash: stored
        }
    );
}

#[tokio::test]
async fn the_first_of_several_breaks_is_reported() {
    let log = log_with(20).await;
    log.tamper(&scope(), |entries, _| {
        entries.pop();
        entries.remove(12);
        entries[3].subject = "changed".into();
    });
    assert_eq!(first_break(&log).await, AuditBreak::Altered { seq: 4 });
}

#[tokio::test]
async fn entries_appended_while_verifying_are_not_a_break() {
    // HEAD is read first; entries appended after that read are past HEAD, which is no truncation.
    let log = log_with(5).await;
    let head = log.head(&scope()).await.unwrap();
    log.append(decision(&scope(), 6)).await.unwrap();
    let entries = log.entries(&scope()).await.unwrap();
    let report = verify(&scope(), &entries, head.as_ref()).unwrap();
    assert_eq!(report.entries, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_appenders_lose_nothing_and_fork_nothing() {
    let log = Arc::new(MemoryAuditLog::new());
    let tasks: Vec<_> = (1..=50)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(decision(&scope(), n)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "every appender got its own seq");
    let entries = log.entries(&scope()).await.unwrap();
    assert_eq!(entries.len(), 50);
    let mut subjects: Vec<&str> = entries.iter().map(|e| e.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(subjects.len(), 50, "every appender's entry is stored once");
    let report = check(&*log, &scope()).await.unwrap().unwrap();
    assert_eq!(report.entries, 50);
    println!(
        "50 concurrent appenders: {} conditional appends refused and retried",
        log.conflicts()
    );
    assert!(log.conflicts() > 0, "the appenders were meant to collide");
}

/// A log whose conditional append always loses, as if other appenders kept winning.
struct AlwaysLoses(AtomicU32);

#[async_trait]
impl AuditLog for AlwaysLoses {
    async fn head(&self, _scope: &str) -> Result<Option<AuditHead>, StoreError> {
        Ok(None)
    }
    async fn entries(&self, _scope: &str) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(Vec::new())
    }
    async fn append_after(&self, _: &AuditEntry, _: Option<&AuditHead>) -> Result<AppendOutcome, StoreError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(AppendOutcome::Conflict { current: None })
    }
}

fn quick(attempts: u32) -> AppendRetry {
    AppendRetry {
        attempts,
        base_delay: std::time::Duration::from_millis(1),
        max_delay: std::time::Duration::from_millis(4),
    }
}

#[tokio::test]
async fn append_that_keeps_losing_gives_up_with_a_transient_error() {
    let log = AlwaysLoses(AtomicU32::new(0));
    let err = append_chained(&log, decision(&scope(), 1), &quick(10))
        .await
        .unwrap_err();
    assert_eq!(log.0.load(Ordering::Relaxed), 10);
    let StoreError::Transient(message) = &err else {
        panic!("expected transient, got {err:?}")
    };
    assert!(
        message.contains("10 attempts") && message.contains(&scope()),
        "{message}"
    );
}

/// A log whose first write succeeds but answers with a timeout.
struct LostAnswer {
    inner: MemoryAuditLog,
    lost: AtomicU32,
}

#[async_trait]
impl AuditLog for LostAnswer {
    async fn head(&self, scope: &str) -> Result<Option<AuditHead>, StoreError> {
        self.inner.head(scope).await
    }
    async fn entries(&self, scope: &str) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.entries(scope).await
    }
    async fn append_after(&self, e: &AuditEntry, h: Option<&AuditHead>) -> Result<AppendOutcome, StoreError> {
        let outcome = self.inner.append_after(e, h).await?;
        if self.lost.fetch_add(1, Ordering::Relaxed) == 0 {
            return Err(StoreError::Transient("timed out".into()));
        }
        Ok(outcome)
    }
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_not_written_twice() {
    let log = LostAnswer {
        inner: log_with(3).await,
        lost: AtomicU32::new(0),
    };
    let entry = append_chained(&log, decision(&scope(), 4), &quick(5)).await.unwrap();
    assert_eq!(entry.seq, 4);
    assert_eq!(
        log.lost.load(Ordering::Relaxed),
        1,
        "HEAD said it was written: no second write"
    );
    assert_eq!(log.entries(&scope()).await.unwrap().len(), 4);
    assert!(check(&log, &scope()).await.unwrap().is_ok());
}

#[tokio::test]
async fn invalid_entry_is_refused_before_any_write() {
    let log = MemoryAuditLog::new();
    let err = log
        .append(NewAuditEntry {
            action: String::new(),
            ..decision(&scope(), 1)
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Permanent("audit entry refused: `action` is empty".into())
    );
    assert!(log.entries(&scope()).await.unwrap().is_empty());
    assert_eq!(log.head(&scope()).await.unwrap(), None);
}

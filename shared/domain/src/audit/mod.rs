//! The audit trail: every automated action and every human decision (gate decision, approval, override, rollback,
//! change-set execution, freeze) as an append-only log per scope, chained by hash, so that any change, deletion or
//! reordering of a stored entry is detected by [`verify`] with the first broken link named.
//!
//! Each entry carries its sequence number in the scope (1, 2, 3...), the hash of the entry before it (`prev_hash`;
//! 64 zeros, [`GENESIS`], for the first) and its own hash over all of that ([`AuditEntry::content_hash`], encoding in
//! docs/audit.md). The store also keeps a HEAD per scope (the last entry's seq and hash), moved by the same atomic
//! write that adds an entry, so a log whose tail was deleted is told from a shorter log.
//!
//! Appending is optimistic ([`append_chained`]): read HEAD, seal the entry on it, then write the entry and move HEAD
//! in one conditional write that succeeds only if HEAD has not moved ([`AuditLog::append_after`]). A concurrent
//! appender that won makes the write fail, and the entry is sealed again on the new HEAD: no entry is lost, no two
//! entries share a seq, the chain never forks.
//!
//! A hash chain detects edits that do not rewrite everything after them: someone able to write the table can rebuild
//! the chain from an edited entry to HEAD. Recording HEAD's hash elsewhere (`tollgate audit verify` prints it) and
//! checking against it later detects that too (see docs/audit.md).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::keys::PipelineKey;
use crate::record::ports::StoreError;

/// `prev_hash` of the first entry of every scope.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The scope of control-plane-wide actions (a freeze of every pipeline, say).
pub const GLOBAL_SCOPE: &str = "global";

/// Tag at the start of every hashed entry, so that a change of the encoding can never verify an old chain silently.
const HASH_DOMAIN: &[u8] = b"tollgate-audit-v1\0";

/// Longest scope (bytes): it is part of a DynamoDB partition key (at most 2048 bytes).
pub const MAX_SCOPE_BYTES: usize = 1024;
/// Longest actor, action or subject (bytes).
pub const MAX_FIELD_BYTES: usize = 1024;
/// Largest detail, as compact JSON (bytes): an entry must fit a DynamoDB item (400 KB) with room to spare.
pub const MAX_DETAIL_BYTES: usize = 64 * 1024;

/// The actions Tollgate records. An entry may carry any other non-empty action; these are the ones it writes.
pub mod action {
    pub const GATE_DECISION: &str = "gate.decision";
    pub const APPROVAL_APPROVE: &str = "approval.approve";
    pub const APPROVAL_REJECT: &str = "approval.reject";
    /// A decision that was not made: an unauthorised approver, an unlinked chat user, CodePipeline refusing it.
    pub const APPROVAL_REFUSED: &str = "approval.refused";
    pub const OVERRIDE: &str = "override";
    pub const ROLLBACK: &str = "rollback";
    /// The guard's automatic rollbacks (`tollgate_domain::rollback::guard`): the request made, a refusal, or notify only.
    pub const ROLLBACK_STOP_DEPLOYMENT: &str = "rollback.stop_deployment";
    pub const ROLLBACK_STAGE: &str = "rollback.rollback_stage";
    pub const ROLLBACK_CANCEL_UPDATE_STACK: &str = "rollback.cancel_update_stack";
    pub const ROLLBACK_STACK: &str = "rollback.rollback_stack";
    pub const ROLLBACK_REFUSED: &str = "rollback.refused";
    pub const ROLLBACK_NOTIFIED: &str = "rollback.notified";
    pub const HOOK_RESULT: &str = "hook.result";
    pub const CHANGESET_EXECUTE: &str = "changeset.execute";
    pub const CHANGESET_REVIEW: &str = "changeset.review";
    pub const CHANGESET_RESULT: &str = "changeset.result";
    pub const FREEZE: &str = "freeze";
    pub const UNFREEZE: &str = "unfreeze";
}

/// The scope of a pipeline's actions: `pipeline:<account>/<region>/<name>`.
pub fn pipeline_scope(key: &PipelineKey) -> String {
    format!("pipeline:{}/{}/{}", key.account, key.region, key.pipeline)
}

/// An entry to append: what happened, who did it, about what. The log gives it its seq and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub scope: String,
    pub at: DateTime<Utc>,
    /// Who: a principal ARN, a chat user, or `tollgate:<function>` for automated actions.
    pub actor: String,
    /// What, e.g. [`action::GATE_DECISION`].
    pub action: String,
    /// About what: an execution id, a stack, a change set...
    pub subject: String,
    /// The facts of the decision (any JSON; object key order does not matter to the hash).
    pub detail: Value,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub scope: String,
    /// 1, 2, 3... within the scope.
    pub seq: u64,
    /// Whole microseconds: the precision the hash covers.
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: Value,
    /// The hash of entry `seq - 1`, or [`GENESIS`].
    pub prev_hash: String,
    /// Hex SHA-256 of everything above ([`AuditEntry::content_hash`]).
    pub hash: String,
}

/// Where a scope's log ends, as the store says: the last entry's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// An entry the log refuses before any write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry refused: `{field}` {reason}")]
pub struct InvalidAuditEntry {
    pub field: &'static str,
    pub reason: String,
}

impl From<InvalidAuditEntry> for StoreError {
    fn from(e: InvalidAuditEntry) -> Self {
        StoreError::Permanent(e.to_string())
    }
}

impl NewAuditEntry {
    /// Checks what the stores need: a scope, an actor and an action; sizes that fit one item.
    pub fn validate(&self) -> Result<(), InvalidAuditEntry> {
        let refuse = |field: &'static str, reason: String| Err(InvalidAuditEntry { field, reason });
        for (field, value, required) in [
            ("scope", &self.scope, true),
            ("actor", &self.actor, true),
            ("action", &self.action, true),
            ("subject", &self.subject, false),
        ] {
            let max = if field == "scope" {
                MAX_SCOPE_BYTES
            } else {
                MAX_FIELD_BYTES
            };
            if required && value.trim().is_empty() {
                return refuse(field, "is empty".into());
            }
            if value.len() > max {
                return refuse(field, format!("is {} bytes long, more than {max}", value.len()));
            }
            if value.chars().any(char::is_control) {
                return refuse(field, "contains control characters".into());
            }
        }
        let detail = serde_json::to_string(&self.detail).map_or(0, |s| s.len());
        if detail > MAX_DETAIL_BYTES {
            return refuse(
                "detail",
                format!("is {detail} bytes of JSON, more than {MAX_DETAIL_BYTES}"),
            );
        }
        Ok(())
    }
}

impl AuditEntry {
    /// The entry that follows `prev` (`None`: the scope's first), with `at` cut to whole microseconds and hashed.
    pub fn seal(new: NewAuditEntry, prev: Option<&AuditHead>) -> AuditEntry {
        let mut entry = AuditEntry {
            scope: new.scope,
            seq: prev.map_or(1, |p| p.seq + 1),
            at: new.at.trunc_subsecs(6),
            actor: new.actor,
            action: new.action,
            subject: new.subject,
            detail: new.detail,
            prev_hash: prev.map_or_else(|| GENESIS.to_string(), |p| p.hash.clone()),
            hash: String::new(),
        };
        entry.hash = entry.content_hash();
        entry
    }

    /// Hex SHA-256 of the canonical encoding of every field but `hash`: the domain tag `tollgate-audit-v1\0`, then
    /// scope, seq (8 bytes big-endian), at (RFC 3339, microseconds, `Z`), actor, action, subject, detail (with object
    /// keys sorted) and prev_hash. Strings are length-prefixed (8 bytes big-endian), so no two entries encode alike.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        text(&mut h, &self.scope);
        h.update(self.seq.to_be_bytes());
        text(&mut h, &self.at.to_rfc3339_opts(SecondsFormat::Micros, true));
        text(&mut h, &self.actor);
        text(&mut h, &self.action);
        text(&mut h, &self.subject);
        canonical_json(&self.detail, &mut h);
        text(&mut h, &self.prev_hash);
        hex::encode(h.finalize())
    }

    /// The HEAD this entry makes when it is the last.
    pub fn as_head(&self) -> AuditHead {
        AuditHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

fn text(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

/// A JSON value into the hasher with object keys sorted: the encoding of `parse::event_identity`'s detail digest
/// (type tag, length prefixes), repeated here because the audit encoding is a stored format of its own.
fn canonical_json(v: &Value, h: &mut Sha256) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            text(h, s);
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_be_bytes());
            for item in items {
                canonical_json(item, h);
            }
        }
        Value::Object(map) => {
            h.update(b"{");
            h.update((map.len() as u64).to_be_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                text(h, k);
                canonical_json(&map[k], h);
            }
        }
    }
}

/// What one conditional append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The entry is stored and HEAD points at it.
    Written,
    /// HEAD had moved (another appender won): nothing was written. `current` is HEAD now, when the store said so
    /// with its refusal; `None`: read it again.
    Conflict { current: Option<AuditHead> },
}

/// The audit log of every scope.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// The scope's HEAD (consistent read), `None` before its first entry.
    async fn head(&self, scope: &str) -> Result<Option<AuditHead>, StoreError>;

    /// Every stored entry of the scope in storage order (seq order unless tampered with), paginated internally.
    async fn entries(&self, scope: &str) -> Result<Vec<AuditEntry>, StoreError>;

    /// The newest `limit` entries, newest first.
    async fn recent(&self, scope: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut all = self.entries(scope).await?;
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    /// Stores `entry` and moves HEAD to it, atomically, if HEAD is still `expected` (`None`: the scope has no HEAD
    /// yet) and no entry with its seq exists. The building block of [`AuditLog::append`]; callers use that.
    async fn append_after(&self, entry: &AuditEntry, expected: Option<&AuditHead>)
        -> Result<AppendOutcome, StoreError>;

    /// Appends an entry, correct under concurrent appenders ([`append_chained`] with [`AppendRetry::default`]).
    async fn append(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        append_chained(self, entry, &AppendRetry::default()).await
    }
}

/// How often an append is tried when other appenders keep winning, and how long it waits in between (a random
/// time up to `base_delay * 2^(n-1)` before the n-th retry, at most `max_delay`: appenders that collided do not collide
/// again in step). An attempt reads HEAD and writes on it; when the refusal reports the HEAD that won, it writes once
/// more on that at once, within the same attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendRetry {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for AppendRetry {
    fn default() -> Self {
        AppendRetry {
            attempts: 10,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl AppendRetry {
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % nanos)
    }
}

/// Randomness for jitter without a dependency: every `RandomState` is keyed afresh.
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}

/// Appends `new` to its scope: reads HEAD, seals the entry on it and writes it conditionally. When another appender
/// moved HEAD first and the refusal says where HEAD is now, seals it on that and writes again at once; when that
/// loses too, pauses a random time and starts over, up to `retry.attempts` times (then a transient error: nothing was
/// written). A transient store error is retried the same way. If HEAD turns out to be the very entry of a write that
/// failed (it succeeded, but its answer was lost), that is success: the same entry is never stored twice.
pub async fn append_chained<L: AuditLog + ?Sized>(
    log: &L,
    new: NewAuditEntry,
    retry: &AppendRetry,
) -> Result<AuditEntry, StoreError> {
    new.validate()?;
    let scope = new.scope.clone();
    let attempts = retry.attempts.max(1);
    // The entry of the last write that failed without saying whether it was written.
    let mut unconfirmed: Option<AuditEntry> = None;
    let mut failure = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(retry.backoff(attempt - 1)).await;
        }
        let mut head = match log.head(&scope).await {
            Ok(head) => head,
            Err(StoreError::Transient(e)) => {
                failure = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(mine) = unconfirmed.take() {
            if head.as_ref().is_some_and(|h| h.seq == mine.seq && h.hash == mine.hash) {
                return Ok(mine);
            }
        }
        // On HEAD as read; then, if refused, at once on HEAD as the refusal reported it (fresh: no read, no pause).
        for on_reported in [false, true] {
            let entry = AuditEntry::seal(new.clone(), head.as_ref());
            match log.append_after(&entry, head.as_ref()).await {
                Ok(AppendOutcome::Written) => {
                    tracing::debug!(scope = %scope, seq = entry.seq, attempt, "audit entry appended");
                    return Ok(entry);
                }
                Ok(AppendOutcome::Conflict { current }) => {
                    // HEAD is this entry: an earlier try of this very write succeeded (e.g. an SDK retry).
                    if current
                        .as_ref()
                        .is_some_and(|h| h.seq == entry.seq && h.hash == entry.hash)
                    {
                        return Ok(entry);
                    }
                    tracing::debug!(scope = %scope, seq = entry.seq, attempt, "audit append lost to a concurrent appender");
                    failure = None;
                    match current {
                        Some(current) if !on_reported => head = Some(current),
                        _ => break,
                    }
                }
                Err(StoreError::Transient(e)) => {
                    tracing::debug!(scope = %scope, seq = entry.seq, attempt, error = %e, "audit append failed");
                    failure = Some(e);
                    unconfirmed = Some(entry);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(StoreError::Transient(match failure {
        Some(e) => format!("audit log of scope `{scope}`: {attempts} attempts to append failed, the last with: {e}"),
        None => format!(
            "audit log of scope `{scope}`: {attempts} attempts to append lost to concurrent appenders; nothing was \
             written, try again"
        ),
    }))
}

/// A scope's log that verified: how many entries, and where it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub scope: String,
    /// Entries 1..=entries are present, in order, unaltered and chained.
    pub entries: u64,
    /// The last entry's hash (what to record elsewhere to detect a rewrite of the whole chain later).
    pub last_hash: Option<String>,
    /// HEAD as read before the entries.
    pub head: Option<AuditHead>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.last_hash {
            None => write!(f, "audit log of `{}`: no entries", self.scope),
            Some(hash) => write!(
                f,
                "audit log of `{}`: {} entries, chained from genesis, none altered, none missing; entry {} has hash {hash}",
                self.scope, self.entries, self.entries
            ),
        }
    }
}

/// The first broken link of a scope's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    /// An entry is missing (deleted): the next stored entry has a later seq and the missing one is nowhere.
    #[error("{}", gap_message(*missing, *before, *after))]
    Gap { missing: u64, before: u64, after: u64 },
    /// An entry is stored where another belongs (entries swapped or moved); `expected` comes later in the log.
    #[error("entries are out of order: entry {seq} comes right after entry {after}, where entry {expected} belongs")]
    OutOfOrder { seq: u64, after: u64, expected: u64 },
    /// A seq occurs twice (a copied or forked entry).
    #[error("seq {seq} appears twice: a second entry {seq} comes after entry {after}")]
    Duplicate { seq: u64, after: u64 },
    /// An entry of another scope was put into this one.
    #[error("entry {seq} belongs to scope `{found}`, not `{scope}`")]
    WrongScope { seq: u64, found: String, scope: String },
    /// An entry's content does not match its stored hash.
    #[error("entry {seq} was altered: its stored hash does not match its content")]
    Altered { seq: u64 },
    /// An entry's `prev_hash` is not the previous entry's hash: one of the two was rewritten (and re-hashed).
    #[error(
        "entry {seq} does not follow entry {}: its prev_hash is {found}, entry {}'s hash is {expected} \
         (one of them was rewritten)",
        seq - 1,
        seq - 1
    )]
    BrokenChain { seq: u64, found: String, expected: String },
    /// HEAD is past the last entry: the tail of the log was deleted.
    #[error("HEAD says {head} entries, the log ends at {last}: entries {} to {head} were deleted", last + 1)]
    Truncated { head: u64, last: u64 },
    /// HEAD names the last entry with another hash.
    #[error("HEAD says entry {seq} has hash {head_hash}, the stored entry {seq} has hash {entry_hash}")]
    HeadMismatch {
        seq: u64,
        head_hash: String,
        entry_hash: String,
    },
    /// Entries exist but HEAD does not (it was deleted).
    #[error("HEAD is missing, the log has {last} entries")]
    MissingHead { last: u64 },
}

fn gap_message(missing: u64, before: u64, after: u64) -> String {
    if before == 0 {
        format!("seq {missing} is missing: the log starts at {after}")
    } else {
        format!("seq {missing} is missing: entries jump from {before} to {after}")
    }
}

impl AuditBreak {
    /// The seq of the first entry that is not as it should be.
    pub fn seq(&self) -> u64 {
        match self {
            AuditBreak::Gap { missing, .. } => *missing,
            AuditBreak::OutOfOrder { expected, .. } => *expected,
            AuditBreak::Duplicate { seq, .. }
            | AuditBreak::WrongScope { seq, .. }
            | AuditBreak::Altered { seq }
            | AuditBreak::BrokenChain { seq, .. }
            | AuditBreak::HeadMismatch { seq, .. } => *seq,
            AuditBreak::Truncated { last, .. } => last + 1,
            AuditBreak::MissingHead { last } => *last,
        }
    }
}

/// Walks a scope's entries in storage order and returns the first broken link: a missing, misplaced or repeated
/// seq, an entry of another scope, an entry whose hash does not match its content, an entry that does not chain
/// to the one before; then checks HEAD (`head`, read *before* the entries) against the log's end. Entries after HEAD
/// are accepted: they were appended while the log was being read.
pub fn verify(scope: &str, entries: &[AuditEntry], head: Option<&AuditHead>) -> Result<VerifyReport, AuditBreak> {
    let present: HashSet<u64> = entries.iter().map(|e| e.seq).collect();
    let mut prev: Option<&AuditEntry> = None;
    for entry in entries {
        let before = prev.map_or(0, |p| p.seq);
        let expected = before + 1;
        if entry.seq > expected {
            return Err(if present.contains(&expected) {
                AuditBreak::OutOfOrder {
                    seq: entry.seq,
                    after: before,
                    expected,
                }
            } else {
                AuditBreak::Gap {
                    missing: expected,
                    before,
                    after: entry.seq,
                }
            });
        }
        if entry.seq < expected {
            // Every seq below `expected` was seen already: this one is a second copy.
            return Err(AuditBreak::Duplicate {
                seq: entry.seq,
                after: before,
            });
        }
        if entry.scope != scope {
            return Err(AuditBreak::WrongScope {
                seq: entry.seq,
                found: entry.scope.clone(),
                scope: scope.to_string(),
            });
        }
        if entry.content_hash() != entry.hash {
            return Err(AuditBreak::Altered { seq: entry.seq });
        }
        let prev_hash = prev.map_or(GENESIS, |p| p.hash.as_str());
        if entry.prev_hash != prev_hash {
            return Err(AuditBreak::BrokenChain {
                seq: entry.seq,
                found: entry.prev_hash.clone(),
                expected: prev_hash.to_string(),
            });
        }
        prev = Some(entry);
    }
    let last = prev.map_or(0, |p| p.seq);
    match head {
        None if last > 0 => return Err(AuditBreak::MissingHead { last }),
        None => {}
        Some(h) if h.seq > last => return Err(AuditBreak::Truncated { head: h.seq, last }),
        Some(h) => {
            // Entries are 1..=last here, in order: entry `seq` is at index `seq - 1`.
            let stored = usize::try_from(h.seq)
                .ok()
                .and_then(|seq| seq.checked_sub(1))
                .and_then(|i| entries.get(i))
                .map_or(GENESIS, |e| e.hash.as_str());
            if stored != h.hash {
                return Err(AuditBreak::HeadMismatch {
                    seq: h.seq,
                    head_hash: h.hash.clone(),
                    entry_hash: stored.to_string(),
                });
            }
        }
    }
    Ok(VerifyReport {
        scope: scope.to_string(),
        entries: last,
        last_hash: prev.map(|p| p.hash.clone()),
        head: head.cloned(),
    })
}

/// Reads a scope's HEAD, then its entries, and verifies them ([`verify`]). The outer error is the store's; the
/// inner one the log's first broken link.
pub async fn check<L: AuditLog + ?Sized>(log: &L, scope: &str) -> Result<Result<VerifyReport, AuditBreak>, StoreError> {
    // HEAD first: an append that lands between the two reads adds an entry after HEAD, which verify accepts; the
    // other order would read a HEAD past the entries read and call it a truncation.
    let head = log.head(scope).await?;
    let entries = log.entries(scope).await?;
    Ok(verify(scope, &entries, head.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_entry(n: u32) -> NewAuditEntry {
        NewAuditEntry {
            scope: "global".into(),
            at: "2026-11-20T09:00:00.123456789Z".parse().unwrap(),
            actor: "arn:aws:iam::111122223333:user/alice".into(),
            action: action::FREEZE.into(),
            subject: format!("freeze-{n}"),
            detail: json!({ "reason": "quarter end", "n": n }),
        }
    }

    #[test]
    fn sealing_cuts_time_to_microseconds_and_chains_from_genesis() {
        let first = AuditEntry::seal(new_entry(1), None);
        assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS));
        assert_eq!(first.at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(first.hash.len(), 64);
        assert_eq!(first.hash, first.content_hash());
        let second = AuditEntry::seal(new_entry(2), Some(&first.as_head()));
        assert_eq!((second.seq, second.prev_hash.as_str()), (2, first.hash.as_str()));
    }

    #[test]
    fn hash_ignores_detail_key_order_but_not_values() {
        let mut a = new_entry(1);
        a.detail = json!({ "a": 1, "b": { "x": [1, "2"], "y": null } });
        let mut b = a.clone();
        b.detail = serde_json::from_str(r#"{"b":{"y":null,"x":[1,"2"]},"a":1}"#).unwrap();
        assert_eq!(AuditEntry::seal(a.clone(), None).hash, AuditEntry::seal(b, None).hash);
        let mut c = a.clone();
        c.detail = json!({ "a": 1, "b": { "x": [1, 2], "y": null } });
        assert_ne!(AuditEntry::seal(a, None).hash, AuditEntry::seal(c, None).hash);
    }

    #[test]
    fn hash_is_pinned() {
        // The stored format: a change here breaks every chain ever written. Bump the domain tag instead. The same
        // value comes out of the reference verifier in docs/audit.md.
        let entry = AuditEntry::seal(new_entry(1), None);
        assert_eq!(
            entry.hash,
            "8e82d8152ae232c9b5a55a296e2229b431f56bd4e6836346c58c81e72b0d290e",
            "encoding of {:?}",
            entry.at.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
    }

    #[test]
    fn fields_do_not_run_into_each_other() {
        let mut a = new_entry(1);
        a.actor = "ab".into();
        a.action = "c".into();
        let mut b = new_entry(1);
        b.actor = "a".into();
        b.action = "bc".into();
        assert_ne!(AuditEntry::seal(a, None).hash, AuditEntry::seal(b, None).hash);
    }

    #[test]
    fn invalid_entries_are_refused_with_the_field() {
        let mut e = new_entry(1);
        e.scope = " ".into();
        assert_eq!(e.validate().unwrap_err().field, "scope");
        let mut e = new_entry(1);
        e.action = String::new();
        assert_eq!(e.validate().unwrap_err().field, "action");
        let mut e = new_entry(1);
        e.actor = "a\nb".into();
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "audit entry refused: `actor` contains control characters"
        );
        let mut e = new_entry(1);
        e.detail = json!("x".repeat(MAX_DETAIL_BYTES));
        assert_eq!(e.validate().unwrap_err().field, "detail");
        let mut e = new_entry(1);
        e.subject = String::new();
        assert!(e.validate().is_ok(), "a subject is optional");
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let retry = AppendRetry::default();
        for attempt in 0..40 {
            let ceiling = (retry.base_delay * 2u32.pow(attempt.min(16))).min(retry.max_delay);
            assert!(retry.backoff(attempt) < ceiling.max(Duration::from_nanos(1)));
        }
    }
}

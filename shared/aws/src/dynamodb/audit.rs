//! [`AuditLog`] over the table: one partition per scope, `pk = AUDIT#<scope>`, holding the entries
//! (`sk = SEQ#<seq, 20 digits>`, in seq order) and the scope's HEAD (`sk = HEAD`: the last entry's seq and hash).
//!
//! An append is one consistent `GetItem` of HEAD, then one `TransactWriteItems` that puts the entry on condition
//! `attribute_not_exists(pk)` and moves HEAD on condition that it is still what the entry was sealed on (or absent,
//! for the first entry). A concurrent appender that won cancels the transaction; HEAD's current value comes back in
//! the cancellation reasons (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), so the retry needs no read. The
//! retry loop is the domain's ([`tollgate_domain::audit::append_chained`]).
//!
//! Entries are never updated or deleted here, and carry no `ttl`: the log is kept for as long as the table.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, SecondsFormat, Utc};
use tollgate_domain::audit::{AppendOutcome, AuditEntry, AuditHead, AuditLog};
use tollgate_domain::record::ports::StoreError;

use super::error::store_error;
use super::item::{s, Item};
use super::DynamoDbStore;

/// Sort key of a scope's HEAD item. It sorts before every `SEQ#` key; queries of entries use `begins_with`.
pub(crate) const HEAD_SK: &str = "HEAD";
const SEQ_PREFIX: &str = "SEQ#";
const ENTRY_KIND: &str = "audit";
const HEAD_KIND: &str = "audit_head";

/// The partition of a scope's log.
pub(crate) fn audit_pk(scope: &str) -> String {
    format!("AUDIT#{scope}")
}

/// The sort key of entry `seq`: zero-padded to the 20 digits of `u64::MAX`, so text order is seq order.
pub(crate) fn audit_sk(seq: u64) -> String {
    format!("{SEQ_PREFIX}{seq:020}")
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The stored entry: every field of [`AuditEntry`] as its own attribute, `detail` as compact JSON text, `at` with the
/// microseconds the hash covers.
pub(crate) fn entry_item(entry: &AuditEntry) -> Result<Item, StoreError> {
    let detail = serde_json::to_string(&entry.detail).map_err(|e| {
        StoreError::Permanent(format!(
            "audit entry {} of scope `{}`: detail cannot be serialized: {e}",
            entry.seq, entry.scope
        ))
    })?;
    Ok(HashMap::from([
        ("pk".to_string(), s(audit_pk(&entry.scope))),
        ("sk".to_string(), s(audit_sk(entry.seq))),
        ("kind".to_string(), s(ENTRY_KIND)),
        ("scope".to_string(), s(&entry.scope)),
        ("seq".to_string(), n(entry.seq)),
        (
            "at".to_string(),
            s(entry.at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        ),
        ("actor".to_string(), s(&entry.actor)),
        ("action".to_string(), s(&entry.action)),
        ("subject".to_string(), s(&entry.subject)),
        ("detail".to_string(), s(detail)),
        ("prev_hash".to_string(), s(&entry.prev_hash)),
        ("hash".to_string(), s(&entry.hash)),
    ]))
}

/// Where an unreadable item is, for error messages.
fn location(item: &Item) -> String {
    let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).map_or("?", String::as_str);
    format!("item {} {}", key("pk"), key("sk"))
}

fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        Some(other) => Err(StoreError::Permanent(format!(
            "audit {}: attribute {name} is not a string: {other:?}",
            location(item)
        ))),
        None => Err(StoreError::Permanent(format!(
            "audit {}: attribute {name} is missing",
            location(item)
        ))),
    }
}

fn number(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().map_err(|_| {
            StoreError::Permanent(format!(
                "audit {}: attribute {name} is not a sequence number: {value}",
                location(item)
            ))
        }),
        _ => Err(StoreError::Permanent(format!(
            "audit {}: attribute {name} is missing or not a number",
            location(item)
        ))),
    }
}

/// An entry as stored. Its `seq` is the attribute, not the sort key: an entry moved to another key reads as what it
/// says it is, and `verify` sees it out of place.
pub(crate) fn entry_from_item(item: &Item) -> Result<AuditEntry, StoreError> {
    let at = string(item, "at")?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|e| {
            StoreError::Permanent(format!(
                "audit {}: attribute at is not an RFC 3339 time ({at:?}): {e}",
                location(item)
            ))
        })?
        .with_timezone(&Utc);
    let detail = string(item, "detail")?;
    let detail = serde_json::from_str(detail)
        .map_err(|e| StoreError::Permanent(format!("audit {}: attribute detail is not JSON: {e}", location(item))))?;
    Ok(AuditEntry {
        scope: string(item, "scope")?.to_string(),
        seq: number(item, "seq")?,
        at,
        actor: string(item, "actor")?.to_string(),
        action: string(item, "action")?.to_string(),
        subject: string(item, "subject")?.to_string(),
        detail,
        prev_hash: string(item, "prev_hash")?.to_string(),
        hash: string(item, "hash")?.to_string(),
    })
}

fn head_from_item(item: &Item) -> Result<AuditHead, StoreError> {
    Ok(AuditHead {
        seq: number(item, "seq")?,
        hash: string(item, "hash")?.to_string(),
    })
}

/// What a cancelled append transaction means, from its cancellation reasons (in request order: the entry's Put, then
/// HEAD's Update).
fn cancelled(
    table: &str,
    entry: &AuditEntry,
    expected: Option<&AuditHead>,
    reasons: &[CancellationReason],
) -> Result<AppendOutcome, StoreError> {
    let code = |i: usize| reasons.get(i).and_then(CancellationReason::code).unwrap_or("None");
    let (put, head) = (code(0), code(1));
    if head == "ConditionalCheckFailed" {
        // HEAD moved: another appender won. Its current value came back with the refusal (unless HEAD is gone).
        let current = reasons
            .get(1)
            .and_then(CancellationReason::item)
            .filter(|item| !item.is_empty())
            .map(head_from_item)
            .transpose()?;
        return Ok(AppendOutcome::Conflict { current });
    }
    if put == "ConditionalCheckFailed" {
        let after = expected.map_or_else(|| "HEAD is absent".to_string(), |h| format!("HEAD is at {}", h.seq));
        return Err(StoreError::Permanent(format!(
            "audit log of scope `{}` in table {table} is inconsistent: entry {} exists although {after}; \
             run `tollgate audit verify --scope '{}'`",
            entry.scope, entry.seq, entry.scope
        )));
    }
    let codes = [put, head];
    if codes.contains(&"TransactionConflict") || reasons.is_empty() {
        // Another transaction held one of the items (a concurrent appender, most likely): read HEAD again.
        return Ok(AppendOutcome::Conflict { current: None });
    }
    let detail = reasons
        .iter()
        .map(|r| format!("{} ({})", r.code().unwrap_or("None"), r.message().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(", ");
    let what = format!(
        "DynamoDB TransactWriteItems (audit append) of entry {} of scope `{}` on table {table} was cancelled: {detail}",
        entry.seq, entry.scope
    );
    if codes
        .iter()
        .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"))
    {
        Err(StoreError::Transient(what))
    } else {
        Err(StoreError::Permanent(what))
    }
}

impl DynamoDbStore {
    /// Entries of a scope's partition (never its HEAD), consistent, every page; at most `limit`.
    async fn audit_items(
        &self,
        scope: &str,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let pk = audit_pk(scope);
        let mut items: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let remaining = limit.map(|l| l.saturating_sub(items.len()));
            if remaining == Some(0) {
                break;
            }
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :seq)")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":seq", s(SEQ_PREFIX))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_limit(remaining.map(|r| i32::try_from(r).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(&format!("Query (audit entries) of {pk}"), &self.table, &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }
}

#[async_trait]
impl AuditLog for DynamoDbStore {
    #[tracing::instrument(skip_all, fields(table = %self.table, scope = %scope))]
    async fn head(&self, scope: &str) -> Result<Option<AuditHead>, StoreError> {
        match self.get("audit head", &audit_pk(scope), HEAD_SK).await? {
            Some(item) => head_from_item(&item).map(Some),
            None => Ok(None),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, scope = %scope))]
    async fn entries(&self, scope: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let items = self.audit_items(scope, false, None).await?;
        items.iter().map(entry_from_item).collect()
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, scope = %scope, limit))]
    async fn recent(&self, scope: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items = self.audit_items(scope, true, Some(limit)).await?;
        items.iter().map(entry_from_item).collect()
    }

    /// One `TransactWriteItems`: Put the entry (`attribute_not_exists(pk)`), Update HEAD (still `expected`). Its
    /// client request token is derived from the entry's hash, so the SDK's retries of a write whose answer was lost
    /// are answered as the first attempt, not refused.
    #[tracing::instrument(skip_all, fields(table = %self.table, scope = %entry.scope, seq = entry.seq))]
    async fn append_after(
        &self,
        entry: &AuditEntry,
        expected: Option<&AuditHead>,
    ) -> Result<AppendOutcome, StoreError> {
        let pk = audit_pk(&entry.scope);
        let refused = |what: &str, e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Permanent(format!("audit append of {pk}: {what} cannot be built: {e}"))
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(entry_item(entry)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| refused("the entry's Put", e))?;
        let mut head = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(HEAD_SK))
            .update_expression("SET #seq = :seq, #hash = :hash, #kind = :kind, #scope = :scope")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#hash", "hash")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#scope", "scope")
            .expression_attribute_values(":seq", n(entry.seq))
            .expression_attribute_values(":hash", s(&entry.hash))
            .expression_attribute_values(":kind", s(HEAD_KIND))
            .expression_attribute_values(":scope", s(&entry.scope))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        head = match expected {
            None => head.condition_expression("attribute_not_exists(pk)"),
            Some(prev) => head
                .condition_expression("#seq = :prev_seq AND #hash = :prev_hash")
                .expression_attribute_values(":prev_seq", n(prev.seq))
                .expression_attribute_values(":prev_hash", s(&prev.hash)),
        };
        let head = head.build().map_err(|e| refused("the HEAD Update", e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(head).build())
            .client_request_token(entry.hash.chars().take(36).collect::<String>())
            .send()
            .await;
        match result {
            Ok(_) => Ok(AppendOutcome::Written),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    let outcome = cancelled(&self.table, entry, expected, e.cancellation_reasons())?;
                    tracing::debug!(?outcome, "audit append transaction cancelled");
                    Ok(outcome)
                }
                _ => Err(store_error(
                    &format!("TransactWriteItems (audit append) of {pk} {}", audit_sk(entry.seq)),
                    &self.table,
                    &err,
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests;

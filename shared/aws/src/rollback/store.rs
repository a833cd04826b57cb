//! [`DynamoDbRollbackStore`]: rollback records in the Tollgate table (layout in docs/guard.md).
//!
//! One item per (target, incident), `pk = ROLLBACK#<record id>`, `sk = RECORD`. The claim is one conditional
//! `PutItem` (`attribute_not_exists(pk)`, or a claim whose lease ran out), so of twenty deliveries of one alarm storm
//! exactly one acts; the outcome is written by the claim holder only (`#token = :token`). A holder whose request lost
//! its answer gives the claim back (`state = released`, the record with `attempted_at`); the next claim reads it back
//! (`ReturnValues = ALL_OLD`). Open rollbacks are listed
//! by alarm through GSI1 (`ROLLBACKOPEN#<alarm>`, removed once restored) and every record by day through GSI2
//! (`ROLLBACKDAY#<day>`), for the metrics.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use tollgate_domain::record::ports::StoreError;
use tollgate_domain::rollback::guard::{Claim, RollbackOutcome, RollbackRecord, RollbackStore, Step};

use super::{classify, CallError};

type Item = HashMap<String, AttributeValue>;

const SK: &str = "RECORD";
const CLAIMED: &str = "claimed";
const DONE: &str = "done";
/// Given back after a request whose answer was lost; the record says when it was sent.
const RELEASED: &str = "released";

/// The DynamoDB adapter of [`RollbackStore`].
#[derive(Debug, Clone)]
pub struct DynamoDbRollbackStore {
    client: Client,
    table: String,
    retention_days: i64,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Fixed-width UTC time with microseconds: text order is time order, so conditions can compare times as strings.
pub(crate) fn fixed_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn record_pk(id: &str) -> String {
    format!("ROLLBACK#{id}")
}

pub(crate) fn open_pk(alarm: &str) -> String {
    format!("ROLLBACKOPEN#{alarm}")
}

pub(crate) fn day_pk(t: &DateTime<Utc>) -> String {
    format!("ROLLBACKDAY#{}", t.format("%Y-%m-%d"))
}

fn names(pairs: &[&str]) -> HashMap<String, String> {
    pairs.iter().map(|n| (format!("#{n}"), n.to_string())).collect()
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoDbRollbackStore {
    pub fn new(client: Client, table: impl Into<String>, retention_days: i64) -> Self {
        DynamoDbRollbackStore {
            client,
            table: table.into(),
            retention_days: retention_days.clamp(1, 36_500),
        }
    }

    fn error<E>(&self, operation: &str, err: &aws_sdk_dynamodb::error::SdkError<E>) -> StoreError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match classify(&format!("DynamoDB {operation} on table {}", self.table), err) {
            CallError::Transient(t) => StoreError::Transient(t),
            CallError::Refused { code, message } => StoreError::Permanent(format!(
                "DynamoDB {operation} on table {} refused with {code}: {message}",
                self.table
            )),
        }
    }

    fn key(id: &str) -> Item {
        HashMap::from([("pk".to_string(), s(record_pk(id))), ("sk".to_string(), s(SK))])
    }

    /// A stored item back into a record: the JSON, with the attributes later steps set on their own.
    fn decode(item: &Item) -> Result<RollbackRecord, StoreError> {
        let json = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Permanent("rollback item without its `record` attribute".into()))?;
        let mut record: RollbackRecord = serde_json::from_str(json)
            .map_err(|e| StoreError::Permanent(format!("rollback item's `record` is not a record: {e}")))?;
        let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
        record.audited |= flag("audited");
        record.notified |= flag("notified");
        if let Some(t) = item.get("restored_at").and_then(|v| v.as_s().ok()) {
            record.restored_at = DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
        }
        Ok(record)
    }

    fn json(record: &RollbackRecord) -> Result<String, StoreError> {
        serde_json::to_string(record)
            .map_err(|e| StoreError::Permanent(format!("rollback record {} cannot be serialized: {e}", record.id)))
    }

    async fn get(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        Ok(out.item)
    }
}

#[async_trait]
impl RollbackStore for DynamoDbRollbackStore {
    #[tracing::instrument(skip_all, fields(record = %record.id))]
    async fn claim(
        &self,
        record: &RollbackRecord,
        token: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut item = Self::key(&record.id);
        item.insert("kind".into(), s("rollback"));
        item.insert("state".into(), s(CLAIMED));
        item.insert("token".into(), s(token));
        item.insert("claimed_at".into(), s(fixed_time(&now)));
        item.insert("alarm".into(), s(&record.alarm));
        item.insert("record".into(), s(Self::json(record)?));
        item.insert(
            "ttl".into(),
            AttributeValue::N((now + Duration::days(self.retention_days)).timestamp().to_string()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR #state = :released OR (#state = :claimed AND #claimed_at < :stale)",
            )
            .set_expression_attribute_names(Some(names(&["state", "claimed_at"])))
            .expression_attribute_values(":claimed", s(CLAIMED))
            .expression_attribute_values(":released", s(RELEASED))
            .expression_attribute_values(":stale", s(fixed_time(&stale_before)))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            // A released claim, or one whose holder died: the earlier record comes back with it.
            Ok(out) => {
                let previous = match out.attributes.filter(|a| !a.is_empty()) {
                    Some(old) => Some(Box::new(Self::decode(&old)?)),
                    None => None,
                };
                return Ok(Claim::Won { previous });
            }
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => match &c.item {
                    Some(old) => old.clone(),
                    // An endpoint that does not return the old item: read it once.
                    None => match self.get(&record.id).await? {
                        Some(old) => old,
                        None => return Ok(Claim::Held),
                    },
                },
                _ => return Err(self.error("PutItem", &e)),
            },
        };
        if old.get("state").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(DONE) {
            Ok(Claim::Done(Box::new(Self::decode(&old)?)))
        } else {
            Ok(Claim::Held)
        }
    }

    #[tracing::instrument(skip_all, fields(record = %record.id))]
    async fn finish(&self, record: &RollbackRecord, token: &str) -> Result<bool, StoreError> {
        let mut set = vec![
            "#state = :done",
            "#record = :record",
            "#gsi2pk = :gsi2pk",
            "#gsi2sk = :gsi2sk",
        ];
        let mut attrs = vec!["state", "record", "gsi2pk", "gsi2sk", "token"];
        let mut values: Item = HashMap::from([
            (":done".to_string(), s(DONE)),
            (":record".to_string(), s(Self::json(record)?)),
            (":gsi2pk".to_string(), s(day_pk(&record.decided_at))),
            (
                ":gsi2sk".to_string(),
                s(format!("{}#{}", fixed_time(&record.decided_at), record.id)),
            ),
            (":token".to_string(), s(token)),
            (":claimed".to_string(), s(CLAIMED)),
        ]);
        if let (Some(RollbackOutcome::RolledBack), Some(acted_at)) = (record.outcome, record.acted_at) {
            // Listed under its alarm until the alarm's next OK records the restore.
            set.extend(["#acted_at = :acted_at", "#gsi1pk = :gsi1pk", "#gsi1sk = :gsi1sk"]);
            attrs.extend(["acted_at", "gsi1pk", "gsi1sk"]);
            values.insert(":acted_at".into(), s(fixed_time(&acted_at)));
            values.insert(":gsi1pk".into(), s(open_pk(&record.alarm)));
            values.insert(":gsi1sk".into(), s(format!("{}#{}", fixed_time(&acted_at), record.id)));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&record.id)))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression("#token = :token AND #state = :claimed")
            .set_expression_attribute_names(Some(names(&attrs)))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    #[tracing::instrument(skip_all, fields(record = %record.id))]
    async fn release(&self, record: &RollbackRecord, token: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&record.id)))
            .update_expression("SET #state = :released, #record = :record")
            .condition_expression("#token = :token AND #state = :claimed")
            .set_expression_attribute_names(Some(names(&["token", "state", "record"])))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":claimed", s(CLAIMED))
            .expression_attribute_values(":released", s(RELEASED))
            .expression_attribute_values(":record", s(Self::json(record)?))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    #[tracing::instrument(skip(self))]
    async fn mark(&self, id: &str, step: Step) -> Result<(), StoreError> {
        let attr = match step {
            Step::Audited => "audited",
            Step::Notified => "notified",
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .update_expression("SET #step = :true")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#step", attr)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Err(StoreError::Permanent(format!(
                "rollback record {id} vanished before it was marked {attr}"
            ))),
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    #[tracing::instrument(skip(self))]
    async fn mark_restored(&self, alarm: &str, ok_at: DateTime<Utc>) -> Result<Vec<RollbackRecord>, StoreError> {
        let mut open = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("#gsi1pk = :pk")
                .expression_attribute_names("#gsi1pk", "gsi1pk")
                .expression_attribute_values(":pk", s(open_pk(alarm)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error("Query", &e))?;
            open.extend(
                out.items()
                    .iter()
                    .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned()),
            );
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let mut restored = Vec::new();
        for pk in open {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s(SK))
                .update_expression("SET #restored_at = :ok REMOVE #gsi1pk, #gsi1sk")
                .condition_expression("attribute_not_exists(#restored_at) AND #acted_at <= :ok")
                .set_expression_attribute_names(Some(names(&["restored_at", "acted_at", "gsi1pk", "gsi1sk"])))
                .expression_attribute_values(":ok", s(fixed_time(&ok_at)))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match result {
                Ok(out) => {
                    if let Some(item) = out.attributes {
                        restored.push(Self::decode(&item)?);
                    }
                }
                // Restored already, or rolled back after this OK (a late OK of an earlier flap): not this one's.
                Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {}
                Err(e) => return Err(self.error("UpdateItem", &e)),
            }
        }
        Ok(restored)
    }

    #[tracing::instrument(skip(self))]
    async fn rollbacks_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RollbackRecord>, StoreError> {
        let mut records = Vec::new();
        let mut day = from.date_naive();
        while day <= to.date_naive() {
            let day_start = day.and_hms_opt(0, 0, 0).map(|d| d.and_utc()).unwrap_or(from);
            let mut start: Option<Item> = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi2")
                    .key_condition_expression("#gsi2pk = :pk AND #gsi2sk BETWEEN :from AND :to")
                    .set_expression_attribute_names(Some(names(&["gsi2pk", "gsi2sk"])))
                    .expression_attribute_values(":pk", s(day_pk(&day_start)))
                    .expression_attribute_values(":from", s(fixed_time(&from)))
                    .expression_attribute_values(":to", s(format!("{}~", fixed_time(&to))))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| self.error("Query", &e))?;
                for key in out.items() {
                    let Some(pk) = key.get("pk").and_then(|v| v.as_s().ok()) else {
                        continue;
                    };
                    let id = pk.trim_start_matches("ROLLBACK#");
                    if let Some(item) = self.get(id).await? {
                        let record = Self::decode(&item)?;
                        if record.decided_at >= from && record.decided_at < to {
                            records.push(record);
                        }
                    }
                }
                match out.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        records.sort_by(|a, b| (a.decided_at, &a.id).cmp(&(b.decided_at, &b.id)));
        Ok(records)
    }
}

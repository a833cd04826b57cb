//! [`DynamoDbStore`]: the event store and timeline queries over one DynamoDB table (single-table design, see
//! docs/table-design.md). It reproduces the semantics of `tollgate_domain::memory::MemoryStore`: one record per
//! subject, idempotency by event id, notification markers on the item that recorded the event.
//!
//! Recording a new event is one conditional write and nothing else: the condition carries the idempotency (the event
//! id is the attribute or item it creates) and the write returns the record's history, so there is no read before
//! it and none after it.

mod audit;
mod digest;
mod error;
mod item;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, Utc};
use tollgate_domain::record::event::DeliveryEvent;
use tollgate_domain::record::keys::{
    deployment_pk, execution_pk, pipeline_gsi_pk, rejected_pk, series_sk, BuildKey, DeploymentKey, ExecutionKey,
    Layout, PipelineKey, StackKey, Subject, AGGREGATE_SK,
};
use tollgate_domain::record::ports::{
    claim_prefix_at, EventRecorder, ExecutionSummary, Mark, Recorded, Rejected, StoreError, TimelineQueries,
};

use error::store_error;
use item::{s, Item};

/// How long records are kept when the caller has no reason to choose (the ingest function's default too): a pipeline's
/// executions can be compared over more than a year.
pub const DEFAULT_RETENTION_DAYS: i64 = 400;

/// The DynamoDB adapter of [`EventRecorder`] and [`TimelineQueries`].
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    retention_days: i64,
}

/// One Query, possibly over several pages.
struct Query {
    operation: &'static str,
    index: Option<&'static str>,
    key_condition: &'static str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    newest_first: bool,
    limit: Option<usize>,
    projection: Option<String>,
}

impl DynamoDbStore {
    /// `retention_days`: how long after its (first) event a record expires through the table's TTL; kept within
    /// 1 day and 100 years so the expiry time is always a valid epoch-seconds number.
    pub fn new(client: Client, table: impl Into<String>, retention_days: i64) -> Self {
        DynamoDbStore {
            client,
            table: table.into(),
            retention_days: retention_days.clamp(1, 36_500),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The item that holds `event` (its aggregate item, or its own series item).
    fn item_key(event: &DeliveryEvent) -> (String, String) {
        let subject = event.subject();
        match subject.layout() {
            Layout::Aggregate => (subject.pk(), AGGREGATE_SK.to_string()),
            Layout::Series => (subject.pk(), series_sk(&event.time, &event.id)),
        }
    }

    async fn get(&self, operation: &str, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(&format!("GetItem ({operation}) of {pk}"), &self.table, &e))?;
        Ok(out.item)
    }

    async fn query(&self, q: Query) -> Result<Vec<Item>, StoreError> {
        let mut items: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let remaining = q.limit.map(|l| l.saturating_sub(items.len()));
            if remaining == Some(0) {
                break;
            }
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(q.index.map(str::to_string))
                .key_condition_expression(q.key_condition)
                .set_expression_attribute_names(Some(q.names.clone()))
                .set_expression_attribute_values(Some(q.values.clone()))
                .scan_index_forward(!q.newest_first)
                .set_limit(remaining.map(|r| i32::try_from(r).unwrap_or(i32::MAX)))
                .set_projection_expression(q.projection.clone())
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(q.operation, &self.table, &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }

    /// One conditional UpdateItem of a notification marker on the item that recorded `event`. Ok(false) when the
    /// condition failed on an existing item; a Permanent error when that item does not exist.
    async fn update_marker(
        &self,
        event: &DeliveryEvent,
        key: &str,
        what: &str,
        update: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, StoreError> {
        let (pk, sk) = Self::item_key(event);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(&sk))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#n", item::marker_attr(key))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            request = request.expression_attribute_values(*name, value.clone());
        }
        let err = match request.send().await {
            Ok(_) => return Ok(true),
            Err(err) => err,
        };
        let Some(UpdateItemError::ConditionalCheckFailedException(e)) = err.as_service_error() else {
            return Err(store_error(
                &format!("UpdateItem ({what}) of {pk} {sk}"),
                &self.table,
                &err,
            ));
        };
        // The condition failed: the marker said no, or the record is missing. An old item in the answer settles it.
        let exists = match e.item() {
            Some(_) => true,
            None => self.get(what, &pk, &sk).await?.is_some(),
        };
        if exists {
            Ok(false)
        } else {
            Err(StoreError::Permanent(format!(
                "no record of event {} to {what} {key} on: item {pk} {sk} does not exist in table {}",
                event.id, self.table
            )))
        }
    }

    async fn aggregate_events(&self, operation: &str, pk: String) -> Result<Vec<DeliveryEvent>, StoreError> {
        match self.get(operation, &pk, AGGREGATE_SK).await? {
            Some(found) => item::aggregate_history(&pk, &found),
            None => Ok(Vec::new()),
        }
    }

    async fn record_aggregate(&self, event: &DeliveryEvent, subject: &Subject) -> Result<Recorded, StoreError> {
        let pk = subject.pk();
        let update = item::aggregate_update(event, subject, self.retention_days)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(AGGREGATE_SK))
            .update_expression(update.expression())
            .condition_expression(format!("attribute_not_exists(#{})", item::EVENT_PLACEHOLDER))
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let (new, stored) = match result {
            Ok(out) => (true, out.attributes.unwrap_or_default()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    let old = match e.item() {
                        Some(old) => old.clone(),
                        None => self.duplicate_fallback(&pk, AGGREGATE_SK, &event.id).await?,
                    };
                    (false, old)
                }
                _ => return Err(store_error(&format!("UpdateItem (record) of {pk}"), &self.table, &err)),
            },
        };
        let recorded = Recorded {
            new,
            history: item::aggregate_history(&pk, &stored)?,
            notified: item::notified(&stored),
        };
        tracing::debug!(new, events = recorded.history.len(), "recorded on aggregate");
        Ok(recorded)
    }

    async fn record_series(&self, event: &DeliveryEvent, subject: &Subject) -> Result<Recorded, StoreError> {
        let (pk, sk) = (subject.pk(), series_sk(&event.time, &event.id));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::series_item(
                event,
                pk.clone(),
                sk.clone(),
                self.retention_days,
            )?))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let recorded = match result {
            Ok(_) => Recorded {
                new: true,
                history: vec![event.clone()],
                notified: BTreeMap::new(),
            },
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => {
                    let old = match e.item() {
                        Some(old) => old.clone(),
                        None => self.duplicate_fallback(&pk, &sk, &event.id).await?,
                    };
                    let stored = if old.contains_key(item::EVENT) {
                        item::series_event(&old)?
                    } else {
                        event.clone()
                    };
                    Recorded {
                        new: false,
                        history: vec![stored],
                        notified: item::notified(&old),
                    }
                }
                _ => {
                    return Err(store_error(
                        &format!("PutItem (record) of {pk} {sk}"),
                        &self.table,
                        &err,
                    ))
                }
            },
        };
        tracing::debug!(new = recorded.new, "recorded as series item");
        Ok(recorded)
    }

    /// The item a failed condition was about, when the answer did not carry it (emulators that ignore
    /// ReturnValuesOnConditionCheckFailure). The condition only fails on an item that exists; if it is gone by now
    /// (expired), a retry will record the event afresh.
    async fn duplicate_fallback(&self, pk: &str, sk: &str, event_id: &str) -> Result<Item, StoreError> {
        tracing::debug!(pk, "condition failed without the old item; reading it");
        self.get("duplicate", pk, sk).await?.ok_or_else(|| {
            StoreError::Transient(format!(
                "event {event_id}: the write to {pk} {sk} on table {} found it recorded, but the item is gone now",
                self.table
            ))
        })
    }
}

#[async_trait]
impl EventRecorder for DynamoDbStore {
    #[tracing::instrument(skip_all, fields(table = %self.table, event_id = %event.id, kind = event.kind().as_str()))]
    async fn record(&self, event: &DeliveryEvent) -> Result<Recorded, StoreError> {
        let subject = event.subject();
        match subject.layout() {
            Layout::Aggregate => self.record_aggregate(event, &subject).await,
            Layout::Series => self.record_series(event, &subject).await,
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, event_id = %event.id, key = %key))]
    async fn claim_notification(
        &self,
        event: &DeliveryEvent,
        key: &str,
        claim: &Mark,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update_marker(
            event,
            key,
            "claim notification",
            "SET #n = :claim",
            "attribute_exists(pk) AND (attribute_not_exists(#n) OR (begins_with(#n, :claimed) AND #n < :stale))",
            &[
                (":claim", s(claim.encode())),
                (":claimed", s("claim@")),
                (":stale", s(claim_prefix_at(&stale_before))),
            ],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, event_id = %event.id, key = %key))]
    async fn finish_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError> {
        let ours = self
            .update_marker(
                event,
                key,
                "finish notification",
                "SET #n = :sent",
                "#n = :claim",
                &[(":sent", s(Mark::Sent.encode())), (":claim", s(claim.encode()))],
            )
            .await?;
        if !ours {
            tracing::warn!("the notification claim was taken over before it was marked sent");
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, event_id = %event.id, key = %key))]
    async fn release_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError> {
        self.update_marker(
            event,
            key,
            "release notification",
            "REMOVE #n",
            "#n = :claim",
            &[(":claim", s(claim.encode()))],
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, message_id = %rejected.message_id))]
    async fn keep_rejected(&self, rejected: &Rejected) -> Result<(), StoreError> {
        let pk = rejected_pk(&rejected.received_at.date_naive());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::rejected_item(rejected, pk.clone(), self.retention_days)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Kept by an earlier delivery of the same message.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(store_error(
                &format!("PutItem (keep rejected) in {pk}"),
                &self.table,
                &err,
            )),
        }
    }
}

#[async_trait]
impl TimelineQueries for DynamoDbStore {
    #[tracing::instrument(skip_all, fields(table = %self.table, execution_id = %key.execution_id))]
    async fn execution_events(&self, key: &ExecutionKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.aggregate_events("execution events", execution_pk(key)).await
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, build_id = %key.build_id))]
    async fn build_events(&self, key: &BuildKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.aggregate_events("build events", Subject::Build(key.clone()).pk())
            .await
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, deployment_id = %key.deployment_id))]
    async fn deployment_events(&self, key: &DeploymentKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.aggregate_events("deployment events", deployment_pk(key)).await
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, stack = %key.stack_name, %from, %to))]
    async fn stack_events(
        &self,
        key: &StackKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let pk = Subject::Stack(key.clone()).pk();
        // Sort keys hold whole seconds: the range is widened to the seconds around it, then cut exactly by time.
        let items = self
            .query(Query {
                operation: "Query (stack events)",
                index: None,
                key_condition: "#pk = :pk AND #sk BETWEEN :from AND :to",
                names: HashMap::from([
                    ("#pk".to_string(), "pk".to_string()),
                    ("#sk".to_string(), "sk".to_string()),
                    ("#event".to_string(), item::EVENT.to_string()),
                ]),
                values: HashMap::from([
                    (":pk".to_string(), s(&pk)),
                    (":from".to_string(), s(format!("EV#{}", item::sort_time(&from)))),
                    (":to".to_string(), s(format!("EV#{}~", item::sort_time(&to)))),
                ]),
                newest_first: false,
                limit: None,
                projection: Some("#pk, #event".to_string()),
            })
            .await?;
        let mut events = Vec::with_capacity(items.len());
        for found in &items {
            let event = item::series_event(found)?;
            if event.time >= from && event.time <= to {
                events.push(event);
            }
        }
        Ok(events)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, pipeline = %pipeline.pipeline, limit = limit))]
    async fn executions(&self, pipeline: &PipelineKey, limit: usize) -> Result<Vec<ExecutionSummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let names: HashMap<String, String> = item::SUMMARY_ATTRIBUTES
            .iter()
            .map(|a| (format!("#{a}"), a.to_string()))
            .collect();
        let projection = item::SUMMARY_ATTRIBUTES
            .iter()
            .map(|a| format!("#{a}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut query_names = names;
        query_names.insert("#gsi1pk".into(), "gsi1pk".into());
        let items = self
            .query(Query {
                operation: "Query (executions of a pipeline, index gsi1)",
                index: Some(item::GSI1),
                key_condition: "#gsi1pk = :pk",
                names: query_names,
                values: HashMap::from([(":pk".to_string(), s(pipeline_gsi_pk(pipeline)))]),
                newest_first: true,
                limit: Some(limit),
                projection: Some(projection),
            })
            .await?;
        items.iter().map(item::execution_summary).collect()
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, %day, limit = limit))]
    async fn rejected(&self, day: NaiveDate, limit: usize) -> Result<Vec<Rejected>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items = self
            .query(Query {
                operation: "Query (rejected messages)",
                index: None,
                key_condition: "#pk = :pk",
                names: HashMap::from([("#pk".to_string(), "pk".to_string())]),
                values: HashMap::from([(":pk".to_string(), s(rejected_pk(&day)))]),
                newest_first: true,
                limit: Some(limit),
                projection: None,
            })
            .await?;
        let mut out = items.iter().map(item::rejected).collect::<Result<Vec<_>, _>>()?;
        // The sort key holds milliseconds; order by the exact time as the in-memory store does.
        out.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        Ok(out)
    }

    /// One Query of GSI2 per UTC day of the range (`gsi2pk = EXECDAY#<day>`, paginated), oldest day first.
    #[tracing::instrument(skip_all, fields(table = %self.table, %from, %to))]
    async fn executions_started_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ExecutionKey>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut names: HashMap<String, String> = item::STARTED_ATTRIBUTES
            .iter()
            .map(|a| (format!("#{a}"), a.to_string()))
            .collect();
        let projection = item::STARTED_ATTRIBUTES
            .iter()
            .map(|a| format!("#{a}"))
            .collect::<Vec<_>>()
            .join(", ");
        names.insert(format!("#{}", item::GSI2_PK), item::GSI2_PK.to_string());
        // Sort keys hold whole seconds and start with the time, and every item of a day's partition has that day's
        // date: the same bounds serve every day. They are widened to the seconds around the range, then cut exactly.
        let (lower, upper) = (s(item::sort_time(&from)), s(format!("{}~", item::sort_time(&to))));
        let last_day = (to - chrono::Duration::nanoseconds(1)).date_naive();
        let mut found = Vec::new();
        let mut day = from.date_naive();
        while day <= last_day {
            let items = self
                .query(Query {
                    operation: "Query (executions started on a day, index gsi2)",
                    index: Some(item::GSI2),
                    key_condition: "#gsi2pk = :pk AND #gsi2sk BETWEEN :from AND :to",
                    names: names.clone(),
                    values: HashMap::from([
                        (":pk".to_string(), s(item::execution_day_pk(&day))),
                        (":from".to_string(), lower.clone()),
                        (":to".to_string(), upper.clone()),
                    ]),
                    newest_first: false,
                    limit: None,
                    projection: Some(projection.clone()),
                })
                .await?;
            for listed in &items {
                let (started_at, key) = item::started_execution(listed)?;
                if from <= started_at && started_at < to {
                    found.push((started_at, key));
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        found.sort();
        tracing::debug!(executions = found.len(), "executions listed by start day");
        Ok(found.into_iter().map(|(_, key)| key).collect())
    }
}

#[cfg(test)]
mod tests;

//! The stored form of Tollgate's records: which attributes each item type has, the update that records an event on
//! an aggregate item, and reading items back into domain values. The design is in docs/table-design.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use tollgate_domain::record::event::{DeliveryEvent, EventBody};
use tollgate_domain::record::keys::{pipeline_gsi_pk, ExecutionKey, Subject};
use tollgate_domain::record::ports::{ExecutionSummary, Mark, Rejected, StoreError};
use tollgate_domain::record::timeline::is_terminal;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Prefix of the attribute that holds one event of an aggregate: `ev:<event id>`.
pub(crate) const EVENT_PREFIX: &str = "ev:";
/// Prefix of a notification marker: `n:<notification key>`, set once the notification was published.
pub(crate) const MARKER_PREFIX: &str = "n:";
/// The event of a series item.
pub(crate) const EVENT: &str = "event";
/// Executions: the `<time>|<STATE>` of every pipeline-level event (a String Set).
pub(crate) const PIPELINE_STATES: &str = "pstates";
pub(crate) const GSI1: &str = "gsi1";
pub(crate) const GSI1_SK: &str = "gsi1sk";
pub(crate) const GSI2: &str = "gsi2";
pub(crate) const GSI2_PK: &str = "gsi2pk";
pub(crate) const GSI2_SK: &str = "gsi2sk";

/// The coarse status of a deployment that has not ended, in GSI2.
pub(crate) const IN_PROGRESS: &str = "IN_PROGRESS";

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn event_attr(event_id: &str) -> String {
    format!("{EVENT_PREFIX}{event_id}")
}

pub(crate) fn marker_attr(key: &str) -> String {
    format!("{MARKER_PREFIX}{key}")
}

/// Time in sort keys: whole seconds, fixed width, so text order is time order (the form of `keys::series_sk`).
pub(crate) fn sort_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Time in plain attributes: as precise as the value, so it reads back equal.
fn exact_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Time in the sort key of rejected messages: fixed-width milliseconds (SQS timestamps are milliseconds).
pub(crate) fn rejected_sk(r: &Rejected) -> String {
    format!(
        "{}#{}",
        r.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        r.message_id
    )
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

pub(crate) fn ttl(time: &DateTime<Utc>, retention_days: i64) -> AttributeValue {
    let expires = *time + Duration::days(retention_days);
    AttributeValue::N(expires.timestamp().to_string())
}

pub(crate) fn event_json(event: &DeliveryEvent) -> Result<String, StoreError> {
    serde_json::to_string(event)
        .map_err(|e| StoreError::Permanent(format!("event {} cannot be serialized: {e}", event.id)))
}

/// An update expression with its attribute names and values, built clause by clause.
#[derive(Debug, Default)]
pub(crate) struct Update {
    set: Vec<String>,
    add: Vec<String>,
    pub(crate) names: HashMap<String, String>,
    pub(crate) values: HashMap<String, AttributeValue>,
}

impl Update {
    /// `#p = :p` (always) or `#p = if_not_exists(#p, :p)` (first writer wins), naming `attr` by placeholder `p`.
    fn set_as(&mut self, placeholder: &str, attr: &str, value: AttributeValue, if_absent: bool) {
        self.names.insert(format!("#{placeholder}"), attr.to_string());
        self.values.insert(format!(":{placeholder}"), value);
        self.set.push(if if_absent {
            format!("#{placeholder} = if_not_exists(#{placeholder}, :{placeholder})")
        } else {
            format!("#{placeholder} = :{placeholder}")
        });
    }

    fn set_if_absent(&mut self, attr: &str, value: AttributeValue) {
        self.set_as(attr, attr, value, true);
    }

    /// `ADD #attr :attr`: a set union, which commutes with every other writer's.
    fn add(&mut self, attr: &str, value: AttributeValue) {
        self.names.insert(format!("#{attr}"), attr.to_string());
        self.values.insert(format!(":{attr}"), value);
        self.add.push(format!("#{attr} :{attr}"));
    }

    pub(crate) fn expression(&self) -> String {
        let mut clauses = Vec::new();
        if !self.set.is_empty() {
            clauses.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.add.is_empty() {
            clauses.push(format!("ADD {}", self.add.join(", ")));
        }
        clauses.join(" ")
    }
}

/// Placeholder of the event attribute in the recording update; its condition is `attribute_not_exists(#ev)`.
pub(crate) const EVENT_PLACEHOLDER: &str = "ev";

/// The update that records `event` on its aggregate item: the event as attribute `ev:<id>`, and the attributes that
/// describe the record (set by the first event, never changed) or index it (GSI1, GSI2).
pub(crate) fn aggregate_update(
    event: &DeliveryEvent,
    subject: &Subject,
    retention_days: i64,
) -> Result<Update, StoreError> {
    let mut u = Update::default();
    u.set_as(EVENT_PLACEHOLDER, &event_attr(&event.id), s(event_json(event)?), false);
    u.set_if_absent("ttl", ttl(&event.time, retention_days));
    u.set_if_absent("account", s(&event.account));
    u.set_if_absent("region", s(&event.region));
    match subject {
        Subject::Execution(key) => execution_attributes(&mut u, event, key),
        Subject::Build(key) => {
            u.set_if_absent("kind", s("build"));
            u.set_if_absent("build_id", s(&key.build_id));
            if let EventBody::BuildState(b) = &event.body {
                u.set_if_absent("project", s(&b.project));
            } else if let EventBody::BuildPhase(b) = &event.body {
                u.set_if_absent("project", s(&b.project));
            }
        }
        Subject::Deployment(key) => {
            u.set_if_absent("kind", s("deployment"));
            u.set_if_absent("deployment_id", s(&key.deployment_id));
            if let EventBody::DeploymentState(d) = &event.body {
                u.set_if_absent("application", s(&d.application));
                u.set_if_absent("deployment_group", s(&d.deployment_group));
                // Terminal states overwrite, anything else only fills in: whatever the arrival order, the item ends
                // under the status of its terminal event once that arrived, and under IN_PROGRESS until then.
                let terminal = is_terminal(&d.state);
                let status = if terminal { d.state.as_str() } else { IN_PROGRESS };
                let gsi2sk = format!(
                    "{}#{}#{}#{}",
                    sort_time(&event.time),
                    key.account,
                    key.region,
                    key.deployment_id
                );
                u.set_as("gsi2pk", "gsi2pk", s(format!("DEPLOY#{status}")), !terminal);
                u.set_as("gsi2sk", "gsi2sk", s(gsi2sk), !terminal);
            }
        }
        // Series subjects are stored as one item per event (`series_item`), never through this update.
        _ => {}
    }
    Ok(u)
}

fn execution_attributes(u: &mut Update, event: &DeliveryEvent, key: &ExecutionKey) {
    u.set_if_absent("kind", s("execution"));
    u.set_if_absent("pipeline", s(&key.pipeline));
    u.set_if_absent("execution_id", s(&key.execution_id));
    u.set_if_absent("gsi1pk", s(pipeline_gsi_pk(&key.pipeline_key())));
    // The start time is the pipeline's STARTED when known, else the first event recorded (as the in-memory store).
    let started = matches!(&event.body, EventBody::PipelineExecution(p) if p.state == "STARTED");
    let gsi1sk = format!("{}#{}", sort_time(&event.time), key.execution_id);
    u.set_as(GSI1_SK, GSI1_SK, s(gsi1sk), !started);
    // The same start, listed by day across pipelines (GSI2): written with the same rule, so both indexes agree.
    u.set_as(
        GSI2_PK,
        GSI2_PK,
        s(execution_day_pk(&event.time.date_naive())),
        !started,
    );
    u.set_as(GSI2_SK, GSI2_SK, s(execution_day_sk(&event.time, key)), !started);
    if let EventBody::PipelineExecution(p) = &event.body {
        let state = format!("{}|{}", exact_time(&event.time), p.state);
        u.add(PIPELINE_STATES, AttributeValue::Ss(vec![state]));
    }
}

/// GSI2 partition of the executions started on one UTC day: `EXECDAY#<yyyy-mm-dd>`.
pub(crate) fn execution_day_pk(day: &NaiveDate) -> String {
    format!("EXECDAY#{}", day.format("%Y-%m-%d"))
}

/// GSI2 sort key of an execution: `<start, whole seconds>#<account>#<region>#<pipeline>#<execution id>`, so a time
/// range is a key condition and executions that started in the same second stay distinct.
pub(crate) fn execution_day_sk(started: &DateTime<Utc>, key: &ExecutionKey) -> String {
    format!(
        "{}#{}#{}#{}#{}",
        sort_time(started),
        key.account,
        key.region,
        key.pipeline,
        key.execution_id
    )
}

/// A series item: one event, under its subject's partition, sorted by time.
pub(crate) fn series_item(
    event: &DeliveryEvent,
    pk: String,
    sk: String,
    retention_days: i64,
) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(sk)),
        (EVENT.to_string(), s(event_json(event)?)),
        ("kind".to_string(), s(event.kind().as_str())),
        ("account".to_string(), s(&event.account)),
        ("region".to_string(), s(&event.region)),
        ("ttl".to_string(), ttl(&event.time, retention_days)),
    ]))
}

pub(crate) fn rejected_item(r: &Rejected, pk: String, retention_days: i64) -> Item {
    HashMap::from([
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(rejected_sk(r))),
        ("kind".to_string(), s("rejected")),
        ("message_id".to_string(), s(&r.message_id)),
        ("received_at".to_string(), s(exact_time(&r.received_at))),
        ("reason".to_string(), s(&r.reason)),
        ("body".to_string(), s(&r.body)),
        ("ttl".to_string(), ttl(&r.received_at, retention_days)),
    ])
}

fn item_pk(item: &Item) -> &str {
    item.get("pk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("(no pk)")
}

fn string_attr<'a>(pk: &str, item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        Some(other) => Err(StoreError::Permanent(format!(
            "item {pk}: attribute {name} should be a string, found {other:?}"
        ))),
        None => Err(StoreError::Permanent(format!("item {pk}: attribute {name} is missing"))),
    }
}

fn parse_event(pk: &str, name: &str, value: &AttributeValue) -> Result<DeliveryEvent, StoreError> {
    let AttributeValue::S(json) = value else {
        return Err(StoreError::Permanent(format!(
            "item {pk}: attribute {name} should hold an event as a JSON string"
        )));
    };
    serde_json::from_str(json).map_err(|e| {
        StoreError::Permanent(format!(
            "item {pk}: attribute {name} does not hold a readable event: {e}"
        ))
    })
}

/// Every event of an aggregate item, in event-id order (the in-memory store's order).
pub(crate) fn aggregate_history(pk: &str, item: &Item) -> Result<Vec<DeliveryEvent>, StoreError> {
    let mut events = item
        .iter()
        .filter(|(name, _)| name.starts_with(EVENT_PREFIX))
        .map(|(name, value)| parse_event(pk, name, value))
        .collect::<Result<Vec<_>, _>>()?;
    events.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(events)
}

/// The event of a series item.
pub(crate) fn series_event(item: &Item) -> Result<DeliveryEvent, StoreError> {
    let pk = item_pk(item);
    match item.get(EVENT) {
        Some(value) => parse_event(pk, EVENT, value),
        None => Err(StoreError::Permanent(format!(
            "item {pk}: attribute {EVENT} is missing"
        ))),
    }
}

/// The notification markers of an item, by notification key.
pub(crate) fn notified(item: &Item) -> BTreeMap<String, Mark> {
    item.iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(MARKER_PREFIX)?;
            // A marker that is not a string (written by hand?) counts as sent: never publish twice.
            let mark = value.as_s().map(|v| Mark::decode(v)).unwrap_or(Mark::Sent);
            Some((key.to_string(), mark))
        })
        .collect()
}

/// The attributes GSI1 must return for an [`ExecutionSummary`] (the index may project only these).
pub(crate) const SUMMARY_ATTRIBUTES: [&str; 7] = [
    "pk",
    "account",
    "region",
    "pipeline",
    "execution_id",
    GSI1_SK,
    PIPELINE_STATES,
];

/// The attributes GSI2 must return for an execution listed by day (the index may project only these).
pub(crate) const STARTED_ATTRIBUTES: [&str; 6] = ["pk", "account", "region", "pipeline", "execution_id", GSI2_SK];

/// An execution as listed by day from GSI2: its start (from the sort key) and its key (from the attributes).
pub(crate) fn started_execution(item: &Item) -> Result<(DateTime<Utc>, ExecutionKey), StoreError> {
    let pk = item_pk(item);
    let key = ExecutionKey {
        account: string_attr(pk, item, "account")?.to_string(),
        region: string_attr(pk, item, "region")?.to_string(),
        pipeline: string_attr(pk, item, "pipeline")?.to_string(),
        execution_id: string_attr(pk, item, "execution_id")?.to_string(),
    };
    let gsi2sk = string_attr(pk, item, GSI2_SK)?;
    let started_at = gsi2sk
        .split_once('#')
        .and_then(|(time, _)| parse_time(time))
        .ok_or_else(|| StoreError::Permanent(format!("item {pk}: {GSI2_SK} {gsi2sk:?} does not start with a time")))?;
    Ok((started_at, key))
}

/// An execution as listed from GSI1.
pub(crate) fn execution_summary(item: &Item) -> Result<ExecutionSummary, StoreError> {
    let pk = item_pk(item);
    let key = ExecutionKey {
        account: string_attr(pk, item, "account")?.to_string(),
        region: string_attr(pk, item, "region")?.to_string(),
        pipeline: string_attr(pk, item, "pipeline")?.to_string(),
        execution_id: string_attr(pk, item, "execution_id")?.to_string(),
    };
    let gsi1sk = string_attr(pk, item, GSI1_SK)?;
    let started_at = gsi1sk
        .split_once('#')
        .and_then(|(time, _)| parse_time(time))
        .ok_or_else(|| StoreError::Permanent(format!("item {pk}: {GSI1_SK} {gsi1sk:?} does not start with a time")))?;
    let mut states = BTreeSet::new();
    match item.get(PIPELINE_STATES) {
        None => {}
        Some(AttributeValue::Ss(values)) => {
            for value in values {
                let state = value
                    .split_once('|')
                    .and_then(|(t, s)| Some((parse_time(t)?, s.to_string())));
                let state = state.ok_or_else(|| {
                    StoreError::Permanent(format!(
                        "item {pk}: {PIPELINE_STATES} holds {value:?}, not <time>|<STATE>"
                    ))
                })?;
                states.insert(state);
            }
        }
        Some(other) => {
            return Err(StoreError::Permanent(format!(
                "item {pk}: {PIPELINE_STATES} should be a string set, found {other:?}"
            )))
        }
    }
    Ok(ExecutionSummary {
        key,
        started_at,
        pipeline_states: states.into_iter().collect(),
    })
}

pub(crate) fn rejected(item: &Item) -> Result<Rejected, StoreError> {
    let pk = item_pk(item);
    let received_text = string_attr(pk, item, "received_at")?;
    let received_at = parse_time(received_text).ok_or_else(|| {
        StoreError::Permanent(format!(
            "item {pk}: received_at {received_text:?} is not an RFC 3339 time"
        ))
    })?;
    Ok(Rejected {
        message_id: string_attr(pk, item, "message_id")?.to_string(),
        received_at,
        reason: string_attr(pk, item, "reason")?.to_string(),
        body: string_attr(pk, item, "body")?.to_string(),
    })
}

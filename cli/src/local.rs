//! Runs Tollgate against a local AWS endpoint (moto server): provisions what the template deploys, sends delivery
//! events through EventBridge, and drives the real `ingest` handler from the SQS queue the rules fill, the way the
//! Lambda event source mapping would (batches of 10, partial batch responses, redelivery after the visibility timeout).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{json, Value};
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::ingest::service::{FailureWait, Ingestor};

use crate::template::{TableSpec, Template};

/// A failure of the local run, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{action}: {message}")]
    Aws { action: String, message: String },
    #[error("{0}")]
    Input(String),
}

fn aws<E: std::fmt::Display>(action: impl Into<String>) -> impl FnOnce(E) -> LocalError {
    let action = action.into();
    move |e| LocalError::Aws {
        action,
        message: format!("{e}"),
    }
}

/// Counts AWS requests by service and operation, as sent on the wire (retries included).
#[derive(Debug, Default, Clone)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests made since `earlier`, by operation.
    pub fn since(&self, earlier: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        self.snapshot()
            .into_iter()
            .map(|(k, v)| (k.clone(), v - earlier.get(&k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            let key = format!("{}.{}", m.service(), m.name());
            *self
                .counts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_default() += 1;
        }
        Ok(())
    }
}

/// SDK clients of the local run, each metered.
#[derive(Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub counter: RequestCounter,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        let counter = RequestCounter::default();
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            sns: aws_sdk_sns::Client::from_conf(
                aws_sdk_sns::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            events: aws_sdk_eventbridge::Client::from_conf(
                aws_sdk_eventbridge::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            counter,
        }
    }
}

/// Names of the local resources; a prefix keeps parallel test runs apart.
#[derive(Debug, Clone)]
pub struct Names {
    pub table: String,
    pub topic: String,
    pub queue: String,
    pub dlq: String,
    pub inbox: String,
    pub bus: String,
}

impl Names {
    pub fn with_prefix(prefix: &str) -> Names {
        Names {
            table: format!("{prefix}-table"),
            topic: format!("{prefix}-notifications"),
            queue: format!("{prefix}-ingest"),
            dlq: format!("{prefix}-ingest-dlq"),
            inbox: format!("{prefix}-inbox"),
            bus: format!("{prefix}-bus"),
        }
    }
}

/// What was provisioned.
#[derive(Debug, Clone)]
pub struct LocalEnv {
    pub names: Names,
    pub topic_arn: String,
    pub queue_url: String,
    pub dlq_url: String,
    /// A queue subscribed to the topic: what chat and email would receive.
    pub inbox_url: String,
    pub rules: Vec<String>,
}

/// Visibility timeout of the local ingest queue: short, so a retried message comes back within the run.
const LOCAL_VISIBILITY_SECS: i32 = 2;

/// Creates (or finds) the table, topic, queues, bus and rules of the template on the local endpoint.
pub async fn provision(c: &Clients, template: &Template, names: &Names) -> Result<LocalEnv, LocalError> {
    let table = template
        .table
        .as_ref()
        .ok_or_else(|| LocalError::Input("the template defines no DynamoDB table".into()))?;
    create_table(c, table, &names.table).await?;

    let topic_arn = c
        .sns
        .create_topic()
        .name(&names.topic)
        .send()
        .await
        .map_err(aws("creating the SNS topic"))?
        .topic_arn
        .unwrap_or_default();

    let dlq_url = create_queue(c, &names.dlq, None).await?;
    let dlq_arn = queue_arn(c, &dlq_url).await?;
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string();
    let queue_url = create_queue(c, &names.queue, Some(redrive)).await?;
    let ingest_queue_arn = queue_arn(c, &queue_url).await?;

    let inbox_url = create_queue(c, &names.inbox, None).await?;
    let inbox_arn = queue_arn(c, &inbox_url).await?;
    c.sns
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&inbox_arn)
        .send()
        .await
        .map_err(aws("subscribing the inbox queue to the topic"))?;

    match c.events.create_event_bus().name(&names.bus).send().await {
        Ok(_) => {}
        Err(e) if format!("{:?}", e).contains("ResourceAlreadyExists") => {}
        Err(e) => {
            return Err(aws("creating the event bus")(
                aws_sdk_eventbridge::error::DisplayErrorContext(e),
            ))
        }
    }
    let mut rules = Vec::new();
    for rule in template.rules.iter().filter(|r| r.is_delivery()) {
        let bus = if rule.on_custom_bus {
            names.bus.as_str()
        } else {
            "default"
        };
        let name = format!("{}-{}", names.bus, rule.logical_id);
        c.events
            .put_rule()
            .name(&name)
            .event_bus_name(bus)
            .event_pattern(rule.pattern.to_string())
            .send()
            .await
            .map_err(aws(format!("creating rule {name}")))?;
        c.events
            .put_targets()
            .rule(&name)
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("IngestQueue")
                    .arn(&ingest_queue_arn)
                    .build()
                    .map_err(aws("building the rule target"))?,
            )
            .send()
            .await
            .map_err(aws(format!("targeting rule {name} at the ingest queue")))?;
        rules.push(format!("{name} (on the {bus} bus)"));
    }
    Ok(LocalEnv {
        names: names.clone(),
        topic_arn,
        queue_url,
        dlq_url,
        inbox_url,
        rules,
    })
}

async fn create_table(c: &Clients, spec: &TableSpec, name: &str) -> Result<(), LocalError> {
    let key = |pairs: &[(String, String)]| -> Result<Vec<KeySchemaElement>, LocalError> {
        pairs
            .iter()
            .map(|(attr, kind)| {
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(KeyType::from(kind.as_str()))
                    .build()
                    .map_err(aws("reading the table's key schema"))
            })
            .collect()
    };
    let mut req = c
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key(&spec.key_schema)?));
    for (attr, ty) in &spec.attribute_definitions {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::from(ty.as_str()))
                .build()
                .map_err(aws("reading the table's attribute definitions"))?,
        );
    }
    for index in &spec.global_secondary_indexes {
        let non_key = (!index.non_key_attributes.is_empty()).then(|| index.non_key_attributes.clone());
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key(&index.key_schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection_type.as_str()))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()
                .map_err(aws("reading the table's indexes"))?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(e) if format!("{e:?}").contains("ResourceInUseException") => return Ok(()),
        Err(e) => {
            return Err(aws("creating the table")(aws_sdk_dynamodb::error::DisplayErrorContext(
                e,
            )))
        }
    }
    if let Some(attr) = &spec.ttl_attribute {
        c.dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()
                    .map_err(aws("building the TTL specification"))?,
            )
            .send()
            .await
            .map_err(aws("enabling TTL"))?;
    }
    Ok(())
}

async fn create_queue(c: &Clients, name: &str, redrive: Option<String>) -> Result<String, LocalError> {
    let mut req = c
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, LOCAL_VISIBILITY_SECS.to_string());
    if let Some(r) = redrive {
        req = req.attributes(QueueAttributeName::RedrivePolicy, r);
    }
    Ok(req
        .send()
        .await
        .map_err(aws(format!("creating queue {name}")))?
        .queue_url
        .unwrap_or_default())
}

async fn queue_arn(c: &Clients, url: &str) -> Result<String, LocalError> {
    let out = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws(format!("reading the ARN of {url}")))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| LocalError::Input(format!("queue {url} has no ARN")))
}

/// A deterministic pseudo-random sequence (splitmix64), so a seed reproduces a delivery order.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the story is delivered: each event displaced by up to `window` positions, and sent twice with probability
/// `duplicate_rate`.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPlan {
    pub seed: u64,
    pub window: usize,
    pub duplicate_rate: f64,
}

/// The delivery order of `n` events: indices, some repeated, reordered within the window.
pub fn delivery_order(n: usize, plan: DeliveryPlan) -> Vec<usize> {
    let mut rng = Rng::new(plan.seed);
    let mut keyed: Vec<(f64, usize)> = Vec::new();
    for i in 0..n {
        keyed.push((i as f64 + rng.unit() * plan.window as f64, i));
        if rng.unit() < plan.duplicate_rate {
            keyed.push((i as f64 + rng.unit() * plan.window as f64 * 2.0, i));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Sends events through EventBridge onto the given bus, 10 per PutEvents call. Returns the number accepted.
pub async fn put_events(c: &Clients, bus: &str, events: &[&Value]) -> Result<usize, LocalError> {
    let mut accepted = 0;
    for chunk in events.chunks(10) {
        let mut entries = Vec::new();
        for e in chunk {
            let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let time = chrono::DateTime::parse_from_rfc3339(&field("time"))
                .map_err(|err| LocalError::Input(format!("event {} has no valid time: {err}", field("id"))))?;
            let resources: Vec<String> = e["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
            entries.push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source(field("source"))
                    .detail_type(field("detail-type"))
                    .detail(e["detail"].to_string())
                    .time(aws_smithy_types::DateTime::from_secs(time.timestamp()))
                    .set_resources(Some(resources))
                    .build(),
            );
        }
        let out = c
            .events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws("sending events to EventBridge"))?;
        let failed = out.failed_entry_count();
        if failed > 0 {
            return Err(LocalError::Input(format!(
                "EventBridge refused {failed} events: {:?}",
                out.entries()
            )));
        }
        accepted += chunk.len();
    }
    Ok(accepted)
}

/// What draining the queue did.
#[derive(Debug, Default, Clone)]
pub struct PumpReport {
    pub batches: u32,
    pub deliveries: u32,
    pub recorded: u32,
    pub duplicates: u32,
    pub rejected: u32,
    pub retried: u32,
    pub notifications: u32,
    /// Messages processed but deliberately not acknowledged, so that SQS delivered them again.
    pub unacknowledged: u32,
}

/// Drives the real ingest handler from the queue until it is empty, like Lambda's SQS event source mapping.
/// `lose_ack_rate` simulates a function that processed a message but died before SQS heard about it: the message
/// is not deleted the first time and comes back after the visibility timeout.
pub async fn pump<S, N>(
    c: &Clients,
    queue_url: &str,
    ingestor: &Ingestor<S, N>,
    lose_ack_rate: f64,
    seed: u64,
    deadline: Duration,
) -> Result<PumpReport, LocalError>
where
    S: tollgate_domain::record::ports::EventRecorder + tollgate_domain::record::ports::TimelineQueries + 'static,
    N: tollgate_domain::tell::ports::Notifier + 'static,
{
    let started = Instant::now();
    let mut rng = Rng::new(seed ^ 0xA5A5);
    let mut ack_lost_once: HashSet<String> = HashSet::new();
    let mut report = PumpReport::default();
    let mut idle_polls = 0;
    while started.elapsed() < deadline {
        let out = c
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(aws("receiving from the ingest queue"))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            // Short polls: the local endpoint serves one request at a time, a long poll would stall everyone.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if queue_is_drained(c, queue_url).await? {
                idle_polls += 1;
                if idle_polls >= 2 {
                    return Ok(report);
                }
            }
            continue;
        }
        idle_polls = 0;
        report.batches += 1;
        report.deliveries += messages.len() as u32;
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: BTreeMap<String, String> = m
                    .attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "eventSource": "aws:sqs",
                })
            })
            .collect();
        let batch: SqsEvent = serde_json::from_value(json!({ "Records": records }))
            .map_err(|e| LocalError::Input(format!("cannot build the SQS batch: {e}")))?;
        let (response, stats) = ingest::handler::handle_batch(ingestor, batch).await;
        report.recorded += stats.recorded;
        report.duplicates += stats.duplicates;
        report.rejected += stats.rejected;
        report.retried += stats.retried;
        report.notifications += stats.notifications;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let mut deletes = Vec::new();
        for m in &messages {
            let id = m.message_id().unwrap_or_default();
            if failed.contains(id) {
                continue;
            }
            if rng.unit() < lose_ack_rate && ack_lost_once.insert(id.to_string()) {
                report.unacknowledged += 1;
                continue;
            }
            deletes.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{}", deletes.len()))
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .map_err(aws("building a delete entry"))?,
            );
        }
        if !deletes.is_empty() {
            c.sqs
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(aws("acknowledging messages"))?;
        }
    }
    Err(LocalError::Input(format!(
        "the ingest queue was not drained within {}s",
        deadline.as_secs()
    )))
}

async fn queue_is_drained(c: &Clients, url: &str) -> Result<bool, LocalError> {
    let out = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(aws("reading the queue depth"))?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(QueueAttributeName::ApproximateNumberOfMessages) == 0
        && n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0)
}

/// A notification as it reached a subscriber of the topic.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub subject: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// The chat document (Amazon Q Developer in chat applications custom notification).
    pub chat: Value,
}

/// Reads every notification waiting in the inbox queue (and deletes them).
pub async fn drain_inbox(c: &Clients, inbox_url: &str) -> Result<Vec<Delivered>, LocalError> {
    let mut out = Vec::new();
    loop {
        let got = c
            .sqs
            .receive_message()
            .queue_url(inbox_url)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(aws("reading the notification inbox"))?;
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(out);
        }
        for m in &messages {
            let envelope: Value = serde_json::from_str(m.body().unwrap_or_default())
                .map_err(|e| LocalError::Input(format!("an inbox message is not an SNS envelope: {e}")))?;
            let chat = envelope["Message"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            let attributes = envelope["MessageAttributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v["Value"].as_str().unwrap_or_default().to_string()))
                .collect();
            out.push(Delivered {
                subject: envelope["Subject"].as_str().map(str::to_string),
                attributes,
                chat,
            });
            c.sqs
                .delete_message()
                .queue_url(inbox_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(aws("deleting an inbox message"))?;
        }
    }
}

/// The real adapters over the local endpoint.
pub fn ingestor(c: &Clients, env: &LocalEnv) -> Ingestor<DynamoDbStore, SnsNotifier> {
    // The Lambda function's waits, shortened to the local queue's visibility timeout.
    Ingestor::new(
        Arc::new(DynamoDbStore::new(c.dynamodb.clone(), env.names.table.clone(), 400)),
        Arc::new(SnsNotifier::new(c.sns.clone(), env.topic_arn.clone())),
    )
    .with_failure_wait(FailureWait {
        settle: Duration::from_millis(300),
        defer_receives: 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_order_is_deterministic_for_a_seed_and_keeps_every_event() {
        let plan = DeliveryPlan {
            seed: 7,
            window: 4,
            duplicate_rate: 0.3,
        };
        let a = delivery_order(50, plan);
        assert_eq!(a, delivery_order(50, plan));
        let distinct: HashSet<usize> = a.iter().copied().collect();
        assert_eq!(distinct.len(), 50, "every event is delivered at least once");
        assert!(a.len() > 50, "some are duplicated");
        assert_ne!(a, (0..50).collect::<Vec<_>>(), "the order is shuffled");
        assert_ne!(a, delivery_order(50, DeliveryPlan { seed: 8, ..plan }));
    }
}

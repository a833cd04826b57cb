//! Drives the real ingest handler from a real SQS queue, the way Lambda's event source mapping does: several pollers
//! receive batches of 10, invoke the handler, delete what it acknowledged and leave the rest to come back after the
//! visibility timeout (and, after the queue's maxReceiveCount, to land in its dead-letter queue). Unlike
//! `tollgate local demo`'s pump, a failed SQS call is not fatal here: under injected faults a receive or a delete
//! fails as it can on AWS, and the poller carries on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use tollgate_domain::ingest::service::Ingestor;
use tollgate_domain::record::ports::{EventRecorder, TimelineQueries};
use tollgate_domain::tell::notify::Notification;
use tollgate_domain::tell::ports::{Notifier, NotifyError};

/// SDK configuration for a local endpoint (moto, or the fault proxy in front of it): `max_attempts` as
/// `TOLLGATE_MAX_ATTEMPTS` sets it (1 = no SDK retry), and a per-attempt timeout so that a stalled answer fails the
/// attempt instead of hanging the caller.
pub async fn sdk_config(endpoint: &str, max_attempts: u32, attempt_timeout: Duration) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .load()
        .await
}

/// A notification's identity: the same notification published twice has the same one.
pub type NotificationId = (String, String, String);

pub fn notification_id(n: &Notification) -> NotificationId {
    (n.kind.as_str().to_string(), n.thread.clone(), n.key.clone())
}

/// Wraps a notifier and counts every publish the handler saw succeed, by notification.
pub struct CountingNotifier<N> {
    inner: N,
    published: Mutex<BTreeMap<NotificationId, u32>>,
}

impl<N> CountingNotifier<N> {
    pub fn new(inner: N) -> Self {
        CountingNotifier {
            inner,
            published: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn published(&self) -> BTreeMap<NotificationId, u32> {
        self.published.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl<N: Notifier> Notifier for CountingNotifier<N> {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.inner.publish(notification).await?;
        *self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(notification_id(notification))
            .or_default() += 1;
        Ok(())
    }
}

/// What draining a queue did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    pub batches: u64,
    pub deliveries: u64,
    /// Deliveries of a message id seen before: SQS redeliveries after a failure or a lost acknowledgement.
    pub redeliveries: u64,
    pub distinct_messages: u64,
    pub recorded: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Messages the handler returned in `batchItemFailures`.
    pub retried: u64,
    pub notifications: u64,
    pub receive_errors: u64,
    /// Acknowledgements that failed (the message comes back and is found already recorded).
    pub delete_errors: u64,
}

impl DrainReport {
    fn add(&mut self, other: &DrainReport) {
        self.batches += other.batches;
        self.deliveries += other.deliveries;
        self.recorded += other.recorded;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.retried += other.retried;
        self.notifications += other.notifications;
        self.receive_errors += other.receive_errors;
        self.delete_errors += other.delete_errors;
    }
}

/// The drain did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("queue {queue} still held messages after {secs}s; raise the deadline or look for a stuck message")]
    Deadline { queue: String, secs: u64 },
    #[error("reading the depth of queue {queue} through the direct client failed: {message}")]
    Depth { queue: String, message: String },
}

/// Drains `queue_url` with `pollers` concurrent pollers using `sqs` (which may go through the fault proxy), until
/// `depth_client` (direct) sees the queue empty twice in a row. Every invocation runs to its end (the function
/// timeout is never reached, as the template's visibility timeout of several function timeouts intends); a batch that
/// outlives the visibility timeout is delivered again meanwhile, which the handler is built for. `deadline` only
/// guards against a hang; no outcome depends on it.
pub async fn drain<S, N>(
    sqs: &aws_sdk_sqs::Client,
    depth_client: &aws_sdk_sqs::Client,
    queue_url: &str,
    ingestor: &Ingestor<S, N>,
    pollers: usize,
    deadline: Duration,
) -> Result<DrainReport, DrainError>
where
    S: EventRecorder + TimelineQueries + 'static,
    N: Notifier + 'static,
{
    let started = Instant::now();
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..pollers.max(1) {
        let (sqs, queue_url, ingestor, seen, stop) = (
            sqs.clone(),
            queue_url.to_string(),
            ingestor.clone(),
            seen.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut report = DrainReport::default();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                poll_once(&sqs, &queue_url, &ingestor, &seen, &mut report).await;
            }
            report
        });
    }
    let mut empty_checks = 0;
    let outcome = loop {
        if started.elapsed() > deadline {
            break Err(DrainError::Deadline {
                queue: queue_url.to_string(),
                secs: deadline.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match queue_depth(depth_client, queue_url).await {
            Ok(0) => {
                empty_checks += 1;
                if empty_checks >= 2 {
                    break Ok(());
                }
            }
            Ok(_) => empty_checks = 0,
            Err(message) => {
                break Err(DrainError::Depth {
                    queue: queue_url.to_string(),
                    message,
                })
            }
        }
    };
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = DrainReport::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok(report) = done {
            total.add(&report);
        }
    }
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    total.distinct_messages = seen.len() as u64;
    total.redeliveries = seen.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    outcome.map(|()| total)
}

/// Visible plus in-flight messages.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<u64, String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
        + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

async fn poll_once<S, N>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    ingestor: &Ingestor<S, N>,
    seen: &Mutex<HashMap<String, u32>>,
    report: &mut DrainReport,
) where
    S: EventRecorder + TimelineQueries + 'static,
    N: Notifier + 'static,
{
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await;
    let messages = match received {
        Ok(out) => out.messages.unwrap_or_default(),
        Err(_) => {
            // A receive whose answer was lost leaves its messages in flight until the visibility timeout: exactly
            // what happens to a poller on AWS.
            report.receive_errors += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    };
    if messages.is_empty() {
        // Short polls with a pause: moto serves one request at a time and a long poll would stall everyone.
        tokio::time::sleep(Duration::from_millis(150)).await;
        return;
    }
    report.batches += 1;
    report.deliveries += messages.len() as u64;
    {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        for m in &messages {
            *seen.entry(m.message_id().unwrap_or_default().to_string()).or_default() += 1;
        }
    }
    let (response, stats) = ingest::handler::handle_batch(ingestor, sqs_event(&messages)).await;
    report.recorded += u64::from(stats.recorded);
    report.duplicates += u64::from(stats.duplicates);
    report.rejected += u64::from(stats.rejected);
    report.retried += u64::from(stats.retried);
    report.notifications += u64::from(stats.notifications);
    let failed: std::collections::HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let deletes: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("d{i}"))
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .ok()
        })
        .collect();
    if deletes.is_empty() {
        return;
    }
    let n = deletes.len() as u64;
    match sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(deletes))
        .send()
        .await
    {
        Ok(out) => report.delete_errors += out.failed().len() as u64,
        Err(_) => report.delete_errors += n,
    }
}

/// The Lambda SQS event for received messages, with the attributes the handler reads.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id().map(str::to_string);
        record.receipt_handle = m.receipt_handle().map(str::to_string);
        record.body = m.body().map(str::to_string);
        record.event_source = Some("aws:sqs".into());
        record.attributes = m
            .attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
            .collect();
        event.records.push(record);
    }
    event
}

/// The ingest path's timings: the function's timeout, the queue's visibility timeout and its maxReceiveCount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTiming {
    pub function_timeout: Duration,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
}

impl QueueTiming {
    /// The ingest function's and queue's timings as `infra/template.yaml` sets them.
    pub fn of_template(path: &std::path::Path) -> QueueTiming {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("the template is YAML");
        let resources = &doc["Resources"];
        let number = |v: &serde_yaml::Value, what: &str| -> u64 {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("the template sets no number at {what}"))
        };
        let queue = &resources["IngestQueue"]["Properties"];
        QueueTiming {
            function_timeout: Duration::from_secs(number(
                &resources["IngestFunction"]["Properties"]["Timeout"],
                "IngestFunction.Timeout",
            )),
            visibility_timeout: Duration::from_secs(number(
                &queue["VisibilityTimeout"],
                "IngestQueue.VisibilityTimeout",
            )),
            max_receive_count: number(
                &queue["RedrivePolicy"]["maxReceiveCount"],
                "IngestQueue.RedrivePolicy.maxReceiveCount",
            ) as u32,
        }
    }

    /// The same proportions around another function timeout: the visibility timeout keeps its ratio to the function
    /// timeout, the receive count stays.
    pub fn scaled_to(&self, function_timeout: Duration) -> QueueTiming {
        let ratio = self.visibility_timeout.as_secs_f64() / self.function_timeout.as_secs_f64();
        QueueTiming {
            function_timeout,
            visibility_timeout: Duration::from_secs((function_timeout.as_secs_f64() * ratio).ceil() as u64),
            max_receive_count: self.max_receive_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_timings_keep_the_visibility_timeout_well_above_the_function_timeout() {
        let t = QueueTiming::of_template(&crate::workspace("infra/template.yaml"));
        assert!(t.visibility_timeout >= t.function_timeout * 6, "{t:?}");
        assert!(t.max_receive_count >= 3, "{t:?}");
        let s = t.scaled_to(Duration::from_secs(6));
        assert_eq!(s.function_timeout, Duration::from_secs(6));
        assert_eq!(s.max_receive_count, t.max_receive_count);
        assert_eq!(
            s.visibility_timeout.as_secs() * t.function_timeout.as_secs(),
            6 * t.visibility_timeout.as_secs()
        );
    }
}

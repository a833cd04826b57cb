//! `tollgate dlq list | redrive`: the ingest queue's dead-letter queue, seen and emptied back into the queue.
//!
//! A message lands in the dead-letter queue after the ingest queue's maxReceiveCount failed receives (throttling or an
//! outage that outlasted the retries). Once the cause is gone, `redrive` sends each kept message back to its source
//! queue with the same body and message attributes and deletes it from the dead-letter queue only after the send
//! succeeded, so a failure at any point leaves the message in one queue or both, never in none. A message in both is
//! harmless: ingest records an event once whatever the number of deliveries.
//!
//! SQS's own redrive (`StartMessageMoveTask`, the console's "Start DLQ redrive") moves messages asynchronously and
//! reports only a running count; it is fine on AWS, and it is what to use for millions of messages. This command
//! works message by message instead, so it can say exactly what it moved and what it could not, and it runs against
//! the local endpoint, which does not implement StartMessageMoveTask.

use std::collections::HashMap;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Utc};

/// How long a received dead letter stays hidden while it is being moved: long enough for the send and the delete.
const MOVE_VISIBILITY_SECS: i32 = 60;

/// A dead-letter queue operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("{action} (queue {queue}) failed: {message}; check the queue URL and that your credentials may use it")]
    Aws {
        action: &'static str,
        queue: String,
        message: String,
    },
    #[error("cannot tell where the messages of {dlq} go back to: {found}; pass --to with the source queue's URL")]
    NoSource { dlq: String, found: String },
    #[error("--to is the dead-letter queue itself ({0}): the messages would go round in circles")]
    SameQueue(String),
    #[error(
        "moved {moved} message(s), then sending to {queue} failed: {message}; the rest are still in the dead-letter \
         queue, run the command again"
    )]
    Interrupted { moved: u64, queue: String, message: String },
}

fn aws_error<E>(action: &'static str, queue: &str) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E>) -> DlqError
where
    E: std::error::Error + 'static,
{
    let queue = queue.to_string();
    move |e| DlqError::Aws {
        action,
        queue,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// A message kept in the dead-letter queue, described without its body (which may be large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub sent_at: Option<DateTime<Utc>>,
    /// Receives so far, the failed ones on the source queue included.
    pub receive_count: u32,
    pub bytes: usize,
    /// `source / detail-type` of the EventBridge event it carries, or why that cannot be read.
    pub summary: String,
}

impl DeadLetter {
    fn of(m: &Message) -> DeadLetter {
        let attr = |k: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&k)).cloned();
        let body = m.body().unwrap_or_default();
        let summary = match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) => format!(
                "{} / {}",
                v["source"].as_str().unwrap_or("?"),
                v["detail-type"].as_str().unwrap_or("?")
            ),
            Err(_) => "not JSON".to_string(),
        };
        DeadLetter {
            message_id: m.message_id().unwrap_or_default().to_string(),
            sent_at: attr(MessageSystemAttributeName::SentTimestamp)
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis),
            receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            bytes: body.len(),
            summary,
        }
    }
}

/// A queue URL, from a URL or a queue name.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name_or_url: &str) -> Result<String, DlqError> {
    if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
        return Ok(name_or_url.to_string());
    }
    let out = sqs
        .get_queue_url()
        .queue_name(name_or_url)
        .send()
        .await
        .map_err(aws_error("looking up the queue URL", name_or_url))?;
    Ok(out.queue_url.unwrap_or_default())
}

/// How many messages the queue holds (visible and in flight).
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, DlqError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(aws_error("reading the queue depth", url))?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
        + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

/// Empty receives in a row after which a listing or a redrive stops although the queue's counts still show messages
/// (SQS samples a subset of its servers on a short poll, so one empty answer does not mean an empty queue; and a
/// message another consumer holds comes back only after its visibility timeout).
const MAX_EMPTY_RECEIVES: u32 = 10;
/// The pause after an empty receive, before asking again.
const EMPTY_RECEIVE_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

/// Which of the queue's counts must be zero for receiving to stop.
#[derive(Clone, Copy)]
enum Until {
    /// No visible message (a listing holds what it received in flight itself).
    NoneVisible,
    /// No message at all, visible or in flight (a redrive deletes what it moved).
    Empty,
}

/// Whether receiving may stop after an empty answer: the queue's counts say there is nothing left, or
/// `empty_in_a_row` empty answers came back although they say there is.
async fn nothing_left_to_receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    until: Until,
    empty_in_a_row: u32,
) -> Result<bool, DlqError> {
    if empty_in_a_row >= MAX_EMPTY_RECEIVES {
        return Ok(true);
    }
    let left = match until {
        Until::NoneVisible => visible(sqs, url).await?,
        Until::Empty => depth(sqs, url).await?,
    };
    if left == 0 {
        return Ok(true);
    }
    tokio::time::sleep(EMPTY_RECEIVE_PAUSE).await;
    Ok(false)
}

/// Messages the queue would hand out now (not those in flight).
async fn visible(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, DlqError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(aws_error("reading the queue depth", url))?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0))
}

/// Up to `limit` dead letters. Listing receives them, so they are made visible again before returning: a `redrive`
/// right after finds them all. An empty receive ends the listing only once the queue shows no visible message (or
/// after several empty receives in a row): SQS may answer empty while messages remain.
pub async fn list(sqs: &aws_sdk_sqs::Client, dlq_url: &str, limit: usize) -> Result<Vec<DeadLetter>, DlqError> {
    let mut out: Vec<DeadLetter> = Vec::new();
    let mut handles = Vec::new();
    let mut empty_in_a_row = 0;
    while out.len() < limit {
        let got = receive(sqs, dlq_url, (limit - out.len()).min(10) as i32, 30).await?;
        if got.is_empty() {
            empty_in_a_row += 1;
            if nothing_left_to_receive(sqs, dlq_url, Until::NoneVisible, empty_in_a_row).await? {
                break;
            }
            continue;
        }
        empty_in_a_row = 0;
        for m in &got {
            out.push(DeadLetter::of(m));
            handles.push(m.receipt_handle().unwrap_or_default().to_string());
        }
    }
    for chunk in handles.chunks(10) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("v{i}"))
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        sqs.change_message_visibility_batch()
            .queue_url(dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws_error("making the listed messages visible again", dlq_url))?;
    }
    Ok(out)
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: i32,
    visibility_secs: i32,
) -> Result<Vec<Message>, DlqError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(visibility_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(aws_error("receiving from the dead-letter queue", url))?;
    Ok(out.messages.unwrap_or_default())
}

/// The queue whose redrive policy points at `dlq_url`, when there is exactly one.
pub async fn source_queue(sqs: &aws_sdk_sqs::Client, dlq_url: &str) -> Result<String, DlqError> {
    let out = sqs
        .list_dead_letter_source_queues()
        .queue_url(dlq_url)
        .send()
        .await
        .map_err(aws_error("listing the queues that use this dead-letter queue", dlq_url))?;
    match out.queue_urls() {
        [one] => Ok(one.clone()),
        [] => Err(DlqError::NoSource {
            dlq: dlq_url.to_string(),
            found: "no queue has it in its redrive policy".into(),
        }),
        many => Err(DlqError::NoSource {
            dlq: dlq_url.to_string(),
            found: format!("{} queues use it ({})", many.len(), many.join(", ")),
        }),
    }
}

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    pub target: String,
    /// Sent to the target and deleted from the dead-letter queue.
    pub moved: u64,
    /// The target refused them: still in the dead-letter queue (visible again after a minute).
    pub send_failures: u64,
    /// Sent, but still in the dead-letter queue too (delivered twice; ingest records them once).
    pub delete_failures: u64,
}

/// Moves up to `max` messages (all when `None`) from `dlq_url` back to `target_url`: same body, same message
/// attributes, deleted from the dead-letter queue only once the target accepted them.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    target_url: &str,
    max: Option<u64>,
) -> Result<RedriveReport, DlqError> {
    if dlq_url == target_url {
        return Err(DlqError::SameQueue(dlq_url.to_string()));
    }
    let mut report = RedriveReport {
        target: target_url.to_string(),
        ..RedriveReport::default()
    };
    let mut empty_in_a_row = 0;
    loop {
        let handled = report.moved + report.send_failures + report.delete_failures;
        let room = max.map_or(10, |m| m.saturating_sub(handled).min(10));
        if room == 0 {
            return Ok(report);
        }
        let got = receive(sqs, dlq_url, room as i32, MOVE_VISIBILITY_SECS).await?;
        if got.is_empty() {
            empty_in_a_row += 1;
            if nothing_left_to_receive(sqs, dlq_url, Until::Empty, empty_in_a_row).await? {
                return Ok(report);
            }
            continue;
        }
        empty_in_a_row = 0;
        let by_entry: HashMap<String, &Message> = got.iter().enumerate().map(|(i, m)| (format!("m{i}"), m)).collect();
        let entries: Vec<SendMessageBatchRequestEntry> = by_entry
            .iter()
            .filter_map(|(id, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(id)
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(m.message_attributes().cloned())
                    .build()
                    .ok()
            })
            .collect();
        let sent = sqs
            .send_message_batch()
            .queue_url(target_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| DlqError::Interrupted {
                moved: report.moved,
                queue: target_url.to_string(),
                message: DisplayErrorContext(e).to_string(),
            })?;
        report.send_failures += sent.failed().len() as u64;
        let deletes: Vec<DeleteMessageBatchRequestEntry> = sent
            .successful()
            .iter()
            .filter_map(|ok| by_entry.get(ok.id()))
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
            continue;
        }
        let n = deletes.len() as u64;
        match sqs
            .delete_message_batch()
            .queue_url(dlq_url)
            .set_entries(Some(deletes))
            .send()
            .await
        {
            Ok(out) => {
                let failed = out.failed().len() as u64;
                report.delete_failures += failed;
                report.moved += n - failed;
            }
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(e), "sent, but not deleted from the dead-letter queue");
                report.delete_failures += n;
            }
        }
    }
}

/// `tollgate dlq list`'s text.
pub fn print_list(dlq_url: &str, depth: u64, letters: &[DeadLetter]) -> String {
    let mut out = format!("{dlq_url}: {depth} message(s)\n");
    for d in letters {
        out.push_str(&format!(
            "{}  sent {}  received {}x  {} bytes  {}\n",
            d.message_id,
            d.sent_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "?".into()),
            d.receive_count,
            d.bytes,
            d.summary
        ));
    }
    if (letters.len() as u64) < depth {
        out.push_str(&format!("... {} more (raise --limit)\n", depth - letters.len() as u64));
    }
    out
}

/// `tollgate dlq redrive`'s text.
pub fn print_redrive(r: &RedriveReport) -> String {
    let mut out = format!("moved {} message(s) back to {}\n", r.moved, r.target);
    if r.send_failures > 0 {
        out.push_str(&format!(
            "{} message(s) were refused by the target and stay in the dead-letter queue (visible again in a minute; \
             run the command again)\n",
            r.send_failures
        ));
    }
    if r.delete_failures > 0 {
        out.push_str(&format!(
            "{} message(s) were sent but could not be deleted from the dead-letter queue: they will be delivered \
             twice, which ingest records once\n",
            r.delete_failures
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_is_described_by_its_event_kind_not_its_body() {
        let m = Message::builder()
            .message_id("m-1")
            .body(r#"{"source":"aws.codepipeline","detail-type":"CodePipeline Pipeline Execution State Change"}"#)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1763629200000")
            .build();
        let d = DeadLetter::of(&m);
        assert_eq!(
            d.summary,
            "aws.codepipeline / CodePipeline Pipeline Execution State Change"
        );
        assert_eq!(d.receive_count, 3);
        assert_eq!(
            d.sent_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2025-11-20T09:00:00+00:00")
        );
        let junk = DeadLetter::of(&Message::builder().message_id("m-2").body("{ nope").build());
        assert_eq!((junk.summary.as_str(), junk.bytes), ("not JSON", 6));
    }

    #[test]
    fn the_redrive_text_says_what_stayed_behind() {
        let r = RedriveReport {
            target: "https://sqs/q".into(),
            moved: 7,
            send_failures: 2,
            delete_failures: 1,
        };
        let text = print_redrive(&r);
        assert!(text.starts_with("moved 7 message(s) back to https://sqs/q"), "{text}");
        assert!(text.contains("2 message(s) were refused"), "{text}");
        assert!(
            text.contains("1 message(s) were sent but could not be deleted"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn redrive_refuses_to_send_a_queue_to_itself() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let err = redrive(&sqs, "https://sqs/dlq", "https://sqs/dlq", None)
            .await
            .unwrap_err();
        assert!(matches!(err, DlqError::SameQueue(_)), "{err}");
    }
}

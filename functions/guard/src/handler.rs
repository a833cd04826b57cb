//! SQS batch of CloudWatch Alarm State Change events in, partial batch response out.
//!
//! Each message is parsed into an alarm signal and handed to `tollgate_domain::rollback::guard::handle_alarm` with the SQS
//! message id as the claim token (a redelivery of the same message may finish what its first delivery started; a
//! duplicate delivery may not while the first holds its lease). Only retryable failures (throttling, 5xx, a claim held
//! by a concurrent delivery, a notification not yet published) go back to the queue, in `batchItemFailures`; after the
//! queue's maxReceiveCount a message lands in the alarmed dead-letter queue. A message that can never be handled (not
//! an alarm event, malformed) is kept in the table with its reason and acknowledged: nothing is dropped silently.
//! Messages are handled one after the other: alarm changes are rare and a batch holds at most 10.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{EventRecorder, Rejected};
use tollgate_domain::rollback::guard::{handle_alarm, AlarmSignal, GuardError, GuardPolicy, GuardPorts, GuardReport};

/// Where the guard can act: its own account and region (its clients' credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub account: String,
    pub region: String,
}

impl Home {
    /// From the invoked function's ARN (`arn:aws:lambda:<region>:<account>:function:<name>`).
    pub fn from_function_arn(arn: &str) -> Option<Home> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "lambda", region, account, ..] if !region.is_empty() && !account.is_empty() => Some(Home {
                account: account.to_string(),
                region: region.to_string(),
            }),
            _ => None,
        }
    }
}

/// Counts of one batch, logged as one line.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    pub rolled_back: u32,
    pub refused: u32,
    pub notified: u32,
    pub unhandled: u32,
    pub waiting: u32,
    pub already_handled: u32,
    pub restored: u32,
    pub skipped: u32,
    pub rejected: u32,
    pub retried: u32,
}

/// What the handler needs besides the guard's ports: somewhere to keep messages it cannot handle.
pub struct Deps<'a> {
    pub guard: GuardPorts<'a>,
    pub rejected: &'a dyn EventRecorder,
    pub policy: GuardPolicy,
    /// `None` when the function's ARN could not be read: then alarms of every account are tried.
    pub home: Option<Home>,
}

enum Handled {
    Done(GuardReport),
    Rejected(String),
    Retry(String),
}

pub async fn handle_batch(deps: &Deps<'_>, event: SqsEvent, now: DateTime<Utc>) -> (SqsBatchResponse, BatchStats) {
    let mut stats = BatchStats::default();
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        match handle_message(deps, &record, &message_id, now).await {
            Handled::Done(report) => {
                stats.rolled_back += report.rolled_back;
                stats.refused += report.refused;
                stats.notified += report.notified;
                stats.unhandled += report.unhandled;
                stats.waiting += report.waiting;
                stats.already_handled += report.already_handled;
                stats.restored += report.restored;
                if let Some(why) = &report.skipped {
                    stats.skipped += 1;
                    tracing::info!(message_id, why, "alarm not acted on");
                }
                tracing::info!(message_id, report = ?report, "alarm handled");
            }
            Handled::Rejected(reason) => {
                stats.rejected += 1;
                tracing::warn!(message_id, reason, "rejected: kept with its reason, not retried");
            }
            Handled::Retry(reason) => {
                stats.retried += 1;
                tracing::warn!(message_id, reason, "will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    (response, stats)
}

async fn handle_message(deps: &Deps<'_>, record: &SqsMessage, message_id: &str, now: DateTime<Utc>) -> Handled {
    let body = record.body.as_deref().unwrap_or_default();
    let mut signal = match parse_event(body.as_bytes()) {
        Ok(event) => match AlarmSignal::from_event(&event) {
            Some(signal) => signal,
            None => {
                let reason = format!(
                    "not a CloudWatch Alarm State Change event ({}): the guard's rule should not route it here",
                    event.kind().as_str()
                );
                return keep(deps, record, message_id, reason, body).await;
            }
        },
        Err(e) => return keep(deps, record, message_id, format!("cannot parse the message: {e}"), body).await,
    };
    signal.suppressed_by = suppressed_by(body);
    if let Some(home) = &deps.home {
        if signal.account != home.account || signal.region != home.region {
            return Handled::Done(GuardReport {
                skipped: Some(format!(
                    "alarm {} is in {}/{}: the guard acts only in its own account and region ({}/{})",
                    signal.alarm_name, signal.account, signal.region, home.account, home.region
                )),
                ..GuardReport::default()
            });
        }
    }
    match handle_alarm(&deps.guard, &deps.policy, &signal, now, message_id).await {
        Ok(report) => Handled::Done(report),
        Err(GuardError::Retry(reason)) => Handled::Retry(reason),
        Err(GuardError::Failed(reason)) => keep(deps, record, message_id, reason, body).await,
    }
}

/// A composite alarm's `detail.state.actionsSuppressedBy` (`Alarm`, `WaitPeriod`, `ExtensionPeriod`), with its
/// `actionsSuppressedReason`: the ALARM's actions are suppressed, so the guard's are too.
fn suppressed_by(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        detail: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        state: State,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct State {
        actions_suppressed_by: Option<String>,
        actions_suppressed_reason: Option<String>,
    }
    let state = serde_json::from_str::<Event>(body).ok()?.detail.state;
    let by = state.actions_suppressed_by.filter(|b| !b.trim().is_empty())?;
    Some(match state.actions_suppressed_reason {
        Some(reason) if !reason.is_empty() => format!("{by}: {reason}"),
        _ => by,
    })
}

/// Keeps a message that cannot be handled, with the reason; if even that fails, the message goes back to the queue.
async fn keep(deps: &Deps<'_>, record: &SqsMessage, message_id: &str, reason: String, body: &str) -> Handled {
    // SQS's SentTimestamp, not this delivery's time: a redelivered message lands on the same kept item.
    let received_at = record
        .attributes
        .get("SentTimestamp")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_else(Utc::now);
    let rejected = Rejected::new(message_id, received_at, format!("guard: {reason}"), body);
    match deps.rejected.keep_rejected(&rejected).await {
        Ok(()) => Handled::Rejected(reason),
        Err(e) => Handled::Retry(format!("{reason}; and keeping it failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use serde_json::json;
    use tollgate_domain::memory::MemoryAuditLog;
    use tollgate_domain::memory::{MemoryActions, MemoryDiscovery, MemoryRollbackStore};
    use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
    use tollgate_domain::record::ports::TimelineQueries;
    use tollgate_domain::rollback::guard::{Candidate, RollbackAction, Target};

    use super::*;

    const SAMPLE: &str = include_str!("../../../events/guard/sqs-alarm-batch.json");

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T09:21:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    struct World {
        discovery: MemoryDiscovery,
        actions: MemoryActions,
        store: MemoryRollbackStore,
        audit: MemoryAuditLog,
        notifier: MemoryNotifier,
        events: MemoryStore,
    }

    impl World {
        fn new() -> World {
            let discovery = MemoryDiscovery::new();
            discovery.protect(
                "checkout-service-5xx",
                Candidate {
                    account: "111122223333".into(),
                    region: "eu-west-1".into(),
                    target: Target::Deployment {
                        application: "checkout-service".into(),
                        deployment_group: "production".into(),
                        deployment_id: "d-RAPGQL0KO".into(),
                        status: "IN_PROGRESS".into(),
                        finished_at: None,
                        rollback: None,
                    },
                },
            );
            World {
                discovery,
                actions: MemoryActions::new(),
                store: MemoryRollbackStore::new(),
                audit: MemoryAuditLog::new(),
                notifier: MemoryNotifier::new(),
                events: MemoryStore::new(),
            }
        }

        fn deps(&self, home: Option<Home>) -> Deps<'_> {
            Deps {
                guard: GuardPorts {
                    discovery: &self.discovery,
                    actions: &self.actions,
                    store: &self.store,
                    audit: &self.audit,
                    notifier: &self.notifier,
                },
                rejected: &self.events,
                policy: GuardPolicy::default(),
                home,
            }
        }
    }

    fn home() -> Option<Home> {
        Home::from_function_arn("arn:aws:lambda:eu-west-1:111122223333:function:tollgate-guard")
    }

    #[test]
    fn home_is_read_from_the_function_arn() {
        assert_eq!(
            home(),
            Some(Home {
                account: "111122223333".into(),
                region: "eu-west-1".into()
            })
        );
        assert_eq!(Home::from_function_arn("not-an-arn"), None);
    }

    #[tokio::test]
    async fn the_sample_batch_stops_the_deployment_once_keeps_the_malformed_message_and_restores_on_ok() {
        let world = World::new();
        let batch: SqsEvent = serde_json::from_str(SAMPLE).unwrap();
        let (response, stats) = handle_batch(&world.deps(home()), batch, now()).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert_eq!(
            world.actions.sent(),
            vec![RollbackAction::StopDeployment {
                deployment_id: "d-RAPGQL0KO".into()
            }]
        );
        assert_eq!(
            (stats.rolled_back, stats.already_handled, stats.rejected, stats.restored),
            (1, 1, 1, 1)
        );
        let kept = world.events.rejected(now().date_naive(), 10).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert!(
            kept[0].reason.starts_with("guard: cannot parse the message"),
            "{}",
            kept[0].reason
        );
        assert_eq!(world.notifier.sent().len(), 1);
    }

    /// AWS's sample: a composite alarm in ALARM whose actions its suppressor holds back (WaitPeriod).
    const SUPPRESSED: &str =
        include_str!("../../../events/guard/cloudwatch-alarm-state-change.composite-suppressed.json");

    #[tokio::test]
    async fn a_composite_alarm_whose_actions_are_suppressed_rolls_nothing_back() {
        assert_eq!(
            suppressed_by(SUPPRESSED).as_deref(),
            Some("WaitPeriod: Actions suppressed by WaitPeriod")
        );
        let world = World::new();
        world.discovery.protect(
            "ServiceAggregatedAlarm",
            Candidate {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                target: Target::Deployment {
                    application: "checkout-service".into(),
                    deployment_group: "production".into(),
                    deployment_id: "d-COMPOSITE".into(),
                    status: "IN_PROGRESS".into(),
                    finished_at: None,
                    rollback: None,
                },
            },
        );
        let batch: SqsEvent = serde_json::from_value(json!({"Records": [
            {"messageId": "m-1", "body": SUPPRESSED, "eventSource": "aws:sqs"}
        ]}))
        .unwrap();
        let at = DateTime::parse_from_rfc3339("2022-07-22T15:58:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (response, stats) = handle_batch(&world.deps(None), batch, at).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(stats.skipped, 1);
        assert!(world.actions.sent().is_empty());
        assert!(world.notifier.sent().is_empty());
        // The same alarm without the suppression fields acts.
        let plain = SUPPRESSED
            .replace("\"actionsSuppressedBy\": \"WaitPeriod\",", "")
            .replace("\"actionsSuppressedReason\": \"Actions suppressed by WaitPeriod\",", "");
        assert_eq!(suppressed_by(&plain), None);
        let batch: SqsEvent = serde_json::from_value(json!({"Records": [
            {"messageId": "m-2", "body": plain, "eventSource": "aws:sqs"}
        ]}))
        .unwrap();
        let (_, stats) = handle_batch(&world.deps(None), batch, at).await;
        assert_eq!(stats.rolled_back, 1, "{stats:?}");
    }

    #[tokio::test]
    async fn an_alarm_of_another_account_is_reported_not_acted_on() {
        let world = World::new();
        let event = json!({
            "version": "0", "id": "1", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": "111122223333", "time": "2026-11-20T09:20:00Z", "region": "eu-west-1", "resources": [],
            "detail": {"alarmName": "checkout-service-5xx", "state": {"value": "ALARM", "timestamp": "2026-11-20T09:20:00.000+0000"}}
        });
        let batch: SqsEvent = serde_json::from_value(json!({"Records": [
            {"messageId": "m-1", "body": event.to_string(), "eventSource": "aws:sqs"}
        ]}))
        .unwrap();
        let elsewhere = Home {
            account: "999988887777".into(),
            region: "eu-west-1".into(),
        };
        let (response, stats) = handle_batch(&world.deps(Some(elsewhere)), batch, now()).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(stats.skipped, 1);
        assert!(world.actions.sent().is_empty());
    }

    #[tokio::test]
    async fn a_throttled_rollback_sends_the_message_back_and_acts_once_on_redelivery() {
        let world = World::new();
        world
            .actions
            .answer_next(vec![Err(tollgate_domain::rollback::guard::GuardApiError::Transient(
                "Rate exceeded".into(),
            ))]);
        let batch = || -> SqsEvent { serde_json::from_str(SAMPLE).unwrap() };
        let (response, _) = handle_batch(&world.deps(home()), batch(), now()).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        // The throttled delivery goes back to the queue; its duplicate in the same batch claims again and acts.
        assert!(failed.contains(&"m-alarm-1"), "{failed:?}");
        let (response, _) = handle_batch(&world.deps(home()), batch(), now() + Duration::seconds(30)).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        let stops = world.actions.sent().len();
        assert_eq!(stops, 2, "one throttled attempt, one accepted");
        assert_eq!(world.notifier.sent().len(), 1);
    }
}

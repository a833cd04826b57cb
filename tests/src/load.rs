//! Load and ordering: a simulated stream (many pipelines, duplicates, reordering within a window) through the real
//! ingest handler in SQS-sized batches with a few concurrent invocations, and the clean in-order stream of the same
//! events in memory to compare against: timelines, delivery metrics and notifications must be equal.
//!
//! The stream is generated while it is delivered (never held whole), so the driver's memory stays flat at any size.
//! Messages the handler returns in `batchItemFailures` come back later with a higher receive count, as SQS would
//! deliver them after the visibility timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde_json::Value;
use tollgate::replay::data_span;
use tollgate::simulate::{clean_stream, simulate, SimOptions};
use tollgate_domain::ingest::service::{Ingestor, MessageContext, Outcome};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::keys::{ExecutionKey, PipelineKey};
use tollgate_domain::record::ports::{EventRecorder, TimelineQueries};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::ExecutionTimeline;
use tollgate_domain::tell::ports::Notifier;

use crate::driver::{notification_id, NotificationId};

/// What to drive.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// At least this many distinct events (deliveries are about `1 + duplicate_rate` times more).
    pub events: usize,
    pub seed: u64,
    pub duplicate_rate: f64,
    pub reorder_window: usize,
    /// Handler invocations in flight at once.
    pub concurrency: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            events: 100_000,
            seed: 2026,
            duplicate_rate: 0.2,
            reorder_window: 8,
            concurrency: 4,
        }
    }
}

/// The simulator options that give at least `opts.events` distinct events: enough pipelines to interleave, and
/// enough executions each.
pub fn sim_options(opts: &LoadOptions) -> SimOptions {
    let pipelines = (opts.events / 1_000).clamp(4, 60);
    let base = SimOptions {
        seed: opts.seed,
        pipelines,
        executions_per_pipeline: 4,
        duplicate_rate: opts.duplicate_rate,
        reorder_window: opts.reorder_window,
        ..SimOptions::default()
    };
    let probe = clean_stream(&base).count().max(1);
    let per_execution = probe as f64 / (pipelines * 4) as f64;
    let mut executions = ((opts.events as f64 / (pipelines as f64 * per_execution)).ceil() as usize).max(1);
    loop {
        let sim = SimOptions {
            executions_per_pipeline: executions,
            ..base.clone()
        };
        if clean_stream(&sim).count() >= opts.events {
            return sim;
        }
        executions += 1.max(executions / 20);
    }
}

/// What the clean in-order stream gives, in memory.
#[derive(Debug, Clone)]
pub struct Expected {
    pub events: u64,
    pub keys: Vec<ExecutionKey>,
    pub timelines: Vec<ExecutionTimeline>,
    pub metrics: Value,
    pub notifications: BTreeMap<NotificationId, u32>,
    /// Events stored per execution, in `keys` order.
    pub stored: Vec<usize>,
}

/// Ingests the clean stream of `sim` in time order, each event once, into a fresh in-memory store.
pub async fn expected(sim: &SimOptions) -> Expected {
    let store = Arc::new(MemoryStore::new());
    let notifier = Arc::new(MemoryNotifier::new());
    let ingestor = Ingestor::new(store.clone(), notifier.clone());
    let mut events = 0;
    for (i, e) in clean_stream(sim).enumerate() {
        let ctx = MessageContext::new(format!("clean-{i}"), chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
        match ingestor.ingest(&e.to_string(), &ctx).await {
            Ok(Outcome::Recorded { new: true, .. }) => events += 1,
            other => panic!("the clean stream's event {i} was not recorded new: {other:?}"),
        }
    }
    let mut keys = store.execution_keys();
    keys.sort();
    let timelines = timelines_of(store.as_ref(), &keys)
        .await
        .expect("the in-memory store answers");
    let mut notifications = BTreeMap::new();
    for n in notifier.sent() {
        *notifications.entry(notification_id(&n)).or_default() += 1;
    }
    let stored = stored_counts(store.as_ref(), &keys)
        .await
        .expect("the in-memory store answers");
    Expected {
        events,
        stored,
        metrics: metrics_json(&timelines),
        keys,
        timelines,
        notifications,
    }
}

/// The timelines of `keys`, in that order; an execution the store does not have is an error naming it.
pub async fn timelines_of<Q: TimelineQueries + ?Sized>(
    store: &Q,
    keys: &[ExecutionKey],
) -> Result<Vec<ExecutionTimeline>, String> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        match execution_timeline(store, key).await {
            Ok(Some(t)) => out.push(t),
            Ok(None) => return Err(format!("execution {key:?} is missing")),
            Err(e) => return Err(format!("reading execution {key:?}: {e}")),
        }
    }
    Ok(out)
}

/// How many events the store holds for each execution: an event stored twice (a copy under another envelope id)
/// would show here even though a timeline folds it once.
pub async fn stored_counts<Q: TimelineQueries + ?Sized>(
    store: &Q,
    keys: &[ExecutionKey],
) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        out.push(
            store
                .execution_events(key)
                .await
                .map_err(|e| format!("reading the events of {key:?}: {e}"))?
                .len(),
        );
    }
    Ok(out)
}

/// How many executions the store lists per pipeline (to show it holds none that the clean stream lacks).
pub async fn executions_listed<Q: TimelineQueries + ?Sized>(store: &Q, keys: &[ExecutionKey]) -> Result<usize, String> {
    let pipelines: std::collections::BTreeSet<PipelineKey> = keys.iter().map(|k| k.pipeline_key()).collect();
    let mut n = 0;
    for p in &pipelines {
        n += store
            .executions(p, keys.len() + 10)
            .await
            .map_err(|e| format!("listing the executions of {p:?}: {e}"))?
            .len();
    }
    Ok(n)
}

/// The delivery metrics of the timelines over the days they span, as `tollgate replay --format json` computes them.
pub fn metrics_json(timelines: &[ExecutionTimeline]) -> Value {
    let period = data_span(timelines);
    let report = tollgate_domain::measure::metrics::compute(timelines, &BTreeMap::new(), &period);
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// What driving the stream did.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub deliveries: u64,
    pub batches: u64,
    pub recorded: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Deliveries the handler returned in `batchItemFailures`.
    pub retried: u64,
    /// Messages delivered again after a failure.
    pub redelivered: u64,
    pub notifications: u64,
    pub wall: Duration,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

struct Pending {
    id: String,
    body: String,
    receive_count: u32,
}

#[derive(Default)]
struct Tally {
    report: LoadReport,
    retry: Vec<Pending>,
}

/// Delivers `simulate(sim)` to the handler in batches of 10 with `concurrency` invocations in flight, then
/// redelivers the failed messages (receive count + 1) until none is left or `max_rounds` passed.
pub async fn drive<S, N>(ingestor: &Ingestor<S, N>, sim: &SimOptions, concurrency: usize) -> LoadReport
where
    S: EventRecorder + TimelineQueries + 'static,
    N: Notifier + 'static,
{
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Pending>>(concurrency * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let workers = spawn_workers(ingestor, concurrency, rx, tally.clone());
    let mut batch = Vec::with_capacity(10);
    for (n, event) in simulate(sim).enumerate() {
        batch.push(Pending {
            id: format!("m-{n}"),
            body: event.to_string(),
            receive_count: 1,
        });
        if batch.len() == 10 && tx.send(std::mem::take(&mut batch)).await.is_err() {
            break;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    drop(tx);
    join(workers).await;

    // Redeliveries: what the handler asked SQS to deliver again, in later batches.
    for _round in 0..10 {
        let retry = std::mem::take(&mut lock(&tally).retry);
        if retry.is_empty() {
            break;
        }
        lock(&tally).report.redelivered += retry.len() as u64;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Pending>>(concurrency * 2);
        let workers = spawn_workers(
            ingestor,
            concurrency,
            Arc::new(tokio::sync::Mutex::new(rx)),
            tally.clone(),
        );
        let mut retry = retry.into_iter().peekable();
        while retry.peek().is_some() {
            let chunk: Vec<Pending> = retry.by_ref().take(10).collect();
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(tx);
        join(workers).await;
    }
    let mut report = lock(&tally).report.clone();
    report.wall = started.elapsed();
    report
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn join(mut workers: tokio::task::JoinSet<()>) {
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done {
            panic!("a load worker failed: {e}");
        }
    }
}

fn spawn_workers<S, N>(
    ingestor: &Ingestor<S, N>,
    concurrency: usize,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Vec<Pending>>>>,
    tally: Arc<Mutex<Tally>>,
) -> tokio::task::JoinSet<()>
where
    S: EventRecorder + TimelineQueries + 'static,
    N: Notifier + 'static,
{
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (ingestor, rx, tally) = (ingestor.clone(), rx.clone(), tally.clone());
        workers.spawn(async move {
            loop {
                let Some(batch) = rx.lock().await.recv().await else {
                    return;
                };
                let (response, stats) = ingest::handler::handle_batch(&ingestor, sqs_event(&batch)).await;
                let failed: std::collections::HashSet<&str> = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.as_str())
                    .collect();
                let mut t = lock(&tally);
                t.report.batches += 1;
                t.report.deliveries += batch.len() as u64;
                t.report.recorded += u64::from(stats.recorded);
                t.report.duplicates += u64::from(stats.duplicates);
                t.report.rejected += u64::from(stats.rejected);
                t.report.retried += u64::from(stats.retried);
                t.report.notifications += u64::from(stats.notifications);
                let again: Vec<Pending> = batch
                    .into_iter()
                    .filter(|p| failed.contains(p.id.as_str()))
                    .map(|p| Pending {
                        receive_count: p.receive_count + 1,
                        ..p
                    })
                    .collect();
                t.retry.extend(again);
            }
        });
    }
    workers
}

fn sqs_event(batch: &[Pending]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for p in batch {
        let mut m = SqsMessage::default();
        m.message_id = Some(p.id.clone());
        m.body = Some(p.body.clone());
        m.event_source = Some("aws:sqs".into());
        m.attributes
            .insert("ApproximateReceiveCount".into(), p.receive_count.to_string());
        m.attributes.insert("SentTimestamp".into(), "1763629200000".into());
        event.records.push(m);
    }
    event
}

/// The process's peak resident set (VmHWM), in KiB, where /proc says it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Compares a run's outcome with the clean stream's; every difference is named.
pub fn differences(
    expected: &Expected,
    report: &LoadReport,
    timelines: &[ExecutionTimeline],
    listed_executions: usize,
    stored: &[usize],
    published: &BTreeMap<NotificationId, u32>,
    lost_answers: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    // A delivery that recorded its event and then failed (a notification deferred or not published) is counted as
    // retried, and its redelivery as a duplicate: so new records are at most the events, and with the retried ones
    // at least the events. A write whose answer was lost (`lost_answers`) and that is tried again finds its own
    // record and says "duplicate": the stored events below are what proves each event is recorded once.
    if report.recorded > expected.events || report.recorded + report.retried + lost_answers < expected.events {
        out.push(format!(
            "{} events recorded new ({} deliveries retried, {} write answers lost), the clean stream has {}",
            report.recorded, report.retried, lost_answers, expected.events
        ));
    }
    if report.recorded + report.duplicates + report.rejected + report.retried != report.deliveries {
        out.push(format!(
            "{} deliveries but {} recorded + {} duplicates + {} rejected + {} retried: some are unaccounted for",
            report.deliveries, report.recorded, report.duplicates, report.rejected, report.retried
        ));
    }
    if report.rejected > 0 {
        out.push(format!("{} simulated events were rejected", report.rejected));
    }
    if stored != expected.stored.as_slice() {
        let differ = stored.iter().zip(&expected.stored).filter(|(a, b)| a != b).count();
        out.push(format!(
            "{differ} executions hold a different number of stored events than the clean stream's (total {} vs {})",
            stored.iter().sum::<usize>(),
            expected.stored.iter().sum::<usize>()
        ));
    }
    if listed_executions != expected.keys.len() {
        out.push(format!(
            "the store lists {listed_executions} executions, the clean stream has {}",
            expected.keys.len()
        ));
    }
    let wrong = timelines
        .iter()
        .zip(&expected.timelines)
        .filter(|(a, b)| a != b)
        .count();
    if wrong > 0 || timelines.len() != expected.timelines.len() {
        out.push(format!(
            "{wrong} of {} timelines differ from the clean stream's",
            expected.timelines.len()
        ));
    }
    if metrics_json(timelines) != expected.metrics {
        out.push("the delivery metrics differ from the clean stream's".into());
    }
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();
    if !twice.is_empty() {
        out.push(format!(
            "{} notifications published more than once: {twice:?}",
            twice.len()
        ));
    }
    let once = |m: &BTreeMap<NotificationId, u32>| m.keys().cloned().collect::<std::collections::BTreeSet<_>>();
    let (got, want) = (once(published), once(&expected.notifications));
    let unexpected: Vec<_> = got.difference(&want).collect();
    // An approval request delivered after its decision is not announced, by design (it would ask for a decision
    // already made): that is the one notification the delivery order may change. Any other missing one is lost.
    let lost: Vec<_> = want
        .difference(&got)
        .filter(|(kind, _, _)| kind != APPROVAL_NEEDED)
        .collect();
    if !unexpected.is_empty() || !lost.is_empty() {
        out.push(format!(
            "notifications differ: lost {} {:?}, unexpected {} {:?}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>(),
            unexpected.len(),
            unexpected.iter().take(5).collect::<Vec<_>>()
        ));
    }
    out
}

const APPROVAL_NEEDED: &str = "approval_needed";

/// Approval requests of the clean stream not announced because their decision was delivered first.
pub fn approvals_overtaken(expected: &Expected, published: &BTreeMap<NotificationId, u32>) -> usize {
    expected
        .notifications
        .keys()
        .filter(|id| id.0 == APPROVAL_NEEDED && !published.contains_key(*id))
        .count()
}

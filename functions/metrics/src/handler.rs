//! The daily run: the scheduled event in, delivery metrics out (one EMF line per pipeline), and on the digest weekday
//! the weekly digest, published once per period however often the run is retried.
//!
//! Steps: the period is the last N whole UTC days before the invocation time; the executions started from 30 days
//! before the period to its end are listed (the runs before the period let time to restore, MTBF and the production
//! stage see what came before), their timelines loaded a bounded number at a time, the pipelines' configurations
//! looked up once each, and `tollgate_domain::metrics::compute` does the rest. Everything that can fail happens before
//! anything is emitted: the EMF lines are returned only by a run that succeeded, so a retried run does not write its
//! metrics twice.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use futures::stream::{self, StreamExt, TryStreamExt};
use lambda_runtime::Diagnostic;
use serde_json::{json, Value};
use tollgate_domain::keys::{ExecutionKey, PipelineKey};
use tollgate_domain::metrics::{compute, MetricsReport, Period, PipelineConfig};
use tollgate_domain::notify::weekly_digest;
use tollgate_domain::ports::{StoreError, TimelineQueries};
use tollgate_domain::query::execution_timeline;
use tollgate_domain::timeline::ExecutionTimeline;

use crate::digest::{DigestError, DigestOutcome, DigestPublisher};
use crate::emf;
use crate::ports::{ConfigLookupError, PipelineConfigs};

/// Days before the period whose executions are loaded too.
pub const LOOKBACK_DAYS: i64 = 30;
/// Timelines loaded, and configurations looked up, at most this many at a time.
pub const CONCURRENCY: usize = 16;

/// What the run needs of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The period's length in whole UTC days.
    pub days: u32,
    /// The UTC weekday on which the digest is sent.
    pub digest_weekday: Weekday,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            days: 7,
            digest_weekday: Weekday::Mon,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the invocation's `time` is {value}, expected an RFC 3339 time such as \"2026-11-23T06:00:00Z\"")]
    InvalidEvent { value: String },
    #[error("listing the executions to measure failed: {0}")]
    Store(#[source] StoreError),
    #[error("loading the timeline of execution {execution_id} of {pipeline} failed: {source}")]
    Timeline {
        pipeline: String,
        execution_id: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Config(#[from] ConfigLookupError),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl MetricsError {
    /// False when running again with the same input cannot succeed.
    pub fn retryable(&self) -> bool {
        match self {
            MetricsError::InvalidEvent { .. } => false,
            MetricsError::Store(e) | MetricsError::Timeline { source: e, .. } => matches!(e, StoreError::Transient(_)),
            MetricsError::Config(_) => true,
            MetricsError::Digest(DigestError::Store { source, .. }) => matches!(source, StoreError::Transient(_)),
            MetricsError::Digest(_) => true,
        }
    }
}

impl From<MetricsError> for Diagnostic {
    fn from(e: MetricsError) -> Diagnostic {
        let kind = match &e {
            MetricsError::InvalidEvent { .. } => "InvalidEvent",
            MetricsError::Store(_) | MetricsError::Timeline { .. } => "Store",
            MetricsError::Config(_) => "PipelineConfig",
            MetricsError::Digest(_) => "Digest",
        };
        let class = if e.retryable() { "Retryable" } else { "NonRetryable" };
        Diagnostic {
            error_type: format!("{class}.{kind}"),
            error_message: e.to_string(),
        }
    }
}

/// What happened to the weekly digest in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestStatus {
    /// Not the digest weekday.
    NotDue,
    Published,
    /// Published by an earlier attempt.
    AlreadySent,
}

impl DigestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestStatus::NotDue => "not_due",
            DigestStatus::Published => "published",
            DigestStatus::AlreadySent => "already_sent",
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub invoked_at: DateTime<Utc>,
    pub period: Period,
    /// Executions listed (started in the period or the 30 days before).
    pub executions: usize,
    /// Timelines loaded and measured.
    pub timelines: usize,
    /// Executions whose record could not be read (kept out of the metrics, each logged).
    pub unreadable: usize,
    pub report: MetricsReport,
    /// One EMF line per pipeline, for the function's log.
    pub emf_lines: Vec<String>,
    pub digest: DigestStatus,
}

impl RunReport {
    /// The function's response: what was measured, without the figures (they are in the log and in CloudWatch).
    pub fn summary(&self) -> Value {
        json!({
            "period_from": self.period.from,
            "period_to": self.period.to,
            "executions": self.executions,
            "timelines": self.timelines,
            "unreadable": self.unreadable,
            "pipelines": self.report.pipelines.len(),
            "teams": self.report.teams.len(),
            "digest": self.digest.as_str(),
        })
    }
}

/// The time the run is for: the scheduled event's `time` (EventBridge Scheduler puts `<aws.scheduler.scheduled-time>`
/// there; an EventBridge scheduled rule's event has it too), so a retried invocation measures the same period and
/// decides the same digest. Without a `time` (a manual invocation with `{}`), `now`.
pub fn invocation_time(payload: &Value, now: DateTime<Utc>) -> Result<DateTime<Utc>, MetricsError> {
    match payload.get("time") {
        None | Some(Value::Null) => {
            tracing::info!(%now, "the event has no time: measuring as of now");
            Ok(now)
        }
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| MetricsError::InvalidEvent {
                value: format!("{text:?}"),
            }),
        Some(other) => Err(MetricsError::InvalidEvent {
            value: other.to_string(),
        }),
    }
}

/// The last `days` whole UTC days before `invoked_at`: `[midnight − days, midnight)` of its UTC day.
pub fn period_before(invoked_at: DateTime<Utc>, days: u32) -> Period {
    let to = invoked_at.date_naive().and_time(NaiveTime::MIN).and_utc();
    Period {
        from: to - Duration::days(i64::from(days)),
        to,
    }
}

/// The Lambda entry: the scheduled event's payload and the request id (which marks the digest claim).
pub async fn handle<Q, D, C>(
    payload: &Value,
    run_id: &str,
    store: &Q,
    digest: &D,
    configs: &C,
    settings: &Settings,
) -> Result<RunReport, MetricsError>
where
    Q: TimelineQueries + ?Sized,
    D: DigestPublisher + ?Sized,
    C: PipelineConfigs + ?Sized,
{
    let invoked_at = invocation_time(payload, Utc::now())?;
    run(store, digest, configs, settings, invoked_at, run_id).await
}

/// One run for `invoked_at`.
#[tracing::instrument(skip(store, digest, configs, settings), fields(days = settings.days))]
pub async fn run<Q, D, C>(
    store: &Q,
    digest: &D,
    configs: &C,
    settings: &Settings,
    invoked_at: DateTime<Utc>,
    run_id: &str,
) -> Result<RunReport, MetricsError>
where
    Q: TimelineQueries + ?Sized,
    D: DigestPublisher + ?Sized,
    C: PipelineConfigs + ?Sized,
{
    let period = period_before(invoked_at, settings.days);
    let since = period.from - Duration::days(LOOKBACK_DAYS);
    let keys = store
        .executions_started_between(since, period.to)
        .await
        .map_err(MetricsError::Store)?;

    let loaded: Vec<Option<ExecutionTimeline>> = stream::iter(keys.iter())
        .map(|key| load(store, key))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let unreadable = loaded.iter().filter(|t| t.is_none()).count();
    let timelines: Vec<ExecutionTimeline> = loaded.into_iter().flatten().collect();

    let configs = pipeline_configs(configs, &timelines).await?;
    let report = compute(&timelines, &configs, &period);
    let timestamp = period.to.timestamp_millis();
    let emf_lines = report
        .pipelines
        .iter()
        .map(|p| emf::pipeline_line(p, period.days(), timestamp))
        .collect();

    let digest = if invoked_at.weekday() == settings.digest_weekday {
        match digest.publish_once(&weekly_digest(&report, &period), run_id).await? {
            DigestOutcome::Published => DigestStatus::Published,
            DigestOutcome::AlreadySent => DigestStatus::AlreadySent,
        }
    } else {
        DigestStatus::NotDue
    };
    tracing::info!(
        period_from = %period.from,
        period_to = %period.to,
        executions = keys.len(),
        timelines = timelines.len(),
        unreadable,
        pipelines = report.pipelines.len(),
        teams = report.teams.len(),
        digest = digest.as_str(),
        "delivery metrics computed"
    );
    Ok(RunReport {
        invoked_at,
        period,
        executions: keys.len(),
        timelines: timelines.len(),
        unreadable,
        report,
        emf_lines,
        digest,
    })
}

/// One execution's timeline. A record that can never be read (a permanent store error) is left out with a warning
/// rather than failing every daily run; a transient failure fails the run, which is retried.
async fn load<Q: TimelineQueries + ?Sized>(
    store: &Q,
    key: &ExecutionKey,
) -> Result<Option<ExecutionTimeline>, MetricsError> {
    match execution_timeline(store, key).await {
        Ok(timeline) => Ok(timeline),
        Err(StoreError::Permanent(reason)) => {
            tracing::warn!(
                pipeline = key.pipeline,
                execution_id = key.execution_id,
                reason,
                "execution record unreadable: left out of the metrics"
            );
            Ok(None)
        }
        Err(source) => Err(MetricsError::Timeline {
            pipeline: key.pipeline.clone(),
            execution_id: key.execution_id.clone(),
            source,
        }),
    }
}

/// The configuration of every pipeline of `timelines`, looked up once each (a per-run cache), keyed by pipeline name
/// as `compute` takes it. Two pipelines of one name in different accounts or regions share the first one's
/// configuration (in key order), with a warning when theirs differs.
async fn pipeline_configs<C: PipelineConfigs + ?Sized>(
    configs: &C,
    timelines: &[ExecutionTimeline],
) -> Result<BTreeMap<String, PipelineConfig>, MetricsError> {
    let pipelines: BTreeSet<PipelineKey> = timelines
        .iter()
        .map(|t| PipelineKey {
            account: t.account.clone(),
            region: t.region.clone(),
            pipeline: t.pipeline.clone(),
        })
        .collect();
    let mut found: Vec<(PipelineKey, PipelineConfig)> = stream::iter(pipelines)
        .map(|key| async move { configs.pipeline_config(&key).await.map(|config| (key, config)) })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut by_name: BTreeMap<String, PipelineConfig> = BTreeMap::new();
    for (key, config) in found {
        match by_name.get(&key.pipeline) {
            None => {
                by_name.insert(key.pipeline, config);
            }
            Some(kept) if *kept != config => tracing::warn!(
                pipeline = key.pipeline,
                account = key.account,
                region = key.region,
                "another pipeline of this name has a different configuration; metrics use the first one's"
            ),
            Some(_) => {}
        }
    }
    Ok(by_name)
}

#[cfg(test)]
mod tests;

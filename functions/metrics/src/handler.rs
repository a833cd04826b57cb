//! The daily run: the scheduled event in, delivery metrics out (one EMF line per pipeline), and on the digest weekday
//! the weekly digest, published once per period however often the run is retried.
//!
//! Steps: the period is the last N whole UTC days before the invocation time; the executions started from 30 days
//! before the period to its end are listed (the runs before the period let time to restore, MTBF and the production
//! stage see what came before), their timelines loaded a bounded number at a time, the pipelines' configurations
//! looked up once each; the audit trail of those pipelines and of the `global` scope is read from a day before the
//! period on, with the gate decisions its `gate.decision` entries name; `tollgate_domain::measure::metrics::compute_with_audit`
//! does the rest. Everything that can fail happens before
//! anything is emitted: the EMF lines are returned only by a run that succeeded, so a retried run does not write its
//! metrics twice.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use futures::stream::{self, StreamExt, TryStreamExt};
use lambda_runtime::Diagnostic;
use serde_json::{json, Value};
use tollgate_domain::audit::{action as audit_action, pipeline_scope, AuditEntry, GLOBAL_SCOPE};
use tollgate_domain::gate::GateDecision;
use tollgate_domain::measure::digest::weekly_digest;
use tollgate_domain::measure::metrics::{compute_with_audit, AutomationHealth, MetricsReport, Period, PipelineConfig};
use tollgate_domain::record::keys::{ExecutionKey, PipelineKey};
use tollgate_domain::record::ports::{StoreError, TimelineQueries};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::ExecutionTimeline;
use tollgate_domain::tell::notify::Notification;

use crate::digest::{DigestError, DigestOutcome, DigestPublisher};
use crate::emf;
use crate::ports::{AutomationRecords, ConfigLookupError, PipelineConfigs};

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
    #[error("reading the audit trail of {scope} failed: {source}")]
    Audit {
        scope: String,
        #[source]
        source: StoreError,
    },
    #[error("reading gate decision {decision_id} failed: {source}")]
    GateDecision {
        decision_id: String,
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
            MetricsError::Store(e)
            | MetricsError::Timeline { source: e, .. }
            | MetricsError::Audit { source: e, .. }
            | MetricsError::GateDecision { source: e, .. } => matches!(e, StoreError::Transient(_)),
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
            MetricsError::Audit { .. } | MetricsError::GateDecision { .. } => "Audit",
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
    /// Audit entries read (all scopes, from a day before the period) and gate decisions looked up.
    pub audit_entries: usize,
    pub gate_decisions: usize,
    /// The automation-health EMF lines: one for all of Tollgate's actions, one per action family.
    pub automation_emf_lines: Vec<String>,
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
            "audit_entries": self.audit_entries,
            "gate_decisions": self.gate_decisions,
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
pub async fn handle<Q, D, C, A>(
    payload: &Value,
    run_id: &str,
    store: &Q,
    digest: &D,
    configs: &C,
    automation: &A,
    settings: &Settings,
) -> Result<RunReport, MetricsError>
where
    Q: TimelineQueries + ?Sized,
    D: DigestPublisher + ?Sized,
    C: PipelineConfigs + ?Sized,
    A: AutomationRecords + ?Sized,
{
    let invoked_at = invocation_time(payload, Utc::now())?;
    run(store, digest, configs, automation, settings, invoked_at, run_id).await
}

/// One run for `invoked_at`.
#[tracing::instrument(skip(store, digest, configs, automation, settings), fields(days = settings.days))]
pub async fn run<Q, D, C, A>(
    store: &Q,
    digest: &D,
    configs: &C,
    automation: &A,
    settings: &Settings,
    invoked_at: DateTime<Utc>,
    run_id: &str,
) -> Result<RunReport, MetricsError>
where
    Q: TimelineQueries + ?Sized,
    D: DigestPublisher + ?Sized,
    C: PipelineConfigs + ?Sized,
    A: AutomationRecords + ?Sized,
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
    let (audit, decisions) = automation_records(automation, &timelines, &period).await?;
    let report = compute_with_audit(&timelines, &configs, &period, &audit, &decisions);
    let timestamp = period.to.timestamp_millis();
    let emf_lines = report
        .pipelines
        .iter()
        .map(|p| emf::pipeline_line(p, period.days(), timestamp))
        .collect();
    let automation_emf_lines = emf::automation_lines(&report.automation, period.days(), timestamp);

    let digest = if invoked_at.weekday() == settings.digest_weekday {
        let mut message = weekly_digest(&report, &period);
        add_automation_lines(&mut message, &report.automation);
        match digest.publish_once(&message, run_id).await? {
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
        audit_entries = audit.len(),
        gate_decisions = decisions.len(),
        automated_actions = report.automation.actions,
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
        audit_entries: audit.len(),
        gate_decisions: decisions.len(),
        automation_emf_lines,
        digest,
    })
}

/// The audit entries of the pipelines' scopes and of `global` from a day before the period on (a rollback entry just
/// before the period may name an execution of the period), and the gate decisions the period's `gate.decision`
/// entries name. A transient failure fails the run (it is retried); a gate decision that cannot be read at all is left
/// out with a warning (its entry still counts, by its outcome and summary).
async fn automation_records<A: AutomationRecords + ?Sized>(
    records: &A,
    timelines: &[ExecutionTimeline],
    period: &Period,
) -> Result<(Vec<AuditEntry>, Vec<GateDecision>), MetricsError> {
    let mut scopes: BTreeSet<String> = timelines
        .iter()
        .map(|t| {
            pipeline_scope(&PipelineKey {
                account: t.account.clone(),
                region: t.region.clone(),
                pipeline: t.pipeline.clone(),
            })
        })
        .collect();
    scopes.insert(GLOBAL_SCOPE.to_string());
    let since = period.from - Duration::days(1);
    let audit: Vec<Vec<AuditEntry>> = stream::iter(scopes)
        .map(|scope| async move {
            records
                .audit_since(&scope, since)
                .await
                .map_err(|source| MetricsError::Audit { scope, source })
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let audit: Vec<AuditEntry> = audit.into_iter().flatten().collect();
    let ids: BTreeSet<&str> = audit
        .iter()
        .filter(|e| e.action == audit_action::GATE_DECISION && period.contains(e.at))
        .filter_map(|e| e.detail.get("decision_id").and_then(Value::as_str))
        .collect();
    let decisions: Vec<Option<GateDecision>> = stream::iter(ids)
        .map(|id| async move {
            match records.gate_decision(id).await {
                Ok(found) => Ok(found),
                Err(StoreError::Permanent(reason)) => {
                    tracing::warn!(
                        decision_id = id,
                        reason,
                        "gate decision unreadable: measured by its audit entry"
                    );
                    Ok(None)
                }
                Err(source) => Err(MetricsError::GateDecision {
                    decision_id: id.to_string(),
                    source,
                }),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok((audit, decisions.into_iter().flatten().collect()))
}

/// The digest's automation paragraph: Tollgate's actions and errors by family, and the manual fallbacks. Nothing when
/// Tollgate did nothing and nobody stepped in.
pub fn add_automation_lines(digest: &mut Notification, a: &AutomationHealth) {
    let m = &a.manual;
    if a.actions == 0 && m.total == 0 {
        return;
    }
    let percent = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    let families: Vec<String> = a
        .families
        .iter()
        .map(|(name, f)| {
            let latency = f
                .latency_ms
                .median
                .map_or(String::new(), |ms| format!(", median latency {}", human_ms(ms)));
            format!("{name} {} ({} errors{latency})", f.actions, f.errors)
        })
        .collect();
    digest.lines.push(format!(
        "Automation: {} actions, {} errors ({}){}{}",
        a.actions,
        a.errors,
        percent(a.error_rate),
        if families.is_empty() { "" } else { ": " },
        families.join(", ")
    ));
    let per_deployment = m
        .per_production_deployment
        .map_or(String::new(), |r| format!(" ({r:.2} per production deployment)"));
    digest.lines.push(format!(
        "Manual fallbacks: {}{per_deployment}: {} approvals, {} overrides, {} manual rollbacks, {} deployments stopped by hand",
        m.total, m.approvals, m.overrides, m.manual_rollbacks, m.manual_deployment_stops
    ));
}

/// Milliseconds for people: `850 ms`, `12.3 s`, `4m 05s`, `2h 10m`.
fn human_ms(ms: i64) -> String {
    let s = ms / 1000;
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
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

//! Facts a policy needs (alarm states, metric totals, pipeline jobs, the policy text) and their ports, the
//! gathering of exactly those a policy asks for, and the alarm watches the gate registers for the guard.

use super::*;
use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::gate::policy::{AlarmFact, Facts, MinRequests, Policy, UpstreamCheck};
use crate::record::ports::{StoreError, TimelineQueries};
use crate::record::query::execution_timeline;
use crate::record::timeline::is_failure;

// ---------------------------------------------------------------------------------------------------------------
// The world outside: CodePipeline, the artifact, CloudWatch.

/// Why a fact could not be gathered, in words for the decision's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FactError(pub String);

/// CloudWatch alarms' states.
#[async_trait]
pub trait AlarmStates: Send + Sync {
    /// Every alarm of `names` that exists, and every alarm carrying all of `tags`, with its state and since when.
    async fn alarm_states(
        &self,
        names: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError>;
}

/// Finding CloudWatch alarms by their tags (the Resource Groups Tagging API).
#[async_trait]
pub trait AlarmsByTags: Send + Sync {
    /// The names of the alarms, in this account and region, that carry every one of `tags` (key and value).
    async fn alarms_tagged(&self, tags: &BTreeMap<String, String>) -> Result<Vec<String>, FactError>;
}

/// `tags = k=v, …` in words.
pub(super) fn tags_text(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Alarm states for a policy's `names` and `tags`: the names of the tagged alarms from `index`, then the states of
/// those and of the named ones from `states`, in one pass. Tags that select no alarm at all are an error (the check
/// would otherwise pass while checking nothing the author meant), which fails closed unless the policy says
/// `on_error: fail_open`. A tagged alarm deleted between the two reads is simply gone.
#[derive(Debug, Clone)]
pub struct TaggedAlarms<I, S> {
    pub(super) index: I,
    pub(super) states: S,
}

impl<I, S> TaggedAlarms<I, S> {
    pub fn new(index: I, states: S) -> Self {
        TaggedAlarms { index, states }
    }
}

#[async_trait]
impl<I: AlarmsByTags, S: AlarmStates> AlarmStates for TaggedAlarms<I, S> {
    async fn alarm_states(
        &self,
        names: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError> {
        if tags.is_empty() {
            return self.states.alarm_states(names, tags).await;
        }
        let tagged = self
            .index
            .alarms_tagged(tags)
            .await
            .map_err(|e| FactError(format!("cannot find the alarms tagged {}: {e}", tags_text(tags))))?;
        if tagged.is_empty() {
            return Err(FactError(format!(
                "no CloudWatch alarm carries the tags {} (tag:GetResources found none in this account and region)",
                tags_text(tags)
            )));
        }
        let mut all: Vec<String> = names.to_vec();
        for name in tagged {
            if !all.contains(&name) {
                all.push(name);
            }
        }
        self.states.alarm_states(&all, &BTreeMap::new()).await
    }
}

/// CloudWatch metrics.
#[async_trait]
pub trait MetricTotals: Send + Sync {
    /// The metric's `statistic`, totalled over `[from, to)`.
    async fn metric_total(
        &self,
        metric: &MinRequests,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<f64, FactError>;
}

/// A CodePipeline call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobApiError {
    /// Throttling, a timeout, a 5xx: a later attempt may succeed.
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// What answering a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSent {
    Sent,
    /// CodePipeline says the job is no longer in progress: it was answered before (or timed out).
    AlreadyAnswered,
}

/// CodePipeline's job API, as the gate uses it.
#[async_trait]
pub trait PipelineJobs: Send + Sync {
    /// GetJobDetails: the pipeline, stage, action and execution of the job.
    async fn job_context(&self, job_id: &str) -> Result<JobContext, JobApiError>;
    /// PutJobSuccessResult or PutJobFailureResult.
    async fn answer(&self, job_id: &str, answer: &JobAnswer) -> Result<AnswerSent, JobApiError>;
}

/// Reading the policy file from the job's input artifact.
#[async_trait]
pub trait PolicySource: Send + Sync {
    /// The first of `candidates` found in the artifact, read with the job's own credentials.
    async fn read_policy(
        &self,
        artifact: &ArtifactLocation,
        credentials: &ArtifactCredentials,
        candidates: &[String],
    ) -> Result<PolicyText, FactError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Gathering the facts.

/// The adapters facts are read through.
pub struct FactSources<'a, A: ?Sized, M: ?Sized, Q: ?Sized, P: ?Sized, L: ?Sized> {
    pub alarms: &'a A,
    pub metrics: &'a M,
    pub timelines: &'a Q,
    pub approvals: &'a P,
    /// Deployment leases, for the concurrency check.
    pub leases: &'a L,
}

/// Gathers the facts `policy` needs, and only those, for the job in `ctx`. Every failure becomes that fact's
/// `Err(reason)`, for the engine to fail closed or open as the policy says; nothing here fails the evaluation.
pub async fn gather_facts<A, M, Q, P, L>(
    policy: &Policy,
    ctx: &JobContext,
    now: DateTime<Utc>,
    first_evaluated_at: DateTime<Utc>,
    sources: &FactSources<'_, A, M, Q, P, L>,
) -> Facts
where
    A: AlarmStates + ?Sized,
    M: MetricTotals + ?Sized,
    Q: TimelineQueries + ?Sized,
    P: ApprovalRecords + ?Sized,
    L: DeploymentLeases + ?Sized,
{
    let mut facts = Facts::new(now, first_evaluated_at);
    if let Some(alarms) = &policy.alarms {
        facts.alarms = sources
            .alarms
            .alarm_states(&alarms.names, &alarms.tags)
            .await
            .map_err(|e| e.0);
    }
    if let Some(bake) = &policy.bake {
        let succeeded =
            bake_stage_succeeded_at(sources.timelines, ctx, &bake.after_stage, bake.pipeline.as_deref()).await;
        if let (Ok(Some(at)), Some(m)) = (&succeeded, &bake.min_requests) {
            // Only once the bake time has passed does the engine read the traffic.
            if now - *at >= bake.duration.to_chrono() {
                facts.bake_requests = Some(sources.metrics.metric_total(m, *at, now).await.map_err(|e| e.0));
            }
        }
        facts.bake_stage_succeeded_at = Some(succeeded);
    }
    if let Some(upstream) = &policy.upstream {
        facts.upstream_unrestored_failure_at = Some(unrestored_failure_at(sources.timelines, ctx, upstream).await);
    }
    if policy.approval.is_some() {
        facts.approval = Some(
            sources
                .approvals
                .latest_approval(&ctx.approval_key())
                .await
                .map(|a| a.map(|r| r.fact()))
                .map_err(|e| e.to_string()),
        );
    }
    if let Some(c) = &policy.concurrency {
        facts.deployments_in_progress = Some(
            deployments_in_progress(
                sources.leases,
                sources.timelines,
                ctx,
                &c.environment,
                c.wave.as_deref(),
                now,
            )
            .await,
        );
    }
    facts
}

/// The alarms a passing stage is to be watched by (docs/gate.md, "Alarm watches"): the policy's alarm names, then
/// the alarms its tags selected and the gate read (each once, in that order). Empty without an alarm check. When the
/// alarms could not be read, only the names are known: the tags' alarms are registered on the next pass that reads
/// them.
pub fn watched_alarms(policy: &Policy, facts: &Facts) -> Vec<String> {
    let Some(check) = &policy.alarms else {
        return Vec::new();
    };
    let mut alarms: Vec<String> = Vec::new();
    let read = facts.alarms.as_ref().map(|a| a.as_slice()).unwrap_or_default();
    for name in check.names.iter().chain(read.iter().map(|a| &a.name)) {
        if !name.is_empty() && !alarms.contains(name) {
            alarms.push(name.clone());
        }
    }
    alarms
}

/// Registers the job's stage as watched by `alarms` for [`crate::gate::ALARM_WATCH_DAYS`] from `now`, so the guard
/// rolls it back when one of them fires. Nothing to do without alarms.
pub async fn register_alarm_watches<W: AlarmWatches + ?Sized>(
    watches: &W,
    ctx: &JobContext,
    alarms: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if alarms.is_empty() {
        return Ok(());
    }
    let stage = WatchedStage {
        pipeline: ctx.pipeline.clone(),
        stage: ctx.stage.clone(),
    };
    let until = now + chrono::Duration::days(crate::gate::ALARM_WATCH_DAYS);
    watches.watch(&ctx.account, &ctx.region, alarms, &stage, until).await
}

/// When `stage` succeeded: in this execution, or (with `pipeline`) in that pipeline's latest execution that ran the
/// stage. A latest run that failed or is still going means "not (yet)": the bake is about what the stage holds now.
pub(super) async fn bake_stage_succeeded_at<Q: TimelineQueries + ?Sized>(
    store: &Q,
    ctx: &JobContext,
    stage: &str,
    pipeline: Option<&str>,
) -> Result<Option<DateTime<Utc>>, String> {
    let succeeded = |t: &crate::record::timeline::ExecutionTimeline| {
        t.stage(stage)
            .map(|s| (s.state == "SUCCEEDED").then_some(s.ended_at).flatten())
    };
    let Some(pipeline) = pipeline.filter(|p| *p != ctx.pipeline) else {
        let key = ctx.execution_key();
        let timeline = execution_timeline(store, &key)
            .await
            .map_err(|e| format!("cannot read this execution's timeline: {e}"))?;
        return Ok(timeline.as_ref().and_then(succeeded).flatten());
    };
    let executions = store
        .executions(&ctx.pipeline_key(pipeline), EXECUTIONS_READ)
        .await
        .map_err(|e| format!("cannot list {pipeline}'s executions: {e}"))?;
    for summary in executions {
        let timeline = execution_timeline(store, &summary.key)
            .await
            .map_err(|e| format!("cannot read {pipeline}'s execution {}: {e}", summary.key.execution_id))?;
        if let Some(ran) = timeline.as_ref().and_then(succeeded) {
            return Ok(ran);
        }
    }
    Ok(None)
}

/// The latest failure of the upstream pipeline (or its stage) among its recent executions, unless a success ended
/// after it.
pub(super) async fn unrestored_failure_at<Q: TimelineQueries + ?Sized>(
    store: &Q,
    ctx: &JobContext,
    check: &UpstreamCheck,
) -> Result<Option<DateTime<Utc>>, String> {
    let executions = store
        .executions(&ctx.pipeline_key(&check.pipeline), EXECUTIONS_READ)
        .await
        .map_err(|e| e.to_string())?;
    // A pipeline never recorded vouches for nothing: a typo in its name must not read as "no failures".
    if executions.is_empty() {
        return Err(never_recorded(ctx, &check.pipeline, None));
    }
    let mut stage_seen = check.stage.is_none();
    // (end time, failed) of each finished run of the pipeline or stage.
    let mut ends: Vec<(DateTime<Utc>, bool)> = Vec::new();
    for summary in &executions {
        let (state, ended_at) = match &check.stage {
            None => {
                let r = summary.resolved();
                (r.state, r.ended_at)
            }
            Some(stage) => {
                let timeline = execution_timeline(store, &summary.key)
                    .await
                    .map_err(|e| format!("execution {}: {e}", summary.key.execution_id))?;
                match timeline.as_ref().and_then(|t| t.stage(stage)) {
                    Some(s) => {
                        stage_seen = true;
                        (s.state.clone(), s.ended_at)
                    }
                    None => continue,
                }
            }
        };
        if let Some(at) = ended_at {
            if is_failure(&state) {
                ends.push((at, true));
            } else if state == "SUCCEEDED" {
                ends.push((at, false));
            }
        }
    }
    if !stage_seen {
        return Err(never_recorded(ctx, &check.pipeline, check.stage.as_deref()));
    }
    let last_failure = ends.iter().filter(|(_, failed)| *failed).map(|(t, _)| *t).max();
    let last_success = ends.iter().filter(|(_, failed)| !*failed).map(|(t, _)| *t).max();
    Ok(match (last_failure, last_success) {
        (Some(f), Some(s)) if s > f => None,
        (f, _) => f,
    })
}

/// Why an upstream with no recorded run cannot be evaluated.
fn never_recorded(ctx: &JobContext, pipeline: &str, stage: Option<&str>) -> String {
    let what = match stage {
        None => format!("no execution of {pipeline}"),
        Some(stage) => format!("no execution of {pipeline} that ran stage {stage}"),
    };
    format!(
        "{what} is recorded in account {} region {} (among its latest {EXECUTIONS_READ}): check the name, and that \
         its events reach Tollgate; an upstream never seen is not a healthy one",
        ctx.account, ctx.region
    )
}
pub fn alarm_key(account: &str, region: &str, alarm_name: &str) -> String {
    format!("{account}/{region}/{alarm_name}")
}

/// How long a stage stays watched by an alarm after its gate last passed. Each pass refreshes it, so a stage that
/// deploys at least monthly never loses its watch; one that stopped deploying (or was renamed, or whose policy
/// dropped the alarm) falls out on its own, through the table's TTL, with no cleanup to run.
pub const ALARM_WATCH_DAYS: i64 = 30;

/// `ALARMWATCH#<account>/<region>/<alarm name>`: the partition of one alarm's watches (one item per stage).
pub fn alarm_watch_pk(account: &str, region: &str, alarm_name: &str) -> String {
    format!("ALARMWATCH#{}", alarm_key(account, region, alarm_name))
}

/// A pipeline stage an alarm protects, as the gate registered it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WatchedStage {
    pub pipeline: String,
    pub stage: String,
}

/// Which pipeline stages each alarm protects. The gate registers a stage when it passes a policy with alarm checks
/// (the alarms it checked are the ones that should roll the stage back); the guard reads them when an alarm fires,
/// alongside the `tollgate:rollback-alarm:` tags.
#[async_trait]
pub trait AlarmWatches: Send + Sync {
    /// Registers `stage` as watched by each of `alarms` (of `account` and `region`) until `until`. Idempotent: a
    /// second registration only moves `until`.
    async fn watch(
        &self,
        account: &str,
        region: &str,
        alarms: &[String],
        stage: &WatchedStage,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The stages `alarm_name` watches that are still registered at `at`, each once.
    async fn watchers(
        &self,
        account: &str,
        region: &str,
        alarm_name: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<WatchedStage>, StoreError>;
}

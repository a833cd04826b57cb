//! Delivery metrics over execution timelines: the four DORA key metrics (deployment frequency, lead time for changes,
//! change failure rate, time to restore), the Deployment Pipeline Reference Architecture's MTBF and MTTR, and
//! pipeline activity (builds, approvals, executions, stage lead times), per pipeline and per team; and the health of
//! Tollgate's own automation (error rate and latency of its actions by family, manual fallbacks), from the audit trail
//! and the gate decisions ([`compute_with_audit`], [`automation_health`]).
//!
//! [`compute`] is a pure function of the timelines it is given: no clock, no store. Give it every timeline it should
//! know about, including some after the period (a failure inside the period may be restored after it) and some before
//! it (a rollback inside the period marks an earlier deployment as failed; the production stage is read from the
//! pipeline's executions). The definitions are in `docs/metrics.md`; the doc comments below repeat them.
//!
//! Period boundaries: the period is half-open, `[from, to)`. A deployment belongs to the period containing its
//! production stage's `ended_at`; a build to the one containing the build's `ended_at`; an approval to the one
//! containing the action's `ended_at`; an execution (execution counts, runs for MTBF/MTTR, stage lead times) to the
//! one containing the execution's start.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{action, AuditEntry};
use crate::gate::policy::Outcome;
use crate::gate::GateDecision;
use crate::record::timeline::{is_failure, ExecutionTimeline, StageTimeline};

const DAY_SECS: i64 = 86_400;
const WEEK_SECS: i64 = 7 * DAY_SECS;
/// DORA's "once per month" and "one month" are read as 30 days.
const MONTH_SECS: i64 = 30 * DAY_SECS;
const HOUR_SECS: i64 = 3_600;

/// Trigger types of an execution that rolls a stage back. The first is the one Tollgate's definition names (the
/// CodePipeline API operation); the other two are the values CodePipeline documents for `ExecutionTrigger.triggerType`
/// of rollback executions.
pub const ROLLBACK_TRIGGER_TYPES: [&str; 3] = ["RollbackStage", "ManualRollback", "AutomatedRollback"];

/// The half-open time range `[from, to)` the metrics are computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    /// True when `from <= time < to`.
    pub fn contains(&self, time: DateTime<Utc>) -> bool {
        self.from <= time && time < self.to
    }

    fn contains_opt(&self, time: Option<DateTime<Utc>>) -> bool {
        time.is_some_and(|t| self.contains(t))
    }

    /// The period's length in milliseconds (0 for an empty or inverted period).
    fn millis(&self) -> i64 {
        (self.to - self.from).num_milliseconds().max(0)
    }

    /// The period's length in days (fractional).
    pub fn days(&self) -> f64 {
        self.millis() as f64 / (DAY_SECS * 1000) as f64
    }
}

/// What Tollgate knows of a pipeline beyond its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// The team that owns the pipeline; pipelines without one are reported under [`UNASSIGNED_TEAM`].
    pub team: Option<String>,
    /// Names of the pipeline's production stage, in order of preference: the first one the pipeline's executions have
    /// is used. Empty: the default rule (see [`PipelineMetrics::production_stage`]).
    pub production_stages: Vec<String>,
}

/// The team of pipelines whose configuration names none.
pub const UNASSIGNED_TEAM: &str = "unassigned";

/// DORA performance level of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Elite,
    High,
    Medium,
    Low,
}

/// Performance levels of the four DORA metrics (DORA "Accelerate State of DevOps" 2023 performance levels, with
/// thresholds as Tollgate reads them). Each is `None` when there is no data for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bands {
    /// Successful production deployments per day: Elite at least 1 a day ("on demand"), High at least 1 a week,
    /// Medium at least 1 a month (30 days), Low below. `None` when the period has no production deployment.
    pub deployment_frequency: Option<Band>,
    /// Median lead time: Elite under 1 day, High under 1 week, Medium under 1 month (30 days), Low otherwise.
    pub lead_time: Option<Band>,
    /// Change failure rate: Elite at most 5%, High at most 10%, Medium at most 15%, Low otherwise.
    pub change_failure_rate: Option<Band>,
    /// Median time to restore: Elite under 1 hour, High under 1 day, Medium under 1 week, Low otherwise.
    pub time_to_restore: Option<Band>,
}

/// Lead time for changes, in seconds, over the successful production deployments of the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadTimeStats {
    /// Nearest-rank median (the value of rank ⌈0.5·n⌉ in ascending order).
    pub median: Option<i64>,
    /// Nearest-rank 90th percentile (rank ⌈0.9·n⌉).
    pub p90: Option<i64>,
    /// Arithmetic mean, rounded to the nearest second.
    pub mean: Option<i64>,
}

/// Time to restore, in seconds, over the failed production deployments of the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeToRestoreStats {
    /// Nearest-rank median over the restored failures.
    pub median: Option<i64>,
    /// Mean over the restored failures, rounded to the nearest second.
    pub mean: Option<i64>,
    /// Failures followed by a successful production deployment (whenever it happened, in the data given).
    pub restored: u64,
    /// Failures with no later successful production deployment; excluded from `median` and `mean`.
    pub unrestored: u64,
}

/// The metrics of one pipeline over a period. The serde field names are a stable JSON contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineMetrics {
    pub pipeline: String,
    pub account: String,
    pub region: String,
    pub team: Option<String>,
    /// The stage name used as the production stage. With `production_stages` configured: the first configured name
    /// that any of the pipeline's executions has. Otherwise: in the stage order of the pipeline's fullest execution
    /// (the one with the most stages), the last stage whose name contains "prod" (case-insensitive), else its last
    /// stage. `None` when no execution has such a stage: the pipeline then has no deployment.
    pub production_stage: Option<String>,
    /// Production deployments ended in the period: executions (not rollbacks) whose production stage ended SUCCEEDED
    /// or FAILED, attributed by the production stage's `ended_at`.
    pub deployments: u64,
    /// Production deployments of the period that are change failures (see `docs/metrics.md`).
    pub failed_deployments: u64,
    /// `failed_deployments / deployments`; `None` when there is no deployment.
    pub change_failure_rate: Option<f64>,
    /// Successful production deployments divided by the period's length in days.
    pub deployment_frequency_per_day: f64,
    /// Successful production deployments divided by the period's length in weeks.
    pub deployment_frequency_per_week: f64,
    pub lead_time_seconds: LeadTimeStats,
    pub time_to_restore_seconds: TimeToRestoreStats,
    /// DPRA mean time between failures: mean of `failed.start − successful.start` over consecutive runs where a
    /// successful run is followed by a failed one.
    pub mtbf_seconds: Option<i64>,
    /// DPRA mean time to recovery: mean of `successful.start − failed.start` over consecutive runs where a failed run is
    /// followed by a successful one.
    pub mttr_seconds: Option<i64>,
    /// CodeBuild builds linked to the pipeline's actions whose build ended in the period.
    pub builds: u64,
    /// Of `builds`, those whose status is a failure (FAILED, FAULT, TIMED_OUT).
    pub failed_builds: u64,
    /// Mean duration of those builds that have one.
    pub average_build_seconds: Option<f64>,
    /// For each stage name: mean of `stage.ended_at − execution start` over the executions started in the period
    /// (rollbacks excluded) in which that stage ended, rounded to the nearest second.
    pub stage_lead_time_seconds: BTreeMap<String, i64>,
    /// Distinct source revision ids of the period's successful production deployments.
    pub changes_reaching_production: u64,
    /// Approval-category actions that ended in the period.
    pub approvals: u64,
    /// Executions started in the period.
    pub executions: u64,
    /// Of `executions`, those that ended FAILED.
    pub failed_executions: u64,
    pub bands: Bands,
}

/// The DORA metrics of a team, recomputed over all its pipelines' deployments (never averages of averages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMetrics {
    pub team: String,
    /// Names of the team's pipelines, in report order, each once.
    pub pipelines: Vec<String>,
    pub deployments: u64,
    pub failed_deployments: u64,
    pub change_failure_rate: Option<f64>,
    pub deployment_frequency_per_day: f64,
    pub lead_time_seconds: LeadTimeStats,
    pub time_to_restore_seconds: TimeToRestoreStats,
    pub bands: Bands,
}

/// Delivery metrics over one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub period_from: DateTime<Utc>,
    pub period_to: DateTime<Utc>,
    /// Every pipeline that has at least one timeline in the input, sorted by account, region, pipeline.
    pub pipelines: Vec<PipelineMetrics>,
    /// Teams sorted by name; pipelines without a team are under [`UNASSIGNED_TEAM`].
    pub teams: Vec<TeamMetrics>,
    /// The health of Tollgate's own automation over the period, control-plane wide. [`compute`] fills only what the
    /// timelines say (manual rollbacks and deployment stops); [`compute_with_audit`] adds the audit trail's figures.
    #[serde(default)]
    pub automation: AutomationHealth,
}

/// Computes the delivery metrics of `period` from `timelines` (any order; a timeline given twice counts once).
/// `configs` is keyed by pipeline name; a pipeline without an entry gets the default configuration.
pub fn compute(
    timelines: &[ExecutionTimeline],
    configs: &BTreeMap<String, PipelineConfig>,
    period: &Period,
) -> MetricsReport {
    let mut by_pipeline: BTreeMap<(&str, &str, &str), BTreeMap<&str, &ExecutionTimeline>> = BTreeMap::new();
    for t in timelines {
        by_pipeline
            .entry((t.account.as_str(), t.region.as_str(), t.pipeline.as_str()))
            .or_default()
            .entry(t.execution_id.as_str())
            .or_insert(t);
    }
    let default_config = PipelineConfig::default();
    let mut pipelines = Vec::new();
    let mut teams: BTreeMap<String, (Vec<String>, DoraSample)> = BTreeMap::new();
    for ((account, region, pipeline), executions) in by_pipeline {
        let config = configs.get(pipeline).unwrap_or(&default_config);
        let executions: Vec<&ExecutionTimeline> = executions.into_values().collect();
        let (metrics, sample) = pipeline_metrics(account, region, pipeline, &executions, config, period);
        let team = config.team.clone().unwrap_or_else(|| UNASSIGNED_TEAM.to_string());
        let (names, team_sample) = teams.entry(team).or_default();
        if !names.iter().any(|n| n == pipeline) {
            names.push(pipeline.to_string());
        }
        team_sample.extend(sample);
        pipelines.push(metrics);
    }
    let teams = teams
        .into_iter()
        .map(|(team, (pipelines, sample))| {
            let f = sample.figures(period);
            TeamMetrics {
                team,
                pipelines,
                deployments: sample.deployments,
                failed_deployments: sample.failed,
                change_failure_rate: f.change_failure_rate,
                deployment_frequency_per_day: f.per_day,
                lead_time_seconds: f.lead_time,
                time_to_restore_seconds: f.time_to_restore,
                bands: f.bands,
            }
        })
        .collect();
    let deployments = pipelines.iter().map(|p| p.deployments).sum();
    MetricsReport {
        period_from: period.from,
        period_to: period.to,
        pipelines,
        teams,
        automation: automation_health(&[], &[], timelines, deployments, period),
    }
}

/// [`compute`], with the automation-health figures of `audit` (entries of any scopes, any order; an entry given twice
/// counts once) and of the gate decisions the `gate.decision` entries name (`decisions`: any order, any superset).
pub fn compute_with_audit(
    timelines: &[ExecutionTimeline],
    configs: &BTreeMap<String, PipelineConfig>,
    period: &Period,
    audit: &[AuditEntry],
    decisions: &[GateDecision],
) -> MetricsReport {
    let mut report = compute(timelines, configs, period);
    let deployments = report.pipelines.iter().map(|p| p.deployments).sum();
    report.automation = automation_health(audit, decisions, timelines, deployments, period);
    report
}

/// The production stage name of a pipeline, from its configuration and its executions (see
/// [`PipelineMetrics::production_stage`]).
pub fn production_stage(executions: &[&ExecutionTimeline], config: &PipelineConfig) -> Option<String> {
    if !config.production_stages.is_empty() {
        return config
            .production_stages
            .iter()
            .find(|name| executions.iter().any(|e| e.stage(name).is_some()))
            .cloned();
    }
    // The pipeline's structure is known only from its executions; one that stopped early does not show its later
    // stages, so the fullest execution is the reference (ties: the latest started, then the greatest id).
    let fullest = executions
        .iter()
        .max_by(|a, b| (a.stages.len(), start(a), &a.execution_id).cmp(&(b.stages.len(), start(b), &b.execution_id)))?;
    fullest
        .stages
        .iter()
        .rev()
        .find(|s| s.name.to_lowercase().contains("prod"))
        .or(fullest.stages.last())
        .map(|s| s.name.clone())
}

/// True when the execution rolls a stage back (its trigger type is one of [`ROLLBACK_TRIGGER_TYPES`]).
pub fn is_rollback(execution: &ExecutionTimeline) -> bool {
    execution
        .trigger
        .as_ref()
        .is_some_and(|t| ROLLBACK_TRIGGER_TYPES.contains(&t.trigger_type.as_str()))
}

/// When the execution started: its own `started_at`, else its earliest stage start.
fn start(execution: &ExecutionTimeline) -> Option<DateTime<Utc>> {
    execution
        .started_at
        .or_else(|| execution.stages.iter().filter_map(|s| s.started_at).min())
}

/// When the change an execution deploys was made: the commit time when known (CodePipeline's events carry none
/// today), else the execution's start.
fn change_time(execution: &ExecutionTimeline) -> Option<DateTime<Utc>> {
    start(execution)
}

/// A production deployment (over all the data, not only the period).
struct Deployment<'a> {
    execution: &'a ExecutionTimeline,
    ended_at: DateTime<Utc>,
    stage_succeeded: bool,
    failed: bool,
}

fn linked_deployment_failed(stage: &StageTimeline) -> bool {
    stage
        .actions
        .iter()
        .filter_map(|a| a.deployment.as_ref())
        .any(|d| matches!(d.state.as_str(), "FAILURE" | "STOP"))
}

/// The pipeline's production deployments, sorted by production `ended_at`, with their failure marks.
fn deployments<'a>(executions: &[&'a ExecutionTimeline], stage: &str) -> Vec<Deployment<'a>> {
    let mut out: Vec<Deployment<'a>> = executions
        .iter()
        .filter(|e| !is_rollback(e))
        .filter_map(|e| {
            let s = e.stage(stage)?;
            let stage_succeeded = match s.state.as_str() {
                "SUCCEEDED" => true,
                "FAILED" => false,
                _ => return None,
            };
            Some(Deployment {
                execution: e,
                ended_at: s.ended_at?,
                stage_succeeded,
                failed: !stage_succeeded || linked_deployment_failed(s),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.ended_at, &a.execution.execution_id).cmp(&(b.ended_at, &b.execution.execution_id)));
    // A rollback of the production stage: the latest production deployment ended at or before the rollback's start
    // was a change failure (if it had already failed, nothing changes).
    for rollback in executions.iter().filter(|e| is_rollback(e) && e.stage(stage).is_some()) {
        let Some(rollback_start) = start(rollback) else {
            continue;
        };
        if let Some(previous) = out.iter_mut().rev().find(|d| d.ended_at <= rollback_start) {
            if previous.stage_succeeded {
                previous.failed = true;
            }
        }
    }
    out
}

/// What the DORA figures are computed from: per pipeline, or the union of a team's pipelines.
#[derive(Debug, Default)]
struct DoraSample {
    deployments: u64,
    failed: u64,
    lead_times: Vec<i64>,
    restore_times: Vec<i64>,
    unrestored: u64,
}

struct DoraFigures {
    change_failure_rate: Option<f64>,
    per_day: f64,
    per_week: f64,
    lead_time: LeadTimeStats,
    time_to_restore: TimeToRestoreStats,
    bands: Bands,
}

impl DoraSample {
    fn successful(&self) -> u64 {
        self.deployments - self.failed
    }

    fn extend(&mut self, other: DoraSample) {
        self.deployments += other.deployments;
        self.failed += other.failed;
        self.lead_times.extend(other.lead_times);
        self.restore_times.extend(other.restore_times);
        self.unrestored += other.unrestored;
    }

    fn figures(&self, period: &Period) -> DoraFigures {
        let days = period.days();
        let successful = self.successful() as f64;
        let (per_day, per_week) = if days > 0.0 {
            (successful / days, successful * 7.0 / days)
        } else {
            (0.0, 0.0)
        };
        let mut lead = self.lead_times.clone();
        lead.sort_unstable();
        let mut restore = self.restore_times.clone();
        restore.sort_unstable();
        let lead_time = LeadTimeStats {
            median: nearest_rank(&lead, 50),
            p90: nearest_rank(&lead, 90),
            mean: mean(&lead),
        };
        let time_to_restore = TimeToRestoreStats {
            median: nearest_rank(&restore, 50),
            mean: mean(&restore),
            restored: restore.len() as u64,
            unrestored: self.unrestored,
        };
        let bands = Bands {
            deployment_frequency: (self.deployments > 0)
                .then(|| deployment_frequency_band(self.successful(), period.millis())),
            lead_time: lead_time.median.map(lead_time_band),
            change_failure_rate: (self.deployments > 0).then(|| change_failure_band(self.failed, self.deployments)),
            time_to_restore: time_to_restore.median.map(time_to_restore_band),
        };
        DoraFigures {
            change_failure_rate: (self.deployments > 0).then(|| self.failed as f64 / self.deployments as f64),
            per_day,
            per_week,
            lead_time,
            time_to_restore,
            bands,
        }
    }
}

/// Deployment frequency band, compared exactly in integers: `successful / period ≥ 1 / interval`.
fn deployment_frequency_band(successful: u64, period_millis: i64) -> Band {
    let at_least_one_per =
        |interval_secs: i64| successful as i128 * interval_secs as i128 * 1000 >= period_millis as i128;
    if at_least_one_per(DAY_SECS) {
        Band::Elite
    } else if at_least_one_per(WEEK_SECS) {
        Band::High
    } else if at_least_one_per(MONTH_SECS) {
        Band::Medium
    } else {
        Band::Low
    }
}

fn lead_time_band(median_secs: i64) -> Band {
    if median_secs < DAY_SECS {
        Band::Elite
    } else if median_secs < WEEK_SECS {
        Band::High
    } else if median_secs < MONTH_SECS {
        Band::Medium
    } else {
        Band::Low
    }
}

/// Change failure rate band, compared exactly in integers: `failed / deployments ≤ percent / 100`.
fn change_failure_band(failed: u64, deployments: u64) -> Band {
    let at_most = |percent: u64| failed * 100 <= percent * deployments;
    if at_most(5) {
        Band::Elite
    } else if at_most(10) {
        Band::High
    } else if at_most(15) {
        Band::Medium
    } else {
        Band::Low
    }
}

fn time_to_restore_band(median_secs: i64) -> Band {
    if median_secs < HOUR_SECS {
        Band::Elite
    } else if median_secs < DAY_SECS {
        Band::High
    } else if median_secs < WEEK_SECS {
        Band::Medium
    } else {
        Band::Low
    }
}

/// The `percent`-th percentile of `sorted` (ascending) by nearest rank: the value of rank ⌈percent·n/100⌉.
pub fn nearest_rank(sorted: &[i64], percent: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent as usize * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The mean of `values`, rounded to the nearest integer (halves away from zero).
fn mean(values: &[i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let sum: i128 = values.iter().map(|v| *v as i128).sum();
    Some((sum as f64 / values.len() as f64).round() as i64)
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_seconds()
}

fn pipeline_metrics(
    account: &str,
    region: &str,
    pipeline: &str,
    executions: &[&ExecutionTimeline],
    config: &PipelineConfig,
    period: &Period,
) -> (PipelineMetrics, DoraSample) {
    let production_stage = production_stage(executions, config);
    let all = production_stage
        .as_deref()
        .map(|stage| deployments(executions, stage))
        .unwrap_or_default();

    // DORA: the period's deployments; restores may come after the period.
    let mut sample = DoraSample::default();
    let mut revisions: BTreeSet<&str> = BTreeSet::new();
    for (i, d) in all.iter().enumerate() {
        if !period.contains(d.ended_at) {
            continue;
        }
        sample.deployments += 1;
        if d.failed {
            sample.failed += 1;
            match all[i + 1..].iter().find(|n| !n.failed && n.ended_at > d.ended_at) {
                Some(next) => sample.restore_times.push(seconds(d.ended_at, next.ended_at)),
                None => sample.unrestored += 1,
            }
        } else {
            if let Some(changed) = change_time(d.execution) {
                sample.lead_times.push(seconds(changed, d.ended_at));
            }
            revisions.extend(
                d.execution
                    .source_revisions
                    .iter()
                    .filter_map(|r| r.revision_id.as_deref()),
            );
        }
    }

    // Executions started in the period.
    let mut started: Vec<(DateTime<Utc>, &ExecutionTimeline)> = executions
        .iter()
        .filter_map(|e| start(e).filter(|t| period.contains(*t)).map(|t| (t, *e)))
        .collect();
    started.sort_by(|a, b| (a.0, &a.1.execution_id).cmp(&(b.0, &b.1.execution_id)));
    let (mtbf_seconds, mttr_seconds) = mtbf_mttr(&started);

    let mut stage_lead: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (execution_start, e) in started.iter().filter(|(_, e)| !is_rollback(e)) {
        for s in &e.stages {
            if let Some(ended) = s.ended_at {
                stage_lead
                    .entry(s.name.clone())
                    .or_default()
                    .push(seconds(*execution_start, ended));
            }
        }
    }

    // Builds and approvals, by their own end.
    let actions = || {
        executions
            .iter()
            .flat_map(|e| e.stages.iter())
            .flat_map(|s| s.actions.iter())
    };
    let mut builds = BTreeMap::new();
    for b in actions().filter_map(|a| a.build.as_ref()) {
        if period.contains_opt(b.ended_at) {
            builds.entry(b.build_id.as_str()).or_insert(b);
        }
    }
    let durations: Vec<i64> = builds.values().filter_map(|b| b.duration_secs).collect();
    let approvals = actions()
        .filter(|a| a.category == "Approval" && period.contains_opt(a.ended_at))
        .count();

    let f = sample.figures(period);
    let metrics = PipelineMetrics {
        pipeline: pipeline.to_string(),
        account: account.to_string(),
        region: region.to_string(),
        team: config.team.clone(),
        production_stage,
        deployments: sample.deployments,
        failed_deployments: sample.failed,
        change_failure_rate: f.change_failure_rate,
        deployment_frequency_per_day: f.per_day,
        deployment_frequency_per_week: f.per_week,
        lead_time_seconds: f.lead_time,
        time_to_restore_seconds: f.time_to_restore,
        mtbf_seconds,
        mttr_seconds,
        builds: builds.len() as u64,
        failed_builds: builds.values().filter(|b| is_failure(&b.status)).count() as u64,
        average_build_seconds: (!durations.is_empty())
            .then(|| durations.iter().sum::<i64>() as f64 / durations.len() as f64),
        stage_lead_time_seconds: stage_lead
            .into_iter()
            .filter_map(|(name, values)| Some((name, mean(&values)?)))
            .collect(),
        changes_reaching_production: revisions.len() as u64,
        approvals: approvals as u64,
        executions: started.len() as u64,
        failed_executions: started.iter().filter(|(_, e)| is_failure(&e.state)).count() as u64,
        bands: f.bands,
    };
    (metrics, sample)
}

/// DPRA MTBF and MTTR over the runs (completed executions, SUCCEEDED or FAILED) among `started` (sorted by start).
fn mtbf_mttr(started: &[(DateTime<Utc>, &ExecutionTimeline)]) -> (Option<i64>, Option<i64>) {
    let runs: Vec<(DateTime<Utc>, bool)> = started
        .iter()
        .filter_map(|(t, e)| match e.state.as_str() {
            "SUCCEEDED" => Some((*t, true)),
            "FAILED" => Some((*t, false)),
            _ => None,
        })
        .collect();
    let (mut between_failures, mut to_recover) = (Vec::new(), Vec::new());
    for pair in runs.windows(2) {
        let ((t0, ok0), (t1, ok1)) = (pair[0], pair[1]);
        match (ok0, ok1) {
            (true, false) => between_failures.push(seconds(t0, t1)),
            (false, true) => to_recover.push(seconds(t0, t1)),
            _ => {}
        }
    }
    (mean(&between_failures), mean(&to_recover))
}

// ---------------------------------------------------------------------------------------------------------------
// Automation health: Tollgate's own actions, from the audit trail (every automated action appends an entry) and the
// gate decisions. Definitions: docs/metrics.md, "Automation health".

/// Actors of Tollgate's own actions start with this (`tollgate:gate`, `tollgate:guard`...); any other actor is a
/// person (a principal ARN, a chat user).
pub const AUTOMATED_ACTOR_PREFIX: &str = "tollgate:";

/// Action families that are a person's decision whoever records them: a person approving, rejecting or overriding is
/// a fallback from automation to a human, even when a Tollgate function writes the entry on the person's behalf.
pub const MANUAL_FAMILIES: [&str; 2] = ["approval", "override"];

/// The action family that rolls back: a rollback execution or a stopped deployment named by one of Tollgate's entries of
/// this family was Tollgate's, not a person's.
pub const ROLLBACK_FAMILY: &str = "rollback";

/// Trigger types of rollback executions a caller of the RollbackStage API started (a person, or Tollgate's guard when
/// one of its `rollback` entries names the execution). `AutomatedRollback` is CodePipeline's own rollback on a failed
/// stage: neither a person nor Tollgate.
pub const MANUAL_ROLLBACK_TRIGGER_TYPES: [&str; 2] = ["ManualRollback", "RollbackStage"];

/// Values of an entry's `detail.outcome` (compared case-insensitively) that say the action did not do what it was for.
pub const ERROR_OUTCOMES: [&str; 6] = ["error", "failed", "failure", "refused", "timed_out", "timeout"];

/// The start of a gate summary when the gate could not evaluate its policy (see the gate function's `failed`).
const GATE_CANNOT_EVALUATE: &str = "the gate cannot evaluate";

/// The family of an action: its name up to the first `.` (`gate.decision` → `gate`, `rollback.stop_deployment` →
/// `rollback`, `override` → `override`).
pub fn action_family(action: &str) -> &str {
    action.split('.').next().unwrap_or(action)
}

/// Latency of one family's actions, in milliseconds, over those whose latency is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Actions whose latency is known (the others are counted in `actions` but not here).
    pub measured: u64,
    /// Nearest-rank median.
    pub median: Option<i64>,
    /// Nearest-rank 90th percentile.
    pub p90: Option<i64>,
    /// Mean, rounded to the nearest millisecond.
    pub mean: Option<i64>,
}

/// One action family's automated actions over the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FamilyHealth {
    /// Automated actions of the family whose entry's `at` is in the period.
    pub actions: u64,
    /// Of `actions`, those that did not do what they were for (see docs/metrics.md).
    pub errors: u64,
    /// `errors / actions`; `None` when there is no action.
    pub error_rate: Option<f64>,
    pub latency_ms: LatencyStats,
}

/// How often people stepped in where automation did not decide or act.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManualFallbacks {
    /// Audit entries of the `approval` family in the period (approvals and rejections of a gate, by a person).
    pub approvals: u64,
    /// Audit entries of the `override` family in the period.
    pub overrides: u64,
    /// Pipeline executions started in the period whose trigger type is `ManualRollback` or `RollbackStage` and that
    /// no automated `rollback` entry names.
    pub manual_rollbacks: u64,
    /// CodeDeploy deployments run by a pipeline action that ended `STOP` in the period and that no automated
    /// `rollback` entry names.
    pub manual_deployment_stops: u64,
    /// `approvals + overrides + manual_rollbacks + manual_deployment_stops`.
    pub total: u64,
    /// `total / deployments` (the report's production deployments); `None` when there is no deployment.
    pub per_production_deployment: Option<f64>,
    /// Other audit entries by a person in the period, by family (freezes, unfreezes...): not fallbacks, but manual.
    pub other_manual_actions: BTreeMap<String, u64>,
}

/// The health of Tollgate's own automation over one period, control-plane wide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutomationHealth {
    /// Distinct audit entries read whose `at` is in the period (0: the figures below come from the timelines alone).
    pub audit_entries: u64,
    /// Automated actions in the period, all families.
    pub actions: u64,
    pub errors: u64,
    /// `errors / actions`; `None` when there is no action.
    pub error_rate: Option<f64>,
    /// By action family (`gate`, `rollback`, `hook`, `changeset`...): every family that has an automated action.
    pub families: BTreeMap<String, FamilyHealth>,
    pub manual: ManualFallbacks,
}

/// The automation-health figures of `period`: automated actions and their errors and latency from `audit` (with the
/// `decisions` the `gate.decision` entries name), manual fallbacks from `audit` and `timelines`. `deployments` is the
/// number of production deployments of the period, for [`ManualFallbacks::per_production_deployment`].
pub fn automation_health(
    audit: &[AuditEntry],
    decisions: &[GateDecision],
    timelines: &[ExecutionTimeline],
    deployments: u64,
    period: &Period,
) -> AutomationHealth {
    // Each entry once (scope and seq identify it), attributed by its own time.
    let mut entries: BTreeMap<(&str, u64), &AuditEntry> = BTreeMap::new();
    for e in audit.iter().filter(|e| period.contains(e.at)) {
        entries.entry((e.scope.as_str(), e.seq)).or_insert(e);
    }
    let decisions: BTreeMap<&str, &GateDecision> = decisions.iter().map(|d| (d.id.as_str(), d)).collect();

    let mut health = AutomationHealth {
        audit_entries: entries.len() as u64,
        ..AutomationHealth::default()
    };
    let mut latencies: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in entries.values() {
        let family = action_family(&e.action);
        let automated = e.actor.starts_with(AUTOMATED_ACTOR_PREFIX) && !MANUAL_FAMILIES.contains(&family);
        if !automated {
            match family {
                "approval" => health.manual.approvals += 1,
                "override" => health.manual.overrides += 1,
                other => *health.manual.other_manual_actions.entry(other.to_string()).or_default() += 1,
            }
            continue;
        }
        let (error, latency) = if e.action == action::GATE_DECISION {
            gate_decision_health(e, &decisions)
        } else {
            (entry_failed(&e.detail), entry_latency_ms(e))
        };
        let f = health.families.entry(family.to_string()).or_default();
        f.actions += 1;
        f.errors += u64::from(error);
        if let Some(ms) = latency {
            latencies.entry(family.to_string()).or_default().push(ms);
        }
    }
    for (name, f) in health.families.iter_mut() {
        f.error_rate = rate(f.errors, f.actions);
        let mut ms = latencies.remove(name).unwrap_or_default();
        ms.sort_unstable();
        f.latency_ms = LatencyStats {
            measured: ms.len() as u64,
            median: nearest_rank(&ms, 50),
            p90: nearest_rank(&ms, 90),
            mean: mean(&ms),
        };
        health.actions += f.actions;
        health.errors += f.errors;
    }
    health.error_rate = rate(health.errors, health.actions);

    // What Tollgate's own rollback entries name: their executions and deployments were not a person's.
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for e in audit
        .iter()
        .filter(|e| e.actor.starts_with(AUTOMATED_ACTOR_PREFIX) && action_family(&e.action) == ROLLBACK_FAMILY)
    {
        named.extend(e.subject.split(['/', ' ']).filter(|s| !s.is_empty()));
        strings_in(&e.detail, &mut named);
    }
    let mut executions: BTreeSet<(&str, &str, &str, &str)> = BTreeSet::new();
    let mut stops: BTreeSet<&str> = BTreeSet::new();
    for t in timelines {
        let manual_rollback = t
            .trigger
            .as_ref()
            .is_some_and(|tr| MANUAL_ROLLBACK_TRIGGER_TYPES.contains(&tr.trigger_type.as_str()));
        if manual_rollback && period.contains_opt(start(t)) && !named.contains(t.execution_id.as_str()) {
            executions.insert((&t.account, &t.region, &t.pipeline, &t.execution_id));
        }
        for d in t
            .stages
            .iter()
            .flat_map(|s| &s.actions)
            .filter_map(|a| a.deployment.as_ref())
        {
            if d.state == "STOP" && period.contains_opt(d.ended_at) && !named.contains(d.deployment_id.as_str()) {
                stops.insert(&d.deployment_id);
            }
        }
    }
    let m = &mut health.manual;
    m.manual_rollbacks = executions.len() as u64;
    m.manual_deployment_stops = stops.len() as u64;
    m.total = m.approvals + m.overrides + m.manual_rollbacks + m.manual_deployment_stops;
    m.per_production_deployment = (deployments > 0).then(|| m.total as f64 / deployments as f64);
    health
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A gate decision's error and latency. With its record: an error when it failed without evaluating any check (the
/// policy or the job's details could not be read); latency, for a final decision (pass or fail, not a wait), from the
/// gate's first evaluation of the stage to the decision. Without its record, the entry's outcome and summary say
/// whether it could evaluate, and its latency is unknown.
fn gate_decision_health(e: &AuditEntry, decisions: &BTreeMap<&str, &GateDecision>) -> (bool, Option<i64>) {
    let record = e
        .detail
        .get("decision_id")
        .and_then(|v| v.as_str())
        .and_then(|id| decisions.get(id));
    match record {
        Some(d) => {
            let error = d.outcome == Outcome::Fail && d.checks.is_empty();
            let latency = match d.outcome {
                Outcome::Wait { .. } => None,
                _ => Some((d.decided_at - d.first_evaluated_at).num_milliseconds().max(0)),
            };
            (error, latency)
        }
        None => {
            let failed = e.detail.get("outcome").and_then(|v| v.as_str()) == Some("fail");
            let summary = e.detail.get("summary").and_then(|v| v.as_str()).unwrap_or("");
            (failed && summary.starts_with(GATE_CANNOT_EVALUATE), None)
        }
    }
}

/// True when the entry says the action did not do what it was for: `detail.outcome` is one of [`ERROR_OUTCOMES`], or
/// `detail.error` holds anything but `null` or `false`.
fn entry_failed(detail: &serde_json::Value) -> bool {
    let outcome = detail.get("outcome").and_then(|v| v.as_str()).unwrap_or("");
    let error = detail
        .get("error")
        .is_some_and(|v| !v.is_null() && v.as_bool() != Some(false));
    error || ERROR_OUTCOMES.iter().any(|o| o.eq_ignore_ascii_case(outcome))
}

/// An action's latency from its entry: `detail.duration_ms` (a non-negative number), else the entry's `at` minus
/// `detail.started_at` (RFC 3339, not after `at`); unknown otherwise.
fn entry_latency_ms(e: &AuditEntry) -> Option<i64> {
    if let Some(ms) = e.detail.get("duration_ms").and_then(|v| v.as_f64()) {
        return (ms.is_finite() && ms >= 0.0 && ms < i64::MAX as f64).then(|| ms.round() as i64);
    }
    let started = e.detail.get("started_at").and_then(|v| v.as_str())?;
    let started = DateTime::parse_from_rfc3339(started).ok()?.with_timezone(&Utc);
    let ms = (e.at - started).num_milliseconds();
    (ms >= 0).then_some(ms)
}

/// Every string in `v`, recursively.
fn strings_in<'a>(v: &'a serde_json::Value, out: &mut BTreeSet<&'a str>) {
    match v {
        serde_json::Value::String(s) => {
            out.insert(s);
            // Ids inside a sentence too: the guard's detail reads "rollback execution <id> of <pipeline> / <stage>
            // started, back to execution <id>".
            out.extend(
                s.split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|w| !w.is_empty()),
            );
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| strings_in(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|i| strings_in(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_takes_the_ceiling_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&v, 50), Some(5));
        assert_eq!(nearest_rank(&v, 90), Some(9));
        assert_eq!(nearest_rank(&v, 100), Some(10));
        assert_eq!(nearest_rank(&v, 0), Some(1));
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[3, 8], 50), Some(3));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn mean_rounds_to_the_nearest_second() {
        assert_eq!(mean(&[1, 2]), Some(2));
        assert_eq!(mean(&[1, 1, 2]), Some(1));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn band_thresholds_are_inclusive_where_dora_says_at_least_or_at_most() {
        // Exactly one a day over a week is Elite; 6 a week is High; exactly one a week is High.
        let week = WEEK_SECS * 1000;
        assert_eq!(deployment_frequency_band(7, week), Band::Elite);
        assert_eq!(deployment_frequency_band(6, week), Band::High);
        assert_eq!(deployment_frequency_band(1, week), Band::High);
        assert_eq!(deployment_frequency_band(1, MONTH_SECS * 1000), Band::Medium);
        assert_eq!(deployment_frequency_band(0, week), Band::Low);
        assert_eq!(change_failure_band(1, 20), Band::Elite);
        assert_eq!(change_failure_band(2, 20), Band::High);
        assert_eq!(change_failure_band(3, 20), Band::Medium);
        assert_eq!(change_failure_band(4, 20), Band::Low);
        assert_eq!(lead_time_band(DAY_SECS - 1), Band::Elite);
        assert_eq!(lead_time_band(DAY_SECS), Band::High);
        assert_eq!(lead_time_band(MONTH_SECS), Band::Low);
        assert_eq!(time_to_restore_band(HOUR_SECS - 1), Band::Elite);
        assert_eq!(time_to_restore_band(HOUR_SECS), Band::High);
        assert_eq!(time_to_restore_band(WEEK_SECS), Band::Low);
    }

    #[test]
    fn bands_serialise_in_snake_case() {
        assert_eq!(serde_json::to_string(&Band::Elite).unwrap(), "\"elite\"");
        assert_eq!(serde_json::to_string(&Band::Medium).unwrap(), "\"medium\"");
    }
}

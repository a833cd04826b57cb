//! Delivery metrics on hand-computed scenarios: timelines built directly (see [`Exec`]), each figure asserted exactly;
//! and on the demo story, ingested through the in-memory store.

#[path = "metrics_parts/automation.rs"]
mod automation;
mod common;
#[path = "metrics_parts/contract.rs"]
mod contract;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::Value;
use tollgate_domain::audit::{AuditEntry, GENESIS};
use tollgate_domain::gate::policy::{CheckKind, CheckResult, CheckStatus, Outcome};
use tollgate_domain::gate::{FailureKind, GateDecision, JobAnswer, JobContext};
use tollgate_domain::measure::metrics::{
    compute, compute_with_audit, Band, Bands, FamilyHealth, LatencyStats, LeadTimeStats, MetricsReport, Period,
    PipelineConfig, PipelineMetrics, TimeToRestoreStats,
};
use tollgate_domain::record::event::{SourceRevision, Trigger};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::{
    ActionTimeline, BuildTimeline, DeploymentTimeline, ExecutionTimeline, StageTimeline,
};

// ---------------------------------------------------------------------------------------------------------------
// Builder

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A time on 2026-11-20, the day of the demo story: `nov20("09:30")`.
fn nov20(hh_mm: &str) -> DateTime<Utc> {
    at(&format!("2026-11-20T{hh_mm}:00Z"))
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn dur(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<i64> {
    Some((end? - start?).num_seconds())
}

/// An execution timeline under construction. Stages and actions are appended in order; `action`, `build` and
/// `deployment` apply to the last stage / action.
struct Exec(ExecutionTimeline);

impl Exec {
    fn new(pipeline: &str, execution_id: &str, started: DateTime<Utc>) -> Exec {
        Exec(ExecutionTimeline {
            account: ACCOUNT.into(),
            region: REGION.into(),
            pipeline: pipeline.into(),
            execution_id: execution_id.into(),
            state: "InProgress".into(),
            trigger: Some(Trigger {
                trigger_type: "Webhook".into(),
                detail: None,
            }),
            started_at: Some(started),
            ended_at: None,
            duration_secs: None,
            source_revisions: Vec::new(),
            stages: Vec::new(),
            event_count: 0,
        })
    }

    fn account(mut self, account: &str) -> Exec {
        self.0.account = account.into();
        self
    }

    /// The execution's final state, ended at `ended`.
    fn ended(mut self, state: &str, ended: DateTime<Utc>) -> Exec {
        self.0.state = state.into();
        self.0.ended_at = Some(ended);
        self.0.duration_secs = dur(self.0.started_at, self.0.ended_at);
        self
    }

    fn state(mut self, state: &str) -> Exec {
        self.0.state = state.into();
        self
    }

    fn trigger(mut self, trigger_type: &str) -> Exec {
        self.0.trigger = Some(Trigger {
            trigger_type: trigger_type.into(),
            detail: None,
        });
        self
    }

    fn revision(mut self, id: &str) -> Exec {
        self.0.source_revisions.push(SourceRevision {
            action: "Source".into(),
            provider: Some("CodeStarSourceConnection".into()),
            revision_id: Some(id.into()),
            summary: None,
            url: None,
            branch: None,
            repository: None,
            author: None,
        });
        self
    }

    fn stage(mut self, name: &str, state: &str, started: DateTime<Utc>, ended: Option<DateTime<Utc>>) -> Exec {
        self.0.stages.push(StageTimeline {
            name: name.into(),
            state: state.into(),
            started_at: Some(started),
            ended_at: ended,
            duration_secs: dur(Some(started), ended),
            actions: Vec::new(),
        });
        self
    }

    fn action(
        mut self,
        name: &str,
        category: &str,
        provider: &str,
        state: &str,
        started: DateTime<Utc>,
        ended: Option<DateTime<Utc>>,
    ) -> Exec {
        let stage = self.0.stages.last_mut().expect("a stage first");
        stage.actions.push(ActionTimeline {
            name: name.into(),
            category: category.into(),
            provider: provider.into(),
            owner: "AWS".into(),
            state: state.into(),
            started_at: Some(started),
            ended_at: ended,
            duration_secs: dur(Some(started), ended),
            external_execution_id: None,
            external_execution_url: None,
            summary: None,
            error_code: None,
            build: None,
            deployment: None,
        });
        self
    }

    fn last_action(&mut self) -> &mut ActionTimeline {
        self.0
            .stages
            .last_mut()
            .and_then(|s| s.actions.last_mut())
            .expect("an action first")
    }

    fn build(
        mut self,
        build_id: &str,
        status: &str,
        started: Option<DateTime<Utc>>,
        ended: Option<DateTime<Utc>>,
    ) -> Exec {
        let action = self.last_action();
        action.external_execution_id = Some(build_id.into());
        action.build = Some(BuildTimeline {
            build_id: build_id.into(),
            project: "project".into(),
            status: status.into(),
            started_at: started,
            ended_at: ended,
            duration_secs: dur(started, ended),
            logs_url: None,
            initiator: None,
            phases: Vec::new(),
        });
        self
    }

    fn deployment(mut self, deployment_id: &str, state: &str) -> Exec {
        let action = self.last_action();
        action.external_execution_id = Some(deployment_id.into());
        action.deployment = Some(DeploymentTimeline {
            deployment_id: deployment_id.into(),
            application: "app".into(),
            deployment_group: "production".into(),
            state: state.into(),
            started_at: action.started_at,
            ended_at: action.ended_at,
            duration_secs: action.duration_secs,
        });
        self
    }

    fn done(self) -> ExecutionTimeline {
        self.0
    }
}

/// A three-stage execution (Source, Build, Production) of `pipeline` started at `started` whose Production stage
/// ends `prod_state` at `prod_end`: Source 1s..60s, Build 60s..300s (build `<id>-build`, SUCCEEDED, 230s),
/// Production 300s..prod_end (a CodeDeploy action whose deployment mirrors the stage). The execution ends 1s later
/// in the same state. Its lead time is `prod_end − started`.
fn deploy(pipeline: &str, id: &str, started: DateTime<Utc>, prod_state: &str, prod_end: DateTime<Utc>) -> Exec {
    let deploy_state = if prod_state == "SUCCEEDED" {
        "SUCCESS"
    } else {
        "FAILURE"
    };
    Exec::new(pipeline, id, started)
        .stage("Source", "SUCCEEDED", started + secs(1), Some(started + secs(60)))
        .action(
            "Source",
            "Source",
            "CodeStarSourceConnection",
            "SUCCEEDED",
            started + secs(2),
            Some(started + secs(59)),
        )
        .stage("Build", "SUCCEEDED", started + secs(60), Some(started + secs(300)))
        .action(
            "Build",
            "Build",
            "CodeBuild",
            "SUCCEEDED",
            started + secs(61),
            Some(started + secs(299)),
        )
        .build(
            &format!("{id}-build"),
            "SUCCEEDED",
            Some(started + secs(65)),
            Some(started + secs(295)),
        )
        .stage("Production", prod_state, started + secs(300), Some(prod_end))
        .action(
            "Deploy",
            "Deploy",
            "CodeDeploy",
            prod_state,
            started + secs(301),
            Some(prod_end - secs(1)),
        )
        .deployment(&format!("d-{id}"), deploy_state)
        .ended(prod_state, prod_end + secs(1))
}

fn day(date: &str) -> Period {
    let from = at(&format!("{date}T00:00:00Z"));
    Period {
        from,
        to: from + Duration::days(1),
    }
}

fn week(date: &str) -> Period {
    let from = at(&format!("{date}T00:00:00Z"));
    Period {
        from,
        to: from + Duration::days(7),
    }
}

fn no_configs() -> BTreeMap<String, PipelineConfig> {
    BTreeMap::new()
}

fn report(timelines: &[ExecutionTimeline], period: Period) -> MetricsReport {
    compute(timelines, &no_configs(), &period)
}

/// The report's only pipeline.
fn only(report: &MetricsReport) -> &PipelineMetrics {
    assert_eq!(report.pipelines.len(), 1, "{:#?}", report.pipelines);
    &report.pipelines[0]
}

fn lead(median: i64, p90: i64, mean: i64) -> LeadTimeStats {
    LeadTimeStats {
        median: Some(median),
        p90: Some(p90),
        mean: Some(mean),
    }
}

const NO_LEAD: LeadTimeStats = LeadTimeStats {
    median: None,
    p90: None,
    mean: None,
};

fn restore(median: Option<i64>, mean: Option<i64>, restored: u64, unrestored: u64) -> TimeToRestoreStats {
    TimeToRestoreStats {
        median,
        mean,
        restored,
        unrestored,
    }
}

const NO_BANDS: Bands = Bands {
    deployment_frequency: None,
    lead_time: None,
    change_failure_rate: None,
    time_to_restore: None,
};

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

#[test]
fn no_input_gives_an_empty_report() {
    let r = report(&[], day("2026-11-20"));
    assert_eq!(r.period_from, nov20("00:00"));
    assert_eq!(r.period_to, at("2026-11-21T00:00:00Z"));
    assert!(r.pipelines.is_empty());
    assert!(r.teams.is_empty());
}

#[test]
fn no_deployment_in_the_period_gives_zeros_nones_and_no_bands() {
    // A deployment the day before, and an execution still deploying to production.
    let before = deploy(
        "shop",
        "e1",
        at("2026-11-19T10:00:00Z"),
        "SUCCEEDED",
        at("2026-11-19T10:20:00Z"),
    )
    .done();
    let t = nov20("10:00");
    let running = Exec::new("shop", "e2", t)
        .stage("Source", "SUCCEEDED", t, Some(t + secs(60)))
        .stage("Production", "InProgress", t + secs(60), None)
        .done();
    let r = report(&[before, running], day("2026-11-20"));
    let p = only(&r);
    assert_eq!(p.production_stage.as_deref(), Some("Production"));
    assert_eq!((p.deployments, p.failed_deployments), (0, 0));
    assert_eq!(p.change_failure_rate, None);
    assert_eq!(
        (p.deployment_frequency_per_day, p.deployment_frequency_per_week),
        (0.0, 0.0)
    );
    assert_eq!(p.lead_time_seconds, NO_LEAD);
    assert_eq!(p.time_to_restore_seconds, restore(None, None, 0, 0));
    assert_eq!((p.mtbf_seconds, p.mttr_seconds), (None, None));
    assert_eq!((p.builds, p.failed_builds, p.average_build_seconds), (0, 0, None));
    assert_eq!(p.changes_reaching_production, 0);
    assert_eq!(p.approvals, 0);
    assert_eq!((p.executions, p.failed_executions), (1, 0));
    assert_eq!(p.bands, NO_BANDS);
    assert_eq!(r.teams.len(), 1);
    assert_eq!(r.teams[0].team, "unassigned");
    assert_eq!(r.teams[0].deployments, 0);
    assert_eq!(r.teams[0].change_failure_rate, None);
    assert_eq!(r.teams[0].bands, NO_BANDS);
}

#[test]
fn one_successful_deployment() {
    let e = deploy("shop", "e1", nov20("10:00"), "SUCCEEDED", nov20("10:30"))
        .revision("abc123")
        .done();
    let r = report(&[e], day("2026-11-20"));
    let p = only(&r);
    assert_eq!((p.deployments, p.failed_deployments), (1, 0));
    assert_eq!(p.change_failure_rate, Some(0.0));
    assert_eq!(p.deployment_frequency_per_day, 1.0);
    assert_eq!(p.deployment_frequency_per_week, 7.0);
    assert_eq!(p.lead_time_seconds, lead(1800, 1800, 1800));
    assert_eq!(p.time_to_restore_seconds, restore(None, None, 0, 0));
    assert_eq!(p.changes_reaching_production, 1);
    assert_eq!(
        (p.builds, p.failed_builds, p.average_build_seconds),
        (1, 0, Some(230.0))
    );
    assert_eq!((p.executions, p.failed_executions), (1, 0));
    assert_eq!((p.mtbf_seconds, p.mttr_seconds), (None, None));
    assert_eq!(
        p.bands,
        Bands {
            deployment_frequency: Some(Band::Elite),
            lead_time: Some(Band::Elite),
            change_failure_rate: Some(Band::Elite),
            time_to_restore: None,
        }
    );
}

#[test]
fn a_failure_restored_two_hours_later() {
    let failed = deploy("shop", "e1", nov20("09:30"), "FAILED", nov20("10:00")).done();
    let fixed = deploy("shop", "e2", nov20("11:00"), "SUCCEEDED", nov20("12:00")).done();
    // Over a week: one successful deployment, exactly one a week.
    let r = report(&[fixed, failed], week("2026-11-16"));
    let p = only(&r);
    assert_eq!((p.deployments, p.failed_deployments), (2, 1));
    assert_eq!(p.change_failure_rate, Some(0.5));
    assert_eq!(p.deployment_frequency_per_week, 1.0);
    assert_eq!(p.deployment_frequency_per_day, 1.0 / 7.0);
    assert_eq!(p.time_to_restore_seconds, restore(Some(7200), Some(7200), 1, 0));
    assert_eq!(p.lead_time_seconds, lead(3600, 3600, 3600));
    // Runs: e1 FAILED (09:30), e2 SUCCEEDED (11:00): one failed→successful pair.
    assert_eq!((p.mtbf_seconds, p.mttr_seconds), (None, Some(5400)));
    assert_eq!((p.executions, p.failed_executions), (2, 1));
    assert_eq!(
        p.bands,
        Bands {
            deployment_frequency: Some(Band::High),
            lead_time: Some(Band::Elite),
            change_failure_rate: Some(Band::Low),
            time_to_restore: Some(Band::High),
        }
    );
}

#[test]
fn a_failure_never_restored() {
    let ok = deploy("shop", "e1", nov20("08:00"), "SUCCEEDED", nov20("08:30")).done();
    let failed = deploy("shop", "e2", nov20("09:30"), "FAILED", nov20("10:00")).done();
    let r = report(&[ok, failed], day("2026-11-20"));
    let p = only(&r);
    assert_eq!((p.deployments, p.failed_deployments), (2, 1));
    assert_eq!(p.time_to_restore_seconds, restore(None, None, 0, 1));
    assert_eq!(p.bands.time_to_restore, None);
    assert_eq!(p.bands.change_failure_rate, Some(Band::Low));

    // Only the failure: no successful deployment, so frequency is Low and there is no lead time.
    let failed = deploy("shop", "e2", nov20("09:30"), "FAILED", nov20("10:00")).done();
    let r = report(&[failed], day("2026-11-20"));
    let p = only(&r);
    assert_eq!(p.change_failure_rate, Some(1.0));
    assert_eq!(p.deployment_frequency_per_day, 0.0);
    assert_eq!(p.lead_time_seconds, NO_LEAD);
    assert_eq!(p.time_to_restore_seconds, restore(None, None, 0, 1));
    assert_eq!(
        p.bands,
        Bands {
            deployment_frequency: Some(Band::Low),
            lead_time: None,
            change_failure_rate: Some(Band::Low),
            time_to_restore: None,
        }
    );
}

#[test]
fn executions_that_never_reached_production_are_not_deployments() {
    let ok = deploy("shop", "e1", nov20("08:00"), "SUCCEEDED", nov20("08:30")).done();
    // Failed in Build: its last stage is Build, but the pipeline's production stage is Production.
    let t = nov20("09:00");
    let build_failed = Exec::new("shop", "e2", t)
        .stage("Source", "SUCCEEDED", t, Some(t + secs(60)))
        .stage("Build", "FAILED", t + secs(60), Some(t + secs(200)))
        .ended("FAILED", t + secs(201))
        .done();
    // Stopped (or superseded) in Production: not a deployment either.
    let t = nov20("10:00");
    let stopped = Exec::new("shop", "e3", t)
        .stage("Source", "SUCCEEDED", t, Some(t + secs(60)))
        .stage("Production", "STOPPED", t + secs(60), Some(t + secs(120)))
        .ended("STOPPED", t + secs(121))
        .done();
    let t = nov20("11:00");
    let superseded = Exec::new("shop", "e4", t)
        .stage("Source", "SUCCEEDED", t, Some(t + secs(60)))
        .stage("Production", "SUPERSEDED", t + secs(60), Some(t + secs(120)))
        .ended("SUPERSEDED", t + secs(121))
        .done();
    let r = report(&[ok, build_failed, stopped, superseded], day("2026-11-20"));
    let p = only(&r);
    assert_eq!(p.production_stage.as_deref(), Some("Production"));
    assert_eq!((p.deployments, p.failed_deployments), (1, 0));
    assert_eq!((p.executions, p.failed_executions), (4, 1));

    // A pipeline whose executions have no stage at all has no production stage and no deployment.
    let bare = Exec::new("bare", "e9", nov20("12:00"))
        .ended("FAILED", at("2026-11-20T12:00:05Z"))
        .done();
    let r = report(&[bare], day("2026-11-20"));
    let p = only(&r);
    assert_eq!(p.production_stage, None);
    assert_eq!(p.deployments, 0);
    assert_eq!(p.bands, NO_BANDS);
}

/// Source, Build, Prod-Canary, Live: by default the production stage is Prod-Canary (the last with "prod" in its name).
fn canary_then_live(id: &str, started: DateTime<Utc>) -> ExecutionTimeline {
    Exec::new("web", id, started)
        .stage("Source", "SUCCEEDED", started, Some(started + secs(60)))
        .stage("Build", "SUCCEEDED", started + secs(60), Some(started + secs(300)))
        .stage(
            "Prod-Canary",
            "SUCCEEDED",
            started + secs(300),
            Some(started + secs(600)),
        )
        .stage("Live", "SUCCEEDED", started + secs(600), Some(started + secs(900)))
        .ended("SUCCEEDED", started + secs(901))
        .done()
}

#[test]
fn a_configured_production_stage_name_is_used_first_match_wins() {
    let period = day("2026-11-20");
    let e = canary_then_live("e1", nov20("10:00"));

    let default = report(std::slice::from_ref(&e), period);
    assert_eq!(only(&default).production_stage.as_deref(), Some("Prod-Canary"));
    assert_eq!(only(&default).lead_time_seconds, lead(600, 600, 600));

    let configs = BTreeMap::from([(
        "web".to_string(),
        PipelineConfig {
            team: None,
            production_stages: vec!["Release".into(), "Live".into(), "Prod-Canary".into()],
        },
    )]);
    let r = compute(std::slice::from_ref(&e), &configs, &period);
    let p = only(&r);
    assert_eq!(p.production_stage.as_deref(), Some("Live"));
    assert_eq!(p.deployments, 1);
    assert_eq!(p.lead_time_seconds, lead(900, 900, 900));

    // A configured name no execution has: no production stage, no deployment (no fallback to the default rule).
    let configs = BTreeMap::from([(
        "web".to_string(),
        PipelineConfig {
            team: None,
            production_stages: vec!["Release".into()],
        },
    )]);
    let r = compute(&[e], &configs, &period);
    assert_eq!(only(&r).production_stage, None);
    assert_eq!(only(&r).deployments, 0);
}

#[test]
fn without_a_prod_stage_name_the_last_stage_is_production() {
    let t = nov20("10:00");
    let e = Exec::new("api", "e1", t)
        .stage("Source", "SUCCEEDED", t, Some(t + secs(60)))
        .stage("Deploy", "SUCCEEDED", t + secs(60), Some(t + secs(400)))
        .ended("SUCCEEDED", t + secs(401))
        .done();
    let r = report(&[e], day("2026-11-20"));
    assert_eq!(only(&r).production_stage.as_deref(), Some("Deploy"));
    assert_eq!(only(&r).lead_time_seconds, lead(400, 400, 400));
}

#[test]
fn a_deployment_that_succeeded_after_a_codedeploy_failure_or_stop_is_a_change_failure() {
    let t = nov20("10:00");
    let retried = |id: &str, codedeploy: &str, t: DateTime<Utc>| {
        Exec::new("shop", id, t)
            .stage("Production", "SUCCEEDED", t, Some(t + secs(900)))
            .action("Deploy", "Deploy", "CodeDeploy", "SUCCEEDED", t, Some(t + secs(899)))
            .deployment(&format!("d-{id}"), codedeploy)
            .ended("SUCCEEDED", t + secs(901))
            .done()
    };
    let ok = retried("e0", "SUCCESS", t - secs(7200));
    let failure = retried("e1", "FAILURE", t);
    let stop = retried("e2", "STOP", t + secs(3600));
    let r = report(&[ok, failure, stop], day("2026-11-20"));
    let p = only(&r);
    assert_eq!((p.deployments, p.failed_deployments), (3, 2));
    // Neither failure is followed by a successful deployment.
    assert_eq!(p.time_to_restore_seconds, restore(None, None, 0, 2));
    // Only e0 is successful: its lead time alone, one successful deployment.
    assert_eq!(p.lead_time_seconds, lead(900, 900, 900));
    assert_eq!(p.deployment_frequency_per_day, 1.0);
}

#[test]
fn a_rollback_of_production_marks_the_previous_successful_deployment_failed() {
    let d1 = deploy("shop", "d1", nov20("09:30"), "SUCCEEDED", nov20("10:00")).done();
    let d2 = deploy("shop", "d2", nov20("10:30"), "SUCCEEDED", nov20("11:00")).done();
    let t = nov20("11:30");
    let rollback = Exec::new("shop", "rb", t)
        .trigger("RollbackStage")
        .stage("Production", "SUCCEEDED", t + secs(1), Some(t + secs(600)))
        .ended("SUCCEEDED", t + secs(601))
        .done();
    let r = report(&[d1.clone(), d2.clone(), rollback.clone()], day("2026-11-20"));
    let p = only(&r);
    // The rollback is not a deployment; d2 is the change failure.
    assert_eq!((p.deployments, p.failed_deployments), (2, 1));
    assert_eq!(p.change_failure_rate, Some(0.5));
    assert_eq!(p.time_to_restore_seconds, restore(None, None, 0, 1));
    assert_eq!(p.lead_time_seconds, lead(1800, 1800, 1800));
    assert_eq!(p.executions, 3);

    // A later successful deployment restores d2.
    let d3 = deploy("shop", "d3", nov20("12:30"), "SUCCEEDED", nov20("13:00")).done();
    let r = report(&[d1.clone(), d2, rollback.clone(), d3], day("2026-11-20"));
    assert_eq!(only(&r).time_to_restore_seconds, restore(Some(7200), Some(7200), 1, 0));

    // When the deployment before the rollback already failed, the success before it stays a success.
    let failed = deploy("shop", "d2", nov20("10:30"), "FAILED", nov20("11:00")).done();
    let r = report(&[d1, failed, rollback], day("2026-11-20"));
    assert_eq!((only(&r).deployments, only(&r).failed_deployments), (2, 1));

    // A rollback of another stage marks nothing.
    let d1 = deploy("shop", "d1", nov20("09:30"), "SUCCEEDED", nov20("10:00")).done();
    let staging = Exec::new("shop", "rb", t)
        .trigger("RollbackStage")
        .stage("Staging", "SUCCEEDED", t + secs(1), Some(t + secs(600)))
        .ended("SUCCEEDED", t + secs(601))
        .done();
    let r = report(&[d1.clone(), staging], day("2026-11-20"));
    assert_eq!((only(&r).deployments, only(&r).failed_deployments), (1, 0));

    // CodePipeline's documented rollback trigger types are rollbacks too.
    for trigger in ["ManualRollback", "AutomatedRollback"] {
        let rollback = Exec::new("shop", "rb", t)
            .trigger(trigger)
            .stage("Production", "SUCCEEDED", t + secs(1), Some(t + secs(600)))
            .ended("SUCCEEDED", t + secs(601))
            .done();
        let r = report(&[d1.clone(), rollback], day("2026-11-20"));
        assert_eq!((only(&r).deployments, only(&r).failed_deployments), (1, 1), "{trigger}");
    }
}

#[test]
fn period_boundaries_are_half_open_and_restores_after_the_period_count() {
    let period = day("2026-11-20");
    // Ends exactly at `from`: included (started the day before: not one of the period's executions).
    let d1 = deploy("shop", "d1", at("2026-11-19T23:30:00Z"), "SUCCEEDED", period.from).done();
    let d2 = deploy("shop", "d2", nov20("22:30"), "FAILED", nov20("23:00")).done();
    // Ends exactly at `to`: excluded, but it restores d2.
    let d3 = deploy("shop", "d3", nov20("23:30"), "SUCCEEDED", period.to).done();
    let r = report(&[d1, d2, d3], period);
    let p = only(&r);
    assert_eq!((p.deployments, p.failed_deployments), (2, 1));
    assert_eq!(p.lead_time_seconds, lead(1800, 1800, 1800));
    assert_eq!(p.time_to_restore_seconds, restore(Some(3600), Some(3600), 1, 0));
    assert_eq!((p.executions, p.failed_executions), (2, 1));
    // Builds by their own end: d2's and d3's ended in the period, d1's the day before.
    assert_eq!(p.builds, 2);

    // A build ending exactly at `from` is in, exactly at `to` out.
    let t = nov20("12:00");
    let builds = Exec::new("ci", "b", t)
        .stage("Build", "SUCCEEDED", t, Some(t + secs(60)))
        .action("At from", "Build", "CodeBuild", "SUCCEEDED", t, Some(t + secs(60)))
        .build("b-from", "SUCCEEDED", Some(period.from - secs(100)), Some(period.from))
        .action("At to", "Build", "CodeBuild", "SUCCEEDED", t, Some(t + secs(60)))
        .build("b-to", "SUCCEEDED", Some(period.to - secs(100)), Some(period.to))
        .done();
    let r = report(&[builds], period);
    assert_eq!((only(&r).builds, only(&r).average_build_seconds), (1, Some(100.0)));
}

#[test]
fn lead_time_median_and_p90_by_nearest_rank_on_ten_values() {
    let lead_times = [700, 100, 5000, 300, 900, 200, 600, 400, 800, 500];
    let timelines: Vec<ExecutionTimeline> = lead_times
        .iter()
        .enumerate()
        .map(|(i, lt)| {
            let started = nov20("00:00") + Duration::hours(i as i64);
            deploy("shop", &format!("e{i}"), started, "SUCCEEDED", started + secs(*lt)).done()
        })
        .collect();
    let r = report(&timelines, day("2026-11-20"));
    let p = only(&r);
    assert_eq!(p.deployments, 10);
    // Sorted: 100 200 300 400 500 600 700 800 900 5000; rank ⌈5⌉ = 5th, rank ⌈9⌉ = 9th; mean 9500 / 10.
    assert_eq!(p.lead_time_seconds, lead(500, 900, 950));
    assert_eq!(p.deployment_frequency_per_day, 10.0);
}

#[test]
fn mtbf_and_mttr_over_a_five_run_sequence() {
    let base = nov20("00:00");
    let run = |id: &str, hours: i64, state: &str| {
        let t = base + Duration::hours(hours);
        Exec::new("shop", id, t)
            .stage("Build", state, t, Some(t + secs(60)))
            .ended(state, t + secs(61))
            .done()
    };
    let timelines = vec![
        run("r1", 1, "SUCCEEDED"),
        run("r2", 2, "FAILED"),
        // Not runs: stopped, and still in progress.
        run("x1", 3, "STOPPED"),
        run("r3", 4, "FAILED"),
        run("r4", 5, "SUCCEEDED"),
        Exec::new("shop", "x2", base + Duration::hours(7))
            .state("InProgress")
            .done(),
        run("r5", 11, "FAILED"),
        // Outside the period.
        run("x3", 30, "SUCCEEDED"),
    ];
    // S(1h) F(2h) F(4h) S(5h) F(11h): successful→failed pairs (1h,2h) and (5h,11h): (3600 + 21600) / 2;
    // failed→successful pair (4h,5h): 3600.
    let r = report(&timelines, day("2026-11-20"));
    let p = only(&r);
    assert_eq!(p.mtbf_seconds, Some(12600));
    assert_eq!(p.mttr_seconds, Some(3600));
    assert_eq!((p.executions, p.failed_executions), (7, 3));
}

#[test]
fn team_figures_are_recomputed_over_all_the_teams_deployments() {
    let period = day("2026-11-20");
    let h = |hours: i64| nov20("00:00") + Duration::hours(hours);
    let timelines = vec![
        // payments-api: a failure restored 1h later: CFR 0.5, lead time 600.
        deploy("payments-api", "a1", h(1), "FAILED", h(1) + secs(600)).done(),
        deploy("payments-api", "a2", h(2), "SUCCEEDED", h(2) + secs(600)).done(),
        // payments-web (another account): three successes: CFR 0.0, lead times 1200, 1800, 2400.
        deploy("payments-web", "b1", h(3), "SUCCEEDED", h(3) + secs(1200))
            .account("444455556666")
            .done(),
        deploy("payments-web", "b2", h(4), "SUCCEEDED", h(4) + secs(1800))
            .account("444455556666")
            .done(),
        deploy("payments-web", "b3", h(5), "SUCCEEDED", h(5) + secs(2400))
            .account("444455556666")
            .done(),
        // No team.
        deploy("tools", "c1", h(6), "SUCCEEDED", h(6) + secs(60)).done(),
    ];
    let team = |t: &str| PipelineConfig {
        team: Some(t.into()),
        production_stages: Vec::new(),
    };
    let configs = BTreeMap::from([
        ("payments-api".to_string(), team("payments")),
        ("payments-web".to_string(), team("payments")),
    ]);
    let r = compute(&timelines, &configs, &period);

    // Pipelines sorted by account, region, pipeline.
    let order: Vec<(&str, &str)> = r
        .pipelines
        .iter()
        .map(|p| (p.account.as_str(), p.pipeline.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (ACCOUNT, "payments-api"),
            (ACCOUNT, "tools"),
            ("444455556666", "payments-web")
        ]
    );
    assert_eq!(r.pipelines[0].change_failure_rate, Some(0.5));
    assert_eq!(r.pipelines[2].change_failure_rate, Some(0.0));
    assert_eq!(r.pipelines[0].team.as_deref(), Some("payments"));
    assert_eq!(r.pipelines[1].team, None);

    let teams: Vec<&str> = r.teams.iter().map(|t| t.team.as_str()).collect();
    assert_eq!(teams, ["payments", "unassigned"]);
    let payments = &r.teams[0];
    assert_eq!(payments.pipelines, ["payments-api", "payments-web"]);
    assert_eq!((payments.deployments, payments.failed_deployments), (5, 1));
    // 1 / 5 over all deployments, not the mean of 0.5 and 0.0 (0.25).
    assert_eq!(payments.change_failure_rate, Some(0.2));
    assert_eq!(payments.deployment_frequency_per_day, 4.0);
    // Lead times 600, 1200, 1800, 2400: median rank 2, p90 rank 4, mean 1500 (the mean of the pipelines' means
    // would be (600 + 1800) / 2 = 1200).
    assert_eq!(payments.lead_time_seconds, lead(1200, 2400, 1500));
    // a1 ended at 01:10, restored by a2 at 02:10.
    assert_eq!(payments.time_to_restore_seconds, restore(Some(3600), Some(3600), 1, 0));
    assert_eq!(
        payments.bands,
        Bands {
            deployment_frequency: Some(Band::Elite),
            lead_time: Some(Band::Elite),
            change_failure_rate: Some(Band::Low),
            time_to_restore: Some(Band::High),
        }
    );
    let unassigned = &r.teams[1];
    assert_eq!(unassigned.pipelines, ["tools"]);
    assert_eq!((unassigned.deployments, unassigned.change_failure_rate), (1, Some(0.0)));
}

#[test]
fn stage_lead_times_are_means_from_execution_start_to_each_stage_end() {
    let t1 = nov20("10:00");
    let full = Exec::new("shop", "e1", t1)
        .stage("Source", "SUCCEEDED", t1, Some(t1 + secs(60)))
        .stage("Build", "SUCCEEDED", t1 + secs(60), Some(t1 + secs(360)))
        .stage("Approve", "SUCCEEDED", t1 + secs(360), Some(t1 + secs(900)))
        .action(
            "Approve",
            "Approval",
            "Manual",
            "SUCCEEDED",
            t1 + secs(361),
            Some(t1 + secs(899)),
        )
        .stage("Production", "SUCCEEDED", t1 + secs(900), Some(t1 + secs(1800)))
        .ended("SUCCEEDED", t1 + secs(1801))
        .done();
    let t2 = nov20("12:00");
    let build_failed = Exec::new("shop", "e2", t2)
        .stage("Source", "SUCCEEDED", t2, Some(t2 + secs(120)))
        .stage("Build", "FAILED", t2 + secs(120), Some(t2 + secs(600)))
        .ended("FAILED", t2 + secs(601))
        .done();
    let t3 = nov20("14:00");
    let waiting = Exec::new("shop", "e3", t3)
        .stage("Source", "SUCCEEDED", t3, Some(t3 + secs(91)))
        .stage("Build", "InProgress", t3 + secs(91), None)
        .done();
    // Started the day before: not one of the period's executions.
    let t0 = at("2026-11-19T23:00:00Z");
    let earlier = Exec::new("shop", "e0", t0)
        .stage("Source", "SUCCEEDED", t0, Some(t0 + secs(5000)))
        .done();
    let r = report(&[full, build_failed, waiting, earlier], day("2026-11-20"));
    let p = only(&r);
    let expected: BTreeMap<String, i64> = [
        // (60 + 120 + 91) / 3 = 90.33
        ("Source", 90),
        // (360 + 600) / 2
        ("Build", 480),
        ("Approve", 900),
        ("Production", 1800),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(p.stage_lead_time_seconds, expected);
    assert_eq!(p.approvals, 1);
    assert_eq!((p.executions, p.failed_executions), (3, 1));
}

#[test]
fn builds_count_failures_and_average_the_durations_they_have() {
    let t = nov20("10:00");
    let e = Exec::new("ci", "e1", t)
        .stage("Build", "FAILED", t, Some(t + secs(600)))
        .action("Unit", "Build", "CodeBuild", "SUCCEEDED", t, Some(t + secs(300)))
        .build("b1", "SUCCEEDED", Some(t), Some(t + secs(200)))
        .action("Lint", "Build", "CodeBuild", "FAILED", t, Some(t + secs(300)))
        .build("b2", "FAILED", Some(t), Some(t + secs(100)))
        .action("Integration", "Build", "CodeBuild", "FAILED", t, Some(t + secs(600)))
        .build("b3", "TIMED_OUT", None, Some(t + secs(590)))
        .action("Stopped", "Build", "CodeBuild", "STOPPED", t, Some(t + secs(10)))
        .build("b4", "STOPPED", Some(t), Some(t + secs(9)))
        .action("Running", "Build", "CodeBuild", "InProgress", t, None)
        .build("b5", "IN_PROGRESS", Some(t), None)
        .done();
    let r = report(&[e], day("2026-11-20"));
    let p = only(&r);
    // b1..b4 ended; b2 and b3 failed; durations 200, 100, 9 (b3 has no start).
    assert_eq!((p.builds, p.failed_builds), (4, 2));
    assert_eq!(p.average_build_seconds, Some(103.0));
}

#[test]
fn a_timeline_given_twice_counts_once() {
    let e = deploy("shop", "e1", nov20("10:00"), "SUCCEEDED", nov20("10:30")).done();
    let r = report(&[e.clone(), e], day("2026-11-20"));
    assert_eq!((only(&r).deployments, only(&r).executions, only(&r).builds), (1, 1, 1));
}

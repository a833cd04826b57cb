//! The timeline of one pipeline execution, folded from the set of its recorded events.
//!
//! Delivery is at-least-once and unordered, so the fold is a function of the *set* of events, never of their arrival
//! order: events are deduplicated by id and applied in one canonical order (event time, then non-terminal before
//! terminal, then id). The rules that make the result right whatever the arrival order:
//! - an entity's state is its latest observation by event time; at equal times a terminal state wins, so a STARTED
//!   that arrives after its SUCCEEDED (same second or earlier) never reopens it;
//! - a later non-terminal observation of a pipeline, stage or action (RESUMED, a retried stage's STARTED) does reopen
//!   it: that is a retry, not a regression;
//! - builds and deployments cannot be retried under the same id, so their terminal state is final whatever the times.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::event::*;
use crate::record::keys::ExecutionKey;

/// True for states after which nothing more happens to that attempt.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "SUCCEEDED"
            | "FAILED"
            | "STOPPED"
            | "SUPERSEDED"
            | "CANCELED"
            | "CANCELLED"
            | "ABANDONED"
            | "SUCCESS"
            | "FAILURE"
            | "STOP"
            | "FAULT"
            | "TIMED_OUT"
    ) || state.ends_with("_COMPLETE")
        || state.ends_with("_FAILED")
}

/// True for terminal states that are failures.
pub fn is_failure(state: &str) -> bool {
    matches!(state, "FAILED" | "FAILURE" | "FAULT" | "TIMED_OUT" | "ABANDONED")
}

/// Observations of one entity's state, resolved into its state and times.
#[derive(Debug, Default, Clone)]
struct Track {
    obs: Vec<(DateTime<Utc>, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Track {
    fn observe(&mut self, time: DateTime<Utc>, state: &str) {
        self.obs.push((time, state.to_string()));
    }

    fn resolve(&self, terminal_is_final: bool) -> Resolved {
        let key = |(t, s): &(DateTime<Utc>, String)| {
            if terminal_is_final {
                (is_terminal(s), *t, s.clone())
            } else {
                (false, *t, s.clone())
            }
        };
        // At equal times a terminal state wins; the state name breaks the remaining ties deterministically.
        let last = self.obs.iter().max_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            (ka.0, ka.1, is_terminal(&a.1), ka.2).cmp(&(kb.0, kb.1, is_terminal(&b.1), kb.2))
        });
        let Some((end_time, state)) = last else {
            return Resolved {
                state: "UNKNOWN".into(),
                started_at: None,
                ended_at: None,
            };
        };
        let started_at = self.obs.iter().filter(|(_, s)| !is_terminal(s)).map(|(t, _)| *t).min();
        Resolved {
            state: state.clone(),
            started_at,
            ended_at: is_terminal(state).then_some(*end_time),
        }
    }
}

/// Resolves a set of `(time, state)` observations of one pipeline execution (as kept in the store's execution summary).
pub fn resolve_states(obs: &[(DateTime<Utc>, String)]) -> Resolved {
    Track { obs: obs.to_vec() }.resolve(false)
}

fn duration_secs(started: Option<DateTime<Utc>>, ended: Option<DateTime<Utc>>) -> Option<i64> {
    Some((ended? - started?).num_seconds())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildTimeline {
    pub build_id: String,
    pub project: String,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub logs_url: Option<String>,
    pub initiator: Option<String>,
    pub phases: Vec<BuildPhase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentTimeline {
    pub deployment_id: String,
    pub application: String,
    pub deployment_group: String,
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionTimeline {
    pub name: String,
    pub category: String,
    pub provider: String,
    pub owner: String,
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub external_execution_id: Option<String>,
    pub external_execution_url: Option<String>,
    pub summary: Option<String>,
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildTimeline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentTimeline>,
}

/// What an action ran, found through its external execution id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExternalRun {
    Build(String),
    Deployment(String),
}

impl ActionTimeline {
    pub fn external_run(&self) -> Option<ExternalRun> {
        let id = self.external_execution_id.clone()?;
        match self.provider.as_str() {
            "CodeBuild" => Some(ExternalRun::Build(id)),
            "CodeDeploy" | "CodeDeployToECS" => Some(ExternalRun::Deployment(id)),
            _ => None,
        }
    }

    /// The best link for an engineer: the build's logs, else the external execution page.
    pub fn link(&self) -> Option<&str> {
        self.build
            .as_ref()
            .and_then(|b| b.logs_url.as_deref())
            .or(self.external_execution_url.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTimeline {
    pub name: String,
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub actions: Vec<ActionTimeline>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionTimeline {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub execution_id: String,
    pub state: String,
    pub trigger: Option<Trigger>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub source_revisions: Vec<SourceRevision>,
    pub stages: Vec<StageTimeline>,
    /// Distinct events folded into this timeline.
    pub event_count: usize,
}

/// Sorts events into the canonical order and drops duplicate ids.
fn canonical(events: &[DeliveryEvent]) -> Vec<&DeliveryEvent> {
    let mut by_id: BTreeMap<&str, &DeliveryEvent> = BTreeMap::new();
    for e in events {
        by_id.entry(e.id.as_str()).or_insert(e);
    }
    let mut v: Vec<&DeliveryEvent> = by_id.into_values().collect();
    v.sort_by(|a, b| (a.time, is_terminal(state_of(a)), &a.id).cmp(&(b.time, is_terminal(state_of(b)), &b.id)));
    v
}

fn state_of(e: &DeliveryEvent) -> &str {
    match &e.body {
        EventBody::PipelineExecution(x) => &x.state,
        EventBody::StageExecution(x) => &x.state,
        EventBody::ActionExecution(x) => &x.state,
        EventBody::BuildState(x) => &x.status,
        EventBody::BuildPhase(_) => "",
        EventBody::DeploymentState(x) => &x.state,
        EventBody::InstanceState(x) => &x.state,
        EventBody::StackStatus(x) => &x.status,
        EventBody::ResourceStatus(x) => &x.status,
        EventBody::DriftDetection(_) => "",
        EventBody::AlarmState(x) => &x.state,
        EventBody::Unknown(_) => "",
    }
}

fn set_if_some<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}

#[derive(Default)]
struct ActionAcc {
    track: Track,
    first_seen: Option<DateTime<Utc>>,
    action_type: ActionType,
    result: ExecutionResult,
}

#[derive(Default)]
struct StageAcc {
    track: Track,
    first_seen: Option<DateTime<Utc>>,
    actions: BTreeMap<String, ActionAcc>,
}

fn first(slot: &mut Option<DateTime<Utc>>, t: DateTime<Utc>) {
    if slot.is_none_or(|s| t < s) {
        *slot = Some(t);
    }
}

impl ExecutionTimeline {
    /// Folds an execution's events (any order, duplicates allowed). Builds and deployments are linked separately by
    /// [`ExecutionTimeline::link`].
    pub fn fold(key: &ExecutionKey, events: &[DeliveryEvent]) -> ExecutionTimeline {
        let events = canonical(events);
        let mut pipeline = Track::default();
        let mut trigger = None;
        let mut notified_revisions: BTreeMap<String, SourceRevision> = BTreeMap::new();
        let mut stages: BTreeMap<String, StageAcc> = BTreeMap::new();
        for e in &events {
            match &e.body {
                EventBody::PipelineExecution(p) => {
                    pipeline.observe(e.time, &p.state);
                    if p.trigger.is_some() {
                        trigger.clone_from(&p.trigger);
                    }
                    for r in &p.source_revisions {
                        notified_revisions.insert(r.action.clone(), r.clone());
                    }
                }
                EventBody::StageExecution(s) => {
                    let st = stages.entry(s.stage.clone()).or_default();
                    st.track.observe(e.time, &s.state);
                    first(&mut st.first_seen, e.time);
                    for r in &s.source_revisions {
                        notified_revisions.insert(r.action.clone(), r.clone());
                    }
                }
                EventBody::ActionExecution(a) => {
                    let st = stages.entry(a.stage.clone()).or_default();
                    first(&mut st.first_seen, e.time);
                    let ac = st.actions.entry(a.action.clone()).or_default();
                    ac.track.observe(e.time, &a.state);
                    first(&mut ac.first_seen, e.time);
                    if !a.action_type.provider.is_empty() {
                        ac.action_type = a.action_type.clone();
                    }
                    if !is_terminal(&a.state) {
                        // A (re)started attempt: how an earlier attempt ended no longer describes the action.
                        ac.result.external_execution_summary = None;
                        ac.result.error_code = None;
                    }
                    let r = &a.result;
                    set_if_some(&mut ac.result.external_execution_id, &r.external_execution_id);
                    set_if_some(&mut ac.result.external_execution_url, &r.external_execution_url);
                    set_if_some(&mut ac.result.external_execution_summary, &r.external_execution_summary);
                    set_if_some(&mut ac.result.error_code, &r.error_code);
                }
                _ => {}
            }
        }
        let mut stage_list: Vec<(Option<DateTime<Utc>>, String, StageAcc)> = stages
            .into_iter()
            .map(|(name, acc)| (acc.first_seen, name, acc))
            .collect();
        stage_list.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut source_revisions = Vec::new();
        let stages: Vec<StageTimeline> = stage_list
            .into_iter()
            .map(|(_, name, acc)| {
                let mut actions: Vec<(Option<DateTime<Utc>>, String, ActionAcc)> =
                    acc.actions.into_iter().map(|(n, a)| (a.first_seen, n, a)).collect();
                actions.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                let actions: Vec<ActionTimeline> = actions
                    .into_iter()
                    .map(|(_, name, a)| {
                        let r = a.track.resolve(false);
                        ActionTimeline {
                            name,
                            category: a.action_type.category,
                            provider: a.action_type.provider,
                            owner: a.action_type.owner,
                            duration_secs: duration_secs(r.started_at, r.ended_at),
                            state: r.state,
                            started_at: r.started_at,
                            ended_at: r.ended_at,
                            external_execution_id: a.result.external_execution_id,
                            external_execution_url: a.result.external_execution_url,
                            summary: a.result.external_execution_summary,
                            error_code: a.result.error_code,
                            build: None,
                            deployment: None,
                        }
                    })
                    .collect();
                for a in actions
                    .iter()
                    .filter(|a| a.category == "Source" && a.state == "SUCCEEDED")
                {
                    let notified = notified_revisions.remove(&a.name);
                    source_revisions.push(SourceRevision {
                        action: a.name.clone(),
                        provider: Some(a.provider.clone()).filter(|p| !p.is_empty()),
                        revision_id: a.external_execution_id.clone(),
                        summary: a.summary.clone(),
                        url: a.external_execution_url.clone(),
                        branch: notified.as_ref().and_then(|n| n.branch.clone()),
                        author: notified.as_ref().and_then(|n| n.author.clone()),
                        repository: notified.and_then(|n| n.repository),
                    });
                }
                let r = acc.track.resolve(false);
                StageTimeline {
                    name,
                    duration_secs: duration_secs(r.started_at, r.ended_at),
                    state: r.state,
                    started_at: r.started_at,
                    ended_at: r.ended_at,
                    actions,
                }
            })
            .collect();
        source_revisions.extend(notified_revisions.into_values());
        let r = pipeline.resolve(false);
        ExecutionTimeline {
            account: key.account.clone(),
            region: key.region.clone(),
            pipeline: key.pipeline.clone(),
            execution_id: key.execution_id.clone(),
            duration_secs: duration_secs(r.started_at, r.ended_at),
            state: r.state,
            trigger,
            started_at: r.started_at,
            ended_at: r.ended_at,
            source_revisions,
            stages,
            event_count: events.len(),
        }
    }

    /// The builds and deployments this execution's actions ran.
    pub fn external_runs(&self) -> Vec<ExternalRun> {
        let mut runs: Vec<ExternalRun> = self
            .stages
            .iter()
            .flat_map(|s| s.actions.iter())
            .filter_map(ActionTimeline::external_run)
            .collect();
        runs.sort();
        runs.dedup();
        runs
    }

    /// Attaches builds and deployments to the actions that ran them.
    pub fn link(
        &mut self,
        builds: &BTreeMap<String, BuildTimeline>,
        deployments: &BTreeMap<String, DeploymentTimeline>,
    ) {
        for action in self.stages.iter_mut().flat_map(|s| s.actions.iter_mut()) {
            match action.external_run() {
                Some(ExternalRun::Build(id)) => action.build = builds.get(&id).cloned(),
                Some(ExternalRun::Deployment(id)) => action.deployment = deployments.get(&id).cloned(),
                None => {}
            }
        }
    }

    /// The first failed action (by stage order), with its stage: what an engineer looks at first.
    pub fn failing_action(&self) -> Option<(&StageTimeline, &ActionTimeline)> {
        self.stages
            .iter()
            .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
            .find(|(_, a)| is_failure(&a.state))
    }

    pub fn stage(&self, name: &str) -> Option<&StageTimeline> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Folds a build's events.
pub fn fold_build(events: &[DeliveryEvent]) -> Option<BuildTimeline> {
    let events = canonical(events);
    let mut track = Track::default();
    let mut out: Option<BuildTimeline> = None;
    let mut phases: BTreeMap<String, BuildPhase> = BTreeMap::new();
    let mut merge_phase = |p: &BuildPhase| {
        let keep_existing = phases
            .get(&p.phase)
            .is_some_and(|old| old.ended_at.is_some() && p.ended_at.is_none());
        if !keep_existing {
            phases.insert(p.phase.clone(), p.clone());
        }
    };
    for e in &events {
        let (build_id, project, logs_url) = match &e.body {
            EventBody::BuildState(b) => {
                track.observe(e.time, &b.status);
                b.phases.iter().for_each(&mut merge_phase);
                (&b.build_id, &b.project, &b.logs_url)
            }
            EventBody::BuildPhase(p) => {
                merge_phase(&p.phase);
                (&p.build_id, &p.project, &p.logs_url)
            }
            _ => continue,
        };
        let b = out.get_or_insert_with(|| BuildTimeline {
            build_id: build_id.clone(),
            project: project.clone(),
            status: String::new(),
            started_at: None,
            ended_at: None,
            duration_secs: None,
            logs_url: None,
            initiator: None,
            phases: Vec::new(),
        });
        set_if_some(&mut b.logs_url, logs_url);
        if let EventBody::BuildState(s) = &e.body {
            set_if_some(&mut b.initiator, &s.initiator);
            if b.started_at.is_none() {
                b.started_at = s.started_at;
            }
        }
    }
    let mut b = out?;
    let r = track.resolve(true);
    b.status = if track.obs.is_empty() {
        "IN_PROGRESS".into()
    } else {
        r.state
    };
    b.started_at = b.started_at.or(r.started_at);
    b.ended_at = r.ended_at;
    b.duration_secs = duration_secs(b.started_at, b.ended_at);
    let mut phases: Vec<BuildPhase> = phases.into_values().collect();
    phases.sort_by_key(|p| (phase_rank(&p.phase), p.phase.clone()));
    b.phases = phases;
    Some(b)
}

const PHASE_ORDER: [&str; 11] = [
    "SUBMITTED",
    "QUEUED",
    "PROVISIONING",
    "DOWNLOAD_SOURCE",
    "INSTALL",
    "PRE_BUILD",
    "BUILD",
    "POST_BUILD",
    "UPLOAD_ARTIFACTS",
    "FINALIZING",
    "COMPLETED",
];

fn phase_rank(phase: &str) -> usize {
    PHASE_ORDER
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(PHASE_ORDER.len())
}

/// Folds a deployment's events.
pub fn fold_deployment(events: &[DeliveryEvent]) -> Option<DeploymentTimeline> {
    let events = canonical(events);
    let mut track = Track::default();
    let mut out: Option<DeploymentTimeline> = None;
    for e in &events {
        if let EventBody::DeploymentState(d) = &e.body {
            track.observe(e.time, &d.state);
            let t = out.get_or_insert_with(|| DeploymentTimeline {
                deployment_id: d.deployment_id.clone(),
                application: String::new(),
                deployment_group: String::new(),
                state: String::new(),
                started_at: None,
                ended_at: None,
                duration_secs: None,
            });
            if !d.application.is_empty() {
                t.application.clone_from(&d.application);
            }
            if !d.deployment_group.is_empty() {
                t.deployment_group.clone_from(&d.deployment_group);
            }
        }
    }
    let mut t = out?;
    let r = track.resolve(true);
    t.state = r.state;
    t.started_at = r.started_at;
    t.ended_at = r.ended_at;
    t.duration_secs = duration_secs(t.started_at, t.ended_at);
    Some(t)
}

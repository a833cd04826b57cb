//! `tollgate simulate`: a deterministic stream of EventBridge delivery events for many pipelines, as Tollgate would
//! receive them.
//!
//! Each pipeline runs its executions one after the other (Source, Build, Test, Staging, an optional Manual approval,
//! Production), emitting the CodePipeline, CodeBuild, CodeDeploy and CloudWatch alarm events of each, in the shapes of
//! `events/` and `events/story/`. The pipelines' streams are merged by event time with a heap holding one head per
//! pipeline, and only executions in flight are held in memory. [`clean_stream`] yields that merged stream;
//! [`simulate`] delivers it the way EventBridge and SQS do: each event displaced by at most
//! [`SimOptions::reorder_window`] positions and some delivered twice, through a buffer of `reorder_window + 1`
//! events (plus the copies waiting to be delivered), so any number of events streams in bounded memory.
//!
//! Everything is drawn from [`Rng`] (splitmix64): each pipeline has its own sequence derived from the seed, and the
//! delivery has another, so the same options give byte-identical output, and the delivered stream holds exactly the
//! clean stream's events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde_json::{json, Value};

use crate::local::Rng;

mod delivery;
mod vocab;

use delivery::*;
use vocab::*;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub pipelines: usize,
    pub executions_per_pipeline: usize,
    /// The start of the first execution. A pipeline's next execution starts 20 min to 6 h after the last event of
    /// its previous one; pipelines other than the first start up to 2 h after this.
    pub start: DateTime<Utc>,
    /// Pipelines are spread over every account and region pair (empty: `111122223333`, `eu-west-1`).
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// Per execution: the share whose CodeBuild build (in the Build or the Test stage) fails.
    pub build_failure_rate: f64,
    /// Per execution that reaches Production: the share whose production deployment fails on the 5xx alarm.
    pub deploy_failure_rate: f64,
    /// The share of pipelines with a Manual approval stage before Production.
    pub approval_rate: f64,
    /// The share of failed production deployments that CodeDeploy rolls back automatically (a second deployment that
    /// succeeds, then the alarm back to OK). Without a rollback the alarm returns to OK 10 to 40 min after the failure.
    pub rollback_rate: f64,
    /// The share of events delivered twice: an exact copy, half of the time under a different envelope `id`.
    pub duplicate_rate: f64,
    /// Each event is delivered at most this many positions away from its place in time order (0: in order).
    pub reorder_window: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            pipelines: 5,
            executions_per_pipeline: 10,
            start: Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).single().unwrap_or_default(),
            accounts: vec![DEFAULT_ACCOUNT.to_string()],
            regions: vec![DEFAULT_REGION.to_string()],
            build_failure_rate: 0.1,
            deploy_failure_rate: 0.15,
            approval_rate: 0.3,
            rollback_rate: 0.5,
            duplicate_rate: 0.2,
            reorder_window: 8,
        }
    }
}

const DEFAULT_ACCOUNT: &str = "111122223333";
const DEFAULT_REGION: &str = "eu-west-1";

/// The simulated events, in delivery order. An iterator of EventBridge events (`serde_json::Value`).
pub struct Simulation {
    merged: Merged,
    delivery: Option<Delivery>,
}

/// The events of `opts`, delivered out of order (within the window) and some twice.
pub fn simulate(opts: &SimOptions) -> Simulation {
    Simulation {
        merged: Merged::new(opts),
        delivery: Some(Delivery::new(opts)),
    }
}

/// The same events as [`simulate`], in time order, each once.
pub fn clean_stream(opts: &SimOptions) -> Simulation {
    Simulation {
        merged: Merged::new(opts),
        delivery: None,
    }
}

impl Simulation {
    /// How many events the simulation holds right now (generated and not yet delivered).
    #[cfg(test)]
    fn held(&self) -> usize {
        let pending: usize = self.merged.pipelines.iter().map(|p| p.pending.len()).sum();
        pending + self.delivery.as_ref().map_or(0, |d| d.buffer.len() + d.copies.len())
    }
}

impl std::iter::FusedIterator for Simulation {}

impl Iterator for Simulation {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        match &mut self.delivery {
            None => self.merged.next().map(|(_, e)| e),
            Some(d) => d.next(&mut self.merged),
        }
    }
}

fn pipeline_name(i: usize) -> String {
    let base = PIPELINE_NAMES[i % PIPELINE_NAMES.len()];
    match i / PIPELINE_NAMES.len() {
        0 => base.to_string(),
        n => format!("{base}-{}", n + 1),
    }
}

/// What does not change between a pipeline's executions.
struct PipelineSpec {
    name: String,
    account: String,
    region: String,
    version: i64,
    approval: bool,
    connection_arn: String,
    repository: String,
    bucket: String,
    /// The pipeline name as CodePipeline writes it in artifact keys (at most 20 characters).
    artifact_prefix: String,
    image: &'static str,
    build_command: &'static str,
    test_command: &'static str,
    load_balancer: String,
}

/// The rates that decide an execution's course.
#[derive(Clone, Copy)]
struct Rates {
    build_failure: f64,
    deploy_failure: f64,
    rollback: f64,
}

/// A pipeline: its executions generated one at a time, each held until its events are taken.
struct PipelineGen {
    spec: PipelineSpec,
    rng: Rng,
    rates: Rates,
    executions_left: usize,
    next_start: DateTime<Utc>,
    /// The execution being generated.
    execution_id: String,
    batch: Vec<(DateTime<Utc>, Value)>,
    /// The events of the current execution not yet taken, in time order.
    pending: VecDeque<(DateTime<Utc>, Value)>,
    /// The alarm's current state (the next alarm event's `previousState`).
    alarm_state: Value,
}

/// A stage's end: when it ended, and whether it succeeded.
struct StageEnd {
    at: DateTime<Utc>,
    succeeded: bool,
}

/// A phase of a CodeBuild build.
struct Phase {
    kind: &'static str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    status: &'static str,
    context: Vec<String>,
}

impl Phase {
    fn completed(&self) -> Value {
        json!({
            "phase-context": self.context,
            "start-time": codebuild_time(self.start),
            "end-time": codebuild_time(self.end),
            "duration-in-seconds": (self.end - self.start).num_seconds(),
            "phase-type": self.kind,
            "phase-status": self.status,
        })
    }

    fn started(&self) -> Value {
        json!({"start-time": codebuild_time(self.start), "phase-type": self.kind})
    }
}

/// A CodePipeline stage running one CodeBuild action.
struct BuildStage<'a> {
    stage: &'a str,
    action: &'a str,
    action_type: (&'a str, &'a str, &'a str),
    project: String,
    command: &'a str,
    input: Value,
    output_name: &'a str,
    output_key: String,
    fail: bool,
}

impl PipelineGen {
    fn new(opts: &SimOptions, index: usize) -> PipelineGen {
        let accounts = non_empty_or(&opts.accounts, DEFAULT_ACCOUNT);
        let regions = non_empty_or(&opts.regions, DEFAULT_REGION);
        let account = accounts[index % accounts.len()].clone();
        let region = regions[(index / accounts.len()) % regions.len()].clone();
        let mut rng = Rng::new(derive_seed(opts.seed, 0x7069_7065_6c69_6e65, index as u64));
        let name = pipeline_name(index);
        let approval = chance(&mut rng, opts.approval_rate);
        let spec = PipelineSpec {
            version: between(&mut rng, 1, 12),
            approval,
            connection_arn: format!(
                "arn:aws:codestar-connections:{region}:{account}:connection/{}",
                uuid(&mut rng)
            ),
            repository: format!("{}/{name}", pick(&mut rng, &GITHUB_ORGS)),
            bucket: format!("codepipeline-{region}-{}", digits(&mut rng, 12)),
            artifact_prefix: name.chars().take(20).collect(),
            image: pick(&mut rng, &BUILD_IMAGES),
            build_command: pick(&mut rng, &BUILD_COMMANDS),
            test_command: pick(&mut rng, &TEST_COMMANDS),
            load_balancer: format!("app/{name}-prod/{}", hex(&mut rng, 16)),
            name,
            account,
            region,
        };
        let next_start = if index == 0 {
            opts.start
        } else {
            opts.start + secs(&mut rng, 0, 2 * 3600)
        };
        let mut gen = PipelineGen {
            spec,
            rng,
            rates: Rates {
                build_failure: opts.build_failure_rate,
                deploy_failure: opts.deploy_failure_rate,
                rollback: opts.rollback_rate,
            },
            executions_left: opts.executions_per_pipeline,
            next_start,
            execution_id: String::new(),
            batch: Vec::new(),
            pending: VecDeque::new(),
            alarm_state: Value::Null,
        };
        // The alarm has been OK since some time before the first execution.
        let since = next_start - secs(&mut gen.rng, 3600, 72 * 3600);
        gen.alarm_state = gen.alarm_observation(since, false).1;
        gen
    }

    /// When the next event is (the next execution's start when none is pending), or `None` when done.
    fn peek_time(&self) -> Option<DateTime<Utc>> {
        match self.pending.front() {
            Some((t, _)) => Some(*t),
            None => (self.executions_left > 0).then_some(self.next_start),
        }
    }

    fn pop(&mut self) -> Option<(DateTime<Utc>, Value)> {
        if self.pending.is_empty() && self.executions_left > 0 {
            self.run_execution();
        }
        self.pending.pop_front()
    }

    // -- events ---------------------------------------------------------------------------------------------------

    fn emit(&mut self, time: DateTime<Utc>, source: &str, detail_type: &str, resources: Vec<String>, detail: Value) {
        let id = uuid(&mut self.rng);
        let mut event = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": source,
            "account": self.spec.account,
            "time": event_time(time),
            "region": self.spec.region,
            "resources": resources,
        });
        // Moved in: `json!` would copy a `Value` by serializing it.
        event["detail"] = detail;
        self.batch.push((time, event));
    }

    fn pipeline_arn(&self) -> String {
        format!(
            "arn:aws:codepipeline:{}:{}:{}",
            self.spec.region, self.spec.account, self.spec.name
        )
    }

    fn pipeline_event(&mut self, time: DateTime<Utc>, state: &str) {
        let mut detail = json!({
            "pipeline": self.spec.name,
            "execution-id": self.execution_id,
            "state": state,
            "version": self.spec.version,
        });
        if state == "STARTED" {
            detail["execution-trigger"] = json!({
                "trigger-type": "Webhook",
                "trigger-detail": self.spec.connection_arn,
            });
        }
        let resources = vec![self.pipeline_arn()];
        self.emit(
            time,
            "aws.codepipeline",
            "CodePipeline Pipeline Execution State Change",
            resources,
            detail,
        );
    }

    fn stage_event(&mut self, time: DateTime<Utc>, stage: &str, state: &str) {
        let detail = json!({
            "pipeline": self.spec.name,
            "execution-id": self.execution_id,
            "stage": stage,
            "state": state,
            "version": self.spec.version,
        });
        let resources = vec![self.pipeline_arn()];
        self.emit(
            time,
            "aws.codepipeline",
            "CodePipeline Stage Execution State Change",
            resources,
            detail,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn action_event(
        &mut self,
        time: DateTime<Utc>,
        stage: &str,
        action: &str,
        state: &str,
        (owner, provider, category): (&str, &str, &str),
        result: Option<Value>,
        input: Option<&Value>,
        output: Option<Value>,
    ) {
        let mut detail = json!({
            "pipeline": self.spec.name,
            "execution-id": self.execution_id,
            "stage": stage,
            "action": action,
            "state": state,
            "region": self.spec.region,
            "type": {"owner": owner, "provider": provider, "category": category, "version": "1"},
            "version": self.spec.version,
        });
        if let Some(result) = result {
            detail["execution-result"] = result;
        }
        if let Some(input) = input {
            detail["input-artifacts"] = Value::Array(vec![input.clone()]);
        }
        if let Some(output) = output {
            detail["output-artifacts"] = Value::Array(vec![output]);
        }
        let resources = vec![self.pipeline_arn()];
        self.emit(
            time,
            "aws.codepipeline",
            "CodePipeline Action Execution State Change",
            resources,
            detail,
        );
    }

    fn artifact(&self, name: &str, key: &str) -> Value {
        json!({"name": name, "s3location": {"bucket": self.spec.bucket, "key": key}})
    }

    fn artifact_key(&mut self, name: &str) -> String {
        // CodePipeline shortens the artifact name to 10 characters in the key.
        let short: String = name.chars().take(10).collect();
        format!(
            "{}/{short}/{}",
            self.spec.artifact_prefix,
            artifact_suffix(&mut self.rng)
        )
    }

    // -- one execution --------------------------------------------------------------------------------------------

    /// Generates the next execution's events into `pending`, in time order, and schedules the one after.
    fn run_execution(&mut self) {
        self.executions_left -= 1;
        self.execution_id = uuid(&mut self.rng);
        let start = self.next_start;
        self.pipeline_event(start, "STARTED");

        let source_key = self.artifact_key("SourceArtifact");
        let end = self.source_stage(start, &source_key);

        let failing_build = chance(&mut self.rng, self.rates.build_failure);
        // Most failed builds are compilation or packaging failures; the rest are failing tests.
        let fail_in_test = failing_build && chance(&mut self.rng, 0.4);
        let source = self.artifact("SourceArtifact", &source_key);
        let build_key = self.artifact_key("BuildArtifact");
        let stage = BuildStage {
            stage: "Build",
            action: "Build",
            action_type: CODEBUILD_BUILD,
            project: format!("{}-build", self.spec.name),
            command: self.spec.build_command,
            input: source,
            output_name: "BuildArtifact",
            output_key: build_key.clone(),
            fail: failing_build && !fail_in_test,
        };
        let end = self.codebuild_stage(end.at, stage);
        let end = if end.succeeded {
            let build = self.artifact("BuildArtifact", &build_key);
            let test_key = self.artifact_key("TestArtifact");
            let stage = BuildStage {
                stage: "Test",
                action: "Test",
                action_type: CODEBUILD_TEST,
                project: format!("{}-test", self.spec.name),
                command: self.spec.test_command,
                input: build,
                output_name: "TestArtifact",
                output_key: test_key,
                fail: fail_in_test,
            };
            self.codebuild_stage(end.at, stage)
        } else {
            end
        };
        let build = self.artifact("BuildArtifact", &build_key);
        let end = if end.succeeded {
            self.codedeploy_stage(end.at, "Staging", "staging", &build, false)
        } else {
            end
        };
        let end = if end.succeeded && self.spec.approval {
            self.approval_stage(end.at)
        } else {
            end
        };
        let end = if end.succeeded {
            let fail = chance(&mut self.rng, self.rates.deploy_failure);
            self.codedeploy_stage(end.at, "Production", "production", &build, fail)
        } else {
            end
        };
        let state = if end.succeeded { "SUCCEEDED" } else { "FAILED" };
        self.pipeline_event(end.at + Duration::seconds(1), state);

        // Events of one execution come out in time order; ties keep the order they were generated in.
        let mut batch = std::mem::take(&mut self.batch);
        batch.sort_by_key(|(t, _)| *t);
        let last = batch.last().map_or(start, |(t, _)| *t);
        self.pending.extend(batch);
        self.next_start = last + secs(&mut self.rng, 20 * 60, 6 * 3600);
    }

    fn source_stage(&mut self, start: DateTime<Utc>, output_key: &str) -> StageEnd {
        let stage_start = start + Duration::seconds(1);
        self.stage_event(stage_start, "Source", "STARTED");
        let action_start = stage_start + Duration::seconds(1);
        self.action_event(action_start, "Source", "Source", "STARTED", SOURCE, None, None, None);
        let commit = hex(&mut self.rng, 40);
        let message = pick(&mut self.rng, &COMMIT_MESSAGES);
        let action_end = action_start + secs(&mut self.rng, 2, 8);
        let result = json!({
            "external-execution-url": format!("https://github.com/{}/commit/{commit}", self.spec.repository),
            "external-execution-summary": message,
            "external-execution-id": commit,
        });
        let output = self.artifact("SourceArtifact", output_key);
        self.action_event(
            action_end,
            "Source",
            "Source",
            "SUCCEEDED",
            SOURCE,
            Some(result),
            None,
            Some(output),
        );
        let end = action_end + Duration::seconds(1);
        self.stage_event(end, "Source", "SUCCEEDED");
        StageEnd {
            at: end,
            succeeded: true,
        }
    }

    fn codebuild_stage(&mut self, after: DateTime<Utc>, s: BuildStage<'_>) -> StageEnd {
        let stage_start = after + Duration::seconds(1);
        self.stage_event(stage_start, s.stage, "STARTED");
        let build_uuid = uuid(&mut self.rng);
        let short_id = format!("{}:{build_uuid}", s.project);
        let build_arn = format!(
            "arn:aws:codebuild:{}:{}:build/{short_id}",
            self.spec.region, self.spec.account
        );
        let url = format!(
            "https://console.aws.amazon.com/codebuild/home?region={}#/builds/{short_id}/view/new",
            self.spec.region
        );
        let action_start = stage_start + Duration::seconds(1);
        let started = json!({"external-execution-url": url, "external-execution-id": short_id});
        self.action_event(
            action_start,
            s.stage,
            s.action,
            "STARTED",
            s.action_type,
            Some(started.clone()),
            Some(&s.input),
            None,
        );

        // The build: 2 to 12 minutes, most of it in the BUILD phase.
        let build_start = action_start + Duration::seconds(1);
        let total = between(&mut self.rng, 120, 720);
        let mut durations = [
            ("SUBMITTED", 1),
            ("QUEUED", between(&mut self.rng, 1, 5)),
            ("PROVISIONING", between(&mut self.rng, 20, 60)),
            ("DOWNLOAD_SOURCE", between(&mut self.rng, 2, 8)),
            ("INSTALL", between(&mut self.rng, 10, 40)),
            ("PRE_BUILD", between(&mut self.rng, 3, 15)),
            ("BUILD", 0),
            ("POST_BUILD", between(&mut self.rng, 5, 20)),
            ("UPLOAD_ARTIFACTS", between(&mut self.rng, 2, 10)),
            ("FINALIZING", between(&mut self.rng, 2, 4)),
        ];
        let others: i64 = durations.iter().map(|(_, d)| d).sum();
        durations[6].1 = (total - others).max(30);
        let mut phases = Vec::with_capacity(durations.len());
        let mut t = build_start;
        for (kind, d) in durations {
            let end = t + Duration::seconds(d);
            let failed = s.fail && kind == "BUILD";
            phases.push(Phase {
                kind,
                start: t,
                end,
                status: if failed { "FAILED" } else { "SUCCEEDED" },
                context: if failed {
                    vec![format!(
                        "COMMAND_EXECUTION_ERROR: Error while executing command: {}. Reason: exit status 1",
                        s.command
                    )]
                } else {
                    Vec::new()
                },
            });
            t = end;
        }
        let completed_at = t;

        let artifact_location = format!("arn:aws:s3:::{}/{}", self.spec.bucket, s.output_key);
        let logs_stream = build_uuid.clone();
        let info = json!({
            "artifact": {
                "md5sum": hex(&mut self.rng, 32),
                "sha256sum": hex(&mut self.rng, 64),
                "location": artifact_location,
            },
            "environment": {
                "image": self.spec.image,
                "privileged-mode": false,
                "compute-type": "BUILD_GENERAL1_MEDIUM",
                "type": "LINUX_CONTAINER",
                "environment-variables": [],
            },
            "timeout-in-minutes": 60,
            "build-complete": false,
            "initiator": format!("codepipeline/{}", self.spec.name),
            "build-start-time": codebuild_time(build_start),
            "source": {"type": "CODEPIPELINE"},
            "logs": {
                "group-name": format!("/aws/codebuild/{}", s.project),
                "stream-name": logs_stream,
                "deep-link": format!(
                    "https://console.aws.amazon.com/cloudwatch/home?region={}#logEvent:group=/aws/codebuild/{};stream={build_uuid}",
                    self.spec.region, s.project
                ),
            },
        });
        let resources = vec![build_arn.clone()];
        // `phases` as of phase `done` (exclusive) completing: those done, and the next one started.
        let completed: Vec<Value> = phases.iter().map(Phase::completed).collect();
        let phases_until = |done: usize, next: Value| -> Value {
            let mut list = Vec::with_capacity(done + 1);
            list.extend_from_slice(&completed[..done]);
            list.push(next);
            Value::Array(list)
        };

        let mut in_progress_info = info.clone();
        in_progress_info["phases"] = phases_until(1, phases[1].started());
        self.emit(
            phases[0].end,
            "aws.codebuild",
            "CodeBuild Build State Change",
            resources.clone(),
            build_state(&s.project, &build_arn, "IN_PROGRESS", "SUBMITTED", in_progress_info),
        );

        // Two or three phase changes: PROVISIONING and BUILD, and sometimes INSTALL or POST_BUILD.
        let mut reported = vec![2, 6];
        if chance(&mut self.rng, 0.5) {
            reported.push(if chance(&mut self.rng, 0.5) { 4 } else { 7 });
        }
        reported.sort_unstable();
        for i in reported {
            let phase = &phases[i];
            let mut phase_info = info.clone();
            phase_info["phases"] = phases_until(i + 1, phases[i + 1].started());
            let context = serde_json::to_string(&phase.context).unwrap_or_else(|_| "[]".into());
            let mut detail = json!({
                "completed-phase": phase.kind,
                "project-name": s.project,
                "build-id": build_arn,
                "completed-phase-context": context,
                "completed-phase-status": phase.status,
                "completed-phase-duration-seconds": (phase.end - phase.start).num_seconds(),
                "version": "1",
                "completed-phase-start": codebuild_time(phase.start),
                "completed-phase-end": codebuild_time(phase.end),
            });
            detail["additional-information"] = phase_info;
            self.emit(
                phase.end + Duration::seconds(1),
                "aws.codebuild",
                "CodeBuild Build Phase Change",
                resources.clone(),
                detail,
            );
        }

        let status = if s.fail { "FAILED" } else { "SUCCEEDED" };
        let mut final_info = info;
        final_info["build-complete"] = json!(true);
        final_info["phases"] = phases_until(
            phases.len(),
            json!({"start-time": codebuild_time(completed_at), "phase-type": "COMPLETED"}),
        );
        let build_end = completed_at + Duration::seconds(2);
        self.emit(
            build_end,
            "aws.codebuild",
            "CodeBuild Build State Change",
            resources,
            build_state(&s.project, &build_arn, status, "COMPLETED", final_info),
        );

        let action_end = build_end + secs(&mut self.rng, 5, 15);
        let (state, result, output) = if s.fail {
            let mut result = started;
            result["external-execution-summary"] = json!("Build terminated with state: FAILED");
            result["error-code"] = json!("JobFailed");
            ("FAILED", result, None)
        } else {
            ("SUCCEEDED", started, Some(self.artifact(s.output_name, &s.output_key)))
        };
        self.action_event(
            action_end,
            s.stage,
            s.action,
            state,
            s.action_type,
            Some(result),
            Some(&s.input),
            output,
        );
        let end = action_end + Duration::seconds(1);
        self.stage_event(end, s.stage, state);
        StageEnd {
            at: end,
            succeeded: !s.fail,
        }
    }

    fn deployment_event(&mut self, time: DateTime<Utc>, id: &str, group: &str, instance_group: &str, state: &str) {
        let (region, account, app) = (&self.spec.region, &self.spec.account, &self.spec.name);
        let resources = vec![
            format!("arn:aws:codedeploy:{region}:{account}:application:{app}"),
            format!("arn:aws:codedeploy:{region}:{account}:deploymentgroup:{app}/{group}"),
        ];
        let detail = json!({
            "instanceGroupId": instance_group,
            "region": region,
            "application": app,
            "deploymentId": id,
            "state": state,
            "deploymentGroup": group,
        });
        self.emit(
            time,
            "aws.codedeploy",
            "CodeDeploy Deployment State-change Notification",
            resources,
            detail,
        );
    }

    fn codedeploy_stage(
        &mut self,
        after: DateTime<Utc>,
        stage: &str,
        group: &str,
        input: &Value,
        fail: bool,
    ) -> StageEnd {
        let stage_start = after + Duration::seconds(1);
        self.stage_event(stage_start, stage, "STARTED");
        let id = deployment_id(&mut self.rng);
        let action_start = stage_start + Duration::seconds(1);
        let started = json!({
            "external-execution-url": format!(
                "https://console.aws.amazon.com/codedeploy/home?region={}#/deployments/{id}",
                self.spec.region
            ),
            "external-execution-id": id,
        });
        self.action_event(
            action_start,
            stage,
            "Deploy",
            "STARTED",
            CODEDEPLOY,
            Some(started.clone()),
            Some(input),
            None,
        );
        let instance_group = uuid(&mut self.rng);
        let deploy_start = action_start + Duration::seconds(2);
        self.deployment_event(deploy_start, &id, group, &instance_group, "START");

        if !fail {
            // Staging deploys all at once; production shifts 10% of traffic, bakes 5 or 10 minutes, then the rest.
            let took = if group == "production" {
                between(&mut self.rng, 60, 180)
                    + 60 * [5, 10][below(&mut self.rng, 2)]
                    + between(&mut self.rng, 60, 120)
            } else {
                between(&mut self.rng, 180, 480)
            };
            let deploy_end = deploy_start + Duration::seconds(took);
            self.deployment_event(deploy_end, &id, group, &instance_group, "SUCCESS");
            let action_end = deploy_end + secs(&mut self.rng, 10, 25);
            self.action_event(
                action_end,
                stage,
                "Deploy",
                "SUCCEEDED",
                CODEDEPLOY,
                Some(started),
                Some(input),
                None,
            );
            let end = action_end + Duration::seconds(1);
            self.stage_event(end, stage, "SUCCEEDED");
            return StageEnd {
                at: end,
                succeeded: true,
            };
        }

        // The canary takes 5xx errors: the alarm fires during the bake, CodeDeploy stops the deployment.
        let alarm_at = deploy_start + secs(&mut self.rng, 150, 600);
        self.alarm_event(alarm_at, true);
        let deploy_end = alarm_at + secs(&mut self.rng, 20, 60);
        self.deployment_event(deploy_end, &id, group, &instance_group, "FAILURE");
        let action_end = deploy_end + secs(&mut self.rng, 15, 40);
        let mut result = started;
        result["external-execution-summary"] = json!(format!("Deployment {id} failed: alarm {}-5xx", self.spec.name));
        result["error-code"] = json!("JobFailed");
        self.action_event(
            action_end,
            stage,
            "Deploy",
            "FAILED",
            CODEDEPLOY,
            Some(result),
            Some(input),
            None,
        );
        let end = action_end + Duration::seconds(1);
        self.stage_event(end, stage, "FAILED");

        let recovered_at = if chance(&mut self.rng, self.rates.rollback) {
            // CodeDeploy's automatic rollback: a new deployment of the last good revision.
            let rollback = deployment_id(&mut self.rng);
            let rollback_group = uuid(&mut self.rng);
            let rollback_start = deploy_end + secs(&mut self.rng, 2, 5);
            self.deployment_event(rollback_start, &rollback, group, &rollback_group, "START");
            let rollback_end = rollback_start + secs(&mut self.rng, 120, 360);
            self.deployment_event(rollback_end, &rollback, group, &rollback_group, "SUCCESS");
            rollback_end + secs(&mut self.rng, 60, 240)
        } else {
            // Someone mitigates by hand.
            deploy_end + secs(&mut self.rng, 600, 2400)
        };
        self.alarm_event(recovered_at, false);
        StageEnd {
            at: end,
            succeeded: false,
        }
    }

    fn approval_stage(&mut self, after: DateTime<Utc>) -> StageEnd {
        let stage_start = after + Duration::seconds(1);
        self.stage_event(stage_start, "Approval", "STARTED");
        let action_start = stage_start + Duration::seconds(1);
        self.action_event(action_start, "Approval", "Approve", "STARTED", MANUAL, None, None, None);
        let action_end = action_start + secs(&mut self.rng, 5 * 60, 60 * 60);
        let comment = pick(&mut self.rng, &APPROVAL_COMMENTS);
        self.action_event(
            action_end,
            "Approval",
            "Approve",
            "SUCCEEDED",
            MANUAL,
            Some(json!({"external-execution-summary": comment})),
            None,
            None,
        );
        let end = action_end + Duration::seconds(1);
        self.stage_event(end, "Approval", "SUCCEEDED");
        StageEnd {
            at: end,
            succeeded: true,
        }
    }

    /// The alarm's state after a transition at `at` (to ALARM when `alarm`), and its `state` document.
    fn alarm_observation(&mut self, at: DateTime<Utc>, alarm: bool) -> (DateTime<Utc>, Value) {
        let query = at - Duration::seconds(1) + Duration::milliseconds(between(&mut self.rng, 100, 900));
        let stamp = query + Duration::milliseconds(3);
        let minute = query.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(query);
        let period_start = minute - Duration::minutes(1);
        let datapoint = if alarm {
            between(&mut self.rng, 12, 95)
        } else {
            between(&mut self.rng, 0, 3)
        } as f64;
        let (compared, transition, value) = if alarm {
            ("was greater than", "OK -> ALARM", "ALARM")
        } else {
            ("was not greater than", "ALARM -> OK", "OK")
        };
        let reason = format!(
            "Threshold Crossed: 1 out of the last 1 datapoints [{datapoint:.1} ({})] {compared} the threshold (10.0) \
             (minimum 1 datapoint for {transition} transition).",
            period_start.format("%d/%m/%y %H:%M:%S")
        );
        let reason_data = format!(
            "{{\"version\":\"1.0\",\"queryDate\":\"{}\",\"startDate\":\"{}\",\"statistic\":\"Sum\",\"period\":60,\
             \"recentDatapoints\":[{datapoint:.1}],\"threshold\":10.0}}",
            cloudwatch_time(query),
            cloudwatch_time(period_start)
        );
        let state = json!({
            "reason": reason,
            "reasonData": reason_data,
            "timestamp": cloudwatch_time(stamp),
            "value": value,
        });
        (stamp, state)
    }

    fn alarm_event(&mut self, at: DateTime<Utc>, alarm: bool) {
        let (_, state) = self.alarm_observation(at, alarm);
        let previous = std::mem::replace(&mut self.alarm_state, state.clone());
        let name = format!("{}-5xx", self.spec.name);
        let mut detail = json!({
            "alarmName": name,
            "configuration": {
                "description": format!(
                    "{} production: ALB target 5XX responses above 10 per minute",
                    self.spec.name
                ),
                "metrics": [{
                    "id": "m1",
                    "metricStat": {
                        "metric": {
                            "dimensions": {"LoadBalancer": self.spec.load_balancer},
                            "name": "HTTPCode_Target_5XX_Count",
                            "namespace": "AWS/ApplicationELB",
                        },
                        "period": 60,
                        "stat": "Sum",
                    },
                    "returnData": true,
                }],
            },
        });
        detail["previousState"] = previous;
        detail["state"] = state;
        let resources = vec![format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{name}",
            self.spec.region, self.spec.account
        )];
        self.emit(at, "aws.cloudwatch", "CloudWatch Alarm State Change", resources, detail);
    }
}

/// A CodeBuild Build State Change detail.
fn build_state(project: &str, build_arn: &str, status: &str, phase: &str, info: Value) -> Value {
    let mut detail = json!({
        "build-status": status,
        "project-name": project,
        "build-id": build_arn,
        "current-phase": phase,
        "current-phase-context": "[]",
        "version": "1",
    });
    detail["additional-information"] = info;
    detail
}

fn non_empty_or(values: &[String], default: &str) -> Vec<String> {
    if values.is_empty() {
        vec![default.to_string()]
    } else {
        values.to_vec()
    }
}

#[cfg(test)]
mod tests;

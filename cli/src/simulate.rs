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

// ---------------------------------------------------------------------------------------------------------------
// Randomness helpers over the splitmix64 generator.

/// The seed of an independent sequence: one per (`salt`, `index`) for a given `seed`. splitmix64's output function is
/// a bijection, so distinct indices give distinct, unrelated-looking seeds.
fn derive_seed(seed: u64, salt: u64, index: u64) -> u64 {
    let base = Rng::new(seed ^ salt).next_u64();
    Rng::new(base ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

fn below(rng: &mut Rng, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (rng.next_u64() % n as u64) as usize
}

/// Uniform in `lo..=hi`.
fn between(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        return lo;
    }
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64
}

fn secs(rng: &mut Rng, lo: i64, hi: i64) -> Duration {
    Duration::seconds(between(rng, lo, hi))
}

/// True with probability `p` (never for `p <= 0`, always for `p >= 1`); always draws once.
fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.unit() < p
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[below(rng, items.len())]
}

fn chars_from(rng: &mut Rng, alphabet: &[u8], n: usize) -> String {
    (0..n).map(|_| alphabet[below(rng, alphabet.len())] as char).collect()
}

fn hex(rng: &mut Rng, n: usize) -> String {
    chars_from(rng, b"0123456789abcdef", n)
}

fn digits(rng: &mut Rng, n: usize) -> String {
    chars_from(rng, b"0123456789", n)
}

/// A random (version 4 shaped) UUID.
fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// A CodeDeploy deployment id: `d-` and 9 upper-case letters or digits.
fn deployment_id(rng: &mut Rng) -> String {
    format!("d-{}", chars_from(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 9))
}

/// The random part of a CodePipeline artifact key (`keJqSYC`).
fn artifact_suffix(rng: &mut Rng) -> String {
    chars_from(
        rng,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        7,
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Time formats.

// Written by hand rather than with `DateTime::format`, which parses its format string on every call: generating
// events is mostly formatting times.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// EventBridge `time`: RFC 3339, seconds, `Z`.
fn event_time(t: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// CodeBuild's `"Nov 20, 2026 9:12:29 AM"` (UTC, 12-hour clock, no leading zeros).
fn codebuild_time(t: DateTime<Utc>) -> String {
    let (pm, hour) = t.hour12();
    format!(
        "{} {}, {} {hour}:{:02}:{:02} {}",
        MONTHS[t.month0() as usize],
        t.day(),
        t.year(),
        t.minute(),
        t.second(),
        if pm { "PM" } else { "AM" }
    )
}

/// CloudWatch's `"2026-11-20T09:23:51.514+0000"`.
fn cloudwatch_time(t: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis()
    )
}

// ---------------------------------------------------------------------------------------------------------------
// What the pipelines are made of.

const PIPELINE_NAMES: [&str; 30] = [
    "checkout-service",
    "payments-api",
    "orders-service",
    "inventory-service",
    "catalog-api",
    "search-service",
    "user-profile-api",
    "auth-service",
    "notifications-worker",
    "shipping-service",
    "pricing-engine",
    "recommendations-api",
    "cart-service",
    "billing-service",
    "invoice-generator",
    "fraud-detection",
    "reviews-api",
    "loyalty-service",
    "edge-gateway",
    "media-uploader",
    "reporting-etl",
    "analytics-ingest",
    "email-sender",
    "tax-calculator",
    "returns-service",
    "warehouse-sync",
    "customer-support-api",
    "feature-flags",
    "session-store",
    "webhooks-dispatcher",
];

const GITHUB_ORGS: [&str; 3] = ["example-shop", "example-shop-platform", "example-shop-payments"];

const COMMIT_MESSAGES: [&str; 32] = [
    "Add express checkout",
    "Fix null basket in express checkout",
    "Retry payment provider timeouts with backoff",
    "Bump aws-sdk to the latest minor version",
    "Add index on orders.created_at",
    "Cache catalog lookups for 60 seconds",
    "Log request ids on every error",
    "Remove the legacy v1 endpoints",
    "Validate postcode before quoting shipping",
    "Handle empty search queries",
    "Raise connection pool size to 50",
    "Add feature flag for new pricing rules",
    "Fix rounding of tax on discounted items",
    "Paginate the order history endpoint",
    "Upgrade Node.js runtime to 22",
    "Add health check for the payments dependency",
    "Fix race in inventory reservation",
    "Translate error messages to German and French",
    "Return 429 instead of 500 when throttled",
    "Add metrics for cart abandonment",
    "Refactor the webhook signature check",
    "Tighten IAM policy of the worker role",
    "Drop unused columns from the sessions table",
    "Fix timezone of scheduled reports",
    "Add circuit breaker around the fraud service",
    "Stream large exports instead of buffering",
    "Fix flaky integration test for refunds",
    "Make email templates responsive",
    "Increase Lambda memory for image resizing",
    "Add idempotency keys to payment captures",
    "Update dependencies (weekly)",
    "Revert \"Cache catalog lookups for 60 seconds\"",
];

const BUILD_COMMANDS: [&str; 5] = [
    "npm run build",
    "./gradlew build",
    "make build",
    "cargo build --release",
    "mvn -B package",
];

const TEST_COMMANDS: [&str; 5] = [
    "npm test",
    "./gradlew test",
    "make test",
    "cargo test --workspace",
    "pytest -q",
];

const APPROVAL_COMMENTS: [&str; 5] = [
    "Staging checks passed",
    "Approved for release",
    "LGTM, release notes updated",
    "Approved after smoke test on staging",
    "Go for production",
];

const BUILD_IMAGES: [&str; 3] = [
    "aws/codebuild/amazonlinux2-x86_64-standard:5.0",
    "aws/codebuild/standard:7.0",
    "aws/codebuild/amazonlinux2-aarch64-standard:3.0",
];

/// The CodePipeline action type of each kind of action: (owner, provider, category).
const SOURCE: (&str, &str, &str) = ("AWS", "CodeStarSourceConnection", "Source");
const CODEBUILD_BUILD: (&str, &str, &str) = ("AWS", "CodeBuild", "Build");
const CODEBUILD_TEST: (&str, &str, &str) = ("AWS", "CodeBuild", "Test");
const CODEDEPLOY: (&str, &str, &str) = ("AWS", "CodeDeploy", "Deploy");
const MANUAL: (&str, &str, &str) = ("AWS", "Manual", "Approval");

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

// ---------------------------------------------------------------------------------------------------------------
// Merging the pipelines by time.

/// The pipelines' streams merged by event time (ties: the lower pipeline index first). The heap holds one entry per
/// pipeline that has events left; a pipeline whose current execution is used up is keyed by its next start, and the
/// execution is generated only when that start is reached.
struct Merged {
    pipelines: Vec<PipelineGen>,
    heap: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
}

impl Merged {
    fn new(opts: &SimOptions) -> Merged {
        let pipelines: Vec<PipelineGen> = (0..opts.pipelines).map(|i| PipelineGen::new(opts, i)).collect();
        let heap = pipelines
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.peek_time().map(|t| Reverse((t, i))))
            .collect();
        Merged { pipelines, heap }
    }

    fn next(&mut self) -> Option<(DateTime<Utc>, Value)> {
        let Reverse((_, i)) = self.heap.pop()?;
        let event = self.pipelines[i].pop();
        if let Some(t) = self.pipelines[i].peek_time() {
            self.heap.push(Reverse((t, i)));
        }
        event
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Delivery: reordering within the window, and duplicates.

/// Delivers the merged stream out of order and with copies. The buffer holds the next `window + 1` events of the
/// clean stream; each step delivers one of them at random, except that an event that has waited `window` steps is
/// delivered then. So an event is never delivered more than `window` positions (counted among first deliveries) from
/// its place in time order. A delivered event gets a copy with probability `duplicate_rate`, delivered 0 to `window`
/// steps later.
struct Delivery {
    rng: Rng,
    window: usize,
    duplicate_rate: f64,
    buffer: VecDeque<(u64, Value)>,
    read: u64,
    exhausted: bool,
    originals_out: u64,
    out: u64,
    /// Copies waiting: (due step, sequence, event).
    copies: Vec<(u64, u64, Value)>,
    copy_seq: u64,
}

impl Delivery {
    fn new(opts: &SimOptions) -> Delivery {
        Delivery {
            rng: Rng::new(derive_seed(opts.seed, 0x6465_6c69_7665_7279, 0)),
            window: opts.reorder_window,
            duplicate_rate: opts.duplicate_rate,
            buffer: VecDeque::with_capacity(opts.reorder_window.saturating_add(1).min(1 << 16)),
            read: 0,
            exhausted: false,
            originals_out: 0,
            out: 0,
            copies: Vec::new(),
            copy_seq: 0,
        }
    }

    fn next(&mut self, source: &mut Merged) -> Option<Value> {
        while !self.exhausted && self.buffer.len() <= self.window {
            match source.next() {
                Some((_, e)) => {
                    self.buffer.push_back((self.read, e));
                    self.read += 1;
                }
                None => self.exhausted = true,
            }
        }
        let due_copy = self
            .copies
            .iter()
            .enumerate()
            .min_by_key(|(_, (due, seq, _))| (*due, *seq))
            .map(|(i, (due, _, _))| (i, *due));
        if let Some((i, due)) = due_copy {
            if due <= self.out || self.buffer.is_empty() {
                self.out += 1;
                return Some(self.copies.swap_remove(i).2);
            }
        }
        let (oldest, _) = self.buffer.front()?;
        let index = if oldest.saturating_add(self.window as u64) <= self.originals_out {
            0
        } else {
            below(&mut self.rng, self.buffer.len())
        };
        let (_, event) = self.buffer.remove(index)?;
        self.originals_out += 1;
        self.out += 1;
        if chance(&mut self.rng, self.duplicate_rate) {
            let mut copy = event.clone();
            // A redelivery keeps the envelope id; the same event reaching the bus by another route gets a new one.
            if chance(&mut self.rng, 0.5) {
                copy["id"] = json!(uuid(&mut self.rng));
            }
            let due = self.out + below(&mut self.rng, self.window.saturating_add(1)) as u64;
            self.copies.push((due, self.copy_seq, copy));
            self.copy_seq += 1;
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::sync::Arc;

    use tollgate_domain::ingest::service::{Ingestor, MessageContext, Outcome};
    use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
    use tollgate_domain::record::event::{DeliveryEvent, EventBody, EventKind};
    use tollgate_domain::record::keys::ExecutionKey;
    use tollgate_domain::record::parse::parse_event;
    use tollgate_domain::record::query::execution_timeline;
    use tollgate_domain::record::timeline::ExecutionTimeline;

    use super::*;

    const STORY: &str = include_str!("../../events/story/failed-deploy-and-fix.json");

    fn parse(e: &Value) -> DeliveryEvent {
        parse_event(e.to_string().as_bytes()).unwrap_or_else(|err| panic!("{err}: {e}"))
    }

    fn small() -> SimOptions {
        SimOptions {
            seed: 7,
            ..SimOptions::default()
        }
    }

    /// The final pipeline state of every execution.
    fn outcomes(events: &[DeliveryEvent]) -> BTreeMap<String, String> {
        let mut states = BTreeMap::new();
        for e in events {
            if let EventBody::PipelineExecution(p) = &e.body {
                if p.state != "STARTED" {
                    states.insert(p.execution_id.clone(), p.state.clone());
                }
            }
        }
        states
    }

    #[test]
    fn same_options_give_identical_streams_and_seeds_differ() {
        let opts = small();
        let a: Vec<Value> = simulate(&opts).collect();
        let b: Vec<Value> = simulate(&opts).collect();
        assert_eq!(a, b);
        let text = |v: &[Value]| v.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        assert_eq!(text(&a), text(&b), "byte-identical");
        let clean: Vec<Value> = clean_stream(&opts).collect();
        assert_eq!(clean, clean_stream(&opts).collect::<Vec<_>>());

        let other: Vec<Value> = simulate(&SimOptions {
            seed: 8,
            ..opts.clone()
        })
        .collect();
        assert_ne!(a, other);
        let other_clean: Vec<Value> = clean_stream(&SimOptions { seed: 8, ..opts }).collect();
        assert_ne!(clean, other_clean);
    }

    #[test]
    fn every_event_parses_and_every_kind_appears() {
        let opts = SimOptions {
            accounts: vec!["111122223333".into(), "444455556666".into()],
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            ..small()
        };
        let mut kinds = BTreeSet::new();
        let mut envelope_ids = BTreeSet::new();
        let mut places = BTreeSet::new();
        let uuid_shape = |s: &str| {
            s.len() == 36
                && s.char_indices().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        };
        for v in clean_stream(&opts) {
            assert_eq!(v["version"], "0");
            let id = v["id"].as_str().unwrap();
            assert!(uuid_shape(id), "{id}");
            assert!(envelope_ids.insert(id.to_string()), "envelope ids are unique: {id}");
            let time = v["time"].as_str().unwrap();
            assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
            assert!(!v["resources"].as_array().unwrap().is_empty());
            let e = parse(&v);
            places.insert((e.account.clone(), e.region.clone()));
            kinds.insert(e.kind());
            match &e.body {
                EventBody::BuildState(b) => {
                    assert!(b.started_at.is_some(), "CodeBuild's time format parses: {v}");
                    assert!(b.build_id.starts_with(&b.project) && b.build_id.contains(':'));
                    assert!(b.initiator.as_deref().unwrap().starts_with("codepipeline/"));
                    assert!(!b.phases.is_empty());
                    if b.status != "IN_PROGRESS" {
                        assert_eq!(b.phases.len(), 11);
                        assert_eq!(b.phases.last().unwrap().phase, "COMPLETED");
                    }
                }
                EventBody::BuildPhase(p) => {
                    assert!(p.phase.started_at.is_some() && p.phase.ended_at.is_some());
                    assert!(p.phase.duration_secs.is_some());
                }
                EventBody::DeploymentState(d) => {
                    let id = d.deployment_id.as_str();
                    assert!(id.len() == 11 && id.starts_with("d-"), "{id}");
                    assert!(
                        id[2..].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                        "{id}"
                    );
                }
                EventBody::AlarmState(a) => {
                    assert!(a.changed_at.is_some(), "CloudWatch's time format parses: {v}");
                    assert_ne!(a.previous_state.as_deref(), Some(a.state.as_str()));
                }
                EventBody::PipelineExecution(p) if p.state == "STARTED" => {
                    let t = p.trigger.as_ref().expect("a trigger");
                    assert_eq!(t.trigger_type, "Webhook");
                    assert!(t
                        .detail
                        .as_deref()
                        .unwrap()
                        .starts_with("arn:aws:codestar-connections:"));
                }
                EventBody::ActionExecution(a) if a.stage == "Source" && a.state == "SUCCEEDED" => {
                    let commit = a.result.external_execution_id.as_deref().unwrap();
                    assert!(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
                    assert!(a.result.external_execution_summary.is_some());
                }
                _ => {}
            }
        }
        for kind in [
            EventKind::PipelineExecution,
            EventKind::StageExecution,
            EventKind::ActionExecution,
            EventKind::BuildState,
            EventKind::BuildPhase,
            EventKind::DeploymentState,
            EventKind::AlarmState,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} missing from {kinds:?}");
        }
        assert_eq!(
            places.len(),
            4,
            "pipelines spread over every account and region: {places:?}"
        );
    }

    /// Every key the simulator writes is one the samples and the story use, per detail-type.
    #[test]
    fn shapes_follow_the_story() {
        fn keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
            match v {
                Value::Object(map) => {
                    for (k, v) in map {
                        let path = format!("{prefix}.{k}");
                        out.insert(path.clone());
                        keys(v, &path, out);
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        keys(item, &format!("{prefix}[]"), out);
                    }
                }
                _ => {}
            }
        }
        let story: Vec<Value> = serde_json::from_str(STORY).unwrap();
        let mut known: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut envelope = BTreeSet::new();
        for e in &story {
            keys(
                e,
                "",
                known.entry(e["detail-type"].as_str().unwrap().to_string()).or_default(),
            );
            envelope.extend(e.as_object().unwrap().keys().cloned());
        }
        let opts = SimOptions {
            approval_rate: 1.0,
            deploy_failure_rate: 0.5,
            ..small()
        };
        let mut seen = BTreeSet::new();
        for e in clean_stream(&opts) {
            let detail_type = e["detail-type"].as_str().unwrap().to_string();
            assert_eq!(
                e.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>(),
                envelope
            );
            let mut mine = BTreeSet::new();
            keys(&e, "", &mut mine);
            let theirs = &known[&detail_type];
            let extra: Vec<&String> = mine.difference(theirs).collect();
            assert!(
                extra.is_empty(),
                "{detail_type}: keys the story does not have: {extra:?}"
            );
            seen.insert(detail_type);
        }
        assert_eq!(seen.len(), 7, "{seen:?}");
    }

    #[test]
    fn delivery_adds_only_duplicates() {
        let opts = SimOptions {
            pipelines: 10,
            executions_per_pipeline: 10,
            ..small()
        };
        let clean: Vec<String> = clean_stream(&opts).map(|e| parse(&e).id).collect();
        let clean_set: BTreeSet<&String> = clean.iter().collect();
        assert_eq!(clean_set.len(), clean.len(), "the clean stream has no duplicates");
        let delivered: Vec<String> = simulate(&opts).map(|e| parse(&e).id).collect();
        assert_eq!(delivered.iter().collect::<BTreeSet<_>>(), clean_set);
        let mut counts: HashMap<&String, usize> = HashMap::new();
        for id in &delivered {
            *counts.entry(id).or_default() += 1;
        }
        assert!(counts.values().all(|&c| c <= 2), "each event at most twice");
        let n = clean.len() as f64;
        let r = opts.duplicate_rate;
        let extra = delivered.len() as f64 - n;
        let sigma = (n * r * (1.0 - r)).sqrt();
        assert!(
            (extra - n * r).abs() <= 5.0 * sigma,
            "{} delivered for {} events at duplicate rate {r}",
            delivered.len(),
            clean.len()
        );

        let none = SimOptions {
            duplicate_rate: 0.0,
            ..opts.clone()
        };
        assert_eq!(simulate(&none).count(), clean.len());
        let all = SimOptions {
            duplicate_rate: 1.0,
            ..opts
        };
        assert_eq!(simulate(&all).count(), 2 * clean.len());
    }

    #[test]
    fn no_event_is_displaced_beyond_the_window() {
        for window in [0usize, 1, 3, 8, 25] {
            let opts = SimOptions {
                reorder_window: window,
                duplicate_rate: 0.3,
                ..small()
            };
            let clean: HashMap<String, usize> = clean_stream(&opts)
                .enumerate()
                .map(|(i, e)| (parse(&e).id, i))
                .collect();
            let mut first = BTreeSet::new();
            let mut max = 0usize;
            let mut moved = 0;
            let mut position = 0usize;
            for e in simulate(&opts) {
                let id = parse(&e).id;
                if !first.insert(id.clone()) {
                    continue; // a copy
                }
                let at = clean[&id];
                max = max.max(at.abs_diff(position));
                moved += usize::from(at != position);
                position += 1;
            }
            assert_eq!(position, clean.len());
            assert!(max <= window, "window {window}: an event moved {max} positions");
            if window > 0 {
                assert!(moved > clean.len() / 4, "window {window}: only {moved} events moved");
                assert_eq!(max, window, "window {window}: the whole window is used");
            }
        }
    }

    #[test]
    fn times_are_written_as_aws_writes_them() {
        let mut rng = Rng::new(3);
        for _ in 0..2000 {
            let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                + Duration::milliseconds(between(&mut rng, 0, 400 * 86_400_000));
            assert_eq!(event_time(t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            assert_eq!(codebuild_time(t), t.format("%b %-d, %Y %-I:%M:%S %p").to_string());
            assert_eq!(cloudwatch_time(t), t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string());
            let parsed = tollgate_domain::record::parse::parse_codebuild_time(&codebuild_time(t)).unwrap();
            assert_eq!(parsed.timestamp(), t.timestamp());
        }
        let t = Utc.with_ymd_and_hms(2026, 11, 20, 9, 12, 29).unwrap();
        assert_eq!(codebuild_time(t), "Nov 20, 2026 9:12:29 AM");
        assert_eq!(codebuild_time(t + Duration::hours(3)), "Nov 20, 2026 12:12:29 PM");
        assert_eq!(codebuild_time(t - Duration::hours(9)), "Nov 20, 2026 12:12:29 AM");
    }

    #[test]
    fn time_order_of_the_clean_stream() {
        let times: Vec<DateTime<Utc>> = clean_stream(&small()).map(|e| parse(&e).time).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn failure_rates_decide_how_executions_end() {
        let ok = SimOptions {
            build_failure_rate: 0.0,
            deploy_failure_rate: 0.0,
            approval_rate: 0.5,
            ..small()
        };
        let events: Vec<DeliveryEvent> = clean_stream(&ok).map(|e| parse(&e)).collect();
        let states = outcomes(&events);
        assert_eq!(states.len(), ok.pipelines * ok.executions_per_pipeline);
        assert!(states.values().all(|s| s == "SUCCEEDED"), "{states:?}");
        assert!(events.iter().all(|e| e.kind() != EventKind::AlarmState));

        for rollback_rate in [0.0, 1.0] {
            let failing = SimOptions {
                build_failure_rate: 0.3,
                deploy_failure_rate: 1.0,
                rollback_rate,
                ..small()
            };
            let events: Vec<DeliveryEvent> = clean_stream(&failing).map(|e| parse(&e)).collect();
            let states = outcomes(&events);
            assert_eq!(states.len(), failing.pipelines * failing.executions_per_pipeline);
            assert!(states.values().all(|s| s == "FAILED"), "{states:?}");
            let mut reached = BTreeSet::new();
            let mut build_failures = 0;
            let mut deployments: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut alarms: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for e in &events {
                match &e.body {
                    EventBody::StageExecution(s) if s.stage == "Production" && s.state == "STARTED" => {
                        reached.insert(s.execution_id.clone());
                    }
                    EventBody::StageExecution(s) if s.stage == "Production" => assert_eq!(s.state, "FAILED"),
                    EventBody::BuildState(b) if b.status == "FAILED" => build_failures += 1,
                    EventBody::DeploymentState(d) if d.deployment_group == "production" => deployments
                        .entry(d.application.clone())
                        .or_default()
                        .push(d.state.clone()),
                    EventBody::AlarmState(a) => alarms.entry(a.alarm_name.clone()).or_default().push(a.state.clone()),
                    _ => {}
                }
            }
            assert!(!reached.is_empty() && build_failures > 0);
            assert_eq!(reached.len() + build_failures, states.len());
            let alarm_events: usize = alarms.values().map(Vec::len).sum();
            assert_eq!(
                alarm_events,
                2 * reached.len(),
                "ALARM then OK for every failed deployment"
            );
            for states in alarms.values() {
                assert!(states.chunks(2).all(|c| c == ["ALARM", "OK"]), "{states:?}");
            }
            for states in deployments.values() {
                let per_deploy = if rollback_rate == 1.0 {
                    ["START", "FAILURE", "START", "SUCCESS"].as_slice()
                } else {
                    ["START", "FAILURE"].as_slice()
                };
                assert!(states.chunks(per_deploy.len()).all(|c| c == per_deploy), "{states:?}");
            }
        }
    }

    async fn ingest_all(events: impl Iterator<Item = Value>) -> (Arc<MemoryStore>, usize) {
        let store = Arc::new(MemoryStore::new());
        let ingestor = Ingestor::new(store.clone(), Arc::new(MemoryNotifier::new()));
        let received = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let mut new = 0;
        for (i, e) in events.enumerate() {
            let ctx = MessageContext::new(format!("m-{i}"), received);
            match ingestor.ingest(&e.to_string(), &ctx).await.unwrap() {
                Outcome::Recorded { new: true, .. } => new += 1,
                Outcome::Recorded { .. } => {}
                Outcome::Rejected { reason } => panic!("rejected: {reason}"),
            }
        }
        (store, new)
    }

    async fn timelines(store: &MemoryStore) -> BTreeMap<ExecutionKey, ExecutionTimeline> {
        let mut out = BTreeMap::new();
        for key in store.execution_keys() {
            let t = execution_timeline(store, &key).await.unwrap().expect("a timeline");
            out.insert(key, t);
        }
        out
    }

    #[tokio::test]
    async fn ingested_delivery_gives_the_clean_timelines() {
        let opts = SimOptions {
            approval_rate: 0.5,
            accounts: vec!["111122223333".into(), "444455556666".into()],
            ..small()
        };
        let (clean_store, clean_new) = ingest_all(clean_stream(&opts)).await;
        let (store, new) = ingest_all(simulate(&opts)).await;
        assert_eq!(new, clean_new, "every distinct event recorded once");
        assert_eq!(new, clean_stream(&opts).count());
        let expected = timelines(&clean_store).await;
        let got = timelines(&store).await;
        assert_eq!(got.len(), opts.pipelines * opts.executions_per_pipeline);
        assert_eq!(expected.len(), got.len());
        for (key, t) in &expected {
            assert_eq!(got.get(key), Some(t), "{key:?}");
        }
        // The links hold: every CodeBuild and CodeDeploy action finds its build or deployment.
        let (mut failed, mut succeeded) = (0, 0);
        for t in got.values() {
            match t.state.as_str() {
                "SUCCEEDED" => succeeded += 1,
                "FAILED" => {
                    failed += 1;
                    let (_, action) = t.failing_action().expect("the failing action is known");
                    assert_eq!(action.error_code.as_deref(), Some("JobFailed"));
                }
                other => panic!("execution ended {other}"),
            }
            assert!(t.trigger.is_some() && t.duration_secs.is_some());
            for a in t.stages.iter().flat_map(|s| s.actions.iter()) {
                match a.provider.as_str() {
                    "CodeBuild" => {
                        let b = a.build.as_ref().expect("build linked");
                        assert!(b.phases.len() >= 10 && b.duration_secs.is_some());
                    }
                    "CodeDeploy" => assert!(a.deployment.is_some(), "deployment linked"),
                    _ => {}
                }
            }
        }
        assert!(
            failed > 0 && succeeded > failed,
            "{failed} failed, {succeeded} succeeded"
        );
    }

    #[test]
    fn streams_many_pipelines_lazily() {
        let opts = SimOptions {
            pipelines: 200,
            executions_per_pipeline: 50,
            accounts: vec!["111122223333".into(), "444455556666".into(), "777788889999".into()],
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            ..SimOptions::default()
        };
        let started = std::time::Instant::now();
        let mut sim = simulate(&opts);
        let mut count = 0usize;
        let mut held = 0;
        while let Some(e) = sim.next() {
            assert!(e.is_object());
            count += 1;
            if count % 97 == 0 {
                held = held.max(sim.held());
            }
        }
        let took = started.elapsed();
        let executions = opts.pipelines * opts.executions_per_pipeline;
        let per_execution = count as f64 / (1.0 + opts.duplicate_rate) / executions as f64;
        eprintln!(
            "{count} events for {executions} executions (~{per_execution:.1} distinct events each) in {took:?}: \
             {:.0} events/s",
            count as f64 / took.as_secs_f64()
        );
        assert!((25.0..60.0).contains(&per_execution), "{per_execution}");
        // At most one execution in flight per pipeline, plus the delivery buffer and its copies.
        assert!(
            held <= opts.pipelines * 60 + 2 * (opts.reorder_window + 1),
            "{held} events held"
        );
        eprintln!("at most {held} events held at once");
        assert!(sim.next().is_none());
        // Names run out after 30 pipelines and come back with a suffix.
        assert_eq!(pipeline_name(0), "checkout-service");
        assert_eq!(pipeline_name(30), "checkout-service-2");
        assert_eq!(pipeline_name(61), "payments-api-3");
    }
}

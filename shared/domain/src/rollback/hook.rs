//! The `hook` function's domain: CodeDeploy lifecycle-hook checks for Lambda and ECS deployments.
//!
//! CodeDeploy invokes the hook with `{DeploymentId, LifecycleEventHookExecutionId}` ([`HookInvocation`]) and waits for
//! PutLifecycleEventHookExecutionStatus. The checks ([`HookChecks`]) are configured once per function: alarms that
//! must not be in ALARM, an optional HTTP probe of a test endpoint with its expected status, and a time budget that
//! ends before the Lambda timeout. [`verdict`] turns their results into Succeeded or Failed with the reasons.
//!
//! At-least-once delivery: the first status for a hook execution is recorded ([`HookResults`], one conditional
//! write), and a duplicate invocation reports that same status again, never a second opinion.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::gate::policy::{AlarmFact, AlarmState};
use crate::record::ports::StoreError;
use crate::tell::notify::{Notification, NotificationKind, Severity};

/// What CodeDeploy invokes a hook with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookInvocation {
    pub deployment_id: String,
    pub hook_execution_id: String,
}

/// An invocation that is not a lifecycle hook: no status can be reported for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CodeDeploy lifecycle hook invocation: {0}")]
pub struct NotAHook(pub String);

impl HookInvocation {
    pub fn from_value(v: &serde_json::Value) -> Result<HookInvocation, NotAHook> {
        let field = |name: &str| -> Result<String, NotAHook> {
            match v.get(name) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(_) => Err(NotAHook(format!("`{name}` is not a non-empty string"))),
                None => Err(NotAHook(format!("missing field `{name}`"))),
            }
        };
        Ok(HookInvocation {
            deployment_id: field("DeploymentId")?,
            hook_execution_id: field("LifecycleEventHookExecutionId")?,
        })
    }
}

/// What PutLifecycleEventHookExecutionStatus says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookStatus {
    Succeeded,
    Failed,
}

impl HookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HookStatus::Succeeded => "Succeeded",
            HookStatus::Failed => "Failed",
        }
    }
}

/// How an INSUFFICIENT_DATA alarm counts: a new version often has no data yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InsufficientData {
    Pass,
    Fail,
}

/// The HTTP probe of a test endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub url: ProbeUrl,
    pub expected_status: u16,
    /// Per attempt.
    pub timeout: Duration,
}

/// An `http://host[:port]/path` URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl ProbeUrl {
    /// Only `http://` (see docs/hook.md: the probe has no TLS stack of its own).
    pub fn parse(url: &str) -> Result<ProbeUrl, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("{url:?}: https is not supported by the probe; probe the test listener over http")
            } else {
                format!("{url:?} is not an http:// URL")
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!("{url:?}: credentials in the URL are not allowed"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url:?}: port {p:?} is not a number"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
            return Err(format!("{url:?} has no host"));
        }
        if path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("{url:?}: the path has spaces or control characters"));
        }
        Ok(ProbeUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

impl std::fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// The configured checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookChecks {
    pub alarms: Vec<String>,
    pub insufficient_data: InsufficientData,
    pub probe: Option<Probe>,
    /// The whole invocation's budget; the status is reported before it runs out.
    pub budget: Duration,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// Judges the alarms: every named alarm must exist and not be in ALARM (INSUFFICIENT_DATA as configured).
pub fn judge_alarms(names: &[String], facts: &[AlarmFact], insufficient: InsufficientData) -> Vec<CheckOutcome> {
    names
        .iter()
        .map(|name| {
            let fact = facts.iter().find(|f| &f.name == name);
            let (passed, detail) = match fact.map(|f| f.state) {
                None => (
                    false,
                    "not found: the hook's configuration names an alarm that does not exist".to_string(),
                ),
                Some(AlarmState::Ok) => (true, "OK".to_string()),
                Some(AlarmState::Alarm) => (false, "in ALARM".to_string()),
                Some(AlarmState::InsufficientData) => (
                    insufficient == InsufficientData::Pass,
                    format!(
                        "INSUFFICIENT_DATA (counted as {})",
                        if insufficient == InsufficientData::Pass {
                            "passing"
                        } else {
                            "failing"
                        }
                    ),
                ),
            };
            CheckOutcome {
                check: format!("alarm {name}"),
                passed,
                detail,
            }
        })
        .collect()
}

/// The status of a set of checks: Succeeded only if there is at least one result and every one passed.
pub fn verdict(outcomes: &[CheckOutcome]) -> HookStatus {
    if !outcomes.is_empty() && outcomes.iter().all(|o| o.passed) {
        HookStatus::Succeeded
    } else {
        HookStatus::Failed
    }
}

/// The first status decided for a hook execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookResult {
    pub deployment_id: String,
    pub hook_execution_id: String,
    pub status: HookStatus,
    pub checks: Vec<CheckOutcome>,
    pub decided_at: DateTime<Utc>,
}

impl HookResult {
    pub fn summary(&self) -> String {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect();
        if failed.is_empty() {
            format!("{}: {} checks passed", self.status.as_str(), self.checks.len())
        } else {
            format!("{}: {}", self.status.as_str(), failed.join("; "))
        }
    }

    /// The message engineers get when a hook fails the deployment.
    pub fn notification(&self, account: &str, region: &str) -> Notification {
        let mut lines: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("{} {}: {}", if c.passed { "ok  " } else { "FAIL" }, c.check, c.detail))
            .collect();
        lines.push(format!("Hook execution `{}`", self.hook_execution_id));
        Notification {
            key: format!("hook:{}", self.hook_execution_id),
            kind: NotificationKind::DeploymentFailed,
            severity: Severity::Critical,
            account: account.to_string(),
            region: region.to_string(),
            pipeline: None,
            thread: format!("deployment/{}", self.deployment_id),
            title: format!("Deployment {} stopped by its lifecycle hook", self.deployment_id),
            lines,
            next_steps: vec![
                "The new version takes no traffic: CodeDeploy rolls the deployment back".into(),
                "Read the failing check above, fix forward, and deploy again".into(),
            ],
            link: Some(format!(
                "https://{region}.console.aws.amazon.com/codesuite/codedeploy/deployments/{}?region={region}",
                self.deployment_id
            )),
            resources: Vec::new(),
        }
    }
}

/// What recording a result found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookWrite {
    New,
    /// A result for this hook execution was recorded before: report that one.
    Duplicate(Box<HookResult>),
}

/// Where hook results are kept, one per hook execution id.
#[async_trait]
pub trait HookResults: Send + Sync {
    async fn record_first(&self, result: &HookResult) -> Result<HookWrite, StoreError>;
}

/// CodeDeploy refused or failed a status report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookReportError {
    /// Throttling, 5xx, network: Lambda's retry may get it through.
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Refused(String),
}

/// What reporting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Now,
    /// CodeDeploy says the lifecycle event is already completed (an earlier invocation reported it, or it timed out).
    AlreadyCompleted,
}

/// PutLifecycleEventHookExecutionStatus.
#[async_trait]
pub trait HookStatusReporter: Send + Sync {
    async fn report(&self, invocation: &HookInvocation, status: HookStatus) -> Result<Reported, HookReportError>;
}

/// The HTTP probe: one GET, the response's status code.
#[async_trait]
pub trait HttpProbe: Send + Sync {
    async fn get_status(&self, url: &ProbeUrl, timeout: Duration) -> Result<u16, String>;
}

/// In-memory [`HookResults`].
#[derive(Debug, Default)]
pub struct MemoryHookResults {
    results: Mutex<Vec<HookResult>>,
}

impl MemoryHookResults {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn results(&self) -> Vec<HookResult> {
        self.results.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl HookResults for MemoryHookResults {
    async fn record_first(&self, result: &HookResult) -> Result<HookWrite, StoreError> {
        let mut all = self
            .results
            .lock()
            .map_err(|_| StoreError::Transient("hook results lock poisoned".into()))?;
        if let Some(first) = all.iter().find(|r| r.hook_execution_id == result.hook_execution_id) {
            return Ok(HookWrite::Duplicate(Box::new(first.clone())));
        }
        all.push(result.clone());
        Ok(HookWrite::New)
    }
}

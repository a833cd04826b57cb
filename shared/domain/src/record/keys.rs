//! What an event is about, and the stable key of each record in the single-table design (see docs/table-design.md).
//!
//! Keys carry account and region: one control plane serves many member accounts, and pipeline names are only unique
//! within one account and region. `#` separates key parts; names that contain `#` stay unambiguous because the last
//! part (execution id, build id...) never does and the parts before it are fixed in number.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PipelineKey {
    pub account: String,
    pub region: String,
    pub pipeline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExecutionKey {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub execution_id: String,
}

impl ExecutionKey {
    pub fn pipeline_key(&self) -> PipelineKey {
        PipelineKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BuildKey {
    pub account: String,
    pub region: String,
    /// `project:uuid`.
    pub build_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeploymentKey {
    pub account: String,
    pub region: String,
    pub deployment_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StackKey {
    pub account: String,
    pub region: String,
    pub stack_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlarmKey {
    pub account: String,
    pub region: String,
    pub alarm_name: String,
}

/// The record an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Subject {
    Execution(ExecutionKey),
    Build(BuildKey),
    Deployment(DeploymentKey),
    /// CodeDeploy instance events: one item each, under their deployment's partition.
    Instance(DeploymentKey),
    Stack(StackKey),
    Alarm(AlarmKey),
    Unknown {
        account: String,
        region: String,
        source: String,
        detail_type: String,
    },
}

/// How a subject's events are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// All events of the subject are attributes of one item, so one read returns the whole history and the write
    /// that records an event returns it too (executions, builds, deployments: bounded, tens of events).
    Aggregate,
    /// One item per event under the subject's partition, sorted by time (stacks, alarms, instances, unknown kinds:
    /// unbounded over time).
    Series,
}

/// Sort key of an aggregate's single item.
pub const AGGREGATE_SK: &str = "STATE";

impl Subject {
    pub fn layout(&self) -> Layout {
        match self {
            Subject::Execution(_) | Subject::Build(_) | Subject::Deployment(_) => Layout::Aggregate,
            _ => Layout::Series,
        }
    }

    /// The partition key of the subject's item(s).
    pub fn pk(&self) -> String {
        match self {
            Subject::Execution(k) => execution_pk(k),
            Subject::Build(k) => format!("BUILD#{}#{}#{}", k.account, k.region, k.build_id),
            Subject::Deployment(k) | Subject::Instance(k) => deployment_pk(k),
            Subject::Stack(k) => format!("STACK#{}#{}#{}", k.account, k.region, k.stack_name),
            Subject::Alarm(k) => format!("ALARM#{}#{}#{}", k.account, k.region, k.alarm_name),
            Subject::Unknown {
                account,
                region,
                source,
                detail_type,
            } => format!("UNKNOWN#{account}#{region}#{source}#{detail_type}"),
        }
    }
}

pub fn execution_pk(k: &ExecutionKey) -> String {
    format!("EXEC#{}#{}#{}#{}", k.account, k.region, k.pipeline, k.execution_id)
}

pub fn deployment_pk(k: &DeploymentKey) -> String {
    format!("DEPLOY#{}#{}#{}", k.account, k.region, k.deployment_id)
}

/// GSI1 partition of a pipeline's executions, sorted by start time.
pub fn pipeline_gsi_pk(k: &PipelineKey) -> String {
    format!("PIPE#{}#{}#{}", k.account, k.region, k.pipeline)
}

/// Sort key of a series item: time first so a query by time range is a key condition; the id makes it unique.
pub fn series_sk(time: &chrono::DateTime<chrono::Utc>, event_id: &str) -> String {
    format!("EV#{}#{}", time.format("%Y-%m-%dT%H:%M:%SZ"), event_id)
}

/// Partition of messages that could not be processed, by UTC day.
pub fn rejected_pk(day: &chrono::NaiveDate) -> String {
    format!("REJECTED#{}", day.format("%Y-%m-%d"))
}

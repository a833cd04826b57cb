//! Where the gate finds the organisation baseline (the control plane's table, never a pipeline's artifact) and the
//! pipeline tags its rules may match on: the ports, and in-memory adapters for tests and local runs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::ports::StoreError;

/// The name of the baseline the gate applies unless configured otherwise (`TOLLGATE_BASELINE`).
pub const DEFAULT_BASELINE_NAME: &str = "default";

/// `BASELINE#<name>`: the table partition of a baseline. Only the role the template names may write it.
pub fn baseline_pk(name: &str) -> String {
    format!("BASELINE#{name}")
}

/// A baseline as published: its text (validated before it was written, and again when read) and who wrote it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedBaseline {
    pub name: String,
    pub text: String,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
}

/// Reading the baseline the gate applies.
#[async_trait]
pub trait BaselineSource: Send + Sync {
    /// The published baseline, or `None` when none is deployed (the gate then applies the pipeline's policy alone).
    async fn active_baseline(&self) -> Result<Option<PublishedBaseline>, StoreError>;
}

/// A pipeline's tags, for baseline rules that match on them.
#[async_trait]
pub trait PipelineTags: Send + Sync {
    async fn pipeline_tags(
        &self,
        account: &str,
        region: &str,
        pipeline: &str,
    ) -> Result<BTreeMap<String, String>, String>;
}

/// An in-memory baseline: none until one is published.
#[derive(Debug, Default)]
pub struct MemoryBaselines {
    current: Mutex<Option<Result<PublishedBaseline, StoreError>>>,
}

impl MemoryBaselines {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_text(self, text: &str) -> Self {
        self.with_named(DEFAULT_BASELINE_NAME, text)
    }

    /// A baseline published under `name` (how errors name it: `baseline <name>`).
    pub fn with_named(self, name: &str, text: &str) -> Self {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ok(PublishedBaseline {
            name: name.into(),
            text: text.into(),
            published_at: DateTime::UNIX_EPOCH,
            published_by: "test".into(),
        }));
        self
    }

    pub fn failing(self, error: StoreError) -> Self {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Err(error));
        self
    }
}

#[async_trait]
impl BaselineSource for MemoryBaselines {
    async fn active_baseline(&self) -> Result<Option<PublishedBaseline>, StoreError> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .transpose()
    }
}

/// In-memory pipeline tags: every pipeline has the same tags, or reading fails.
#[derive(Debug, Clone, Default)]
pub struct MemoryPipelineTags {
    tags: BTreeMap<String, String>,
    error: Option<String>,
}

impl MemoryPipelineTags {
    pub fn new(tags: &[(&str, &str)]) -> Self {
        MemoryPipelineTags {
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            error: None,
        }
    }

    pub fn from_map(tags: BTreeMap<String, String>) -> Self {
        MemoryPipelineTags { tags, error: None }
    }

    pub fn failing(error: &str) -> Self {
        MemoryPipelineTags {
            tags: BTreeMap::new(),
            error: Some(error.into()),
        }
    }
}

#[async_trait]
impl PipelineTags for MemoryPipelineTags {
    async fn pipeline_tags(&self, _: &str, _: &str, _: &str) -> Result<BTreeMap<String, String>, String> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(self.tags.clone()),
        }
    }
}

/// The policy a gate evaluates: the pipeline's, merged with the baseline when one is deployed, and which baseline
/// (and rule) applied, for the decision's explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct WithBaseline {
    pub policy: super::Policy,
    /// `baseline org (rule production)`; `None` when no baseline is deployed.
    pub applied: Option<String>,
    /// Whether an approver may not approve a change they triggered or authored: the baseline's setting for the
    /// stage's class, else on for a production stage name ([`super::is_production_stage`]).
    pub separation_of_duties: bool,
}

/// Where a gate runs, as the baseline's rules see it.
#[derive(Debug, Clone, Copy)]
pub struct GateSite<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub pipeline: &'a str,
    pub stage: &'a str,
}

/// Applies the deployed baseline to the pipeline's policy (`file` and `text` are the policy's, for positions in
/// errors). `Err` is why the gate must fail closed: the baseline cannot be read or parsed, its rules cannot be
/// matched, or the policy loosens it (every loosening listed, each with its field).
pub async fn apply_baseline(
    source: &dyn BaselineSource,
    tags: &dyn PipelineTags,
    site: GateSite<'_>,
    file: &str,
    text: &str,
    policy: super::Policy,
) -> Result<WithBaseline, String> {
    let published = source
        .active_baseline()
        .await
        .map_err(|e| format!("cannot read the organisation baseline: {e}; failing closed"))?;
    let Some(published) = published else {
        return Ok(WithBaseline {
            policy,
            applied: None,
            separation_of_duties: super::is_production_stage(site.stage),
        });
    };
    let baseline = super::parse_baseline(&format!("baseline {}", published.name), &published.text)
        .map_err(|e| format!("the organisation baseline is invalid ({e}); failing closed"))?;
    let needs_tags = baseline.rules.iter().any(|r| !r.matches.tags.is_empty());
    let pipeline_tags = if needs_tags {
        match tags.pipeline_tags(site.account, site.region, site.pipeline).await {
            Ok(t) => Some(t),
            Err(why) => {
                return Err(format!(
                    "cannot read {}'s tags, which the baseline's rules match on: {why}; failing closed",
                    site.pipeline
                ))
            }
        }
    } else {
        None
    };
    let stage = super::StageRef {
        pipeline: site.pipeline,
        stage: site.stage,
        tags: pipeline_tags.as_ref(),
    };
    let applicable = baseline
        .for_stage(&stage)
        .map_err(|why| format!("{why}; failing closed"))?;
    let describe = applicable.describe();
    let separation_of_duties = applicable
        .separation_of_duties
        .unwrap_or_else(|| super::is_production_stage(site.stage));
    match super::effective(file, text, &applicable, &policy) {
        Ok(policy) => Ok(WithBaseline {
            policy,
            applied: Some(describe),
            separation_of_duties,
        }),
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            Err(format!(
                "the policy {file} loosens the organisation baseline ({describe}) in {} field(s); failing closed:\n{}",
                errors.len(),
                lines.join("\n")
            ))
        }
    }
}

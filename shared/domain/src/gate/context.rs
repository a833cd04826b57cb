//! What a gate job is about: its context, the artifacts and credentials CodePipeline hands it, and the
//! continuation token that carries a waiting gate from one invocation to the next.

use super::*;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::keys::{ExecutionKey, PipelineKey};

// ---------------------------------------------------------------------------------------------------------------
// The job.

/// Where a job runs, from GetJobDetails's `pipelineContext` (the job event itself does not say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub execution_id: String,
}

impl JobContext {
    pub fn execution_key(&self) -> ExecutionKey {
        ExecutionKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
            execution_id: self.execution_id.clone(),
        }
    }

    /// The same account and region, another pipeline.
    pub fn pipeline_key(&self, pipeline: &str) -> PipelineKey {
        PipelineKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: pipeline.to_string(),
        }
    }

    pub fn approval_key(&self) -> ApprovalKey {
        ApprovalKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
            execution_id: self.execution_id.clone(),
            stage: self.stage.clone(),
        }
    }
}

/// An input artifact in the pipeline's artifact store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLocation {
    pub name: String,
    pub bucket: String,
    pub key: String,
}

/// The job's temporary credentials for its artifacts. Secrets: `Debug` shows none of them, and the type is neither
/// serialisable nor displayable, so it cannot end up in a record or a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ArtifactCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl fmt::Debug for ArtifactCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArtifactCredentials(redacted)")
    }
}

/// The input artifacts stored in S3 (in order) and the artifact credentials of a `CodePipeline.job` event's `data`,
/// which the domain parser leaves out on purpose. The credentials are read field by field as plain strings, never
/// through a deserializer whose error message could quote a value, and kept only in [`ArtifactCredentials`].
pub fn job_artifacts(data: &serde_json::Value) -> (Vec<ArtifactLocation>, Option<ArtifactCredentials>) {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let artifacts = data["inputArtifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let s3 = &a["location"]["s3Location"];
            Some(ArtifactLocation {
                name: text(&a["name"]).unwrap_or_default(),
                bucket: text(&s3["bucketName"])?,
                key: text(&s3["objectKey"])?,
            })
        })
        .collect();
    let c = &data["artifactCredentials"];
    let credentials = match (
        text(&c["accessKeyId"]),
        text(&c["secretAccessKey"]),
        text(&c["sessionToken"]),
    ) {
        (Some(access_key_id), Some(secret_access_key), Some(session_token)) => Some(ArtifactCredentials {
            access_key_id,
            secret_access_key,
            session_token,
        }),
        _ => None,
    };
    (artifacts, credentials)
}

/// The policy as read from the artifact: the path it was found at, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyText {
    pub path: String,
    pub text: String,
}

// ---------------------------------------------------------------------------------------------------------------
// The continuation token.

/// What a waiting gate hands itself through CodePipeline's continuation token: when it first evaluated the job (so
/// `max_wait` counts from there) and the chain of its decisions. Compact JSON, `{"v":1,"f":<epoch s>,"n":3,"d":[..]}`,
/// always within [`MAX_CONTINUATION_TOKEN_CHARS`]: when the chain grows too long, the ids after the first are dropped
/// oldest first (`n` still counts every evaluation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    #[serde(rename = "v")]
    pub version: u8,
    /// The first evaluation, epoch seconds.
    #[serde(rename = "f")]
    pub first_evaluated_at: i64,
    /// Evaluations so far.
    #[serde(rename = "n")]
    pub evaluations: u32,
    /// Decision ids, oldest first: the first decision, then the latest ones.
    #[serde(rename = "d")]
    pub decisions: Vec<String>,
}

impl Continuation {
    pub const VERSION: u8 = 1;

    /// The token a wait answers with, after `previous` (None on the first evaluation) and this decision.
    pub fn after(previous: Option<&Continuation>, first_evaluated_at: DateTime<Utc>, decision_id: &str) -> Self {
        let (evaluations, mut decisions) = match previous {
            Some(p) => (p.evaluations.saturating_add(1), p.decisions.clone()),
            None => (1, Vec::new()),
        };
        decisions.push(decision_id.to_string());
        Continuation {
            version: Self::VERSION,
            first_evaluated_at: first_evaluated_at.timestamp(),
            evaluations,
            decisions,
        }
    }

    pub fn first_evaluated_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.first_evaluated_at, 0).unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// Reads a token this gate wrote. Anything else is refused: starting the wait over would defeat `max_wait`.
    pub fn decode(token: &str) -> Result<Continuation, String> {
        let c: Continuation = serde_json::from_str(token).map_err(|e| {
            format!("the continuation token is not one the gate wrote ({e}); the wait cannot go on safely")
        })?;
        if c.version != Self::VERSION {
            return Err(format!(
                "the continuation token has version {}, this gate reads version {}",
                c.version,
                Self::VERSION
            ));
        }
        if DateTime::from_timestamp(c.first_evaluated_at, 0).is_none() {
            return Err("the continuation token's first evaluation time is out of range".into());
        }
        Ok(c)
    }

    /// Compact JSON within [`MAX_CONTINUATION_TOKEN_CHARS`], dropping middle decision ids if needed.
    pub fn encode(&self) -> String {
        let mut c = self.clone();
        loop {
            let text = serde_json::to_string(&c).unwrap_or_default();
            if text.chars().count() <= MAX_CONTINUATION_TOKEN_CHARS || c.decisions.len() <= 2 {
                return text;
            }
            c.decisions.remove(1);
        }
    }
}

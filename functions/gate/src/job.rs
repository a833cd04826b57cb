//! The job event, as the gate needs it: what `tollgate_domain::record::parse` reads (id, UserParameters, continuation
//! token) plus the input artifacts' locations and the job's artifact credentials, which the domain parser leaves out
//! on purpose.
//!
//! The artifacts and credentials are read by [`tollgate_domain::gate::job_artifacts`]: the credentials field by
//! field, kept only in [`ArtifactCredentials`], whose `Debug` shows nothing.

use serde_json::Value;
use tollgate_domain::gate::{job_artifacts, ArtifactCredentials, ArtifactLocation};
use tollgate_domain::record::parse::{parse_inbound, Inbound, ParseError, PipelineJob};

/// A CodePipeline job for the gate.
#[derive(Debug, Clone)]
pub struct GateJob {
    pub job: PipelineJob,
    /// Input artifacts in order, those stored in S3.
    pub artifacts: Vec<ArtifactLocation>,
    pub credentials: Option<ArtifactCredentials>,
}

/// Why an invocation is not a job the gate can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobEventError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("the gate is invoked by CodePipeline with a `CodePipeline.job` event; this is another kind of input")]
    NotAJob,
}

impl GateJob {
    pub fn from_value(event: &Value) -> Result<GateJob, JobEventError> {
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        let Inbound::PipelineJob(job) = parse_inbound(&bytes)? else {
            return Err(JobEventError::NotAJob);
        };
        let (artifacts, credentials) = job_artifacts(&event["CodePipeline.job"]["data"]);
        Ok(GateJob {
            job,
            artifacts,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAMBDA_DEVGUIDE: &str = include_str!("../events/codepipeline-job-gate.json");

    #[test]
    fn the_sample_job_gives_its_artifact_and_credentials() {
        let event: Value = serde_json::from_str(LAMBDA_DEVGUIDE).unwrap();
        let job = GateJob::from_value(&event).unwrap();
        assert_eq!(job.job.id, "3c9a5f0e-1b2d-4e6f-8a7b-9c0d1e2f3a4b");
        assert_eq!(
            job.artifacts,
            vec![ArtifactLocation {
                name: "SourceArtifact".into(),
                bucket: "codepipeline-eu-west-1-111122223333".into(),
                key: "checkout-service/SourceArti/TdOSFRV".into(),
            }]
        );
        assert!(job.credentials.is_some());
        let shown = format!("{job:?}");
        assert!(
            !shown.contains("EXAMPLE-SECRET") && !shown.contains("EXAMPLE-SESSION"),
            "{shown}"
        );
    }

    #[test]
    fn every_aws_sample_job_event_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/aws-events");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: {} not found", dir.display());
            return;
        };
        let mut seen = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with("codepipeline-job-lambda-invoke") {
                continue;
            }
            let event: Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
            let job = GateJob::from_value(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(job.artifacts.len(), 1, "{name}");
            assert!(job.credentials.is_some(), "{name}");
            seen += 1;
        }
        assert_eq!(seen, 2);
    }

    #[test]
    fn other_inputs_are_refused() {
        let event = serde_json::json!({"source": "aws.codepipeline", "detail-type": "x", "detail": {}});
        assert!(GateJob::from_value(&event).is_err());
    }
}

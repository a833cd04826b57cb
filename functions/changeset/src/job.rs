//! The job event, as the changeset action needs it: what `tollgate_domain::record::parse` reads (id, UserParameters,
//! continuation token) plus the input artifacts' locations and the job's artifact credentials.
//!
//! The artifacts and credentials are read by [`tollgate_domain::gate::job_artifacts`], as the gate reads them: the
//! credentials field by field, kept only in [`ArtifactCredentials`], whose `Debug` shows nothing.

use serde_json::Value;
use tollgate_domain::gate::{job_artifacts, ArtifactCredentials, ArtifactLocation};
use tollgate_domain::record::parse::{parse_inbound, Inbound, ParseError, PipelineJob};

/// A CodePipeline job for the changeset action.
#[derive(Debug, Clone)]
pub struct ChangesetJob {
    pub job: PipelineJob,
    /// Input artifacts in order, those stored in S3.
    pub artifacts: Vec<ArtifactLocation>,
    pub credentials: Option<ArtifactCredentials>,
}

/// Why an invocation is not a job the action can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobEventError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("the changeset action is invoked by CodePipeline with a `CodePipeline.job` event; this is another kind of input")]
    NotAJob,
}

impl ChangesetJob {
    pub fn from_value(event: &Value) -> Result<ChangesetJob, JobEventError> {
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        let Inbound::PipelineJob(job) = parse_inbound(&bytes)? else {
            return Err(JobEventError::NotAJob);
        };
        let (artifacts, credentials) = job_artifacts(&event["CodePipeline.job"]["data"]);
        Ok(ChangesetJob {
            job,
            artifacts,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_gives_its_artifact_and_hides_its_credentials() {
        let event = serde_json::json!({"CodePipeline.job": {"id": "j-1", "accountId": "111122223333", "data": {
            "actionConfiguration": {"configuration": {"FunctionName": "tollgate-changeset", "UserParameters": "{}"}},
            "inputArtifacts": [{"name": "SourceArtifact", "location": {"type": "S3", "s3Location":
                {"bucketName": "b", "objectKey": "k"}}}],
            "artifactCredentials": {"accessKeyId": "ASIA", "secretAccessKey": "EXAMPLE-SECRET", "sessionToken": "EXAMPLE-SESSION"}
        }}});
        let job = ChangesetJob::from_value(&event).unwrap();
        assert_eq!(job.artifacts.len(), 1);
        assert_eq!(job.artifacts[0].bucket, "b");
        let shown = format!("{job:?}");
        assert!(
            !shown.contains("EXAMPLE-SECRET") && !shown.contains("EXAMPLE-SESSION"),
            "{shown}"
        );
        assert!(ChangesetJob::from_value(&serde_json::json!({"source": "aws.codepipeline"})).is_err());
    }
}

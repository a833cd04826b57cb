//! [`CodePipelineJobs`]: the gate's side of CodePipeline's job API. GetJobDetails says where a job runs
//! (`pipelineContext`); PutJobSuccessResult and PutJobFailureResult answer it.
//!
//! GetJobDetails also returns the job's artifact credentials: only the pipeline context is read from its answer, and
//! nothing of it is logged.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_codepipeline::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultError;
use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultError;
use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};
use aws_sdk_codepipeline::Client;
use tollgate_domain::gate::{AnswerSent, FailureKind, JobAnswer, JobApiError, JobContext, PipelineJobs};

/// The CodePipeline adapter of [`PipelineJobs`].
#[derive(Debug, Clone)]
pub struct CodePipelineJobs {
    client: Client,
}

impl CodePipelineJobs {
    pub fn new(client: Client) -> Self {
        CodePipelineJobs { client }
    }
}

/// Error codes a later attempt may get past.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
    "RequestTimeout",
];

fn job_error<E>(what: &str, err: &SdkError<E>) -> JobApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("CodePipeline {what} failed: {}", DisplayErrorContext(err));
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or_default();
            if TRANSIENT_CODES.contains(&code) || code.contains("Throttl") || service.raw().status().is_server_error() {
                JobApiError::Transient(text)
            } else {
                JobApiError::Permanent(text)
            }
        }
        _ => JobApiError::Transient(text),
    }
}

/// `arn:aws:codepipeline:<region>:<account>:<name>` → (region, account).
fn arn_region_account(arn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "codepipeline", region, account, _] if !region.is_empty() && !account.is_empty() => {
            Some((region.to_string(), account.to_string()))
        }
        _ => None,
    }
}

#[async_trait]
impl PipelineJobs for CodePipelineJobs {
    #[tracing::instrument(skip_all, fields(job_id = %job_id))]
    async fn job_context(&self, job_id: &str) -> Result<JobContext, JobApiError> {
        let out = self
            .client
            .get_job_details()
            .job_id(job_id)
            .send()
            .await
            .map_err(|e| job_error("GetJobDetails", &e))?;
        let details = out.job_details();
        let context = details.and_then(|d| d.data()).and_then(|d| d.pipeline_context());
        let missing = |field: &str| {
            JobApiError::Permanent(format!(
                "CodePipeline GetJobDetails of job {job_id} has no pipelineContext.{field}"
            ))
        };
        let context = context.ok_or_else(|| missing("(any)"))?;
        let pipeline = context.pipeline_name().ok_or_else(|| missing("pipelineName"))?;
        let stage = context
            .stage()
            .and_then(|s| s.name())
            .ok_or_else(|| missing("stage.name"))?;
        let action = context
            .action()
            .and_then(|a| a.name())
            .ok_or_else(|| missing("action.name"))?;
        let execution_id = context
            .pipeline_execution_id()
            .ok_or_else(|| missing("pipelineExecutionId"))?;
        // The pipeline's own region and account; the job's account and this client's region when the ARN is absent.
        let (region, account) = match context.pipeline_arn().and_then(arn_region_account) {
            Some(found) => found,
            None => (
                self.client
                    .config()
                    .region()
                    .map(|r| r.to_string())
                    .ok_or_else(|| missing("pipelineArn"))?,
                details
                    .and_then(|d| d.account_id())
                    .map(str::to_string)
                    .ok_or_else(|| missing("pipelineArn"))?,
            ),
        };
        tracing::debug!(pipeline, stage, action, execution_id, "job context read");
        Ok(JobContext {
            account,
            region,
            pipeline: pipeline.to_string(),
            stage: stage.to_string(),
            action: action.to_string(),
            execution_id: execution_id.to_string(),
        })
    }

    #[tracing::instrument(skip_all, fields(job_id = %job_id))]
    async fn answer(&self, job_id: &str, answer: &JobAnswer) -> Result<AnswerSent, JobApiError> {
        match answer {
            JobAnswer::Success {
                continuation_token,
                output_variables,
                external_execution_id,
                summary,
            } => {
                let details = ExecutionDetails::builder()
                    .external_execution_id(external_execution_id)
                    .summary(summary)
                    .build();
                let variables: Option<HashMap<String, String>> = (!output_variables.is_empty())
                    .then(|| output_variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
                let result = self
                    .client
                    .put_job_success_result()
                    .job_id(job_id)
                    .set_continuation_token(continuation_token.clone())
                    .set_output_variables(variables)
                    .execution_details(details)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(AnswerSent::Sent),
                    Err(e)
                        if matches!(
                            e.as_service_error(),
                            Some(PutJobSuccessResultError::InvalidJobStateException(_))
                        ) =>
                    {
                        Ok(AnswerSent::AlreadyAnswered)
                    }
                    Err(e) => Err(job_error("PutJobSuccessResult", &e)),
                }
            }
            JobAnswer::Failure {
                kind,
                message,
                external_execution_id,
            } => {
                let kind = match kind {
                    FailureKind::JobFailed => FailureType::JobFailed,
                    FailureKind::ConfigurationError => FailureType::ConfigurationError,
                };
                let details = FailureDetails::builder()
                    .r#type(kind)
                    .message(message)
                    .external_execution_id(external_execution_id)
                    .build()
                    .map_err(|e| JobApiError::Permanent(format!("PutJobFailureResult: {e}")))?;
                let result = self
                    .client
                    .put_job_failure_result()
                    .job_id(job_id)
                    .failure_details(details)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(AnswerSent::Sent),
                    Err(e)
                        if matches!(
                            e.as_service_error(),
                            Some(PutJobFailureResultError::InvalidJobStateException(_))
                        ) =>
                    {
                        Ok(AnswerSent::AlreadyAnswered)
                    }
                    Err(e) => Err(job_error("PutJobFailureResult", &e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use aws_sdk_codepipeline::operation::get_job_details::GetJobDetailsOutput;
    use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultOutput;
    use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
    use aws_sdk_codepipeline::types::error::InvalidJobStateException;
    use aws_sdk_codepipeline::types::{ActionContext, JobData, JobDetails, PipelineContext, StageContext};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    const JOB: &str = "11111111-abcd-1111-abcd-111111abcdef";

    #[tokio::test]
    async fn job_context_comes_from_the_pipeline_context() {
        let rule = mock!(Client::get_job_details)
            .match_requests(|r| r.job_id() == Some(JOB))
            .then_output(|| {
                let context = PipelineContext::builder()
                    .pipeline_name("checkout-service")
                    .stage(StageContext::builder().name("Production").build())
                    .action(ActionContext::builder().name("Gate").action_execution_id("a-1").build())
                    .pipeline_arn("arn:aws:codepipeline:eu-west-1:111122223333:checkout-service")
                    .pipeline_execution_id("ed085d02-372a-4b03-ba8a-c1df62a84ced")
                    .build();
                GetJobDetailsOutput::builder()
                    .job_details(
                        JobDetails::builder()
                            .id(JOB)
                            .account_id("111122223333")
                            .data(JobData::builder().pipeline_context(context).build())
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, [&rule]);
        let ctx = CodePipelineJobs::new(client).job_context(JOB).await.unwrap();
        assert_eq!(
            ctx,
            JobContext {
                account: "111122223333".into(),
                region: "eu-west-1".into(),
                pipeline: "checkout-service".into(),
                stage: "Production".into(),
                action: "Gate".into(),
                execution_id: "ed085d02-372a-4b03-ba8a-c1df62a84ced".into(),
            }
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn success_with_a_continuation_token_sends_no_output_variables() {
        let rule = mock!(Client::put_job_success_result)
            .match_requests(|r| {
                r.job_id() == Some(JOB)
                    && r.continuation_token() == Some(r#"{"v":1,"f":1795183800,"n":1,"d":["j"]}"#)
                    && r.output_variables().is_none()
                    && r.execution_details().and_then(|d| d.external_execution_id()) == Some(JOB)
                    && r.execution_details().and_then(|d| d.summary()) == Some("waiting: bake")
            })
            .then_output(|| PutJobSuccessResultOutput::builder().build());
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, [&rule]);
        let answer = JobAnswer::Success {
            continuation_token: Some(r#"{"v":1,"f":1795183800,"n":1,"d":["j"]}"#.into()),
            output_variables: BTreeMap::new(),
            external_execution_id: JOB.into(),
            summary: "waiting: bake".into(),
        };
        let sent = CodePipelineJobs::new(client).answer(JOB, &answer).await.unwrap();
        assert_eq!(sent, AnswerSent::Sent);
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn failure_sends_type_message_and_external_id_and_an_answered_job_is_done() {
        let rule = mock!(Client::put_job_failure_result)
            .match_requests(|r| {
                let d = r.failure_details().unwrap();
                r.job_id() == Some(JOB)
                    && d.r#type() == &FailureType::JobFailed
                    && d.message() == "FAIL: failed: approval"
                    && d.external_execution_id() == Some(JOB)
            })
            .sequence()
            .output(|| PutJobFailureResultOutput::builder().build())
            .error(|| {
                PutJobFailureResultError::InvalidJobStateException(
                    InvalidJobStateException::builder()
                        .message("job is not in progress")
                        .build(),
                )
            })
            .build();
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, [&rule]);
        let jobs = CodePipelineJobs::new(client);
        let answer = JobAnswer::Failure {
            kind: FailureKind::JobFailed,
            message: "FAIL: failed: approval".into(),
            external_execution_id: JOB.into(),
        };
        assert_eq!(jobs.answer(JOB, &answer).await.unwrap(), AnswerSent::Sent);
        assert_eq!(jobs.answer(JOB, &answer).await.unwrap(), AnswerSent::AlreadyAnswered);
        assert_eq!(rule.num_calls(), 2);
    }

    #[test]
    fn pipeline_arns_give_region_and_account() {
        assert_eq!(
            arn_region_account("arn:aws:codepipeline:eu-west-1:111122223333:checkout-service"),
            Some(("eu-west-1".into(), "111122223333".into()))
        );
        assert_eq!(arn_region_account("not an arn"), None);
    }
}

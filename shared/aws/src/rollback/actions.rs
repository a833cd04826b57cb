//! [`AwsRollbackActions`]: the rollback requests themselves. Every refusal comes back as
//! [`ActOutcome::Refused`] with AWS's code and message (never retried); throttling and 5xx are
//! [`GuardApiError::Transient`] (the message goes back to the queue; the claim was released, so nothing runs twice).

use async_trait::async_trait;
use aws_sdk_codepipeline::types::{ExecutionType, PipelineExecutionFilter, SucceededInStageFilter};
use tollgate_domain::rollback::guard::{ActOutcome, GuardApiError, RollbackAction, RollbackActions};

use super::{classify, CallError};

/// Successful executions of a stage read to find a rollback target: RollbackStage needs one that is not itself a
/// rollback; the newest non-rollback success is almost always on the first page.
const EXECUTION_PAGES: usize = 3;
const EXECUTIONS_PER_PAGE: i32 = 25;

/// The CodeDeploy, CodePipeline and CloudFormation adapter of [`RollbackActions`], in the function's own account
/// and region.
#[derive(Debug, Clone)]
pub struct AwsRollbackActions {
    codedeploy: aws_sdk_codedeploy::Client,
    codepipeline: aws_sdk_codepipeline::Client,
    cloudformation: aws_sdk_cloudformation::Client,
}

fn outcome(err: CallError) -> Result<ActOutcome, GuardApiError> {
    match err {
        CallError::Transient(t) => Err(GuardApiError::Transient(t)),
        CallError::Refused { code, message } => Ok(ActOutcome::Refused { code, message }),
    }
}

impl AwsRollbackActions {
    pub fn new(
        codedeploy: aws_sdk_codedeploy::Client,
        codepipeline: aws_sdk_codepipeline::Client,
        cloudformation: aws_sdk_cloudformation::Client,
    ) -> Self {
        AwsRollbackActions {
            codedeploy,
            codepipeline,
            cloudformation,
        }
    }

    /// The newest successful execution of `stage` that is not a rollback and not `current`, or why there is none.
    async fn rollback_target(
        &self,
        pipeline: &str,
        stage: &str,
        current: &str,
    ) -> Result<Result<String, ActOutcome>, GuardApiError> {
        let filter = PipelineExecutionFilter::builder()
            .succeeded_in_stage(SucceededInStageFilter::builder().stage_name(stage).build())
            .build();
        let mut next: Option<String> = None;
        for _ in 0..EXECUTION_PAGES {
            let out = self
                .codepipeline
                .list_pipeline_executions()
                .pipeline_name(pipeline)
                .filter(filter.clone())
                .max_results(EXECUTIONS_PER_PAGE)
                .set_next_token(next.take())
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    return outcome(classify(&format!("CodePipeline ListPipelineExecutions {pipeline}"), &e)).map(Err)
                }
            };
            let found = out.pipeline_execution_summaries().iter().find(|e| {
                e.execution_type() != Some(&ExecutionType::Rollback)
                    && e.rollback_metadata().is_none()
                    && e.pipeline_execution_id().is_some_and(|id| id != current)
            });
            if let Some(id) = found.and_then(|e| e.pipeline_execution_id()) {
                return Ok(Ok(id.to_string()));
            }
            match out.next_token() {
                Some(t) => next = Some(t.to_string()),
                None => break,
            }
        }
        Ok(Err(ActOutcome::Refused {
            code: "NoRollbackTarget".into(),
            message: format!(
                "no earlier successful execution of stage {stage} that is not a rollback among the newest {}",
                EXECUTION_PAGES as i32 * EXECUTIONS_PER_PAGE
            ),
        }))
    }
}

#[async_trait]
impl RollbackActions for AwsRollbackActions {
    #[tracing::instrument(skip(self), fields(request = %action))]
    async fn execute(&self, account: &str, region: &str, action: &RollbackAction) -> Result<ActOutcome, GuardApiError> {
        match action {
            RollbackAction::StopDeployment { deployment_id } => {
                let result = self
                    .codedeploy
                    .stop_deployment()
                    .deployment_id(deployment_id)
                    .auto_rollback_enabled(true)
                    .send()
                    .await;
                match result {
                    Ok(out) => Ok(ActOutcome::Accepted {
                        detail: format!(
                            "deployment {deployment_id} stopping with automatic rollback: {} {}",
                            out.status().map(|s| s.as_str()).unwrap_or("Pending"),
                            out.status_message().unwrap_or_default()
                        )
                        .trim_end()
                        .to_string(),
                    }),
                    Err(e) => outcome(classify(&format!("CodeDeploy StopDeployment {deployment_id}"), &e)),
                }
            }
            RollbackAction::RollbackStage {
                pipeline,
                stage,
                current_execution_id,
            } => {
                let target = match self.rollback_target(pipeline, stage, current_execution_id).await? {
                    Ok(target) => target,
                    Err(refused) => return Ok(refused),
                };
                let result = self
                    .codepipeline
                    .rollback_stage()
                    .pipeline_name(pipeline)
                    .stage_name(stage)
                    .target_pipeline_execution_id(&target)
                    .send()
                    .await;
                match result {
                    Ok(out) => Ok(ActOutcome::Accepted {
                        detail: format!(
                            "rollback execution {} of {pipeline} / {stage} started, back to execution {target}",
                            out.pipeline_execution_id()
                        ),
                    }),
                    Err(e) => outcome(classify(
                        &format!("CodePipeline RollbackStage {pipeline} / {stage}"),
                        &e,
                    )),
                }
            }
            RollbackAction::CancelUpdateStack { stack_name } => {
                let result = self
                    .cloudformation
                    .cancel_update_stack()
                    .stack_name(stack_name)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(ActOutcome::Accepted {
                        detail: format!("update of stack {stack_name} cancelled: CloudFormation rolls it back"),
                    }),
                    Err(e) => outcome(classify(&format!("CloudFormation CancelUpdateStack {stack_name}"), &e)),
                }
            }
            RollbackAction::RollbackStack { stack_name } => {
                let result = self.cloudformation.rollback_stack().stack_name(stack_name).send().await;
                match result {
                    Ok(out) => Ok(ActOutcome::Accepted {
                        detail: format!(
                            "stack {} rolling back to its last stable state",
                            out.stack_id().unwrap_or(stack_name)
                        ),
                    }),
                    Err(e) => outcome(classify(&format!("CloudFormation RollbackStack {stack_name}"), &e)),
                }
            }
        }
        .inspect(|o| tracing::info!(account, region, answer = ?o, "rollback request answered"))
    }
}

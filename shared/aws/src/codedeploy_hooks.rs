//! The lifecycle hook's adapters: [`CodeDeployHookReporter`] answers CodeDeploy (PutLifecycleEventHookExecutionStatus)
//! and [`DynamoDbHookResults`] keeps the first status of each hook execution, so that a duplicate invocation reports
//! the same one.
//!
//! A hook result is one item, `pk = HOOK#<hook execution id>`, `sk = RESULT`, written once with
//! `attribute_not_exists(pk)`; a later write gets the first one back in the refusal
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`). It expires with the table's TTL like every other record.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_codedeploy::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_codedeploy::operation::put_lifecycle_event_hook_execution_status::PutLifecycleEventHookExecutionStatusError;
use aws_sdk_codedeploy::types::LifecycleEventStatus;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::Duration;
use tollgate_domain::record::ports::StoreError;
use tollgate_domain::rollback::hook::{
    HookInvocation, HookReportError, HookResult, HookResults, HookStatus, HookStatusReporter, HookWrite, Reported,
};

/// The CodeDeploy adapter of [`HookStatusReporter`].
#[derive(Debug, Clone)]
pub struct CodeDeployHookReporter {
    client: aws_sdk_codedeploy::Client,
}

impl CodeDeployHookReporter {
    pub fn new(client: aws_sdk_codedeploy::Client) -> Self {
        CodeDeployHookReporter { client }
    }
}

#[async_trait]
impl HookStatusReporter for CodeDeployHookReporter {
    #[tracing::instrument(skip_all, fields(deployment_id = %invocation.deployment_id, status = status.as_str()))]
    async fn report(&self, invocation: &HookInvocation, status: HookStatus) -> Result<Reported, HookReportError> {
        let status = match status {
            HookStatus::Succeeded => LifecycleEventStatus::Succeeded,
            HookStatus::Failed => LifecycleEventStatus::Failed,
        };
        let result = self
            .client
            .put_lifecycle_event_hook_execution_status()
            .deployment_id(&invocation.deployment_id)
            .lifecycle_event_hook_execution_id(&invocation.hook_execution_id)
            .status(status)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Reported::Now),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutLifecycleEventHookExecutionStatusError::LifecycleEventAlreadyCompletedException(_))
                ) =>
            {
                Ok(Reported::AlreadyCompleted)
            }
            Err(e) => {
                let text = format!(
                    "CodeDeploy PutLifecycleEventHookExecutionStatus for deployment {} failed: {}",
                    invocation.deployment_id,
                    DisplayErrorContext(&e)
                );
                Err(match &e {
                    SdkError::ServiceError(service) => {
                        let code = e.code().unwrap_or_default();
                        if code.contains("Throttl") || service.raw().status().is_server_error() {
                            HookReportError::Transient(text)
                        } else {
                            HookReportError::Refused(text)
                        }
                    }
                    _ => HookReportError::Transient(text),
                })
            }
        }
    }
}

/// The DynamoDB adapter of [`HookResults`].
#[derive(Debug, Clone)]
pub struct DynamoDbHookResults {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention_days: i64,
}

/// `HOOK#<hook execution id>`.
pub fn hook_pk(hook_execution_id: &str) -> String {
    format!("HOOK#{hook_execution_id}")
}

pub const HOOK_SK: &str = "RESULT";

impl DynamoDbHookResults {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, retention_days: i64) -> Self {
        DynamoDbHookResults {
            client,
            table: table.into(),
            retention_days,
        }
    }

    fn error(&self, err: &SdkError<PutItemError>) -> StoreError {
        let text = format!(
            "DynamoDB PutItem on table {} failed: {}",
            self.table,
            DisplayErrorContext(err)
        );
        match err {
            SdkError::ServiceError(service) => {
                let code = err.code().unwrap_or_default();
                if code.contains("Throttl")
                    || code == "ProvisionedThroughputExceededException"
                    || code == "RequestLimitExceeded"
                    || service.raw().status().is_server_error()
                {
                    StoreError::Transient(text)
                } else {
                    StoreError::Permanent(text)
                }
            }
            _ => StoreError::Transient(text),
        }
    }
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<HookResult, StoreError> {
    let text = item
        .get("result")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Permanent("hook result item has no `result` attribute".into()))?;
    serde_json::from_str(text).map_err(|e| StoreError::Permanent(format!("hook result item is unreadable: {e}")))
}

#[async_trait]
impl HookResults for DynamoDbHookResults {
    #[tracing::instrument(skip_all, fields(deployment_id = %result.deployment_id))]
    async fn record_first(&self, result: &HookResult) -> Result<HookWrite, StoreError> {
        let body = serde_json::to_string(result)
            .map_err(|e| StoreError::Permanent(format!("hook result cannot be serialised: {e}")))?;
        let ttl = (result.decided_at + Duration::days(self.retention_days)).timestamp();
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(hook_pk(&result.hook_execution_id)))
            .item("sk", AttributeValue::S(HOOK_SK.into()))
            .item("deployment_id", AttributeValue::S(result.deployment_id.clone()))
            .item("status", AttributeValue::S(result.status.as_str().into()))
            .item("result", AttributeValue::S(body))
            .item("ttl", AttributeValue::N(ttl.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(HookWrite::New),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => match c.item() {
                    Some(item) => Ok(HookWrite::Duplicate(Box::new(decode(item)?))),
                    None => Err(StoreError::Transient(
                        "a hook result exists but DynamoDB did not return it; try again".into(),
                    )),
                },
                _ => Err(self.error(&e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codedeploy::operation::put_lifecycle_event_hook_execution_status::PutLifecycleEventHookExecutionStatusOutput;
    use aws_sdk_codedeploy::types::error::{
        LifecycleEventAlreadyCompletedException, UnsupportedActionForDeploymentTypeException,
    };
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::{TimeZone, Utc};

    fn invocation() -> HookInvocation {
        HookInvocation {
            deployment_id: "d-9ZPLQX4KO".into(),
            hook_execution_id: "hook-exec-1".into(),
        }
    }

    #[tokio::test]
    async fn succeeded_is_reported_with_the_exact_ids() {
        let rule = mock!(aws_sdk_codedeploy::Client::put_lifecycle_event_hook_execution_status)
            .match_requests(|r| {
                r.deployment_id() == Some("d-9ZPLQX4KO")
                    && r.lifecycle_event_hook_execution_id() == Some("hook-exec-1")
                    && r.status() == Some(&LifecycleEventStatus::Succeeded)
            })
            .then_output(|| {
                PutLifecycleEventHookExecutionStatusOutput::builder()
                    .lifecycle_event_hook_execution_id("hook-exec-1")
                    .build()
            });
        let client = mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, [&rule]);
        let reported = CodeDeployHookReporter::new(client)
            .report(&invocation(), HookStatus::Succeeded)
            .await
            .unwrap();
        assert_eq!(reported, Reported::Now);
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_already_completed_event_counts_as_reported_and_other_refusals_are_errors() {
        let done = mock!(aws_sdk_codedeploy::Client::put_lifecycle_event_hook_execution_status)
            .match_requests(|r| r.status() == Some(&LifecycleEventStatus::Failed))
            .then_error(|| {
                PutLifecycleEventHookExecutionStatusError::LifecycleEventAlreadyCompletedException(
                    LifecycleEventAlreadyCompletedException::builder()
                        .message("The lifecycle event has already completed")
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, [&done]);
        let reported = CodeDeployHookReporter::new(client)
            .report(&invocation(), HookStatus::Failed)
            .await
            .unwrap();
        assert_eq!(reported, Reported::AlreadyCompleted);

        let unsupported =
            mock!(aws_sdk_codedeploy::Client::put_lifecycle_event_hook_execution_status).then_error(|| {
                PutLifecycleEventHookExecutionStatusError::UnsupportedActionForDeploymentTypeException(
                    UnsupportedActionForDeploymentTypeException::builder()
                        .message("not for EC2/On-premises")
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, [&unsupported]);
        let err = CodeDeployHookReporter::new(client)
            .report(&invocation(), HookStatus::Failed)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HookReportError::Refused(m) if m.contains("d-9ZPLQX4KO")),
            "{err}"
        );
    }

    fn result(status: HookStatus) -> HookResult {
        HookResult {
            deployment_id: "d-9ZPLQX4KO".into(),
            hook_execution_id: "hook-exec-1".into(),
            status,
            checks: vec![],
            decided_at: Utc.with_ymd_and_hms(2026, 11, 20, 14, 0, 0).unwrap(),
        }
    }

    #[tokio::test]
    async fn the_first_result_is_written_once_and_a_second_gets_it_back() {
        let first = result(HookStatus::Failed);
        let stored = serde_json::to_string(&first).unwrap();
        let rule = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.table_name() == Some("tollgate")
                    && r.condition_expression() == Some("attribute_not_exists(pk)")
                    && item["pk"].as_s().unwrap() == "HOOK#hook-exec-1"
                    && item["sk"].as_s().unwrap() == "RESULT"
                    && item["ttl"].as_n().unwrap() == "1829743200"
            })
            .sequence()
            .output(|| PutItemOutput::builder().build())
            .error(move || {
                PutItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .item("result", AttributeValue::S(stored.clone()))
                        .build(),
                )
            })
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbHookResults::new(client, "tollgate", 400);
        assert_eq!(store.record_first(&first).await.unwrap(), HookWrite::New);
        let again = store.record_first(&result(HookStatus::Succeeded)).await.unwrap();
        assert_eq!(again, HookWrite::Duplicate(Box::new(first)));
        assert_eq!(rule.num_calls(), 2);
    }
}

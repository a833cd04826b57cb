//! The guard's adapters (automatic rollback on alarms, docs/guard.md):
//!
//! - [`DynamoDbRollbackStore`]: one record per (target, incident), claimed with a conditional write before acting;
//! - [`AwsTargetDiscovery`]: what an alarm protects, from Tollgate's own deployment index (GSI2), one
//!   BatchGetDeploymentGroups per application, BatchGetDeployments for the deployments' rollbacks, one Query of the stages the gate registered as watched by the alarm,
//!   one tagging GetResources call, then GetPipelineState / DescribeStacks for the watched and tagged pipelines and
//!   stacks (and ListActionExecutions for a stage whose latest execution is a rollback: what it rolled back from);
//! - [`AwsRollbackActions`]: StopDeployment, RollbackStage, CancelUpdateStack and RollbackStack, AWS's refusals
//!   returned with their code and message, only throttling and 5xx as retryable.

mod actions;
mod discovery;
mod store;
#[cfg(test)]
mod tests;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub use actions::AwsRollbackActions;
pub use discovery::AwsTargetDiscovery;
pub use store::DynamoDbRollbackStore;

/// Error codes a later attempt may get past, whatever the service.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServerError",
    "InternalServiceException",
    "RequestTimeout",
    "TransactionConflictException",
];

/// A failed call, by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// Throttling, 5xx, timeouts, lost connections: try again later.
    Transient(String),
    /// The service answered no: its error code and message, as it said them.
    Refused { code: String, message: String },
}

/// Sorts `err` of `what` (e.g. "CodeDeploy StopDeployment d-1") into transient or refused.
pub(crate) fn classify<E>(what: &str, err: &SdkError<E>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or("UnknownError").to_string();
            let message = err.message().unwrap_or("no message").to_string();
            let status = service.raw().status();
            if TRANSIENT_CODES.contains(&code.as_str()) || code.contains("Throttl") || status.is_server_error() {
                CallError::Transient(format!(
                    "{what} failed with {code} (HTTP {}): {message}",
                    status.as_u16()
                ))
            } else {
                CallError::Refused { code, message }
            }
        }
        _ => CallError::Transient(format!("{what} failed: {}", DisplayErrorContext(err))),
    }
}

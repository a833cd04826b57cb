//! DynamoDB failures turned into the domain's [`StoreError`]: transient when a later attempt can succeed (the message
//! is delivered again), permanent when the request itself cannot (the message is kept as rejected).

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tollgate_domain::record::ports::StoreError;

/// Error codes worth another attempt whatever their HTTP status.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    // Another writer held the item in a transaction or a global table replica: retrying resolves it.
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
];

/// Error codes that no retry can cure, checked before the status so a throttling answer sent as 400 and a validation
/// answer are told apart by what they are, not by their status.
const PERMANENT_CODES: &[&str] = &[
    "ValidationException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ItemCollectionSizeLimitExceededException",
    "SerializationException",
];

/// Maps a failed `operation` on `table` to a [`StoreError`] whose message says what failed where, and why.
pub(crate) fn store_error<E>(operation: &str, table: &str, err: &SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let what = format!("DynamoDB {operation} on table {table}");
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or("unknown error code");
            let message = err.message().unwrap_or("no message");
            let status = service.raw().status();
            let text = format!("{what} failed with {code} (HTTP {}): {message}", status.as_u16());
            let transient = if TRANSIENT_CODES.contains(&code) || code.ends_with("ThrottlingException") {
                true
            } else if PERMANENT_CODES.contains(&code) {
                false
            } else {
                status.is_server_error()
            };
            if transient {
                StoreError::Transient(text)
            } else {
                StoreError::Permanent(text)
            }
        }
        SdkError::TimeoutError(_) => StoreError::Transient(format!("{what} timed out: {}", DisplayErrorContext(err))),
        SdkError::DispatchFailure(_) => StoreError::Transient(format!(
            "{what} could not be sent (connection or I/O failure): {}",
            DisplayErrorContext(err)
        )),
        SdkError::ResponseError(response) => StoreError::Transient(format!(
            "{what} got an unreadable answer (HTTP {}): {}",
            response.raw().status().as_u16(),
            DisplayErrorContext(err)
        )),
        // Our requests are well formed by construction, so a construction failure comes from the environment
        // (credentials or endpoint resolution), not from the message: retrying later is right, rejecting the
        // message would lose it.
        SdkError::ConstructionFailure(_) => StoreError::Transient(format!(
            "{what} could not be prepared (credentials or endpoint): {}",
            DisplayErrorContext(err)
        )),
        _ => StoreError::Transient(format!("{what} failed: {}", DisplayErrorContext(err))),
    }
}

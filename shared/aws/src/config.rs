//! Configuration shared by every binary that talks to AWS: the SDK configuration, and required environment variables
//! read once at start-up with an error that names what is missing.
//!
//! The endpoint needs no code of ours: `aws_config` resolves `AWS_ENDPOINT_URL` (and the per-service
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SNS`) itself, which is how tests point the real clients at moto.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Caps the SDK's attempts per request (1 = no retry). Unset: the SDK's standard retry (3 attempts with backoff).
pub const MAX_ATTEMPTS_VAR: &str = "TOLLGATE_MAX_ATTEMPTS";

/// A configuration value that is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is {value:?}: {problem}")]
    Invalid {
        name: String,
        value: String,
        problem: String,
    },
}

/// The SDK configuration from the environment, with `TOLLGATE_MAX_ATTEMPTS` applied when it is set.
///
/// An unusable `TOLLGATE_MAX_ATTEMPTS` is logged and ignored here (the SDK's standard retry applies); call
/// [`max_attempts_from_env`] first to refuse to start instead.
pub async fn sdk_config() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    match max_attempts_from_env() {
        Ok(Some(attempts)) => loader = loader.retry_config(retry_config(attempts)),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "ignoring {MAX_ATTEMPTS_VAR}; using the SDK's standard retry")
        }
    }
    loader.load().await
}

/// `TOLLGATE_MAX_ATTEMPTS` as a number of attempts, or `None` when unset.
pub fn max_attempts_from_env() -> Result<Option<u32>, ConfigError> {
    parse_max_attempts(std::env::var(MAX_ATTEMPTS_VAR).ok().as_deref())
}

fn parse_max_attempts(value: Option<&str>) -> Result<Option<u32>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    let invalid = |problem: &str| ConfigError::Invalid {
        name: MAX_ATTEMPTS_VAR.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
    };
    match value.trim().parse::<u32>() {
        Ok(0) => Err(invalid("must be at least 1 (1 means no retry)")),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(invalid("must be a whole number of attempts, e.g. 2")),
    }
}

/// Standard retry (exponential backoff with jitter, retry quota) with fewer attempts: local and test runs fail in
/// a second or two instead of waiting out the default backoff against an endpoint that is down.
fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(max_attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_attempts_is_a_positive_number_or_unset() {
        assert_eq!(parse_max_attempts(None).unwrap(), None);
        assert_eq!(parse_max_attempts(Some("2")).unwrap(), Some(2));
        for bad in ["0", "two", "-1", ""] {
            let err = parse_max_attempts(Some(bad)).unwrap_err();
            assert!(err.to_string().contains(MAX_ATTEMPTS_VAR), "{err}");
        }
    }

    #[test]
    fn low_attempt_count_keeps_standard_retry() {
        let config = retry_config(2);
        assert_eq!(config.max_attempts(), 2);
        assert_eq!(config.mode(), aws_config::retry::RetryMode::Standard);
    }
}

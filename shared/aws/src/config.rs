//! Configuration shared by every binary that talks to AWS: the SDK configuration, and required environment variables
//! read once at start-up with an error that names what is missing.
//!
//! The endpoint needs no code of ours: `aws_config` resolves `AWS_ENDPOINT_URL` (and the per-service
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SNS`) itself, which is how tests point the real clients at moto.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Caps the SDK's attempts per request (1 = no retry). Unset: the SDK's standard retry (3 attempts with backoff).
pub const MAX_ATTEMPTS_VAR: &str = "TOLLGATE_MAX_ATTEMPTS";

/// `1`: trust the platform's root certificates for AWS calls (e.g. behind a TLS-inspecting proxy) instead of only the
/// Amazon Trust Services roots Tollgate carries.
pub const NATIVE_ROOTS_VAR: &str = "TOLLGATE_TLS_NATIVE_ROOTS";

/// The roots every AWS service endpoint chains to (Amazon Root CA 1-4 and Starfield Services Root G2).
pub const AWS_ROOTS_PEM: &str = include_str!("../certs/aws-roots.pem");

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
    if std::env::var(NATIVE_ROOTS_VAR).as_deref() != Ok("1") {
        loader = loader.http_client(https_client_with_aws_roots());
    }
    match max_attempts_from_env() {
        Ok(Some(attempts)) => loader = loader.retry_config(retry_config(attempts)),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "ignoring {MAX_ATTEMPTS_VAR}; using the SDK's standard retry")
        }
    }
    loader.load().await
}

/// The SDK's default HTTPS client (rustls over aws-lc, proxy settings from the environment), trusting only the AWS
/// roots. The default trust store reads and parses every certificate of the system's store at the first request
/// (about 19 M instructions of a 22 M-instruction cold start, BENCHMARKS.md); five roots cost almost nothing.
pub fn https_client_with_aws_roots() -> SharedHttpClient {
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(AWS_ROOTS_PEM.as_bytes()))
        .build()
        // Only fails for invalid settings, which an empty store plus PEM bytes is not; the roots' PEM itself is
        // checked by a test, since the TLS provider reads it at the first connection.
        .unwrap_or_default();
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
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
    fn the_aws_roots_are_five_parsable_certificates() {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let certs = CertificateDer::pem_slice_iter(AWS_ROOTS_PEM.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the roots file is valid PEM");
        assert_eq!(certs.len(), 5);
        let mut store = rustls::RootCertStore::empty();
        let (valid, invalid) = store.add_parsable_certificates(certs);
        assert_eq!((valid, invalid), (5, 0));
    }

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

//! Shared set-up of the integration tests: clients for the local AWS endpoint, or a clear skip when there is none;
//! the fault-injecting proxy ([`fault`]), the SQS-driven handler runner ([`driver`]) and the load driver ([`load`]).

pub mod driver;
pub mod fault;
pub mod load;

use tollgate::local::Clients;

/// Clients for the local endpoint named by `TOLLGATE_TEST_ENDPOINT` (set by `make test`), or `None` after printing
/// why the test is skipped.
pub async fn local_clients(test: &str) -> Option<Clients> {
    let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
        eprintln!("SKIPPED {test}: TOLLGATE_TEST_ENDPOINT is not set (run `make test`, which starts moto server)");
        return None;
    };
    std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    Some(Clients::new(&sdk))
}

/// A resource-name prefix unique to this test run and test.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t{}-{test}-{nanos:x}", std::process::id())
}

pub fn workspace(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

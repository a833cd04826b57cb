//! Baseline: an empty `lambda_runtime` function that also does what every Tollgate function does at init, loading
//! the SDK configuration and building the SDK clients named in `TOLLGATE_BENCH_CLIENTS` (comma-separated:
//! dynamodb, sns, codepipeline, cloudwatch, s3). Comparing a function with this baseline separates the cost of
//! Tollgate's own init from the cost of the SDK it cannot avoid.
//!
//! With `TOLLGATE_BENCH_PROBE=1` each invocation also sends one DynamoDB request (its outcome ignored): pointed at a
//! TLS endpoint, the first invocation then pays for the first TLS use (the crypto library's entropy seeding), which
//! is how the harness measures that lever.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

/// Holds the clients so they live as long as the function, as in a real function's `main`.
#[derive(Default)]
struct Clients {
    _dynamodb: Option<aws_sdk_dynamodb::Client>,
    _sns: Option<aws_sdk_sns::Client>,
    _codepipeline: Option<aws_sdk_codepipeline::Client>,
    _cloudwatch: Option<aws_sdk_cloudwatch::Client>,
    _s3: Option<aws_sdk_s3::Client>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // What `tollgate_aws::config::sdk_config` does (its retry setting costs nothing at init), without depending on
    // the adapters crate, so the baseline builds whatever state that crate is in.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let wanted = std::env::var("TOLLGATE_BENCH_CLIENTS").unwrap_or_else(|_| "dynamodb,sns".to_string());
    let mut clients = Clients::default();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "dynamodb" => clients._dynamodb = Some(aws_sdk_dynamodb::Client::new(&sdk)),
            "sns" => clients._sns = Some(aws_sdk_sns::Client::new(&sdk)),
            "codepipeline" => clients._codepipeline = Some(aws_sdk_codepipeline::Client::new(&sdk)),
            "cloudwatch" => clients._cloudwatch = Some(aws_sdk_cloudwatch::Client::new(&sdk)),
            "s3" => clients._s3 = Some(aws_sdk_s3::Client::new(&sdk)),
            other => return Err(format!("TOLLGATE_BENCH_CLIENTS names an unknown client {other:?}").into()),
        }
    }
    let probe = std::env::var("TOLLGATE_BENCH_PROBE").is_ok_and(|v| v == "1");
    let clients = &clients;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if let (true, Some(dynamodb)) = (probe, &clients._dynamodb) {
            // The request exists only to open a TLS connection; the endpoint is a sink that never answers.
            let _ = dynamodb.list_tables().limit(1).send().await;
        }
        Ok::<Value, Error>(event.payload)
    }))
    .await
}

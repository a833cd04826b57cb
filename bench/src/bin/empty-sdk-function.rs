//! Baseline: an empty `lambda_runtime` function that also does what every Tollgate function does at init, loading
//! the SDK configuration and building the SDK clients named in `TOLLGATE_BENCH_CLIENTS` (comma-separated:
//! dynamodb, sns, codepipeline, cloudwatch, s3, codedeploy, cloudformation, tagging, secretsmanager). Comparing a
//! function with this baseline separates the cost of Tollgate's own init from the cost of the SDK it cannot avoid.
//!
//! The configuration comes from `tollgate_aws::config::sdk_config`, the functions' own: the same HTTPS client and
//! trust store (the AWS roots, or the system's with `TOLLGATE_TLS_NATIVE_ROOTS=1`), so a start-up lever applies to
//! both sides of the comparison.
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
    _codedeploy: Option<aws_sdk_codedeploy::Client>,
    _cloudformation: Option<aws_sdk_cloudformation::Client>,
    _tagging: Option<aws_sdk_resourcegroupstagging::Client>,
    _secretsmanager: Option<aws_sdk_secretsmanager::Client>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = tollgate_aws::config::sdk_config().await;
    let wanted = std::env::var("TOLLGATE_BENCH_CLIENTS").unwrap_or_else(|_| "dynamodb,sns".to_string());
    let mut c = Clients::default();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "dynamodb" => c._dynamodb = Some(aws_sdk_dynamodb::Client::new(&sdk)),
            "sns" => c._sns = Some(aws_sdk_sns::Client::new(&sdk)),
            "codepipeline" => c._codepipeline = Some(aws_sdk_codepipeline::Client::new(&sdk)),
            "cloudwatch" => c._cloudwatch = Some(aws_sdk_cloudwatch::Client::new(&sdk)),
            "s3" => c._s3 = Some(aws_sdk_s3::Client::new(&sdk)),
            "codedeploy" => c._codedeploy = Some(aws_sdk_codedeploy::Client::new(&sdk)),
            "cloudformation" => c._cloudformation = Some(aws_sdk_cloudformation::Client::new(&sdk)),
            "tagging" => c._tagging = Some(aws_sdk_resourcegroupstagging::Client::new(&sdk)),
            "secretsmanager" => c._secretsmanager = Some(aws_sdk_secretsmanager::Client::new(&sdk)),
            other => return Err(format!("TOLLGATE_BENCH_CLIENTS names an unknown client {other:?}").into()),
        }
    }
    let probe = std::env::var("TOLLGATE_BENCH_PROBE").is_ok_and(|v| v == "1");
    let clients = &c;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if let (true, Some(dynamodb)) = (probe, &clients._dynamodb) {
            // The request exists only to open a TLS connection; the endpoint is a sink that never answers.
            let _ = dynamodb.list_tables().limit(1).send().await;
        }
        Ok::<Value, Error>(event.payload)
    }))
    .await
}

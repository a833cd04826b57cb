//! Lambda wiring of the hook function: configuration and clients once per cold start, then the handler.

use chrono::Utc;
use hook::config::Config;
use hook::handler::{handle, Place, Ports, Settings, PROBE_RETRY};
use hook::probe::TcpHttpProbe;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tollgate_aws::cloudwatch::CloudWatchAlarms;
use tollgate_aws::codedeploy_hooks::{CodeDeployHookReporter, DynamoDbHookResults};
use tollgate_aws::{DynamoDbStore, SnsNotifier};

/// `arn:aws:lambda:<region>:<account>:function:<name>` → (account, region).
fn place_of(arn: &str) -> Place {
    let parts: Vec<&str> = arn.split(':').collect();
    Place {
        account: parts.get(4).copied().unwrap_or_default().to_string(),
        region: parts.get(3).copied().unwrap_or_default().to_string(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tollgate_aws::config::sdk_config().await;
    let alarms = CloudWatchAlarms::new(aws_sdk_cloudwatch::Client::new(&sdk));
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let audit = DynamoDbStore::new(dynamodb.clone(), config.table_name.clone(), config.retention_days);
    let results = DynamoDbHookResults::new(dynamodb, config.table_name.clone(), config.retention_days);
    let reporter = CodeDeployHookReporter::new(aws_sdk_codedeploy::Client::new(&sdk));
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), config.topic_arn.clone());
    let probe = TcpHttpProbe;
    let ports = Ports {
        alarms: &alarms,
        probe: &probe,
        results: &results,
        reporter: &reporter,
        notifier: &notifier,
        audit: &audit,
    };
    let ports = &ports;
    let checks = &config.checks;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let settings = Settings {
            checks: checks.clone(),
            place: place_of(&event.context.invoked_function_arn),
            probe_retry: PROBE_RETRY,
        };
        // The runtime's deadline is wall-clock milliseconds; the checks count on the monotonic clock.
        let left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .ok();
        let deadline = left.map(|d| tokio::time::Instant::now() + d);
        handle(&event.payload, &settings, ports, deadline, Utc::now()).await
    }))
    .await
}

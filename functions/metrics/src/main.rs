//! Lambda wiring of the metrics function: configuration and clients once per cold start, then the handler.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use metrics::config::Config;
use metrics::digest::ClaimedDigest;
use metrics::handler::{handle, MetricsError};
use metrics::ports::AuditAndDecisions;
use serde_json::Value;
use tollgate_aws::dynamodb::DEFAULT_RETENTION_DAYS;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::{CodePipelineTags, DynamoDbStore, SnsNotifier};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let settings = config.settings();
    let sdk = tollgate_aws::config::sdk_config().await;
    let store = Arc::new(DynamoDbStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.table_name.clone(),
        DEFAULT_RETENTION_DAYS,
    ));
    // The audit trail and the gate decisions are in the same table; the metrics function only reads them.
    let automation = AuditAndDecisions {
        audit: store.clone(),
        decisions: Arc::new(DynamoDbGateStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            config.table_name.clone(),
            DEFAULT_RETENTION_DAYS,
        )),
    };
    let notifier = Arc::new(SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), config.topic_arn));
    let digest = ClaimedDigest::new(store.clone(), notifier);
    let tags = CodePipelineTags::new(aws_sdk_codepipeline::Client::new(&sdk), config.team_tag);
    let (store, digest, tags, automation, settings) = (store.as_ref(), &digest, &tags, &automation, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let run = handle(
            &event.payload,
            &event.context.request_id,
            store,
            digest,
            tags,
            automation,
            settings,
        )
        .await?;
        // Only a run that succeeded writes its metrics: a retried run does not write them twice.
        for line in run.emf_lines.iter().chain(&run.automation_emf_lines) {
            println!("{line}");
        }
        Ok::<Value, MetricsError>(run.summary())
    }))
    .await
}

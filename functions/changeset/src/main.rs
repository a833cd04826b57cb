//! Lambda wiring of the changeset function: configuration and clients once per cold start, then the handler.

use changeset::config::Config;
use changeset::handler::{handle, Ports};
use chrono::Utc;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tollgate_aws::artifacts::S3ArtifactPolicies;
use tollgate_aws::changeset::CloudFormationChangeSets;
use tollgate_aws::codepipeline_jobs::CodePipelineJobs;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::{DynamoDbStore, SnsNotifier};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tollgate_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = tollgate_aws::config::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let audit = DynamoDbStore::new(dynamodb.clone(), config.table_name.clone(), config.retention_days);
    let approvals = DynamoDbGateStore::new(dynamodb, config.table_name, config.retention_days);
    let jobs = CodePipelineJobs::new(aws_sdk_codepipeline::Client::new(&sdk));
    let artifacts = S3ArtifactPolicies::new(&sdk);
    let stacks = CloudFormationChangeSets::new(aws_sdk_cloudformation::Client::new(&sdk));
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), config.topic_arn);
    let ports = Ports {
        jobs: &jobs,
        artifacts: &artifacts,
        stacks: &stacks,
        approvals: &approvals,
        audit: &audit,
        notifier: &notifier,
        timelines: &audit,
    };
    let ports = &ports;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(&event.payload, ports, Utc::now()).await
    }))
    .await
}

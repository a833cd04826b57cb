//! Lambda wiring of the gate function: configuration and clients once per cold start, then the handler.

use chrono::Utc;
use gate::config::Config;
use gate::handler::{handle, Ports};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tollgate_aws::alarm_tags::ResourceGroupsTaggingAlarms;
use tollgate_aws::alarm_watches::DynamoDbAlarmWatches;
use tollgate_aws::artifacts::S3ArtifactPolicies;
use tollgate_aws::baselines::{CodePipelinePipelineTags, DynamoDbBaselines};
use tollgate_aws::cloudwatch::{CloudWatchAlarms, CloudWatchMetrics};
use tollgate_aws::codepipeline_jobs::CodePipelineJobs;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::gate::TaggedAlarms;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tollgate_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = tollgate_aws::config::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let timelines = DynamoDbStore::new(dynamodb.clone(), config.table_name.clone(), config.retention_days);
    let watches = DynamoDbAlarmWatches::new(dynamodb.clone(), config.table_name.clone());
    let baselines = DynamoDbBaselines::new(dynamodb.clone(), config.table_name.clone(), config.baseline_name);
    let effective =
        tollgate_aws::effective_policies::DynamoDbEffectivePolicies::new(dynamodb.clone(), config.table_name.clone());
    let store = DynamoDbGateStore::new(dynamodb, config.table_name, config.retention_days);
    let codepipeline = aws_sdk_codepipeline::Client::new(&sdk);
    let pipeline_tags = CodePipelinePipelineTags::new(codepipeline.clone());
    let jobs = CodePipelineJobs::new(codepipeline);
    let policies = S3ArtifactPolicies::new(&sdk);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    // Alarms by name from DescribeAlarms; `alarms.tags` resolved to names first by tag:GetResources.
    let alarms = TaggedAlarms::new(
        ResourceGroupsTaggingAlarms::new(aws_sdk_resourcegroupstagging::Client::new(&sdk)),
        CloudWatchAlarms::new(cloudwatch.clone()),
    );
    let metrics = CloudWatchMetrics::new(cloudwatch);
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), config.topic_arn);
    let ports = Ports {
        jobs: &jobs,
        policies: &policies,
        alarms: &alarms,
        metrics: &metrics,
        timelines: &timelines,
        decisions: &store,
        approvals: &store,
        controls: &store,
        leases: &store,
        watches: &watches,
        audit: &timelines,
        notifier: &notifier,
        baselines: &baselines,
        pipeline_tags: &pipeline_tags,
        effective: &effective,
    };
    let ports = &ports;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(&event.payload, ports, Utc::now()).await
    }))
    .await
}

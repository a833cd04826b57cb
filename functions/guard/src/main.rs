//! Lambda wiring of the guard function: configuration and clients once per cold start, then the handler.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use guard::config::Config;
use guard::handler::{handle_batch, Deps, Home};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use tollgate_aws::rollback::{AwsRollbackActions, AwsTargetDiscovery, DynamoDbRollbackStore};
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::rollback::guard::GuardPorts;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tollgate_aws::config::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let codedeploy = aws_sdk_codedeploy::Client::new(&sdk);
    let codepipeline = aws_sdk_codepipeline::Client::new(&sdk);
    let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
    let discovery = AwsTargetDiscovery::new(
        dynamodb.clone(),
        config.table_name.clone(),
        codedeploy.clone(),
        codepipeline.clone(),
        cloudformation.clone(),
        aws_sdk_resourcegroupstagging::Client::new(&sdk),
    );
    let actions = AwsRollbackActions::new(codedeploy, codepipeline, cloudformation);
    let store = DynamoDbRollbackStore::new(dynamodb.clone(), config.table_name.clone(), config.retention_days);
    // The event store keeps messages the guard cannot handle and holds the audit trail.
    let events = DynamoDbStore::new(dynamodb, config.table_name, config.retention_days);
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), config.topic_arn);
    let policy = config.policy;
    let (discovery, actions, store, events, notifier) = (&discovery, &actions, &store, &events, &notifier);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deps = Deps {
            guard: GuardPorts {
                discovery,
                actions,
                store,
                audit: events,
                notifier,
            },
            rejected: events,
            policy,
            home: Home::from_function_arn(&event.context.invoked_function_arn),
        };
        let (response, stats) = handle_batch(&deps, event.payload, Utc::now()).await;
        tracing::info!(stats = ?stats, "batch handled");
        Ok::<SqsBatchResponse, Error>(response)
    }))
    .await
}

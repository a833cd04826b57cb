//! Lambda wiring of the ingest function: configuration and clients once per cold start, then the handler.

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use ingest::config::Config;
use ingest::handler::{emf_line, handle_batch};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::ingest::service::{FailureWait, Ingestor};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = tollgate_aws::config::sdk_config().await;
    let ingestor = Ingestor::new(
        Arc::new(DynamoDbStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            config.table_name,
            config.retention_days,
        )),
        Arc::new(SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), config.topic_arn)),
    )
    .with_failure_wait(FailureWait::default());
    let ingestor = &ingestor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let (response, stats) = handle_batch(ingestor, event.payload).await;
        println!("{}", emf_line(&stats, chrono::Utc::now().timestamp_millis()));
        Ok::<SqsBatchResponse, Error>(response)
    }))
    .await
}

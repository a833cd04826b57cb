//! Lambda wiring of the approval function: configuration, the signing secret and clients once per cold start, then
//! the handler.

use approval::config::Config;
use approval::handler::{handle, Ports, Settings};
use chrono::Utc;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tollgate_aws::chat_auth::{load_signing_secret, DynamoDbChatIdentities, DynamoDbReplayGuard};
use tollgate_aws::effective_policies::DynamoDbEffectivePolicies;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::manual_approvals::{CodePipelineApprovalResults, CodePipelineApprovals, DynamoDbManualApprovals};
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::gate::approval::{ChatSettings, DecisionPorts, RequestPorts};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tollgate_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = tollgate_aws::config::sdk_config().await;
    // Read once: every request is checked against it, and it is never logged.
    let secret = load_signing_secret(&aws_sdk_secretsmanager::Client::new(&sdk), &config.signing_secret_arn).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoDbStore::new(dynamodb.clone(), config.table_name.clone(), config.retention_days);
    let gate = DynamoDbGateStore::new(dynamodb.clone(), config.table_name.clone(), config.retention_days);
    let manual = DynamoDbManualApprovals::new(dynamodb.clone(), config.table_name.clone(), config.retention_days);
    let identities = DynamoDbChatIdentities::new(dynamodb.clone(), config.table_name.clone());
    let effective = DynamoDbEffectivePolicies::new(dynamodb.clone(), config.table_name.clone());
    let replay = DynamoDbReplayGuard::new(dynamodb, config.table_name.clone());
    let codepipeline = aws_sdk_codepipeline::Client::new(&sdk);
    let results = CodePipelineApprovalResults::new(codepipeline.clone());
    let pipelines = CodePipelineApprovals::new(codepipeline);
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), config.topic_arn.clone());
    let ports = Ports {
        decisions: DecisionPorts {
            approvals: &gate,
            controls: &gate,
            manual: &manual,
            results: &results,
            audit: &store,
            timelines: &store,
            effective: &effective,
        },
        requests: RequestPorts {
            manual: &manual,
            timelines: &store,
            audit: &store,
            decisions: &gate,
            notifier: &notifier,
            pipelines: &pipelines,
        },
        identities: &identities,
        replay: &replay,
        rejected: &store,
    };
    let settings = Settings {
        chat: ChatSettings {
            default_account: config.account.clone(),
            default_region: config.region.clone(),
        },
        secret,
        workspace: config.workspace.clone(),
    };
    let (ports, settings) = (&ports, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(&event.payload, ports, settings, Utc::now()).await
    }))
    .await
}

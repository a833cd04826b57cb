//! Lambda wiring of the decide function: configuration and clients once per cold start, then the handler.

use chrono::Utc;
use decide::config::Config;
use decide::handler::{handle, Settings};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tollgate_aws::chat_auth::DynamoDbChatIdentities;
use tollgate_aws::effective_policies::DynamoDbEffectivePolicies;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::manual_approvals::{CodePipelineApprovalResults, DynamoDbManualApprovals};
use tollgate_aws::DynamoDbStore;
use tollgate_domain::gate::approval::{DecisionPorts, ServerPorts};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tollgate_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = tollgate_aws::config::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = config.table_name.clone();
    let store = DynamoDbStore::new(dynamodb.clone(), table.clone(), config.retention_days);
    let gate = DynamoDbGateStore::new(dynamodb.clone(), table.clone(), config.retention_days);
    let manual = DynamoDbManualApprovals::new(dynamodb.clone(), table.clone(), config.retention_days);
    let identities = DynamoDbChatIdentities::new(dynamodb.clone(), table.clone());
    let effective = DynamoDbEffectivePolicies::new(dynamodb, table);
    let results = CodePipelineApprovalResults::new(aws_sdk_codepipeline::Client::new(&sdk));
    let ports = ServerPorts {
        decisions: DecisionPorts {
            approvals: &gate,
            controls: &gate,
            manual: &manual,
            results: &results,
            audit: &store,
            timelines: &store,
            effective: &effective,
        },
        identities: &identities,
    };
    let settings = Settings {
        administrators: config.administrators,
    };
    let (ports, settings) = (&ports, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(&event.payload, ports, settings, Utc::now()).await
    }))
    .await
}

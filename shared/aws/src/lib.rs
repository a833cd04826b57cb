//! Adapters of Tollgate's ports over the AWS SDK: [`DynamoDbStore`] (events and timelines in one DynamoDB table,
//! see docs/table-design.md), [`SnsNotifier`] (notifications on one SNS topic) and [`CodePipelineTags`] (a pipeline's
//! team and production stages from its tags), plus the SDK configuration every binary shares ([`config`]).

pub mod alarm_tags;
pub mod alarm_watches;
pub mod artifacts;
pub mod baselines;
pub mod changeset;
pub mod chat_auth;
pub mod cloudwatch;
pub mod codedeploy_hooks;
pub mod codepipeline_jobs;
pub mod config;
pub mod dynamodb;
pub mod effective_policies;
pub mod env;
pub mod gate_store;
pub mod logging;
pub mod manual_approvals;
pub mod rollback;
pub mod sns;
pub mod tags;

pub use config::{sdk_config, ConfigError};
pub use dynamodb::DynamoDbStore;
pub use sns::SnsNotifier;
pub use tags::CodePipelineTags;

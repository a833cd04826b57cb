//! [`DynamoDbBaselines`]: the organisation baseline in the Tollgate table, one item `pk = BASELINE#<name>`,
//! `sk = BASELINE`, holding the baseline's text as published (validated before it is written and again when the gate
//! reads it), who published it and when. Only the role the template names (`BaselineAdminRole`) may write it: the
//! function roles' writes are limited to their own key prefixes, and the table's resource policy denies every other
//! principal writes on `BASELINE#` keys.
//!
//! [`CodePipelinePipelineTags`]: a pipeline's tags (CodePipeline `ListTagsForResource`), for baseline rules that match
//! on them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use tollgate_domain::gate::policy::{baseline_pk, BaselineSource, PipelineTags, PublishedBaseline};
use tollgate_domain::record::ports::StoreError;

use crate::tags::pipeline_arn;

/// The sort key of a baseline's item.
pub const BASELINE_SK: &str = "BASELINE";

/// The baseline `name` in `table`.
#[derive(Debug, Clone)]
pub struct DynamoDbBaselines {
    client: Client,
    table: String,
    name: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn store_error<E>(what: &str, table: &str, err: &SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("DynamoDB {what} on table {table} failed: {}", DisplayErrorContext(err));
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or_default();
            if code.contains("Throttl") || code == "InternalServerError" || service.raw().status().is_server_error() {
                StoreError::Transient(text)
            } else {
                StoreError::Permanent(text)
            }
        }
        _ => StoreError::Transient(text),
    }
}

impl DynamoDbBaselines {
    pub fn new(client: Client, table: impl Into<String>, name: impl Into<String>) -> Self {
        DynamoDbBaselines {
            client,
            table: table.into(),
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes the baseline (replacing the one of the same name). The caller validates the text first.
    #[tracing::instrument(skip_all, fields(table = %self.table, name = %self.name))]
    pub async fn publish(&self, text: &str, by: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(baseline_pk(&self.name)))
            .item("sk", s(BASELINE_SK))
            .item("name", s(&self.name))
            .item("text", s(text))
            .item("published_by", s(by))
            .item("published_at", s(at.to_rfc3339_opts(SecondsFormat::Millis, true)))
            .send()
            .await
            .map_err(|e| store_error("PutItem (baseline)", &self.table, &e))?;
        Ok(())
    }
}

#[async_trait]
impl BaselineSource for DynamoDbBaselines {
    #[tracing::instrument(skip_all, fields(table = %self.table, name = %self.name))]
    async fn active_baseline(&self) -> Result<Option<PublishedBaseline>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(baseline_pk(&self.name)))
            .key("sk", s(BASELINE_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (baseline)", &self.table, &e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let bad = |k: &str| {
            StoreError::Permanent(format!(
                "the baseline item {} in table {} has no `{k}`",
                baseline_pk(&self.name),
                self.table
            ))
        };
        let published_at = text("published_at")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad("published_at"))?;
        Ok(Some(PublishedBaseline {
            name: text("name").unwrap_or_else(|| self.name.clone()),
            text: text("text").ok_or_else(|| bad("text"))?,
            published_at,
            published_by: text("published_by").unwrap_or_default(),
        }))
    }
}

/// Pipeline tags from CodePipeline, in the client's region.
#[derive(Debug, Clone)]
pub struct CodePipelinePipelineTags {
    client: aws_sdk_codepipeline::Client,
}

impl CodePipelinePipelineTags {
    pub fn new(client: aws_sdk_codepipeline::Client) -> Self {
        CodePipelinePipelineTags { client }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_codepipeline::Client::new(sdk))
    }
}

#[async_trait]
impl PipelineTags for CodePipelinePipelineTags {
    #[tracing::instrument(skip(self))]
    async fn pipeline_tags(
        &self,
        account: &str,
        region: &str,
        pipeline: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let arn = pipeline_arn(account, region, pipeline);
        let mut tags = BTreeMap::new();
        let mut next_token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_tags_for_resource()
                .resource_arn(&arn)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "CodePipeline ListTagsForResource of {arn}: {}",
                        aws_sdk_codepipeline::error::DisplayErrorContext(e)
                    )
                })?;
            for t in out.tags() {
                tags.insert(t.key().to_string(), t.value().to_string());
            }
            match out.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
        Ok(tags)
    }
}

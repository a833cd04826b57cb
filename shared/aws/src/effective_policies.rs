//! [`DynamoDbEffectivePolicies`]: the effective policy the gate evaluated for each stage, one item
//! `pk = EFFECTIVE#<account>#<region>#<pipeline>#<stage>`, `sk = EFFECTIVE`, the newest evaluation replacing the
//! last. The gate writes it; the decide and approval functions read it to authorise decisions on the stage.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use tollgate_domain::gate::approval::{effective_pk, EffectivePolicies, EffectivePolicyRecord};
use tollgate_domain::gate::ApprovalKey;
use tollgate_domain::record::ports::StoreError;

/// The sort key of an effective policy's item.
pub const EFFECTIVE_SK: &str = "EFFECTIVE";

/// The effective policies in `table`.
#[derive(Debug, Clone)]
pub struct DynamoDbEffectivePolicies {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn store_error<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    what: &str,
    table: &str,
    err: &SdkError<E, R>,
) -> StoreError {
    let text = format!("DynamoDB {what} on table {table} failed: {}", DisplayErrorContext(err));
    match err {
        SdkError::ServiceError(_) => StoreError::Permanent(text),
        _ => StoreError::Transient(text),
    }
}

impl DynamoDbEffectivePolicies {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbEffectivePolicies {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl EffectivePolicies for DynamoDbEffectivePolicies {
    #[tracing::instrument(skip_all, fields(table = %self.table, pipeline = %r.pipeline, stage = %r.stage))]
    async fn record_effective(&self, r: &EffectivePolicyRecord) -> Result<(), StoreError> {
        let body = serde_json::to_string(r)
            .map_err(|e| StoreError::Permanent(format!("cannot serialise an effective policy: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(effective_pk(&r.account, &r.region, &r.pipeline, &r.stage)))
            .item("sk", s(EFFECTIVE_SK))
            .item("kind", s("effective_policy"))
            .item("record", s(body))
            .item("at", s(r.at.to_rfc3339()))
            .send()
            .await
            .map_err(|e| store_error("PutItem (effective policy)", &self.table, &e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, pipeline = %key.pipeline, stage = %key.stage))]
    async fn effective(&self, key: &ApprovalKey) -> Result<Option<EffectivePolicyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                "pk",
                s(effective_pk(&key.account, &key.region, &key.pipeline, &key.stage)),
            )
            .key("sk", s(EFFECTIVE_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (effective policy)", &self.table, &e))?;
        let Some(item) = out.item else { return Ok(None) };
        let text = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Permanent(format!("an effective policy in {} has no `record`", self.table)))?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::Permanent(format!("an effective policy in {} is unreadable: {e}", self.table)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_smithy_mocks::{mock, mock_client};
    use chrono::Utc;
    use tollgate_domain::gate::policy::parse_policy;

    fn record() -> EffectivePolicyRecord {
        let text = "version: 1\nname: p\nmax_wait: 1h\napproval: {approvers: ['arn:aws:iam::111122223333:role/RM*']}\n";
        EffectivePolicyRecord {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout".into(),
            stage: "Production".into(),
            policy: parse_policy("p.yaml", text).unwrap(),
            baseline: Some("baseline org".into()),
            separation_of_duties: true,
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn the_record_is_written_under_its_stage_key_and_read_back() {
        let r = record();
        let body = serde_json::to_string(&r).unwrap();
        let put = mock!(Client::put_item)
            .match_requests(|req| {
                req.item()
                    .and_then(|i| i.get("pk"))
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some("EFFECTIVE#111122223333#eu-west-1#checkout#Production")
            })
            .then_output(|| PutItemOutput::builder().build());
        let item = std::collections::HashMap::from([("record".to_string(), s(body))]);
        let get = mock!(Client::get_item)
            .match_requests(|req| req.consistent_read() == Some(true))
            .then_output(move || GetItemOutput::builder().set_item(Some(item.clone())).build());
        let client = mock_client!(aws_sdk_dynamodb, [&put, &get]);
        let store = DynamoDbEffectivePolicies::new(client, "t");
        store.record_effective(&r).await.unwrap();
        let key = ApprovalKey {
            account: r.account.clone(),
            region: r.region.clone(),
            pipeline: r.pipeline.clone(),
            execution_id: "e-1".into(),
            stage: r.stage.clone(),
        };
        assert_eq!(store.effective(&key).await.unwrap(), Some(r));
        assert_eq!((put.num_calls(), get.num_calls()), (1, 1));
    }
}

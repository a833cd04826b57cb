//! CodePipeline Manual approvals: [`DynamoDbManualApprovals`] keeps each approval request and its decision in the
//! Tollgate table, [`CodePipelineApprovalResults`] sends the decision with `PutApprovalResult` (docs/approvals.md).
//!
//! One item per request: `pk = MANUAL#<account>#<region>#<pipeline>#<stage>`, `sk = TOKEN#<hex SHA-256 of the
//! token>`. The request is written once (`attribute_not_exists`), so a duplicate SNS delivery finds the first copy
//! and whether it was announced; a decision claims the item by setting `outcome` only if it has none, so one
//! decision alone calls `PutApprovalResult`. The token is kept because `PutApprovalResult` needs it; it is never
//! logged (the item's key holds its digest only).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_codepipeline::error::ProvideErrorMetadata as _;
use aws_sdk_codepipeline::operation::put_approval_result::PutApprovalResultError;
use aws_sdk_codepipeline::types::{ApprovalResult, ApprovalStatus};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, SecondsFormat, Utc};
use tollgate_domain::gate::approval::{
    manual_pk, ApprovalResultError, ApprovalResultRequest, ApprovalResults, ApprovalToken, Claim, ManualApproval,
    ManualApprovals, ManualOutcome, PendingApproval, PipelineApprovals,
};
use tollgate_domain::gate::policy::ApprovalDecision;
use tollgate_domain::record::ports::StoreError;

use crate::chat_auth::store_error;

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `TOKEN#<hex SHA-256 of the token>`.
pub fn manual_sk(token: &ApprovalToken) -> String {
    format!("TOKEN#{}", token.digest())
}

/// The DynamoDB adapter of [`ManualApprovals`].
#[derive(Debug, Clone)]
pub struct DynamoDbManualApprovals {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention_days: i64,
}

impl DynamoDbManualApprovals {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, retention_days: i64) -> Self {
        DynamoDbManualApprovals {
            client,
            table: table.into(),
            retention_days: retention_days.clamp(1, 36_500),
        }
    }

    fn key(r: &ManualApproval) -> (AttributeValue, AttributeValue) {
        (
            s(manual_pk(&r.account, &r.region, &r.pipeline, &r.stage)),
            s(manual_sk(&r.token)),
        )
    }

    fn item(&self, r: &ManualApproval) -> Item {
        let (pk, sk) = Self::key(r);
        let mut item = Item::from([
            ("pk".to_string(), pk),
            ("sk".to_string(), sk),
            ("kind".to_string(), s("manual_approval")),
            ("account".to_string(), s(&r.account)),
            ("region".to_string(), s(&r.region)),
            ("pipeline".to_string(), s(&r.pipeline)),
            ("stage".to_string(), s(&r.stage)),
            ("action".to_string(), s(&r.action)),
            ("requested_at".to_string(), s(time(&r.requested_at))),
            ("notified".to_string(), AttributeValue::Bool(r.notified)),
            (
                "ttl".to_string(),
                AttributeValue::N(
                    (r.requested_at + chrono::Duration::days(self.retention_days))
                        .timestamp()
                        .to_string(),
                ),
            ),
        ]);
        for (name, value) in [
            ("execution_id", &r.execution_id),
            ("expires", &r.expires),
            ("custom_data", &r.custom_data),
        ] {
            if let Some(v) = value {
                item.insert(name.to_string(), s(v));
            }
        }
        item
    }

    async fn update(
        &self,
        r: &ManualApproval,
        expression: &str,
        outcome: Option<&ManualOutcome>,
    ) -> Result<(), StoreError> {
        let (pk, sk) = Self::key(r);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)");
        if let Some(o) = outcome {
            req = req.expression_attribute_values(":o", s(outcome_json(o)?));
        }
        req.send()
            .await
            .map_err(|e| store_error("UpdateItem (manual approval)", &self.table, &e))?;
        Ok(())
    }
}

fn outcome_json(o: &ManualOutcome) -> Result<String, StoreError> {
    serde_json::to_string(o).map_err(|e| StoreError::Permanent(format!("manual approval outcome: {e}")))
}

fn request_of(item: &Item) -> Result<ManualApproval, StoreError> {
    let opt = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let text = |name: &str| {
        opt(name).ok_or_else(|| StoreError::Permanent(format!("manual approval item: attribute {name} is missing")))
    };
    let requested_at = DateTime::parse_from_rfc3339(&text("requested_at")?)
        .map_err(|e| StoreError::Permanent(format!("manual approval item: attribute requested_at: {e}")))?
        .with_timezone(&Utc);
    let outcome = match opt("outcome") {
        None => None,
        Some(j) => Some(
            serde_json::from_str(&j)
                .map_err(|e| StoreError::Permanent(format!("manual approval item: attribute outcome: {e}")))?,
        ),
    };
    Ok(ManualApproval {
        account: text("account")?,
        region: text("region")?,
        pipeline: text("pipeline")?,
        stage: text("stage")?,
        action: text("action")?,
        token: ApprovalToken::from_digest(
            text("sk")?
                .strip_prefix("TOKEN#")
                .ok_or_else(|| StoreError::Permanent("manual approval item: sk is not TOKEN#<digest>".into()))?,
        ),
        execution_id: opt("execution_id"),
        requested_at,
        expires: opt("expires"),
        custom_data: opt("custom_data"),
        notified: matches!(item.get("notified"), Some(AttributeValue::Bool(true))),
        outcome,
    })
}

#[async_trait]
impl ManualApprovals for DynamoDbManualApprovals {
    #[tracing::instrument(skip_all, fields(pipeline = %request.pipeline, stage = %request.stage))]
    async fn record_request(&self, request: &ManualApproval) -> Result<ManualApproval, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(request)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(request.clone()),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    match c.item() {
                        Some(old) => request_of(old),
                        None => Err(StoreError::Permanent(
                            "manual approval exists but DynamoDB returned no copy of it".into(),
                        )),
                    }
                }
                _ => Err(store_error("PutItem (manual approval)", &self.table, &e)),
            },
        }
    }

    #[tracing::instrument(skip_all, fields(pipeline = %request.pipeline, stage = %request.stage))]
    async fn mark_notified(&self, request: &ManualApproval) -> Result<(), StoreError> {
        let (pk, sk) = Self::key(request);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET notified = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem (manual approval)", &self.table, &e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn requests(
        &self,
        account: &str,
        region: &str,
        pipeline: &str,
        stage: &str,
    ) -> Result<Vec<ManualApproval>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(manual_pk(account, region, pipeline, stage)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query (manual approvals)", &self.table, &e))?;
            for item in page.items() {
                out.push(request_of(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.requested_at));
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(pipeline = %request.pipeline, stage = %request.stage))]
    async fn claim(&self, request: &ManualApproval, outcome: &ManualOutcome) -> Result<Claim, StoreError> {
        let (pk, sk) = Self::key(request);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET outcome = :o")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(outcome)")
            .expression_attribute_values(":o", s(outcome_json(outcome)?))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    match c.item().map(request_of).transpose()?.and_then(|r| r.outcome) {
                        Some(o) => Ok(Claim::AlreadyDecided(o)),
                        None => Err(StoreError::Permanent(format!(
                            "manual approval of {} / {} is no longer in the table (expired?)",
                            request.stage, request.action
                        ))),
                    }
                }
                _ => Err(store_error("UpdateItem (manual approval claim)", &self.table, &e)),
            },
        }
    }

    async fn settle(&self, request: &ManualApproval, outcome: &ManualOutcome) -> Result<(), StoreError> {
        self.update(request, "SET outcome = :o", Some(outcome)).await
    }

    async fn release(&self, request: &ManualApproval) -> Result<(), StoreError> {
        self.update(request, "REMOVE outcome", None).await
    }
}

/// The CodePipeline adapter of [`ApprovalResults`].
#[derive(Debug, Clone)]
pub struct CodePipelineApprovalResults {
    client: aws_sdk_codepipeline::Client,
}

impl CodePipelineApprovalResults {
    pub fn new(client: aws_sdk_codepipeline::Client) -> Self {
        CodePipelineApprovalResults { client }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_codepipeline::Client::new(sdk))
    }
}

/// Answers CodePipeline gives for a result it will never accept: calling again cannot help.
const REFUSALS: &[&str] = &[
    "InvalidApprovalTokenException",
    "ApprovalAlreadyCompletedException",
    "ActionNotFoundException",
    "PipelineNotFoundException",
    "StageNotFoundException",
    "ValidationException",
    "AccessDeniedException",
];

#[async_trait]
impl ApprovalResults for CodePipelineApprovalResults {
    #[tracing::instrument(skip_all, fields(pipeline = %request.pipeline, stage = %request.stage, action = %request.action))]
    async fn put_approval_result(&self, request: &ApprovalResultRequest) -> Result<(), ApprovalResultError> {
        let status = match request.decision {
            ApprovalDecision::Approve => ApprovalStatus::Approved,
            ApprovalDecision::Reject => ApprovalStatus::Rejected,
        };
        let result = ApprovalResult::builder()
            .summary(&request.summary)
            .status(status)
            .build()
            .map_err(|e| ApprovalResultError::Refused {
                code: "BuildError".into(),
                message: e.to_string(),
            })?;
        // The stored request holds the token's digest only: the token is read fresh from CodePipeline, and sent
        // only if it is the one the request was announced with.
        let token = match request.token.expose() {
            Some(t) => t.to_string(),
            None => {
                let pending = pending_approval(&self.client, &request.pipeline, &request.stage, &request.action)
                    .await
                    .map_err(|e| ApprovalResultError::Transient(e.to_string()))?;
                match pending.and_then(|p| {
                    p.token
                        .expose()
                        .map(str::to_string)
                        .filter(|_| p.token == request.token)
                }) {
                    Some(t) => t,
                    None => {
                        return Err(ApprovalResultError::Refused {
                            code: "ApprovalNotPending".into(),
                            message: format!(
                            "CodePipeline no longer waits for this request at {} / {} (decided, expired or superseded)",
                            request.stage, request.action
                        ),
                        })
                    }
                }
            }
        };
        let sent = self
            .client
            .put_approval_result()
            .pipeline_name(&request.pipeline)
            .stage_name(&request.stage)
            .action_name(&request.action)
            .token(token)
            .result(result)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                // The typed variant first: it is what CodePipeline's answer is parsed into, code or no code.
                let refusal = e.as_service_error().and_then(|se| {
                    let typed = match se {
                        PutApprovalResultError::InvalidApprovalTokenException(x) => {
                            Some(("InvalidApprovalTokenException", x.message()))
                        }
                        PutApprovalResultError::ApprovalAlreadyCompletedException(x) => {
                            Some(("ApprovalAlreadyCompletedException", x.message()))
                        }
                        PutApprovalResultError::ActionNotFoundException(x) => {
                            Some(("ActionNotFoundException", x.message()))
                        }
                        PutApprovalResultError::PipelineNotFoundException(x) => {
                            Some(("PipelineNotFoundException", x.message()))
                        }
                        PutApprovalResultError::StageNotFoundException(x) => {
                            Some(("StageNotFoundException", x.message()))
                        }
                        PutApprovalResultError::ValidationException(x) => Some(("ValidationException", x.message())),
                        other => other
                            .code()
                            .filter(|c| REFUSALS.contains(c))
                            .map(|c| (c, other.message())),
                    };
                    typed.map(|(code, message)| {
                        let message = message.or(se.message()).unwrap_or("no message");
                        (code.to_string(), message.to_string())
                    })
                });
                if let Some((code, message)) = refusal {
                    Err(ApprovalResultError::Refused { code, message })
                } else {
                    Err(ApprovalResultError::Transient(format!(
                        "CodePipeline PutApprovalResult failed: {}",
                        aws_sdk_codepipeline::error::DisplayErrorContext(&e)
                    )))
                }
            }
        }
    }
}

/// The approval action `stage` / `action` of `pipeline` when GetPipelineState reports it `InProgress`, with its
/// token and the stage's execution.
pub async fn pending_approval(
    client: &aws_sdk_codepipeline::Client,
    pipeline: &str,
    stage: &str,
    action: &str,
) -> Result<Option<PendingApproval>, StoreError> {
    use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateError;
    use aws_sdk_codepipeline::types::ActionExecutionStatus;
    let out = match client.get_pipeline_state().name(pipeline).send().await {
        Ok(o) => o,
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(GetPipelineStateError::PipelineNotFoundException(_))
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            let text = format!(
                "CodePipeline GetPipelineState of {pipeline} failed: {}",
                aws_sdk_codepipeline::error::DisplayErrorContext(&e)
            );
            let permanent = matches!(
                e.as_service_error(),
                Some(GetPipelineStateError::ValidationException(_))
            ) || e.as_service_error().and_then(|se| se.code()) == Some("AccessDeniedException");
            return Err(if permanent {
                StoreError::Permanent(text)
            } else {
                StoreError::Transient(text)
            });
        }
    };
    let Some(stage_state) = out.stage_states().iter().find(|s| s.stage_name() == Some(stage)) else {
        return Ok(None);
    };
    let execution_id = stage_state
        .latest_execution()
        .map(|e| e.pipeline_execution_id().to_string());
    let waiting = stage_state
        .action_states()
        .iter()
        .filter(|a| a.action_name() == Some(action))
        .filter_map(|a| a.latest_execution())
        .find(|x| x.status() == Some(&ActionExecutionStatus::InProgress))
        .and_then(|x| x.token());
    Ok(waiting.map(|token| PendingApproval {
        execution_id,
        token: ApprovalToken::new(token),
    }))
}

/// The CodePipeline adapter of [`PipelineApprovals`] (GetPipelineState).
#[derive(Debug, Clone)]
pub struct CodePipelineApprovals {
    client: aws_sdk_codepipeline::Client,
}

impl CodePipelineApprovals {
    pub fn new(client: aws_sdk_codepipeline::Client) -> Self {
        CodePipelineApprovals { client }
    }
}

#[async_trait]
impl PipelineApprovals for CodePipelineApprovals {
    #[tracing::instrument(skip(self))]
    async fn pending(&self, pipeline: &str, stage: &str, action: &str) -> Result<Option<PendingApproval>, StoreError> {
        pending_approval(&self.client, pipeline, stage, action).await
    }
}

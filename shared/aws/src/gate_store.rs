//! [`DynamoDbGateStore`]: gate decisions and approvals in the Tollgate table (docs/table-design.md, "Gate decisions"
//! and "Approvals").
//!
//! - A decision is one item, `pk = GATEJOB#<job id>`, `sk = DECISION`, written once with
//!   `attribute_not_exists(pk)`: a retried job finds the first decision in the failed condition's answer
//!   (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and sends the same answer again.
//! - An approval is one item per decision of a person, `pk = APPROVAL#<account>#<region>#<pipeline>#<execution>#<stage>`,
//!   `sk = AT#<time>#<principal>`; the latest one wins (one Query, newest first, limit 1).
//! - An ad-hoc freeze is one item per scope, `pk = FREEZE#<scope>`, `sk = ACTIVE`: a new freeze of the scope
//!   replaces it, lifting it deletes it (the audit trail keeps the history). The gate reads its scopes with GetItem.
//! - An override is one item per override, `pk = OVERRIDE#<account>#<region>#<pipeline>#<execution>#<stage>`,
//!   `sk = AT#<time>#<principal>`; the latest one counts (one Query, newest first, limit 1).
//! - A deployment lease is one item per environment (and wave), `pk = LEASE#<environment>[#WAVE#<wave>]`,
//!   `sk = LEASE`, read with a consistent GetItem and taken with one conditional PutItem (absent, held by the same
//!   execution, or still exactly the finished or expired lease the gate read), so of two gates racing for it exactly
//!   one wins; the loser's failed condition returns the winner's lease (`ALL_OLD`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use tollgate_domain::gate::policy::{ApprovalDecision, FreezeBound};
use tollgate_domain::gate::{
    approval_pk, freeze_pk, holder_id, lease_pk, outcome_word, override_pk, ApprovalKey, ApprovalRecord,
    ApprovalRecords, DecisionWrite, DeploymentLease, DeploymentLeases, FreezeRecord, GateControls, GateDecision,
    GateDecisions, LeaseClaim, OverrideRecord,
};
use tollgate_domain::record::keys::ExecutionKey;
use tollgate_domain::record::ports::StoreError;

type Item = HashMap<String, AttributeValue>;

const DECISION_SK: &str = "DECISION";
const FREEZE_SK: &str = "ACTIVE";
const LEASE_SK: &str = "LEASE";
/// A lease item outlives its expiry by this long before DynamoDB's TTL removes it, so a stuck lease can be looked at.
const LEASE_KEPT_DAYS: i64 = 7;
const DECISION: &str = "decision";
const NOTIFIED: &str = "notified";

/// The DynamoDB adapter of [`GateDecisions`] and [`ApprovalRecords`].
#[derive(Debug, Clone)]
pub struct DynamoDbGateStore {
    client: Client,
    table: String,
    retention_days: i64,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// `GATEJOB#<job id>`.
pub fn decision_pk(job_id: &str) -> String {
    format!("GATEJOB#{job_id}")
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Throttling, timeouts and 5xx are transient; everything else (validation, missing table, access) is not.
fn store_error<E>(what: &str, table: &str, err: &SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("DynamoDB {what} on table {table} failed: {}", DisplayErrorContext(err));
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or_default();
            if code.contains("Throttl")
                || code == "ProvisionedThroughputExceededException"
                || code == "RequestLimitExceeded"
                || code == "InternalServerError"
                || service.raw().status().is_server_error()
            {
                StoreError::Transient(text)
            } else {
                StoreError::Permanent(text)
            }
        }
        _ => StoreError::Transient(text),
    }
}

impl DynamoDbGateStore {
    /// The newest `AT#...` item of a partition (approvals and overrides are kept one per time), read consistently.
    async fn newest_at_item(&self, pk: String, what: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :at)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":at", s("AT#"))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(&format!("Query ({what})"), &self.table, &e))?;
        Ok(out.items.unwrap_or_default().into_iter().next())
    }

    pub fn new(client: Client, table: impl Into<String>, retention_days: i64) -> Self {
        DynamoDbGateStore {
            client,
            table: table.into(),
            retention_days: retention_days.clamp(1, 36_500),
        }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>, retention_days: i64) -> Self {
        Self::new(Client::new(sdk), table, retention_days)
    }

    fn ttl(&self, t: &DateTime<Utc>) -> AttributeValue {
        AttributeValue::N(
            (*t + chrono::Duration::days(self.retention_days))
                .timestamp()
                .to_string(),
        )
    }

    fn decision_item(&self, d: &GateDecision) -> Result<Item, StoreError> {
        let json = serde_json::to_string(d)
            .map_err(|e| StoreError::Permanent(format!("gate decision {} cannot be serialized: {e}", d.id)))?;
        let mut item = Item::from([
            ("pk".to_string(), s(decision_pk(&d.job_id))),
            ("sk".to_string(), s(DECISION_SK)),
            ("kind".to_string(), s("gate_decision")),
            ("decision_id".to_string(), s(&d.id)),
            ("outcome".to_string(), s(outcome_word(&d.outcome))),
            ("decided_at".to_string(), s(time(&d.decided_at))),
            (DECISION.to_string(), s(json)),
            (NOTIFIED.to_string(), AttributeValue::Bool(false)),
            ("ttl".to_string(), self.ttl(&d.decided_at)),
        ]);
        if let Some(c) = &d.context {
            for (name, value) in [
                ("account", &c.account),
                ("region", &c.region),
                ("pipeline", &c.pipeline),
                ("execution_id", &c.execution_id),
                ("stage", &c.stage),
            ] {
                item.insert(name.to_string(), s(value));
            }
        }
        Ok(item)
    }

    fn read_decision(&self, item: &Item) -> Result<(GateDecision, bool), StoreError> {
        let json = item.get(DECISION).and_then(|v| v.as_s().ok()).ok_or_else(|| {
            StoreError::Permanent(format!(
                "a gate decision item in table {} has no `decision`",
                self.table
            ))
        })?;
        let decision: GateDecision = serde_json::from_str(json).map_err(|e| {
            StoreError::Permanent(format!("a gate decision in table {} cannot be read: {e}", self.table))
        })?;
        let notified = item
            .get(NOTIFIED)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false);
        Ok((decision, notified))
    }

    async fn get_decision_item(&self, job_id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(decision_pk(job_id)))
            .key("sk", s(DECISION_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (gate decision)", &self.table, &e))?;
        Ok(out.item)
    }
}

#[async_trait]
impl GateDecisions for DynamoDbGateStore {
    #[tracing::instrument(skip_all, fields(table = %self.table, decision_id = %decision.id))]
    async fn record_decision(&self, decision: &GateDecision) -> Result<DecisionWrite, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.decision_item(decision)?))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(DecisionWrite::New),
            Err(err) => err,
        };
        let Some(PutItemError::ConditionalCheckFailedException(e)) = err.as_service_error() else {
            return Err(store_error("PutItem (gate decision)", &self.table, &err));
        };
        // Decided before: the stored decision is the answer. Emulators may not return the old item; read it then.
        let old = match e.item() {
            Some(old) => old.clone(),
            None => self.get_decision_item(&decision.job_id).await?.ok_or_else(|| {
                StoreError::Transient(format!(
                    "gate decision {}: the write found it recorded, but it cannot be read now",
                    decision.id
                ))
            })?,
        };
        let (stored, notified) = self.read_decision(&old)?;
        tracing::info!("job decided before: its decision is sent again");
        Ok(DecisionWrite::Duplicate {
            stored: Box::new(stored),
            notified,
        })
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, decision_id = %decision_id))]
    async fn mark_notified(&self, decision_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(decision_pk(decision_id)))
            .key("sk", s(DECISION_SK))
            .update_expression("SET #n = :yes")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#n", NOTIFIED)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(StoreError::Permanent(format!(
                    "no gate decision {decision_id} in table {} to mark notified",
                    self.table
                )))
            }
            Err(err) => Err(store_error("UpdateItem (gate decision notified)", &self.table, &err)),
        }
    }

    async fn decision(&self, decision_id: &str) -> Result<Option<GateDecision>, StoreError> {
        match self.get_decision_item(decision_id).await? {
            Some(item) => Ok(Some(self.read_decision(&item)?.0)),
            None => Ok(None),
        }
    }
}

fn approval_sk(a: &ApprovalRecord) -> String {
    format!("AT#{}#{}", time(&a.at), a.principal_arn)
}

#[async_trait]
impl ApprovalRecords for DynamoDbGateStore {
    #[tracing::instrument(skip_all, fields(table = %self.table, stage = %approval.key.stage))]
    async fn record_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        let mut item = Item::from([
            ("pk".to_string(), s(approval_pk(&approval.key))),
            ("sk".to_string(), s(approval_sk(approval))),
            ("kind".to_string(), s("approval")),
            ("principal_arn".to_string(), s(&approval.principal_arn)),
            (
                "groups".to_string(),
                AttributeValue::L(approval.groups.iter().map(s).collect()),
            ),
            (
                "decision".to_string(),
                s(match approval.decision {
                    ApprovalDecision::Approve => "approve",
                    ApprovalDecision::Reject => "reject",
                }),
            ),
            ("at".to_string(), s(time(&approval.at))),
            ("ttl".to_string(), self.ttl(&approval.at)),
        ]);
        if let Some(reason) = &approval.reason {
            item.insert("reason".to_string(), s(reason));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem (approval)", &self.table, &e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, stage = %key.stage))]
    async fn latest_approval(&self, key: &ApprovalKey) -> Result<Option<ApprovalRecord>, StoreError> {
        let Some(item) = self.newest_at_item(approval_pk(key), "latest approval").await? else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let bad = |what: &str| StoreError::Permanent(format!("an approval in table {} has {what}", self.table));
        let decision = match text("decision").as_deref() {
            Some("approve") => ApprovalDecision::Approve,
            Some("reject") => ApprovalDecision::Reject,
            _ => return Err(bad("no readable `decision`")),
        };
        let at = text("at")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad("no readable `at`"))?;
        let groups = match item.get("groups") {
            Some(AttributeValue::L(list)) => list.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
            _ => Vec::new(),
        };
        Ok(Some(ApprovalRecord {
            key: key.clone(),
            principal_arn: text("principal_arn").ok_or_else(|| bad("no `principal_arn`"))?,
            groups,
            decision,
            reason: text("reason"),
            at,
        }))
    }
}

fn text_of(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn time_of(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    text_of(item, name)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl DynamoDbGateStore {
    fn read_freeze(&self, item: &Item) -> Result<FreezeRecord, StoreError> {
        let bad = |what: &str| StoreError::Permanent(format!("an ad-hoc freeze in table {} has {what}", self.table));
        let bound = |name: &str| {
            text_of(item, name)
                .and_then(|t| FreezeBound::parse(&t).ok())
                .ok_or_else(|| bad(&format!("no readable `{name}`")))
        };
        Ok(FreezeRecord {
            scope: text_of(item, "scope").ok_or_else(|| bad("no `scope`"))?,
            from: bound("from")?,
            until: bound("until")?,
            reason: text_of(item, "reason").ok_or_else(|| bad("no `reason`"))?,
            by: text_of(item, "by").ok_or_else(|| bad("no `by`"))?,
            at: time_of(item, "at").ok_or_else(|| bad("no readable `at`"))?,
        })
    }
}

#[async_trait]
impl GateControls for DynamoDbGateStore {
    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn active_freezes(&self, scopes: &[String]) -> Result<Vec<FreezeRecord>, StoreError> {
        let mut found = Vec::new();
        for scope in scopes {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(freeze_pk(scope)))
                .key("sk", s(FREEZE_SK))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| store_error("GetItem (ad-hoc freeze)", &self.table, &e))?;
            if let Some(item) = out.item {
                found.push(self.read_freeze(&item)?);
            }
        }
        Ok(found)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, scope = %freeze.scope))]
    async fn record_freeze(&self, freeze: &FreezeRecord) -> Result<(), StoreError> {
        let item = Item::from([
            ("pk".to_string(), s(freeze_pk(&freeze.scope))),
            ("sk".to_string(), s(FREEZE_SK)),
            ("kind".to_string(), s("freeze")),
            ("scope".to_string(), s(&freeze.scope)),
            ("from".to_string(), s(freeze.from.to_string())),
            ("until".to_string(), s(freeze.until.to_string())),
            ("reason".to_string(), s(&freeze.reason)),
            ("by".to_string(), s(&freeze.by)),
            ("at".to_string(), s(time(&freeze.at))),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem (ad-hoc freeze)", &self.table, &e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, scope = %scope))]
    async fn lift_freeze(&self, scope: &str) -> Result<Option<FreezeRecord>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(freeze_pk(scope)))
            .key("sk", s(FREEZE_SK))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("DeleteItem (ad-hoc freeze)", &self.table, &e))?;
        match out.attributes {
            Some(item) if !item.is_empty() => Ok(Some(self.read_freeze(&item)?)),
            _ => Ok(None),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, stage = %o.key.stage))]
    async fn record_override(&self, o: &OverrideRecord) -> Result<(), StoreError> {
        let item = Item::from([
            ("pk".to_string(), s(override_pk(&o.key))),
            ("sk".to_string(), s(format!("AT#{}#{}", time(&o.at), o.by))),
            ("kind".to_string(), s("override")),
            ("by".to_string(), s(&o.by)),
            ("reason".to_string(), s(&o.reason)),
            ("at".to_string(), s(time(&o.at))),
            ("ttl".to_string(), self.ttl(&o.at)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem (override)", &self.table, &e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, stage = %key.stage))]
    async fn latest_override(&self, key: &ApprovalKey) -> Result<Option<OverrideRecord>, StoreError> {
        let Some(item) = self.newest_at_item(override_pk(key), "latest override").await? else {
            return Ok(None);
        };
        let bad = |what: &str| StoreError::Permanent(format!("an override in table {} has {what}", self.table));
        Ok(Some(OverrideRecord {
            key: key.clone(),
            by: text_of(&item, "by").ok_or_else(|| bad("no `by`"))?,
            reason: text_of(&item, "reason").ok_or_else(|| bad("no `reason`"))?,
            at: time_of(&item, "at").ok_or_else(|| bad("no readable `at`"))?,
        }))
    }
}

impl DynamoDbGateStore {
    fn lease_item(&self, l: &DeploymentLease) -> Item {
        let mut item = Item::from([
            ("pk".to_string(), s(l.pk())),
            ("sk".to_string(), s(LEASE_SK)),
            ("kind".to_string(), s("deployment_lease")),
            ("environment".to_string(), s(&l.environment)),
            ("holder".to_string(), s(l.holder_id())),
            ("account".to_string(), s(&l.holder.account)),
            ("region".to_string(), s(&l.holder.region)),
            ("pipeline".to_string(), s(&l.holder.pipeline)),
            ("execution_id".to_string(), s(&l.holder.execution_id)),
            ("stage".to_string(), s(&l.stage)),
            ("decision_id".to_string(), s(&l.decision_id)),
            ("acquired_at".to_string(), s(time(&l.acquired_at))),
            ("expires_at".to_string(), s(time(&l.expires_at))),
            (
                "ttl".to_string(),
                AttributeValue::N(
                    (l.expires_at + chrono::Duration::days(LEASE_KEPT_DAYS))
                        .timestamp()
                        .to_string(),
                ),
            ),
        ]);
        if let Some(w) = &l.wave {
            item.insert("wave".to_string(), s(w));
        }
        item
    }

    fn read_lease(&self, item: &Item) -> Result<DeploymentLease, StoreError> {
        let bad = |what: &str| {
            StoreError::Permanent(format!(
                "a deployment lease in table {} has no readable `{what}`",
                self.table
            ))
        };
        let text = |name: &str| text_of(item, name).ok_or_else(|| bad(name));
        Ok(DeploymentLease {
            environment: text("environment")?,
            wave: text_of(item, "wave"),
            holder: ExecutionKey {
                account: text("account")?,
                region: text("region")?,
                pipeline: text("pipeline")?,
                execution_id: text("execution_id")?,
            },
            stage: text("stage")?,
            decision_id: text("decision_id")?,
            acquired_at: time_of(item, "acquired_at").ok_or_else(|| bad("acquired_at"))?,
            expires_at: time_of(item, "expires_at").ok_or_else(|| bad("expires_at"))?,
        })
    }

    async fn get_lease_item(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(LEASE_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (deployment lease)", &self.table, &e))?;
        Ok(out.item)
    }
}

#[async_trait]
impl DeploymentLeases for DynamoDbGateStore {
    #[tracing::instrument(skip_all, fields(table = %self.table, environment = %environment))]
    async fn lease(&self, environment: &str, wave: Option<&str>) -> Result<Option<DeploymentLease>, StoreError> {
        self.get_lease_item(&lease_pk(environment, wave))
            .await?
            .map(|item| self.read_lease(&item))
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, lease = %lease.pk()))]
    async fn claim_lease(
        &self,
        lease: &DeploymentLease,
        replacing: Option<&DeploymentLease>,
    ) -> Result<LeaseClaim, StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.lease_item(lease)))
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":me", s(lease.holder_id()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        request = match replacing {
            None => request.condition_expression("attribute_not_exists(pk) OR #holder = :me"),
            // Exactly the lease the gate found finished or expired: a lease taken since by anyone else stays.
            Some(old) => request
                .condition_expression(
                    "attribute_not_exists(pk) OR #holder = :me OR (#holder = :old AND #acquired = :old_at)",
                )
                .expression_attribute_names("#acquired", "acquired_at")
                .expression_attribute_values(":old", s(holder_id(&old.holder)))
                .expression_attribute_values(":old_at", s(time(&old.acquired_at))),
        };
        let err = match request.send().await {
            Ok(_) => return Ok(LeaseClaim::Acquired),
            Err(err) => err,
        };
        let Some(PutItemError::ConditionalCheckFailedException(e)) = err.as_service_error() else {
            return Err(store_error("PutItem (deployment lease)", &self.table, &err));
        };
        // Someone else holds it. Emulators may not return the old item; read it then.
        let held = match e.item() {
            Some(item) => Some(item.clone()),
            None => self.get_lease_item(&lease.pk()).await?,
        };
        match held {
            Some(item) => Ok(LeaseClaim::HeldBy(Box::new(self.read_lease(&item)?))),
            None => Err(StoreError::Transient(format!(
                "deployment lease {}: the write found it held, but it is gone now; evaluate again",
                lease.pk()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use tollgate_domain::gate::policy::Outcome;
    use tollgate_domain::gate::{FailureKind, JobAnswer};

    fn decision() -> GateDecision {
        let at = DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        GateDecision {
            id: "job-1".into(),
            job_id: "job-1".into(),
            decided_by: "tollgate:gate".into(),
            decided_at: at,
            context: None,
            policy: None,
            outcome: Outcome::Fail,
            summary: "failed: approval".into(),
            checks: vec![],
            explanation: "FAIL: failed: approval\n".into(),
            first_evaluated_at: at,
            previous: vec![],
            answer: JobAnswer::Failure {
                kind: FailureKind::JobFailed,
                message: "FAIL".into(),
                external_execution_id: "job-1".into(),
            },
            override_applied: None,
        }
    }

    #[tokio::test]
    async fn a_decision_is_one_conditional_put_keyed_by_job_id() {
        let rule = mock!(Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.condition_expression() == Some("attribute_not_exists(pk)")
                    && item["pk"].as_s().unwrap() == "GATEJOB#job-1"
                    && item["sk"].as_s().unwrap() == "DECISION"
                    && item["outcome"].as_s().unwrap() == "fail"
                    && item["notified"].as_bool().unwrap() == &false
            })
            .then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        assert_eq!(store.record_decision(&decision()).await.unwrap(), DecisionWrite::New);
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_duplicate_returns_the_stored_decision_without_another_request() {
        let stored = decision();
        let json = serde_json::to_string(&stored).unwrap();
        let rule = mock!(Client::put_item).then_error(move || {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("exists")
                    .set_item(Some(HashMap::from([
                        ("pk".to_string(), s("GATEJOB#job-1")),
                        (DECISION.to_string(), s(json.clone())),
                        (NOTIFIED.to_string(), AttributeValue::Bool(true)),
                    ])))
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let mut again = decision();
        again.summary = "a second evaluation that must not be kept".into();
        let write = store.record_decision(&again).await.unwrap();
        assert_eq!(
            write,
            DecisionWrite::Duplicate {
                stored: Box::new(stored),
                notified: true
            }
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_latest_approval_is_one_query_newest_first() {
        let rule = mock!(Client::query)
            .match_requests(|r| {
                let values = r.expression_attribute_values().unwrap();
                values[":pk"].as_s().unwrap() == "APPROVAL#111122223333#eu-west-1#checkout#e-1#Production"
                    && r.scan_index_forward() == Some(false)
                    && r.limit() == Some(1)
            })
            .then_output(|| {
                QueryOutput::builder()
                    .items(HashMap::from([
                        (
                            "principal_arn".to_string(),
                            s("arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice"),
                        ),
                        ("groups".to_string(), AttributeValue::L(vec![s("release-managers")])),
                        ("decision".to_string(), s("approve")),
                        ("reason".to_string(), s("bake looks fine")),
                        ("at".to_string(), s("2026-11-20T14:00:00.000Z")),
                    ]))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let key = ApprovalKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout".into(),
            execution_id: "e-1".into(),
            stage: "Production".into(),
        };
        let found = store.latest_approval(&key).await.unwrap().unwrap();
        assert_eq!(found.decision, ApprovalDecision::Approve);
        assert_eq!(found.groups, vec!["release-managers".to_string()]);
        assert_eq!(found.reason.as_deref(), Some("bake looks fine"));
    }

    fn freeze() -> FreezeRecord {
        FreezeRecord {
            scope: "pipeline:111122223333/eu-west-1/checkout".into(),
            from: FreezeBound::parse("2026-11-20T10:00:00Z").unwrap(),
            until: FreezeBound::parse("2026-11-27").unwrap(),
            reason: "incident INC-42".into(),
            by: "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice".into(),
            at: DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    fn freeze_item(f: &FreezeRecord) -> Item {
        HashMap::from([
            ("pk".to_string(), s(freeze_pk(&f.scope))),
            ("sk".to_string(), s("ACTIVE")),
            ("scope".to_string(), s(&f.scope)),
            ("from".to_string(), s(f.from.to_string())),
            ("until".to_string(), s(f.until.to_string())),
            ("reason".to_string(), s(&f.reason)),
            ("by".to_string(), s(&f.by)),
            ("at".to_string(), s("2026-11-20T10:00:00.000Z")),
        ])
    }

    #[tokio::test]
    async fn a_freeze_is_one_item_per_scope() {
        let rule = mock!(Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.condition_expression().is_none()
                    && item["pk"].as_s().unwrap() == "FREEZE#pipeline:111122223333/eu-west-1/checkout"
                    && item["sk"].as_s().unwrap() == "ACTIVE"
                    && item["until"].as_s().unwrap() == "2026-11-27"
                    && item["from"].as_s().unwrap() == "2026-11-20T10:00:00+00:00"
                    && item["by"].as_s().unwrap().ends_with("ReleaseManager/alice")
            })
            .then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        store.record_freeze(&freeze()).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn active_freezes_read_each_scope_and_skip_absent_ones() {
        let pipeline = mock!(Client::get_item)
            .match_requests(|r| {
                r.key().unwrap()["pk"].as_s().unwrap() == "FREEZE#pipeline:111122223333/eu-west-1/checkout"
                    && r.key().unwrap()["sk"].as_s().unwrap() == "ACTIVE"
                    && r.consistent_read() == Some(true)
            })
            .then_output(|| GetItemOutput::builder().set_item(Some(freeze_item(&freeze()))).build());
        let global = mock!(Client::get_item)
            .match_requests(|r| r.key().unwrap()["pk"].as_s().unwrap() == "FREEZE#global")
            .then_output(|| GetItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&pipeline, &global]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let scopes = vec![freeze().scope, "global".to_string()];
        assert_eq!(store.active_freezes(&scopes).await.unwrap(), vec![freeze()]);
        assert_eq!((pipeline.num_calls(), global.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn lifting_a_freeze_deletes_it_and_returns_what_was_there() {
        let rule = mock!(Client::delete_item)
            .match_requests(|r| {
                r.key().unwrap()["pk"].as_s().unwrap() == "FREEZE#global"
                    && r.return_values() == Some(&ReturnValue::AllOld)
            })
            .then_output(|| {
                let mut f = freeze();
                f.scope = "global".into();
                DeleteItemOutput::builder()
                    .set_attributes(Some(freeze_item(&f)))
                    .build()
            });
        let none = mock!(Client::delete_item).then_output(|| DeleteItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule, &none]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let lifted = store.lift_freeze("global").await.unwrap().unwrap();
        assert_eq!(
            (lifted.scope.as_str(), lifted.reason.as_str()),
            ("global", "incident INC-42")
        );
        assert_eq!(store.lift_freeze("global").await.unwrap(), None);
    }

    fn key() -> ApprovalKey {
        ApprovalKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout".into(),
            execution_id: "e-1".into(),
            stage: "Production".into(),
        }
    }

    #[tokio::test]
    async fn an_override_is_put_under_its_gate_and_the_latest_is_one_query() {
        let put = mock!(Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                item["pk"].as_s().unwrap() == "OVERRIDE#111122223333#eu-west-1#checkout#e-1#Production"
                    && item["sk"].as_s().unwrap() == "AT#2026-11-20T14:00:00.000Z#arn:aws:iam::1:user/bob"
                    && item["reason"].as_s().unwrap() == "hotfix for INC-42"
                    && item.contains_key("ttl")
            })
            .then_output(|| PutItemOutput::builder().build());
        let query = mock!(Client::query)
            .match_requests(|r| {
                r.expression_attribute_values().unwrap()[":pk"].as_s().unwrap()
                    == "OVERRIDE#111122223333#eu-west-1#checkout#e-1#Production"
                    && r.scan_index_forward() == Some(false)
                    && r.limit() == Some(1)
            })
            .then_output(|| {
                QueryOutput::builder()
                    .items(HashMap::from([
                        ("by".to_string(), s("arn:aws:iam::1:user/bob")),
                        ("reason".to_string(), s("hotfix for INC-42")),
                        ("at".to_string(), s("2026-11-20T14:00:00.000Z")),
                    ]))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&put, &query]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let o = OverrideRecord {
            key: key(),
            by: "arn:aws:iam::1:user/bob".into(),
            reason: "hotfix for INC-42".into(),
            at: DateTime::parse_from_rfc3339("2026-11-20T14:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        store.record_override(&o).await.unwrap();
        assert_eq!(store.latest_override(&key()).await.unwrap(), Some(o));
        assert_eq!((put.num_calls(), query.num_calls()), (1, 1));
    }

    // ------------------------------------------------------------------ deployment leases

    fn lease(pipeline: &str, execution: &str, at: &str) -> DeploymentLease {
        let at = DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc);
        DeploymentLease {
            environment: "production".into(),
            wave: Some("1".into()),
            holder: ExecutionKey {
                account: "111122223333".into(),
                region: "eu-west-1".into(),
                pipeline: pipeline.into(),
                execution_id: execution.into(),
            },
            stage: "Production".into(),
            decision_id: format!("job-{execution}"),
            acquired_at: at,
            expires_at: at + tollgate_domain::gate::LEASE_EXPIRY,
        }
    }

    #[tokio::test]
    async fn a_free_lease_is_one_conditional_put_that_only_an_absent_or_own_lease_lets_through() {
        let rule = mock!(Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                let values = r.expression_attribute_values().unwrap();
                r.condition_expression() == Some("attribute_not_exists(pk) OR #holder = :me")
                    && r.expression_attribute_names().unwrap()["#holder"] == "holder"
                    && values.len() == 1
                    && values[":me"].as_s().unwrap() == "111122223333/eu-west-1/payments/pay-1"
                    && item["pk"].as_s().unwrap() == "LEASE#production#WAVE#1"
                    && item["sk"].as_s().unwrap() == "LEASE"
                    && item["holder"].as_s().unwrap() == "111122223333/eu-west-1/payments/pay-1"
                    && item["wave"].as_s().unwrap() == "1"
                    && item["acquired_at"].as_s().unwrap() == "2026-11-20T14:00:00.000Z"
                    && item["expires_at"].as_s().unwrap() == "2026-11-21T14:00:00.000Z"
                    && item["ttl"].as_n().unwrap() == "1795874400"
                    && r.return_values_on_condition_check_failure()
                        == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let claim = store
            .claim_lease(&lease("payments", "pay-1", "2026-11-20T14:00:00Z"), None)
            .await;
        assert_eq!(claim.unwrap(), LeaseClaim::Acquired);
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn replacing_a_finished_holder_requires_it_to_be_exactly_the_lease_that_was_read() {
        let old = lease("payments", "pay-1", "2026-11-20T13:00:00Z");
        let rule = mock!(Client::put_item)
            .match_requests(|r| {
                let values = r.expression_attribute_values().unwrap();
                r.condition_expression()
                    == Some("attribute_not_exists(pk) OR #holder = :me OR (#holder = :old AND #acquired = :old_at)")
                    && r.expression_attribute_names().unwrap()["#acquired"] == "acquired_at"
                    && values[":me"].as_s().unwrap() == "111122223333/eu-west-1/search/s-1"
                    && values[":old"].as_s().unwrap() == "111122223333/eu-west-1/payments/pay-1"
                    && values[":old_at"].as_s().unwrap() == "2026-11-20T13:00:00.000Z"
            })
            .then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let mine = lease("search", "s-1", "2026-11-20T14:00:00Z");
        assert_eq!(
            store.claim_lease(&mine, Some(&old)).await.unwrap(),
            LeaseClaim::Acquired
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_lost_race_answers_with_the_winners_lease_from_the_failed_condition() {
        let winner = lease("payments", "pay-1", "2026-11-20T14:00:00Z");
        let client_item = {
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, []);
            DynamoDbGateStore::new(client, "tollgate", 400).lease_item(&winner)
        };
        let rule = mock!(Client::put_item).then_error(move || {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("held")
                    .set_item(Some(client_item.clone()))
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let claim = store
            .claim_lease(&lease("search", "s-1", "2026-11-20T14:00:01Z"), None)
            .await;
        assert_eq!(claim.unwrap(), LeaseClaim::HeldBy(Box::new(winner)));
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_lease_is_read_consistently_and_an_unreadable_one_is_an_error() {
        let rule = mock!(Client::get_item)
            .match_requests(|r| {
                r.key().unwrap()["pk"].as_s().unwrap() == "LEASE#staging"
                    && r.key().unwrap()["sk"].as_s().unwrap() == "LEASE"
                    && r.consistent_read() == Some(true)
            })
            .then_output(|| {
                GetItemOutput::builder()
                    .item("pk", s("LEASE#staging"))
                    .item("environment", s("staging"))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
        let store = DynamoDbGateStore::new(client, "tollgate", 400);
        let err = store.lease("staging", None).await.unwrap_err();
        assert!(
            err.to_string().contains("deployment lease") && err.to_string().contains("`account`"),
            "{err}"
        );
    }

    /// Two gates, one lease, against a real DynamoDB API (moto server): runs only with `TOLLGATE_TEST_ENDPOINT`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_gates_racing_for_one_lease_on_dynamodb_let_exactly_one_through() {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        use tollgate_domain::gate::{claim_deployment_lease, JobContext, LeaseResult};
        use tollgate_domain::memory::MemoryStore;

        let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
            println!("SKIPPED: set TOLLGATE_TEST_ENDPOINT (e.g. http://127.0.0.1:5055) to race two gates on DynamoDB");
            return;
        };
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "t",
            ))
            .build();
        let client = Client::from_conf(config);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let table = format!("tollgate-leases-{nanos}");
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |n: &str, k: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(k)
                .build()
                .unwrap()
        };
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await
            .expect("CreateTable");

        let policy = tollgate_domain::gate::policy::parse_policy(
            "p.yaml",
            "version: 1\nname: p\nmax_wait: 1h\nconcurrency:\n  environment: production\n  wave: 1\n",
        )
        .unwrap();
        let ctx = |pipeline: &str, execution: &str| JobContext {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: pipeline.into(),
            stage: "Production".into(),
            action: "Gate".into(),
            execution_id: execution.into(),
        };
        let timelines = MemoryStore::new();
        let now = DateTime::parse_from_rfc3339("2026-11-20T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // Many rounds, each with a fresh environment, each gate with its own client: exactly one winner every time.
        for round in 0..10 {
            let policy = tollgate_domain::gate::policy::parse_policy(
                "p.yaml",
                &format!("version: 1\nname: p\nmax_wait: 1h\nconcurrency:\n  environment: prod-{round}\n"),
            )
            .unwrap();
            let (a, b) = (
                DynamoDbGateStore::new(client.clone(), &table, 30),
                DynamoDbGateStore::new(client.clone(), &table, 30),
            );
            let (ca, cb) = (
                ctx("payments", &format!("p-{round}")),
                ctx("search", &format!("s-{round}")),
            );
            let (ra, rb) = tokio::join!(
                claim_deployment_lease(&policy, &ca, "ja", &a, &timelines, now),
                claim_deployment_lease(&policy, &cb, "jb", &b, &timelines, now)
            );
            let winners = [&ra, &rb].into_iter().filter(|r| **r == LeaseResult::Acquired).count();
            assert_eq!(winners, 1, "round {round}: {ra:?} / {rb:?}");
            let held = a.lease(&format!("prod-{round}"), None).await.unwrap().unwrap();
            let loser = if ra == LeaseResult::Acquired { &rb } else { &ra };
            assert_eq!(loser, &LeaseResult::HeldBy(vec![held.describe()]), "round {round}");
        }

        // The holder re-evaluating keeps it; once the holder's lease expires, the other gate replaces it.
        let store = DynamoDbGateStore::new(client.clone(), &table, 30);
        let holder = ctx("payments", "p-main");
        assert_eq!(
            claim_deployment_lease(&policy, &holder, "j1", &store, &timelines, now).await,
            LeaseResult::Acquired
        );
        assert_eq!(
            claim_deployment_lease(&policy, &holder, "j2", &store, &timelines, now).await,
            LeaseResult::Acquired
        );
        let other = ctx("search", "s-main");
        assert!(matches!(
            claim_deployment_lease(&policy, &other, "k1", &store, &timelines, now).await,
            LeaseResult::HeldBy(_)
        ));
        let later = now + tollgate_domain::gate::LEASE_EXPIRY;
        assert_eq!(
            claim_deployment_lease(&policy, &other, "k2", &store, &timelines, later).await,
            LeaseResult::Acquired
        );
        let held = store.lease("production", Some("1")).await.unwrap().unwrap();
        assert_eq!(held.holder.execution_id, "s-main");
        assert_eq!(held.decision_id, "k2");

        client
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .expect("DeleteTable");
    }
}

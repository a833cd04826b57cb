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
mod tests;

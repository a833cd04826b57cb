//! Markers of digests: notifications about no single record (the weekly digest), each published at most once per
//! key with the claim protocol of notification markers (claim, publish, mark sent; release after a failed publish; a
//! claim older than the lease may be taken over).
//!
//! A digest is about many records, so its marker cannot live on one of them: each key has its own small item,
//! `pk = DIGEST#<key>`, `sk = STATE`, holding the marker attribute `n:<key>` in the encoding of [`Mark`], its `kind`
//! (`digest`) and a `ttl`. The claim creates the item; there is no other write to it.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use tollgate_domain::record::keys::AGGREGATE_SK;
use tollgate_domain::record::ports::{claim_prefix_at, Mark, StoreError};

use super::error::store_error;
use super::item::{self, s, Item};
use super::DynamoDbStore;

/// Partition of a digest's marker item.
pub(crate) fn digest_pk(key: &str) -> String {
    format!("DIGEST#{key}")
}

const CLAIM_CONDITION: &str = "attribute_not_exists(#n) OR (begins_with(#n, :claimed) AND #n < :stale)";

impl DynamoDbStore {
    /// Claims the right to publish digest `key`: one conditional UpdateItem that succeeds when there is no marker, or
    /// when the marker is a claim made before `stale_before`. `Ok(None)`: `claim` now holds it. `Ok(Some(current))`:
    /// it is held: sent already, or claimed by another run that is still within its lease.
    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key))]
    pub async fn claim_digest(
        &self,
        key: &str,
        claim: &Mark,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<Mark>, StoreError> {
        let at = match claim {
            Mark::Claimed { at, .. } => *at,
            Mark::Sent => Utc::now(),
        };
        let refused = self
            .update_digest_marker(
                key,
                "claim digest",
                "SET #n = :claim, #kind = if_not_exists(#kind, :kind), #ttl = if_not_exists(#ttl, :ttl)",
                CLAIM_CONDITION,
                &[
                    (":claim", s(claim.encode())),
                    (":claimed", s("claim@")),
                    (":stale", s(claim_prefix_at(&stale_before))),
                    (":kind", s("digest")),
                    (":ttl", item::ttl(&at, self.retention_days)),
                ],
                &[("#kind", "kind"), ("#ttl", "ttl")],
            )
            .await?;
        let Some(old) = refused else {
            return Ok(None);
        };
        // Refused: the marker says why. An answer without the old item (some emulators) is read once.
        let old = match old {
            Some(old) => old,
            None => self
                .get("claim digest", &digest_pk(key), AGGREGATE_SK)
                .await?
                .unwrap_or_default(),
        };
        match item::notified(&old).remove(key) {
            Some(current) => Ok(Some(current)),
            // The condition failed, yet no marker is there now: it was released in between. Try again later.
            None => Err(StoreError::Transient(format!(
                "digest {key}: the claim was refused but no marker is on item {} of table {} now",
                digest_pk(key),
                self.table
            ))),
        }
    }

    /// Marks digest `key` sent if `claim` still holds it. `Ok(false)`: the claim was taken over before (nothing
    /// changed).
    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key))]
    pub async fn finish_digest(&self, key: &str, claim: &Mark) -> Result<bool, StoreError> {
        let refused = self
            .update_digest_marker(
                key,
                "finish digest",
                "SET #n = :sent",
                "#n = :claim",
                &[(":sent", s(Mark::Sent.encode())), (":claim", s(claim.encode()))],
                &[],
            )
            .await?;
        Ok(refused.is_none())
    }

    /// Drops `claim` on digest `key` after a failed publish, so the next attempt can claim at once. `Ok(false)`:
    /// the claim no longer held it (nothing changed).
    #[tracing::instrument(skip_all, fields(table = %self.table, key = %key))]
    pub async fn release_digest(&self, key: &str, claim: &Mark) -> Result<bool, StoreError> {
        let refused = self
            .update_digest_marker(
                key,
                "release digest",
                "REMOVE #n",
                "#n = :claim",
                &[(":claim", s(claim.encode()))],
                &[],
            )
            .await?;
        Ok(refused.is_none())
    }

    /// One conditional UpdateItem of the marker of digest `key`. `Ok(None)`: written. `Ok(Some(old))`: the condition
    /// failed; `old` is the item as it was, when the answer carried it.
    async fn update_digest_marker(
        &self,
        key: &str,
        what: &str,
        update: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
        names: &[(&str, &str)],
    ) -> Result<Option<Option<Item>>, StoreError> {
        let pk = digest_pk(key);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(AGGREGATE_SK))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#n", item::marker_attr(key))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, attr) in names {
            request = request.expression_attribute_names(*name, *attr);
        }
        for (name, value) in values {
            request = request.expression_attribute_values(*name, value.clone());
        }
        match request.send().await {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => Ok(Some(e.item().cloned())),
                _ => Err(store_error(&format!("UpdateItem ({what}) of {pk}"), &self.table, &err)),
            },
        }
    }
}

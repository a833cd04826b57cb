//! Who may decide on a gated stage: the effective policy the gate evaluated for it (baseline + pipeline policy),
//! recorded by the gate ([`EffectivePolicies`]) and read by the decide function and the chat endpoint; and
//! separation of duties (an approver may not approve or override a change they triggered or authored).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DecisionKind;
use crate::gate::policy::{authorise_approver, Policy};
use crate::gate::ApprovalKey;
use crate::record::keys::ExecutionKey;
use crate::record::ports::{StoreError, TimelineQueries};
use crate::record::query::execution_timeline;

/// The effective policy a gate evaluated for one stage of one pipeline: the newest evaluation wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectivePolicyRecord {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub stage: String,
    pub policy: Policy,
    /// `baseline org (rule production)`; `None` when no baseline was deployed.
    pub baseline: Option<String>,
    /// An approver may not approve or override a change they triggered or authored.
    pub separation_of_duties: bool,
    pub at: DateTime<Utc>,
}

/// `EFFECTIVE#<account>#<region>#<pipeline>#<stage>`.
pub fn effective_pk(account: &str, region: &str, pipeline: &str, stage: &str) -> String {
    format!("EFFECTIVE#{account}#{region}#{pipeline}#{stage}")
}

/// Where the gate keeps the effective policy of each stage it evaluated.
#[async_trait]
pub trait EffectivePolicies: Send + Sync {
    async fn record_effective(&self, record: &EffectivePolicyRecord) -> Result<(), StoreError>;
    async fn effective(&self, key: &ApprovalKey) -> Result<Option<EffectivePolicyRecord>, StoreError>;
}

/// Who is behind a change: the principal that started the execution (the V2 trigger detail) and the commit authors
/// recorded on its timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeOwners {
    pub trigger: Option<String>,
    pub authors: Vec<String>,
}

/// Reads who triggered and authored the execution of `key` from its timeline (nothing known: empty).
pub async fn change_owners(timelines: &dyn TimelineQueries, key: &ApprovalKey) -> Result<ChangeOwners, StoreError> {
    let execution = ExecutionKey {
        account: key.account.clone(),
        region: key.region.clone(),
        pipeline: key.pipeline.clone(),
        execution_id: key.execution_id.clone(),
    };
    let Some(t) = execution_timeline(timelines, &execution).await? else {
        return Ok(ChangeOwners::default());
    };
    Ok(ChangeOwners {
        trigger: t.trigger.and_then(|t| t.detail).filter(|d| !d.trim().is_empty()),
        authors: t.source_revisions.into_iter().filter_map(|r| r.author).collect(),
    })
}

/// The name a principal goes by: the session of an assumed role, the user of an IAM user, else the whole ARN.
fn principal_name(arn: &str) -> &str {
    if let Some(rest) = arn.split_once(":assumed-role/").map(|(_, r)| r) {
        return rest.split('/').nth(1).unwrap_or(rest);
    }
    if let Some((_, user)) = arn.split_once(":user/") {
        return user.rsplit('/').next().unwrap_or(user);
    }
    arn
}

/// Whether `principal_arn` is `other` (an ARN, a session or user name, or an e-mail address whose local part or
/// whole is the principal's name).
fn same_person(principal_arn: &str, other: &str) -> bool {
    let other = other.trim();
    if other.is_empty() {
        return false;
    }
    if other.eq_ignore_ascii_case(principal_arn) {
        return true;
    }
    let name = principal_name(principal_arn).to_ascii_lowercase();
    let other_name = if other.starts_with("arn:") {
        principal_name(other)
    } else {
        other
    }
    .to_ascii_lowercase();
    let local = other_name.split('@').next().unwrap_or(&other_name);
    other_name == name || local == name || name.split('@').next() == Some(local)
}

/// Why `principal_arn` may not approve this change under separation of duties, if so.
pub fn separation_refusal(principal_arn: &str, owners: &ChangeOwners) -> Option<String> {
    if let Some(trigger) = owners.trigger.as_deref().filter(|t| same_person(principal_arn, t)) {
        return Some(format!(
            "separation of duties: {principal_arn} started this execution ({trigger}) and may not approve it"
        ));
    }
    owners.authors.iter().find(|a| same_person(principal_arn, a)).map(|author| {
        format!("separation of duties: {principal_arn} authored this change (commit author {author}) and may not approve it")
    })
}

/// Authorises a decision on a gated stage: the stage's recorded effective policy must let `principal_arn` approve
/// (fail closed when no gate has evaluated the stage), and under separation of duties the principal may not approve
/// or override a change they triggered or authored. `Ok` holds the principal's groups; `Err` why not, in a sentence.
pub fn authorise_stage_decision(
    effective: Option<&EffectivePolicyRecord>,
    key: &ApprovalKey,
    principal_arn: &str,
    decision: DecisionKind,
    owners: &ChangeOwners,
) -> Result<Vec<String>, String> {
    let Some(effective) = effective else {
        return Err(format!(
            "no gate has evaluated {} / {} yet, so who may decide on it is unknown; nothing was recorded (fail closed)",
            key.pipeline, key.stage
        ));
    };
    if effective.policy.approval.is_none() {
        return Err(format!(
            "the effective policy of {} / {} has no approval check, so no one may decide on it",
            key.pipeline, key.stage
        ));
    }
    let authorised = authorise_approver(&effective.policy, principal_arn).map_err(|r| r.message)?;
    if effective.separation_of_duties && decision != DecisionKind::Reject {
        if let Some(why) = separation_refusal(principal_arn, owners) {
            return Err(why);
        }
    }
    Ok(authorised.groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::policy::parse_policy;

    const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";

    fn key() -> ApprovalKey {
        ApprovalKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout".into(),
            execution_id: "e-1".into(),
            stage: "Production".into(),
        }
    }

    fn record(sod: bool) -> EffectivePolicyRecord {
        let text = "version: 1\nname: p\nmax_wait: 1h\napproval:\n  approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']\n";
        EffectivePolicyRecord {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout".into(),
            stage: "Production".into(),
            policy: parse_policy("p.yaml", text).unwrap(),
            baseline: None,
            separation_of_duties: sod,
            at: Utc::now(),
        }
    }

    #[test]
    fn no_recorded_effective_policy_fails_closed() {
        let err =
            authorise_stage_decision(None, &key(), ALICE, DecisionKind::Approve, &ChangeOwners::default()).unwrap_err();
        assert!(err.contains("fail closed"), "{err}");
    }

    #[test]
    fn an_approver_of_the_effective_policy_may_decide_and_others_may_not() {
        let r = record(true);
        let owners = ChangeOwners::default();
        assert!(authorise_stage_decision(Some(&r), &key(), ALICE, DecisionKind::Approve, &owners).is_ok());
        let err = authorise_stage_decision(
            Some(&r),
            &key(),
            "arn:aws:sts::111122223333:assumed-role/Developer/bob",
            DecisionKind::Approve,
            &owners,
        )
        .unwrap_err();
        assert!(err.contains("Developer/bob"), "{err}");
    }

    #[test]
    fn the_trigger_principal_or_the_author_may_not_approve_but_may_reject() {
        let r = record(true);
        let triggered = ChangeOwners {
            trigger: Some(ALICE.into()),
            authors: vec![],
        };
        let err = authorise_stage_decision(Some(&r), &key(), ALICE, DecisionKind::Approve, &triggered).unwrap_err();
        assert!(err.starts_with("separation of duties"), "{err}");
        assert!(authorise_stage_decision(Some(&r), &key(), ALICE, DecisionKind::Override, &triggered).is_err());
        assert!(authorise_stage_decision(Some(&r), &key(), ALICE, DecisionKind::Reject, &triggered).is_ok());
        let authored = ChangeOwners {
            trigger: Some("arn:aws:sts::111122223333:assumed-role/Deployer/ci".into()),
            authors: vec!["Alice@example.com".into()],
        };
        let err = authorise_stage_decision(Some(&r), &key(), ALICE, DecisionKind::Approve, &authored).unwrap_err();
        assert!(err.contains("commit author Alice@example.com"), "{err}");
        // Off for this class (the baseline says so): the same approval counts.
        assert!(
            authorise_stage_decision(Some(&record(false)), &key(), ALICE, DecisionKind::Approve, &authored).is_ok()
        );
        // Someone else's change.
        let other = ChangeOwners {
            trigger: Some("arn:aws:sts::111122223333:assumed-role/ReleaseManager/bob".into()),
            authors: vec!["carol@example.com".into()],
        };
        assert!(authorise_stage_decision(Some(&r), &key(), ALICE, DecisionKind::Approve, &other).is_ok());
    }
}

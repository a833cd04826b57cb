//! Who may approve a gate: the one answer the gate, `tollgate approve`, `tollgate override` and the chat approval
//! endpoint all take from [`authorise_approver`].
//!
//! A principal may approve when its ARN matches one of `approval.approvers`, or when it is a member of one of
//! `approval.groups`, as the policy's top-level `groups` declares them (IAM ARN patterns and IAM Identity Center
//! permission sets). Membership is decided from the policy alone, never from a caller's claim: the groups recorded
//! with an approval are what this function resolved at the time, kept for the audit trail.

use std::fmt;

use super::model::{ApprovalCheck, GroupMember, Groups, Policy};

/// Why a principal may approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorisation {
    /// The principal's ARN matches this pattern of `approval.approvers`.
    Approver { pattern: String },
    /// The principal is a member of this group of `approval.groups`, through this member entry.
    Group { group: String, member: String },
}

/// A principal the policy lets approve, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorisedBy {
    pub principal_arn: String,
    /// The first rule that lets the principal approve (approvers first, then groups in the policy's order).
    pub how: Authorisation,
    /// Every group of the policy the principal is a member of (declared groups, not only `approval.groups`), to
    /// record with the approval.
    pub groups: Vec<String>,
}

impl fmt::Display for AuthorisedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.how {
            Authorisation::Approver { pattern } => write!(f, "matches {pattern}"),
            Authorisation::Group { group, .. } => write!(f, "group {group}"),
        }
    }
}

/// A principal the policy does not let approve, with a message saying who may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub principal_arn: String,
    pub message: String,
}

/// Who may approve under `policy`, in words: `arn:…:role/ReleaseManager* or group release-managers`. None when the
/// policy has no approval section.
pub fn who_may_approve(policy: &Policy) -> Option<String> {
    policy.approval.as_ref().map(approvers_text)
}

fn approvers_text(a: &ApprovalCheck) -> String {
    let mut who: Vec<String> = a.approvers.iter().map(|p| p.to_string()).collect();
    who.extend(a.groups.iter().map(|g| format!("group {g}")));
    who.join(" or ")
}

/// The members of each group, in words, for a refusal: `release-managers = arn:… , sso:111122223333:ReleaseManager`.
fn group_members(groups: Option<&Groups>, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|g| match groups.and_then(|d| d.get(g)) {
            Some(members) => {
                let members: Vec<String> = members.iter().map(GroupMember::to_string).collect();
                format!("{g} = {}", members.join(", "))
            }
            None => format!("{g} is not declared under the policy's `groups`, so it has no members"),
        })
        .collect()
}

/// Every declared group `principal_arn` is a member of, in name order.
pub fn groups_of(policy: &Policy, principal_arn: &str) -> Vec<String> {
    policy
        .groups
        .iter()
        .flat_map(|g| g.0.iter())
        .filter(|(_, members)| members.iter().any(|m| m.matches(principal_arn)))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether `principal_arn` (the authenticated caller: STS GetCallerIdentity, or the chat endpoint's verified user)
/// may approve or override a gate under `policy`. A refusal says who may.
pub fn authorise_approver(policy: &Policy, principal_arn: &str) -> Result<AuthorisedBy, Refusal> {
    match &policy.approval {
        Some(check) => authorise_by_check(check, policy.groups.as_ref(), principal_arn),
        None => Err(Refusal {
            principal_arn: principal_arn.trim().to_string(),
            message: format!(
                "{} may not approve: policy {} has no approval section, so no one may approve or override its gate",
                principal_arn.trim(),
                policy.name
            ),
        }),
    }
}

/// [`authorise_approver`] for an approval section held apart from a whole policy (the chat endpoint's own
/// approvers), with the group declarations its `groups` refer to. A group not declared in `groups` has no members.
pub fn authorise_by_check(
    approval: &ApprovalCheck,
    groups: Option<&Groups>,
    principal_arn: &str,
) -> Result<AuthorisedBy, Refusal> {
    let principal = principal_arn.trim();
    let member_of: Vec<String> = groups
        .iter()
        .flat_map(|g| g.0.iter())
        .filter(|(_, members)| members.iter().any(|m| m.matches(principal)))
        .map(|(name, _)| name.clone())
        .collect();
    if !principal.is_empty() {
        if let Some(pattern) = approval.approvers.iter().find(|p| p.matches(principal)) {
            return Ok(AuthorisedBy {
                principal_arn: principal.to_string(),
                how: Authorisation::Approver {
                    pattern: pattern.to_string(),
                },
                groups: member_of,
            });
        }
        for group in &approval.groups {
            let member = groups
                .and_then(|g| g.get(group))
                .and_then(|members| members.iter().find(|m| m.matches(principal)));
            if let Some(member) = member {
                return Ok(AuthorisedBy {
                    principal_arn: principal.to_string(),
                    how: Authorisation::Group {
                        group: group.clone(),
                        member: member.to_string(),
                    },
                    groups: member_of,
                });
            }
        }
    }
    let who = approvers_text(approval);
    let members = group_members(groups, &approval.groups);
    let members = if members.is_empty() {
        String::new()
    } else {
        format!(" ({})", members.join("; "))
    };
    Err(Refusal {
        principal_arn: principal.to_string(),
        message: format!("{principal} is not an authorised approver: approvers are {who}{members}"),
    })
}

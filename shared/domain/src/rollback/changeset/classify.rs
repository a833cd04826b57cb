//! Classifying each resource change by risk.

use super::*;

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------------------
// Classification.

/// Resource types whose physical resource holds data that a replacement or removal loses.
pub const STATEFUL_TYPES: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::DynamoDB::GlobalTable",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBCluster",
    "AWS::S3::Bucket",
    "AWS::EFS::FileSystem",
    "AWS::KMS::Key",
    "AWS::Cognito::UserPool",
    "AWS::Cognito::IdentityPool",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::ElastiCache::CacheCluster",
    "AWS::OpenSearchService::Domain",
    "AWS::Elasticsearch::Domain",
    "AWS::Neptune::DBCluster",
    "AWS::DocDB::DBCluster",
    "AWS::Redshift::Cluster",
    "AWS::Kinesis::Stream",
    "AWS::SQS::Queue",
    "AWS::EC2::Volume",
    "AWS::SecretsManager::Secret",
    "AWS::Logs::LogGroup",
    "AWS::Backup::BackupVault",
    "AWS::Timestream::Table",
    "AWS::FSx::FileSystem",
];

/// Resource policies: who may do what to a resource.
pub(super) const RESOURCE_POLICY_TYPES: &[&str] = &[
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::Lambda::Permission",
    "AWS::Lambda::LayerVersionPermission",
    "AWS::KMS::Key",
    "AWS::SecretsManager::ResourcePolicy",
    "AWS::Events::EventBusPolicy",
    "AWS::ECR::Repository",
];

/// Properties that carry permissions wherever they appear.
pub(super) const PERMISSION_PROPERTIES: &[&str] = &[
    "Policies",
    "PolicyDocument",
    "PolicyText",
    "KeyPolicy",
    "AssumeRolePolicyDocument",
    "ManagedPolicyArns",
    "PermissionsBoundary",
    "RepositoryPolicyText",
    "ResourcePolicy",
    "Role",
    "RoleArn",
    "ExecutionRoleArn",
    "TaskRoleArn",
    "ServiceRoleArn",
];

/// One risk of one change, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub class: RiskClass,
    pub why: String,
}

/// A change and its risks (none: harmless).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifiedChange {
    pub change: ResourceChange,
    pub risks: Vec<Risk>,
}

pub(super) fn changed_properties(c: &ResourceChange) -> Vec<&str> {
    c.details
        .iter()
        .filter(|d| d.attribute.as_deref() == Some("Properties"))
        .filter_map(|d| d.name.as_deref())
        .collect()
}

/// Classifies one change; `template` is the new template (needed for ingress rules: a change set does not carry
/// property values).
pub fn classify_change(c: &ResourceChange, template: Option<&Template>) -> ClassifiedChange {
    let mut risks = Vec::new();
    let mut add = |class: RiskClass, why: String| risks.push(Risk { class, why });
    let stateful = STATEFUL_TYPES.contains(&c.resource_type.as_str());
    let props = changed_properties(c);

    match (&c.action, c.replacement) {
        (ChangeAction::Remove, _) => {
            add(RiskClass::Removal, format!("{} is removed", c.logical_id));
            if stateful {
                // The removed resource is gone from the new template, so its DeletionPolicy cannot be read there.
                add(
                    RiskClass::StatefulReplacement,
                    format!(
                        "{} ({}) is deleted with its data unless its DeletionPolicy retained it",
                        c.logical_id, c.resource_type
                    ),
                );
            }
        }
        (ChangeAction::Modify, Some(Replacement::True)) if stateful => {
            let because: Vec<&str> = c
                .details
                .iter()
                .filter(|d| d.requires_recreation.as_deref() == Some("Always"))
                .filter_map(|d| d.name.as_deref())
                .collect();
            let retained = template
                .and_then(|t| t.deletion_policy(&c.logical_id))
                .filter(|p| p == "Retain" || p == "Snapshot" || p == "RetainExceptOnCreate");
            let mut why = format!("{} ({}) is replaced", c.logical_id, c.resource_type);
            if !because.is_empty() {
                why.push_str(&format!(" because {} changes", because.join(", ")));
            }
            match retained {
                Some(p) => why.push_str(&format!(
                    "; DeletionPolicy {p} keeps the old one, but the new one starts empty"
                )),
                None => why.push_str(": the new one starts empty and the old one is deleted"),
            }
            add(RiskClass::StatefulReplacement, why);
        }
        _ => {}
    }
    if c.action == ChangeAction::Modify && c.replacement == Some(Replacement::Conditional) {
        let because: Vec<&str> = c
            .details
            .iter()
            .filter(|d| d.requires_recreation.as_deref() == Some("Conditionally"))
            .filter_map(|d| d.name.as_deref())
            .collect();
        let mut why = format!("{} ({}) may be replaced", c.logical_id, c.resource_type);
        if !because.is_empty() {
            why.push_str(&format!(" depending on {}", because.join(", ")));
        }
        if stateful {
            why.push_str(", and it holds data");
        }
        add(RiskClass::ConditionalReplacement, why);
    }

    if c.action != ChangeAction::Remove {
        let iam_type = c.resource_type.starts_with("AWS::IAM::");
        let policy_type = RESOURCE_POLICY_TYPES.contains(&c.resource_type.as_str());
        let permission_props: Vec<&str> = props
            .iter()
            .copied()
            .filter(|p| PERMISSION_PROPERTIES.contains(p))
            .collect();
        if iam_type && (c.action == ChangeAction::Add || c.action == ChangeAction::Import) {
            add(
                RiskClass::Iam,
                format!("{} ({}) is created", c.logical_id, c.resource_type),
            );
        } else if iam_type {
            let what = if props.is_empty() {
                "changes".to_string()
            } else {
                format!("changes {}", props.join(", "))
            };
            add(RiskClass::Iam, format!("{} ({}) {what}", c.logical_id, c.resource_type));
        } else if policy_type && (c.action == ChangeAction::Add || !permission_props.is_empty()) {
            let what = if c.action == ChangeAction::Add {
                "is created".to_string()
            } else {
                format!("changes {}", permission_props.join(", "))
            };
            add(RiskClass::Iam, format!("{} ({}) {what}", c.logical_id, c.resource_type));
        } else if !permission_props.is_empty() {
            add(
                RiskClass::Iam,
                format!(
                    "{} ({}) changes {}",
                    c.logical_id,
                    c.resource_type,
                    permission_props.join(", ")
                ),
            );
        }
    }

    let ingress_type =
        c.resource_type == "AWS::EC2::SecurityGroup" || c.resource_type == "AWS::EC2::SecurityGroupIngress";
    let ingress_touched = match c.action {
        ChangeAction::Add | ChangeAction::Import => true,
        ChangeAction::Modify => {
            c.resource_type == "AWS::EC2::SecurityGroupIngress"
                || props.contains(&"SecurityGroupIngress")
                // A Modify without details (e.g. from a nested change) may touch anything.
                || c.details.is_empty()
        }
        _ => false,
    };
    if ingress_type && ingress_touched {
        match template {
            Some(t) => {
                let open = t.open_ingress(&c.logical_id);
                if !open.is_empty() {
                    add(
                        RiskClass::OpenIngress,
                        format!("{} allows {}", c.logical_id, open.join("; ")),
                    );
                }
            }
            None => add(
                RiskClass::OpenIngress,
                format!(
                    "{} changes its ingress and the template could not be read to check it",
                    c.logical_id
                ),
            ),
        }
    }
    ClassifiedChange {
        change: c.clone(),
        risks,
    }
}

/// Classifies every change.
pub fn classify(changes: &[ResourceChange], template: Option<&Template>) -> Vec<ClassifiedChange> {
    changes.iter().map(|c| classify_change(c, template)).collect()
}

//! The `changeset` action's domain: a CloudFormation change set reviewed before it runs.
//!
//! - [`parse_params`]: the action's UserParameters, validated into [`ChangesetParams`] (stack, template file,
//!   parameters file, capabilities, and the [`RiskPolicy`]: what to do with each [`RiskClass`]);
//! - [`ResourceChange`]: the typed change list, read from DescribeChangeSet (the adapter converts the SDK's types; the
//!   API's own JSON shape is read by [`parse_describe_change_set`], which the fixtures use);
//! - [`Template`]: the template artifact parsed (YAML with CloudFormation's short-form tags, or JSON), because a change
//!   set says *that* a security group's ingress changes, never *to what*;
//! - [`classify`] and [`review`]: every change into its risk classes, then one [`Verdict`] under the policy;
//! - [`Review::report`]: the risk report as engineers read it (chat, email, the failure message);
//! - [`ChangesetToken`]: the continuation token between invocations; the [`ChangeSets`] port.
//!
//! Everything here is pure except the port: the classifier is tested on realistic DescribeChangeSet responses.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------------------
// Risk classes and the policy.

/// What a change can put at risk. A change can be in several classes; harmless means in none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskClass {
    /// A stateful resource (table, database, bucket, file system, key, user pool...) replaced or removed: its data
    /// goes with the old physical resource.
    StatefulReplacement,
    /// A resource removed from the stack.
    Removal,
    /// An IAM role, user, group or policy, an inline policy, or a resource policy changed.
    Iam,
    /// A security group ingress rule open to the world (0.0.0.0/0 or ::/0) added or changed.
    OpenIngress,
    /// CloudFormation cannot tell before running whether the resource is replaced (`Replacement: Conditional`).
    ConditionalReplacement,
}

impl RiskClass {
    pub const ALL: [RiskClass; 5] = [
        RiskClass::StatefulReplacement,
        RiskClass::OpenIngress,
        RiskClass::Iam,
        RiskClass::Removal,
        RiskClass::ConditionalReplacement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::StatefulReplacement => "stateful_replacement",
            RiskClass::Removal => "removal",
            RiskClass::Iam => "iam",
            RiskClass::OpenIngress => "open_ingress",
            RiskClass::ConditionalReplacement => "conditional_replacement",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            RiskClass::StatefulReplacement => "stateful resource replaced or removed",
            RiskClass::Removal => "resource removed",
            RiskClass::Iam => "IAM or resource policy change",
            RiskClass::OpenIngress => "ingress open to the world",
            RiskClass::ConditionalReplacement => "replacement decided at run time",
        }
    }
}

/// What the policy says to do with a class, from the most to the least permissive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Execute the change set.
    Execute,
    /// Execute only once an approver has recorded an approval for this execution's stage (`tollgate approve`).
    Approve,
    /// Never execute: the job fails with the report.
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Execute => "execute",
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

/// The verdict for each class, and for a change set with no risky change at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskPolicy {
    #[serde(default = "execute")]
    pub harmless: Verdict,
    #[serde(default = "deny")]
    pub stateful_replacement: Verdict,
    #[serde(default = "deny")]
    pub open_ingress: Verdict,
    #[serde(default = "approve")]
    pub iam: Verdict,
    #[serde(default = "approve")]
    pub removal: Verdict,
    #[serde(default = "approve")]
    pub conditional_replacement: Verdict,
}

fn execute() -> Verdict {
    Verdict::Execute
}
fn approve() -> Verdict {
    Verdict::Approve
}
fn deny() -> Verdict {
    Verdict::Deny
}

impl Default for RiskPolicy {
    /// Data loss and open ingress are denied, IAM, removals and conditional replacements need an approval, the rest
    /// runs.
    fn default() -> Self {
        RiskPolicy {
            harmless: Verdict::Execute,
            stateful_replacement: Verdict::Deny,
            open_ingress: Verdict::Deny,
            iam: Verdict::Approve,
            removal: Verdict::Approve,
            conditional_replacement: Verdict::Approve,
        }
    }
}

impl RiskPolicy {
    pub fn verdict(&self, class: RiskClass) -> Verdict {
        match class {
            RiskClass::StatefulReplacement => self.stateful_replacement,
            RiskClass::Removal => self.removal,
            RiskClass::Iam => self.iam,
            RiskClass::OpenIngress => self.open_ingress,
            RiskClass::ConditionalReplacement => self.conditional_replacement,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// UserParameters.

/// The action's UserParameters, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesetParams {
    pub stack: String,
    /// Path of the template in the input artifact.
    pub template: String,
    /// Path of a parameters file in the input artifact.
    pub parameters_file: Option<String>,
    /// `CAPABILITY_IAM`, `CAPABILITY_NAMED_IAM`, `CAPABILITY_AUTO_EXPAND`.
    pub capabilities: Vec<String>,
    /// The role CloudFormation acts as (the stack's service role), if not the caller's.
    pub role_arn: Option<String>,
    pub policy: RiskPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParams {
    stack: String,
    template: String,
    #[serde(default)]
    parameters: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    policy: RiskPolicy,
}

/// A UserParameters problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("UserParameters: {}{message}", field.as_ref().map(|f| format!("`{f}`: ")).unwrap_or_default())]
pub struct ParamsError {
    pub field: Option<String>,
    pub message: String,
}

fn params_error(field: &str, message: impl Into<String>) -> ParamsError {
    ParamsError {
        field: Some(field.to_string()),
        message: message.into(),
    }
}

pub const CAPABILITIES: [&str; 3] = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"];

/// `[a-zA-Z][-a-zA-Z0-9]*`, at most 128 characters: CloudFormation's rule for stack and change-set names.
pub fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn check_path(field: &str, path: &str) -> Result<(), ParamsError> {
    if path.trim().is_empty() || path.starts_with('/') || path.split('/').any(|s| s == "..") {
        return Err(params_error(
            field,
            format!("{path:?} is not a relative path inside the input artifact"),
        ));
    }
    Ok(())
}

/// Reads the UserParameters JSON, e.g.
/// `{"stack": "checkout-infra", "template": "infra/template.yaml", "policy": {"iam": "deny"}}`.
pub fn parse_params(text: &str) -> Result<ChangesetParams, ParamsError> {
    if text.trim().is_empty() {
        return Err(ParamsError {
            field: None,
            message: "empty: give a JSON object with at least `stack` and `template`".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: RawParams = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ParamsError {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }
    })?;
    de.end().map_err(|e| ParamsError {
        field: None,
        message: format!("trailing characters after the JSON object: {e}"),
    })?;
    if !valid_stack_name(&raw.stack) {
        return Err(params_error(
            "stack",
            format!(
                "{:?} is not a stack name (a letter, then letters, digits and hyphens, at most 128)",
                raw.stack
            ),
        ));
    }
    check_path("template", &raw.template)?;
    if let Some(p) = &raw.parameters {
        check_path("parameters", p)?;
    }
    for (i, c) in raw.capabilities.iter().enumerate() {
        if !CAPABILITIES.contains(&c.as_str()) {
            return Err(params_error(
                &format!("capabilities[{i}]"),
                format!("{c:?} is not one of {}", CAPABILITIES.join(", ")),
            ));
        }
    }
    if let Some(r) = &raw.role_arn {
        if !(r.starts_with("arn:") && r.contains(":iam::") && r.contains(":role/")) {
            return Err(params_error("role_arn", format!("{r:?} is not an IAM role ARN")));
        }
    }
    Ok(ChangesetParams {
        stack: raw.stack,
        template: raw.template,
        parameters_file: raw.parameters,
        capabilities: raw.capabilities,
        role_arn: raw.role_arn,
        policy: raw.policy,
    })
}

/// Reads a parameters file: CodePipeline's template configuration (`{"Parameters": {"K": "V"}, ...}`) or the CLI's
/// list (`[{"ParameterKey": "K", "ParameterValue": "V"}]`).
pub fn parse_parameters_file(path: &str, text: &str) -> Result<BTreeMap<String, String>, ParamsError> {
    let bad = |m: String| params_error("parameters", format!("{path}: {m}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut out = BTreeMap::new();
    match &value {
        serde_json::Value::Object(o) => {
            let Some(serde_json::Value::Object(params)) = o.get("Parameters") else {
                return Err(bad(
                    "expected an object with `Parameters` (a template configuration file)".into(),
                ));
            };
            for (k, v) in params {
                out.insert(
                    k.clone(),
                    scalar(v).ok_or_else(|| bad(format!("`Parameters.{k}` is not a scalar")))?,
                );
            }
        }
        serde_json::Value::Array(list) => {
            for (i, p) in list.iter().enumerate() {
                let key = p["ParameterKey"].as_str();
                let value = scalar(&p["ParameterValue"]);
                match (key, value) {
                    (Some(k), Some(v)) => {
                        out.insert(k.to_string(), v);
                    }
                    _ => return Err(bad(format!("[{i}] needs ParameterKey and ParameterValue"))),
                }
            }
        }
        _ => return Err(bad("expected a JSON object or list".into())),
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------------
// The change list.

/// A change's action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeAction {
    Add,
    Modify,
    Remove,
    Import,
    Dynamic,
    Other(String),
}

impl ChangeAction {
    pub fn from_api(s: &str) -> ChangeAction {
        match s {
            "Add" => ChangeAction::Add,
            "Modify" => ChangeAction::Modify,
            "Remove" => ChangeAction::Remove,
            "Import" => ChangeAction::Import,
            "Dynamic" => ChangeAction::Dynamic,
            other => ChangeAction::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ChangeAction::Add => "Add",
            ChangeAction::Modify => "Modify",
            ChangeAction::Remove => "Remove",
            ChangeAction::Import => "Import",
            ChangeAction::Dynamic => "Dynamic",
            ChangeAction::Other(s) => s,
        }
    }
}

/// `Replacement` of a Modify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Replacement {
    True,
    False,
    Conditional,
}

impl Replacement {
    pub fn from_api(s: &str) -> Option<Replacement> {
        match s {
            "True" => Some(Replacement::True),
            "False" => Some(Replacement::False),
            "Conditional" => Some(Replacement::Conditional),
            _ => None,
        }
    }
}

/// One entry of a change's `Details`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChangeDetail {
    /// `Target.Attribute`: Properties, Metadata, Tags, ...
    pub attribute: Option<String>,
    /// `Target.Name`: the property's name.
    pub name: Option<String>,
    /// `Target.RequiresRecreation`: Never, Conditionally, Always.
    pub requires_recreation: Option<String>,
    /// `ChangeSource`: DirectModification, ResourceReference, ParameterReference, ...
    pub change_source: Option<String>,
    /// `CausingEntity`.
    pub causing_entity: Option<String>,
}

/// One resource change of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    pub action: ChangeAction,
    pub replacement: Option<Replacement>,
    pub scope: Vec<String>,
    pub details: Vec<ChangeDetail>,
}

/// What DescribeChangeSet says about the change set (one page's changes, or all of them once paged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSetDescription {
    pub id: Option<String>,
    pub name: String,
    pub stack_id: Option<String>,
    /// CREATE_PENDING, CREATE_IN_PROGRESS, CREATE_COMPLETE, DELETE_*, FAILED.
    pub status: String,
    pub status_reason: Option<String>,
    /// UNAVAILABLE, AVAILABLE, EXECUTE_IN_PROGRESS, EXECUTE_COMPLETE, EXECUTE_FAILED, OBSOLETE.
    pub execution_status: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub changes: Vec<ResourceChange>,
    pub next_token: Option<String>,
}

/// A DescribeChangeSet response (the API's JSON) that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DescribeChangeSet response: {0}")]
pub struct DescriptionError(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiDescription {
    change_set_id: Option<String>,
    change_set_name: String,
    stack_id: Option<String>,
    status: String,
    status_reason: Option<String>,
    execution_status: Option<String>,
    creation_time: Option<DateTime<Utc>>,
    #[serde(default)]
    changes: Vec<ApiChange>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiChange {
    #[serde(rename = "Type")]
    kind: Option<String>,
    resource_change: Option<ApiResourceChange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiResourceChange {
    action: String,
    logical_resource_id: String,
    physical_resource_id: Option<String>,
    resource_type: String,
    replacement: Option<String>,
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    details: Vec<ApiDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiDetail {
    target: Option<ApiTarget>,
    change_source: Option<String>,
    causing_entity: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiTarget {
    attribute: Option<String>,
    name: Option<String>,
    requires_recreation: Option<String>,
}

/// Reads a DescribeChangeSet response in the API's JSON shape (as `aws cloudformation describe-change-set` prints it).
pub fn parse_describe_change_set(json: &str) -> Result<ChangeSetDescription, DescriptionError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let api: ApiDescription = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| DescriptionError(format!("`{}`: {}", e.path(), e.inner())))?;
    let changes = api
        .changes
        .into_iter()
        .filter(|c| c.kind.as_deref().unwrap_or("Resource") == "Resource")
        .filter_map(|c| c.resource_change)
        .map(|r| ResourceChange {
            logical_id: r.logical_resource_id,
            physical_id: r.physical_resource_id,
            resource_type: r.resource_type,
            action: ChangeAction::from_api(&r.action),
            replacement: r.replacement.as_deref().and_then(Replacement::from_api),
            scope: r.scope,
            details: r
                .details
                .into_iter()
                .map(|d| {
                    let t = d.target;
                    ChangeDetail {
                        attribute: t.as_ref().and_then(|t| t.attribute.clone()),
                        name: t.as_ref().and_then(|t| t.name.clone()),
                        requires_recreation: t.and_then(|t| t.requires_recreation),
                        change_source: d.change_source,
                        causing_entity: d.causing_entity,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(ChangeSetDescription {
        id: api.change_set_id,
        name: api.change_set_name,
        stack_id: api.stack_id,
        status: api.status,
        status_reason: api.status_reason,
        execution_status: api.execution_status,
        created_at: api.creation_time,
        changes,
        next_token: api.next_token,
    })
}

/// CloudFormation's words for a change set without changes (the status reason of a FAILED one).
pub fn is_no_changes(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("didn't contain changes") || r.contains("no updates are to be performed")
}

// ---------------------------------------------------------------------------------------------------------------
// The template.

/// Templates larger than this are not parsed (CloudFormation's own limit for a template in S3 is 1 MB).
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;

/// The template's resources and parameters, as far as the classifier needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    resources: serde_yaml::Mapping,
    /// Parameter defaults, overridden by the parameters file.
    parameters: BTreeMap<String, String>,
}

/// A template that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {path}: {message}")]
pub struct TemplateError {
    pub path: String,
    pub message: String,
}

impl Template {
    /// Parses YAML (short-form tags such as `!Ref`, `!GetAtt`, `!Sub` are kept as tagged values) or JSON, then applies
    /// `overrides` (the parameters file) over the parameters' defaults.
    pub fn parse(path: &str, text: &str, overrides: &BTreeMap<String, String>) -> Result<Template, TemplateError> {
        let err = |message: String| TemplateError {
            path: path.to_string(),
            message,
        };
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(err(format!("larger than {MAX_TEMPLATE_BYTES} bytes")));
        }
        let doc: serde_yaml::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| err(e.to_string()))?
        } else {
            serde_yaml::from_str(text).map_err(|e| err(e.to_string()))?
        };
        let resources = match doc.get("Resources") {
            Some(serde_yaml::Value::Mapping(m)) => m.clone(),
            _ => return Err(err("no `Resources` mapping".into())),
        };
        let mut parameters = BTreeMap::new();
        if let Some(serde_yaml::Value::Mapping(params)) = doc.get("Parameters") {
            for (k, v) in params {
                if let (Some(k), Some(d)) = (k.as_str(), v.get("Default").and_then(scalar)) {
                    parameters.insert(k.to_string(), d);
                }
            }
        }
        parameters.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Template { resources, parameters })
    }

    fn resource(&self, logical_id: &str) -> Option<&serde_yaml::Value> {
        self.resources.get(logical_id)
    }

    /// A resource's `DeletionPolicy`, if the template sets one.
    pub fn deletion_policy(&self, logical_id: &str) -> Option<String> {
        self.resource(logical_id)?.get("DeletionPolicy").and_then(scalar)
    }

    /// The ingress rules of a security group (`SecurityGroupIngress`) or a standalone `AWS::EC2::SecurityGroupIngress`
    /// that are open to the world, each described; rules whose CIDR cannot be known are reported as such, because an
    /// unknown CIDR may be the world.
    pub fn open_ingress(&self, logical_id: &str) -> Vec<String> {
        let Some(resource) = self.resource(logical_id) else {
            return Vec::new();
        };
        let kind = resource.get("Type").and_then(|t| t.as_str()).unwrap_or("");
        let props = resource.get("Properties");
        let rules: Vec<&serde_yaml::Value> = match kind {
            "AWS::EC2::SecurityGroup" => match props.and_then(|p| p.get("SecurityGroupIngress")) {
                Some(serde_yaml::Value::Sequence(rules)) => rules.iter().collect(),
                Some(other) => vec![other],
                None => Vec::new(),
            },
            "AWS::EC2::SecurityGroupIngress" => props.into_iter().collect(),
            _ => Vec::new(),
        };
        let mut found = Vec::new();
        for rule in rules {
            let ports = describe_ports(rule);
            for (field, world) in [("CidrIp", "0.0.0.0/0"), ("CidrIpv6", "::/0")] {
                let Some(cidr) = rule.get(field) else { continue };
                match self.resolve(cidr) {
                    Some(v) if v == world => found.push(format!("{field} {world} {ports}")),
                    Some(_) => {}
                    None => found.push(format!(
                        "{field} {} {ports} (computed: cannot be shown not to be {world})",
                        shown(cidr)
                    )),
                }
            }
        }
        found
    }

    /// A literal, a `Ref` to a known parameter, or nothing.
    fn resolve(&self, value: &serde_yaml::Value) -> Option<String> {
        if let Some(s) = scalar(value) {
            return Some(s);
        }
        let reference = match value {
            serde_yaml::Value::Tagged(t) if t.tag == "!Ref" => t.value.as_str(),
            serde_yaml::Value::Mapping(m) if m.len() == 1 => m.get("Ref").and_then(|r| r.as_str()),
            _ => None,
        }?;
        self.parameters.get(reference).cloned()
    }
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn shown(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Tagged(t) => format!("{} {}", t.tag, scalar(&t.value).unwrap_or_else(|| "...".into())),
        _ => serde_json::to_string(v).unwrap_or_else(|_| "?".into()),
    }
}

fn describe_ports(rule: &serde_yaml::Value) -> String {
    let get = |k: &str| rule.get(k).and_then(scalar);
    let proto = get("IpProtocol").unwrap_or_else(|| "?".into());
    match (get("FromPort"), get("ToPort")) {
        _ if proto == "-1" => "all traffic".into(),
        (Some(f), Some(t)) if f == t => format!("{proto}/{f}"),
        (Some(f), Some(t)) => format!("{proto}/{f}-{t}"),
        _ => proto,
    }
}

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
const RESOURCE_POLICY_TYPES: &[&str] = &[
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
const PERMISSION_PROPERTIES: &[&str] = &[
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

fn changed_properties(c: &ResourceChange) -> Vec<&str> {
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

// ---------------------------------------------------------------------------------------------------------------
// The review.

/// What the policy says about a whole change set, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub stack: String,
    pub change_set: String,
    pub change_set_id: Option<String>,
    pub verdict: Verdict,
    /// The classes present, each with the policy's verdict for it.
    pub classes: BTreeMap<RiskClass, Verdict>,
    pub changes: Vec<ClassifiedChange>,
}

/// Applies the policy: the strictest verdict of the classes present, or `harmless` when there are none.
pub fn review(
    stack: &str,
    description: &ChangeSetDescription,
    template: Option<&Template>,
    policy: &RiskPolicy,
) -> Review {
    let changes = classify(&description.changes, template);
    let mut classes = BTreeMap::new();
    for c in &changes {
        for r in &c.risks {
            classes.insert(r.class, policy.verdict(r.class));
        }
    }
    let verdict = classes.values().copied().max().unwrap_or(policy.harmless);
    Review {
        stack: stack.to_string(),
        change_set: description.name.clone(),
        change_set_id: description.id.clone(),
        verdict,
        classes,
        changes,
    }
}

impl Review {
    pub fn risky(&self) -> usize {
        self.changes.iter().filter(|c| !c.risks.is_empty()).count()
    }

    /// One line: "3 changes, 2 risky (iam: approve, removal: approve): approval required".
    pub fn summary(&self) -> String {
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|(c, v)| format!("{}: {}", c.as_str(), v.as_str()))
            .collect();
        let outcome = match self.verdict {
            Verdict::Execute => "executing",
            Verdict::Approve => "approval required",
            Verdict::Deny => "denied",
        };
        let n = self.changes.len();
        if classes.is_empty() {
            format!("{n} change{}, none risky: {outcome}", if n == 1 { "" } else { "s" })
        } else {
            format!(
                "{n} change{}, {} risky ({}): {outcome}",
                if n == 1 { "" } else { "s" },
                self.risky(),
                classes.join(", ")
            )
        }
    }

    /// The risk report, for people: the verdict, then each class present with its changes, then the harmless ones.
    pub fn report(&self) -> String {
        let mut out = format!(
            "Change set {} for stack {}: {}\n",
            self.change_set,
            self.stack,
            self.summary()
        );
        for class in RiskClass::ALL {
            let Some(verdict) = self.classes.get(&class) else {
                continue;
            };
            out.push_str(&format!(
                "\n{} ({}) -> {}\n",
                class.title(),
                class.as_str(),
                verdict.as_str()
            ));
            for c in &self.changes {
                for r in c.risks.iter().filter(|r| r.class == class) {
                    out.push_str(&format!("  - {}: {}\n", c.change.action.as_str(), r.why));
                }
            }
        }
        let harmless: Vec<String> = self
            .changes
            .iter()
            .filter(|c| c.risks.is_empty())
            .map(|c| {
                let replacement = match c.change.replacement {
                    Some(Replacement::True) => " (replaced)",
                    _ => "",
                };
                format!(
                    "  - {} {} ({}){replacement}\n",
                    c.change.action.as_str(),
                    c.change.logical_id,
                    c.change.resource_type
                )
            })
            .collect();
        if !harmless.is_empty() {
            out.push_str("\nother changes\n");
            out.extend(harmless);
        }
        out
    }

    /// The structured record (audit entry detail).
    pub fn record(&self) -> serde_json::Value {
        let classes: BTreeMap<&str, &str> = self.classes.iter().map(|(c, v)| (c.as_str(), v.as_str())).collect();
        let risky: Vec<serde_json::Value> = self
            .changes
            .iter()
            .filter(|c| !c.risks.is_empty())
            .map(|c| {
                serde_json::json!({
                    "logical_id": c.change.logical_id,
                    "type": c.change.resource_type,
                    "action": c.change.action.as_str(),
                    "risks": c.risks.iter().map(|r| serde_json::json!({"class": r.class.as_str(), "why": r.why})).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "stack": self.stack,
            "change_set": self.change_set,
            "change_set_id": self.change_set_id,
            "verdict": self.verdict.as_str(),
            "changes": self.changes.len(),
            "classes": classes,
            "risky": risky,
        })
    }
}

/// The console page of a change set.
pub fn change_set_console_url(region: &str, stack_id: Option<&str>, change_set_id: Option<&str>) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "https://{region}.console.aws.amazon.com/cloudformation/home?region={region}#/stacks/changesets/changes?stackId={}&changeSetId={}",
        enc(stack_id.unwrap_or("")),
        enc(change_set_id.unwrap_or(""))
    )
}

/// The deterministic change-set name of an execution: a retried invocation, or a retry of the action in the same
/// execution, finds the change set the first one created.
pub fn change_set_name(execution_id: &str) -> String {
    let clean: String = execution_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(100)
        .collect();
    format!("tollgate-{clean}")
}

// ---------------------------------------------------------------------------------------------------------------
// The stack's progress.

/// Where a stack is after the change set ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackProgress {
    InProgress,
    Succeeded,
    Failed,
}

/// From a stack status (`UPDATE_COMPLETE`, `UPDATE_ROLLBACK_IN_PROGRESS`, ...). A rollback is a failure even when it
/// completes.
pub fn stack_progress(status: &str) -> StackProgress {
    if status.ends_with("_IN_PROGRESS") {
        StackProgress::InProgress
    } else if status.contains("ROLLBACK") || status.ends_with("_FAILED") {
        StackProgress::Failed
    } else if status.ends_with("_COMPLETE") {
        StackProgress::Succeeded
    } else {
        StackProgress::Failed
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The continuation token.

/// The phase a job is in between invocations: `{"v":1,"p":"create"|"execute","cs":<name>,"f":<epoch s>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesetToken {
    #[serde(rename = "v")]
    pub version: u8,
    #[serde(rename = "p")]
    pub phase: Phase,
    #[serde(rename = "cs")]
    pub change_set: String,
    /// When the job was first invoked, epoch seconds.
    #[serde(rename = "f")]
    pub first_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the change set to be created.
    Create,
    /// The change set was executed: following the stack.
    Execute,
}

impl ChangesetToken {
    pub const VERSION: u8 = 1;

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<ChangesetToken, String> {
        let t: ChangesetToken = serde_json::from_str(text)
            .map_err(|e| format!("the continuation token is not one the changeset action wrote: {e}"))?;
        if t.version != Self::VERSION {
            return Err(format!(
                "continuation token version {} is not {}",
                t.version,
                Self::VERSION
            ));
        }
        Ok(t)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The port.

/// A CloudFormation call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackApiError {
    /// Throttling, a timeout, a 5xx: a later invocation may succeed.
    #[error("{0}")]
    Transient(String),
    /// Refused for good (validation, capabilities, permissions): the job fails with it.
    #[error("{0}")]
    Refused(String),
}

/// A stack as DescribeStacks shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackState {
    pub stack_id: String,
    pub status: String,
    pub status_reason: Option<String>,
}

/// What CreateChangeSet needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChangeSet {
    pub stack: String,
    pub name: String,
    pub template_body: String,
    pub parameters: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub role_arn: Option<String>,
    /// CREATE for a stack that does not exist yet, else UPDATE.
    pub create_stack: bool,
    pub description: String,
}

/// CloudFormation, as the changeset action uses it.
#[async_trait]
pub trait ChangeSets: Send + Sync {
    /// DescribeStacks; `None` when the stack does not exist.
    async fn stack(&self, stack: &str) -> Result<Option<StackState>, StackApiError>;
    /// CreateChangeSet; `Ok(false)` when a change set of that name exists already (a retried invocation).
    async fn create(&self, change_set: &NewChangeSet) -> Result<bool, StackApiError>;
    /// DescribeChangeSet, every page; `None` when there is no such change set.
    async fn describe(&self, stack: &str, name: &str) -> Result<Option<ChangeSetDescription>, StackApiError>;
    /// ExecuteChangeSet (idempotent through its client request token).
    async fn execute(&self, stack: &str, name: &str) -> Result<(), StackApiError>;
    /// The first `*_FAILED` reason of the stack's latest operation (DescribeStackEvents), if any.
    async fn failure_reason(&self, stack: &str, since: Option<DateTime<Utc>>) -> Result<Option<String>, StackApiError>;
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

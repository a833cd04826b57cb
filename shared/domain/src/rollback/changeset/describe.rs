//! CloudFormation's description of a change set, and the template it applies.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
pub(super) struct ApiDescription {
    pub(super) change_set_id: Option<String>,
    pub(super) change_set_name: String,
    pub(super) stack_id: Option<String>,
    pub(super) status: String,
    pub(super) status_reason: Option<String>,
    pub(super) execution_status: Option<String>,
    pub(super) creation_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) changes: Vec<ApiChange>,
    pub(super) next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ApiChange {
    #[serde(rename = "Type")]
    pub(super) kind: Option<String>,
    pub(super) resource_change: Option<ApiResourceChange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ApiResourceChange {
    pub(super) action: String,
    pub(super) logical_resource_id: String,
    pub(super) physical_resource_id: Option<String>,
    pub(super) resource_type: String,
    pub(super) replacement: Option<String>,
    #[serde(default)]
    pub(super) scope: Vec<String>,
    #[serde(default)]
    pub(super) details: Vec<ApiDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ApiDetail {
    pub(super) target: Option<ApiTarget>,
    pub(super) change_source: Option<String>,
    pub(super) causing_entity: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ApiTarget {
    pub(super) attribute: Option<String>,
    pub(super) name: Option<String>,
    pub(super) requires_recreation: Option<String>,
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
    pub(super) resources: serde_yaml::Mapping,
    /// Parameter defaults, overridden by the parameters file.
    pub(super) parameters: BTreeMap<String, String>,
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

    pub(super) fn resource(&self, logical_id: &str) -> Option<&serde_yaml::Value> {
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
    pub(super) fn resolve(&self, value: &serde_yaml::Value) -> Option<String> {
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

pub(super) fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn shown(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Tagged(t) => format!("{} {}", t.tag, scalar(&t.value).unwrap_or_else(|| "...".into())),
        _ => serde_json::to_string(v).unwrap_or_else(|_| "?".into()),
    }
}

pub(super) fn describe_ports(rule: &serde_yaml::Value) -> String {
    let get = |k: &str| rule.get(k).and_then(scalar);
    let proto = get("IpProtocol").unwrap_or_else(|| "?".into());
    match (get("FromPort"), get("ToPort")) {
        _ if proto == "-1" => "all traffic".into(),
        (Some(f), Some(t)) if f == t => format!("{proto}/{f}"),
        (Some(f), Some(t)) => format!("{proto}/{f}-{t}"),
        _ => proto,
    }
}

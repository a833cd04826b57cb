//! What the change-set review may do with each risk class, and the action's parameters.

use std::collections::BTreeMap;

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

pub(super) fn execute() -> Verdict {
    Verdict::Execute
}
pub(super) fn approve() -> Verdict {
    Verdict::Approve
}
pub(super) fn deny() -> Verdict {
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
pub(super) struct RawParams {
    pub(super) stack: String,
    pub(super) template: String,
    #[serde(default)]
    pub(super) parameters: Option<String>,
    #[serde(default)]
    pub(super) capabilities: Vec<String>,
    #[serde(default)]
    pub(super) role_arn: Option<String>,
    #[serde(default)]
    pub(super) policy: RiskPolicy,
}

/// A UserParameters problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("UserParameters: {}{message}", field.as_ref().map(|f| format!("`{f}`: ")).unwrap_or_default())]
pub struct ParamsError {
    pub field: Option<String>,
    pub message: String,
}

pub(super) fn params_error(field: &str, message: impl Into<String>) -> ParamsError {
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

pub(super) fn check_path(field: &str, path: &str) -> Result<(), ParamsError> {
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

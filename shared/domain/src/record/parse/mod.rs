//! Lenient parsing of what reaches Tollgate: EventBridge delivery events (as emitted, or in the "processed" shape of
//! CodeStar Notifications), CodePipeline Lambda job events and Manual approval SNS messages.
//!
//! Parse, then validate: raw JSON is read into permissive shapes that ignore unknown fields and never type fields
//! Tollgate does not read (such as `detail.version`, a number in some AWS samples and a string in others), then turned
//! into the typed values of [`crate::record::event`]. A rejection names the position (invalid JSON) or the field.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::record::event::*;

/// Inputs larger than this are refused before parsing (EventBridge events are at most 256 KB).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// Why an input could not be turned into a Tollgate value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("input is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not an EventBridge event: {0}")]
    NotAnEvent(String),
    #[error("{detail_type} event: `{path}`: {problem}")]
    Field {
        detail_type: String,
        path: String,
        problem: String,
    },
}

/// Anything Tollgate can be handed.
// Built once per message and matched right away: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Event(DeliveryEvent),
    PipelineJob(PipelineJob),
    ApprovalRequest(ApprovalRequest),
}

/// A CodePipeline job for a Lambda invoke action. The job's `artifactCredentials` are deliberately not read: they
/// are secrets and nothing Tollgate keeps or logs may hold them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineJob {
    pub id: String,
    pub account_id: String,
    pub function_name: Option<String>,
    pub user_parameters: Option<String>,
    pub continuation_token: Option<String>,
    pub input_artifacts: Vec<String>,
}

/// The SNS message of a CodePipeline Manual approval action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub region: Option<String>,
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub token: String,
    pub expires: Option<String>,
    pub review_link: Option<String>,
    pub custom_data: Option<String>,
}

/// A serde message in the words of the input's format rather than Rust's: `expected u32` → `expected a whole
/// number`, `expected f64` → `expected a number`, `integer `N` as u128` → `integer `N``, `expected struct Job` →
/// `expected an object` (`object_word`: "an object" for JSON, "a mapping" for YAML), `expected field identifier` →
/// `expected a field name`. Quoted values are left as they are.
pub(crate) fn format_words(message: &str, object_word: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected field identifier", "expected a field name".to_string()),
        (
            "expected variant identifier",
            "expected one of the allowed words".to_string(),
        ),
    ] {
        out = out.replace(rust, &plain);
    }
    for prefix in [
        "expected tuple struct ",
        "expected newtype struct ",
        "expected struct ",
        "expected enum ",
    ] {
        while let Some(i) = out.find(prefix) {
            let name_start = i + prefix.len();
            let end = out[name_start..]
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .map_or(out.len(), |j| name_start + j);
            let word = if prefix == "expected enum " {
                "expected one of the allowed values"
            } else {
                ""
            };
            let replacement = if word.is_empty() {
                format!("expected {object_word}")
            } else {
                word.to_string()
            };
            out.replace_range(i..end, &replacement);
        }
    }
    const WHOLE: [&str; 6] = ["u8", "u16", "u32", "u64", "u128", "usize"];
    const SIGNED: [&str; 6] = ["i8", "i16", "i32", "i64", "i128", "isize"];
    const FLOAT: [&str; 2] = ["f32", "f64"];
    let word_for = |t: &str| {
        if WHOLE.contains(&t) {
            Some("a whole number")
        } else if SIGNED.contains(&t) {
            Some("an integer")
        } else if FLOAT.contains(&t) {
            Some("a number")
        } else {
            None
        }
    };
    // `expected u32` and the like, each followed by the end or a non-word character.
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find(['e', ' ']) {
        result.push_str(&rest[..i]);
        rest = &rest[i..];
        let replaced = [("expected ", true), (" as ", false)]
            .into_iter()
            .find_map(|(lead, keep)| {
                let after = rest.strip_prefix(lead)?;
                let len = after.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(after.len());
                let word = word_for(&after[..len])?;
                Some((
                    lead.len() + len,
                    if keep {
                        format!("expected {word}")
                    } else {
                        String::new()
                    },
                ))
            });
        match replaced {
            Some((consumed, text)) => {
                result.push_str(&text);
                rest = &rest[consumed..];
            }
            None => {
                let c = rest.chars().next().map_or(1, char::len_utf8);
                result.push_str(&rest[..c]);
                rest = &rest[c..];
            }
        }
    }
    result.push_str(rest);
    result
}

fn json_error(e: &serde_json::Error) -> ParseError {
    let message = e.to_string();
    // serde_json appends " at line L column C"; the position is reported separately.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    ParseError::Json {
        line: e.line(),
        // serde_json reports an unexpected end of input at column 0; columns are 1-based for people.
        column: e.column().max(1),
        message,
    }
}

fn read_json(bytes: &[u8]) -> Result<Value, ParseError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    // serde_json refuses nesting deeper than 128 levels with a positioned error, so deep input cannot exhaust the stack.
    serde_json::from_slice(bytes).map_err(|e| json_error(&e))
}

/// Classifies and parses any supported input.
pub fn parse_inbound(bytes: &[u8]) -> Result<Inbound, ParseError> {
    let value = read_json(bytes)?;
    let Value::Object(obj) = &value else {
        return Err(ParseError::NotAnEvent(format!(
            "expected a JSON object, found {}",
            type_name(&value)
        )));
    };
    if let Some(job) = obj.get("CodePipeline.job") {
        return parse_job(job).map(Inbound::PipelineJob);
    }
    if let Some(approval) = obj.get("approval") {
        return parse_approval(obj, approval).map(Inbound::ApprovalRequest);
    }
    event_from_value(value).map(Inbound::Event)
}

/// Parses one EventBridge delivery event.
pub fn parse_event(bytes: &[u8]) -> Result<DeliveryEvent, ParseError> {
    event_from_value(read_json(bytes)?)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn envelope_str<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Result<&'a str, ParseError> {
    for name in names {
        match obj.get(*name) {
            Some(Value::String(s)) => return Ok(s),
            Some(other) => {
                return Err(ParseError::NotAnEvent(format!(
                    "`{name}` must be a string, found {}",
                    type_name(other)
                )))
            }
            None => {}
        }
    }
    Err(ParseError::NotAnEvent(format!("`{}` is missing", names[0])))
}

/// Turns a parsed JSON value into a delivery event.
pub fn event_from_value(value: Value) -> Result<DeliveryEvent, ParseError> {
    let Value::Object(obj) = &value else {
        return Err(ParseError::NotAnEvent(format!(
            "expected a JSON object, found {}",
            type_name(&value)
        )));
    };
    if obj.contains_key("CodePipeline.job") {
        return Err(ParseError::NotAnEvent(
            "this is a CodePipeline job (the input of a Lambda invoke action), not a delivery event".into(),
        ));
    }
    if obj.contains_key("Records") {
        return Err(ParseError::NotAnEvent(
            "this is a batch of records (an SQS or SNS Lambda event), not one delivery event".into(),
        ));
    }
    let source = envelope_str(obj, &["source"])?.to_string();
    // Processed notifications (CodeStar Notifications) say `detailType` where EventBridge says `detail-type`.
    let detail_type = envelope_str(obj, &["detail-type", "detailType"])?.to_string();
    let account = match envelope_str(obj, &["account"]) {
        Ok(a) => a.to_string(),
        // Some emitters (and local emulators) leave `account` out; the resource ARNs still name it.
        Err(missing) => account_from_resources(obj).ok_or(missing)?,
    };
    let region = envelope_str(obj, &["region"])?.to_string();
    let time_text = envelope_str(obj, &["time"])?;
    let time = DateTime::parse_from_rfc3339(time_text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ParseError::NotAnEvent(format!("`time` {time_text:?} is not an RFC 3339 time: {e}")))?;
    let eventbridge_id = obj.get("id").and_then(Value::as_str).map(str::to_string);
    let detail = match obj.get("detail") {
        Some(d @ Value::Object(_)) => d,
        Some(other) => {
            return Err(ParseError::NotAnEvent(format!(
                "`detail` must be an object, found {}",
                type_name(other)
            )))
        }
        None => return Err(ParseError::NotAnEvent("`detail` is missing".into())),
    };
    let id = event_identity(&source, &detail_type, &account, &region, time_text, detail);
    let body = parse_body(&source, &detail_type, detail, obj.get("additionalAttributes"))?;
    Ok(DeliveryEvent {
        id,
        eventbridge_id,
        account,
        region,
        time,
        body,
    })
}

/// The account of the first resource ARN that names one (`arn:partition:service:region:account:...`).
fn account_from_resources(obj: &Map<String, Value>) -> Option<String> {
    obj.get("resources")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|arn| arn.split(':').nth(4))
        .find(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

/// Tollgate's identity of an event: a digest of what it says (source, detail-type, account, region, time, detail),
/// not of the EventBridge id. A redelivery has the same content, and so does the same event reaching the control
/// plane by two routes (a member account's forwarding rule and a local rule), even where the envelope ids differ.
pub fn event_identity(
    source: &str,
    detail_type: &str,
    account: &str,
    region: &str,
    time: &str,
    detail: &Value,
) -> String {
    let mut h = Sha256::new();
    for part in [source, detail_type, account, region, time] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    canonical_hash(detail, &mut h);
    hex::encode(&h.finalize()[..16])
}

/// Feeds a JSON value into the hasher with object keys sorted, so key order never changes the identity.
fn canonical_hash(v: &Value, h: &mut Sha256) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_be_bytes());
            for item in items {
                canonical_hash(item, h);
            }
        }
        Value::Object(map) => {
            h.update(b"{");
            h.update((map.len() as u64).to_be_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                h.update((k.len() as u64).to_be_bytes());
                h.update(k.as_bytes());
                canonical_hash(&map[k], h);
            }
        }
    }
}

fn typed<T: DeserializeOwned>(detail_type: &str, detail: &Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(detail).map_err(|e| {
        let path = e.path().to_string();
        let mut path = if path == "." {
            "detail".to_string()
        } else {
            format!("detail.{path}")
        };
        let problem = format_words(&e.into_inner().to_string(), "an object");
        // serde reports a missing field at its parent; name the field itself.
        if let Some(field) = problem
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            path = format!("{path}.{field}");
        }
        ParseError::Field {
            detail_type: detail_type.to_string(),
            path,
            problem,
        }
    })
}

fn parse_body(
    source: &str,
    detail_type: &str,
    detail: &Value,
    additional: Option<&Value>,
) -> Result<EventBody, ParseError> {
    let kind = EventKind::ALL
        .into_iter()
        .find(|k| *k != EventKind::Unknown && k.detail_type() == detail_type);
    let Some(kind) = kind else {
        return Ok(EventBody::Unknown(UnknownEvent {
            source: source.to_string(),
            detail_type: detail_type.to_string(),
        }));
    };
    let revisions = additional.map(source_revisions).unwrap_or_default();
    Ok(match kind {
        EventKind::PipelineExecution => {
            let d: raw::PipelineDetail = typed(detail_type, detail)?;
            EventBody::PipelineExecution(PipelineExecutionChange {
                pipeline: d.pipeline,
                execution_id: d.execution_id,
                state: d.state,
                trigger: d.execution_trigger.and_then(|t| {
                    t.trigger_type.map(|trigger_type| Trigger {
                        trigger_type,
                        detail: t.trigger_detail,
                    })
                }),
                source_revisions: revisions,
                attempt: d.pipeline_execution_attempt.and_then(|v| v.as_u64()),
            })
        }
        EventKind::StageExecution => {
            let d: raw::StageDetail = typed(detail_type, detail)?;
            EventBody::StageExecution(StageExecutionChange {
                pipeline: d.pipeline,
                execution_id: d.execution_id,
                stage: d.stage,
                state: d.state,
                source_revisions: revisions,
            })
        }
        EventKind::ActionExecution => {
            let d: raw::ActionDetail = typed(detail_type, detail)?;
            let t = d.action_type.unwrap_or_default();
            let r = d.execution_result.unwrap_or_default();
            EventBody::ActionExecution(ActionExecutionChange {
                pipeline: d.pipeline,
                execution_id: d.execution_id,
                stage: d.stage,
                action: d.action,
                state: d.state,
                action_type: ActionType {
                    owner: t.owner.unwrap_or_default(),
                    provider: t.provider.unwrap_or_default(),
                    category: t.category.unwrap_or_default(),
                },
                result: ExecutionResult {
                    external_execution_id: non_empty(r.external_execution_id),
                    external_execution_url: non_empty(r.external_execution_url),
                    external_execution_summary: non_empty(r.external_execution_summary),
                    error_code: non_empty(r.error_code),
                },
            })
        }
        EventKind::BuildState => {
            let d: raw::BuildDetail = typed(detail_type, detail)?;
            let info = d.additional_information.unwrap_or_default();
            EventBody::BuildState(BuildStateChange {
                build_id: short_build_id(&d.build_id),
                project: d.project_name,
                status: d.build_status,
                started_at: info.build_start_time.as_deref().and_then(parse_codebuild_time),
                initiator: info.initiator,
                logs_url: info.logs.and_then(|l| l.deep_link),
                phases: info.phases.into_iter().map(raw::Phase::into_phase).collect(),
            })
        }
        EventKind::BuildPhase => {
            let d: raw::BuildPhaseDetail = typed(detail_type, detail)?;
            let info = d.additional_information.unwrap_or_default();
            EventBody::BuildPhase(BuildPhaseChange {
                build_id: short_build_id(&d.build_id),
                project: d.project_name,
                phase: BuildPhase {
                    phase: d.completed_phase,
                    status: d.completed_phase_status,
                    started_at: d.completed_phase_start.as_deref().and_then(parse_codebuild_time),
                    ended_at: d.completed_phase_end.as_deref().and_then(parse_codebuild_time),
                    duration_secs: d.completed_phase_duration_seconds.and_then(|v| v.as_i64()),
                },
                logs_url: info.logs.and_then(|l| l.deep_link),
            })
        }
        EventKind::DeploymentState => {
            let d: raw::DeployDetail = typed(detail_type, detail)?;
            EventBody::DeploymentState(DeploymentStateChange {
                deployment_id: d.deployment_id,
                application: d.application.unwrap_or_default(),
                deployment_group: d.deployment_group.unwrap_or_default(),
                state: d.state,
            })
        }
        EventKind::InstanceState => {
            let d: raw::InstanceDetail = typed(detail_type, detail)?;
            EventBody::InstanceState(InstanceStateChange {
                deployment_id: d.deployment_id,
                instance_id: d.instance_id,
                application: d.application.unwrap_or_default(),
                deployment_group: d.deployment_group.unwrap_or_default(),
                state: d.state,
            })
        }
        EventKind::StackStatus => {
            let d: raw::StackDetail = typed(detail_type, detail)?;
            EventBody::StackStatus(StackStatusChange {
                stack_name: stack_name(&d.stack_id),
                stack_id: d.stack_id,
                status: d.status_details.status,
                reason: non_empty(d.status_details.status_reason),
                client_request_token: non_empty(d.client_request_token),
            })
        }
        EventKind::ResourceStatus => {
            let d: raw::ResourceDetail = typed(detail_type, detail)?;
            EventBody::ResourceStatus(ResourceStatusChange {
                stack_name: stack_name(&d.stack_id),
                stack_id: d.stack_id,
                logical_resource_id: d.logical_resource_id,
                physical_resource_id: non_empty(d.physical_resource_id),
                resource_type: d.resource_type,
                status: d.status_details.status,
                reason: non_empty(d.status_details.status_reason),
            })
        }
        EventKind::DriftDetection => {
            let d: raw::DriftDetail = typed(detail_type, detail)?;
            let status = d.status_details.unwrap_or_default();
            EventBody::DriftDetection(DriftDetectionChange {
                stack_name: stack_name(&d.stack_id),
                stack_id: d.stack_id,
                detection_id: d.stack_drift_detection_id,
                drift_status: status.stack_drift_status,
                detection_status: status.detection_status,
                drifted_resources: d
                    .drift_detection_details
                    .and_then(|x| x.drifted_stack_resource_count)
                    .and_then(|v| v.as_u64()),
            })
        }
        EventKind::AlarmState => {
            let d: raw::AlarmDetail = typed(detail_type, detail)?;
            EventBody::AlarmState(AlarmStateChange {
                alarm_name: d.alarm_name,
                state: d.state.value,
                previous_state: d.previous_state.map(|s| s.value),
                reason: d.state.reason,
                changed_at: d.state.timestamp.as_deref().and_then(parse_cloudwatch_time),
            })
        }
        EventKind::Unknown => unreachable!("unknown kinds return early"),
    })
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// `additionalAttributes.sourceActions` of processed notifications: the commit behind an execution.
fn source_revisions(additional: &Value) -> Vec<SourceRevision> {
    let Some(actions) = additional.get("sourceActions").and_then(Value::as_array) else {
        return Vec::new();
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    actions
        .iter()
        .filter_map(|a| {
            let vars = a.get("sourceActionVariables").cloned().unwrap_or(Value::Null);
            Some(SourceRevision {
                action: text(a, "sourceActionName")?,
                provider: text(a, "sourceActionProvider"),
                revision_id: text(&vars, "CommitId"),
                summary: text(&vars, "CommitMessage"),
                url: None,
                branch: text(&vars, "BranchName"),
                repository: text(&vars, "RepositoryName").or_else(|| text(&vars, "FullRepositoryName")),
                author: text(&vars, "AuthorEmail").or_else(|| text(&vars, "AuthorName")),
            })
        })
        .collect()
}

/// CodePipeline names a CodeBuild build `project:uuid`; CodeBuild events carry its ARN.
pub fn short_build_id(build_id: &str) -> String {
    match build_id.split_once(":build/") {
        Some((_, short)) => short.to_string(),
        None => build_id.to_string(),
    }
}

/// `arn:aws:cloudformation:region:account:stack/name/uuid` -> `name`.
pub fn stack_name(stack_id: &str) -> String {
    match stack_id.split_once(":stack/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest).to_string(),
        None => stack_id.to_string(),
    }
}

/// CodeBuild writes times as "Sep 1, 2017 4:12:29 PM" (UTC); newer events may use RFC 3339.
pub fn parse_codebuild_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%b %e, %Y %l:%M:%S %p")
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

/// CloudWatch writes "2019-10-02T17:04:40.989+0000".
pub fn parse_cloudwatch_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_job(job: &Value) -> Result<PipelineJob, ParseError> {
    let j: raw::Job = typed("CodePipeline job", job).map_err(|e| match e {
        ParseError::Field {
            detail_type,
            path,
            problem,
        } => ParseError::Field {
            detail_type,
            path: path.replacen("detail", "CodePipeline.job", 1),
            problem,
        },
        other => other,
    })?;
    let data = j.data.unwrap_or_default();
    let configuration = data
        .action_configuration
        .and_then(|c| c.configuration)
        .unwrap_or_default();
    Ok(PipelineJob {
        id: j.id,
        account_id: j.account_id.unwrap_or_default(),
        function_name: configuration.function_name,
        user_parameters: configuration.user_parameters,
        continuation_token: data.continuation_token,
        input_artifacts: data.input_artifacts.into_iter().filter_map(|a| a.name).collect(),
    })
}

fn parse_approval(obj: &Map<String, Value>, approval: &Value) -> Result<ApprovalRequest, ParseError> {
    let a: raw::Approval = typed("Manual approval", approval).map_err(|e| match e {
        ParseError::Field {
            detail_type,
            path,
            problem,
        } => ParseError::Field {
            detail_type,
            path: path.replacen("detail", "approval", 1),
            problem,
        },
        other => other,
    })?;
    Ok(ApprovalRequest {
        region: obj.get("region").and_then(Value::as_str).map(str::to_string),
        pipeline: a.pipeline_name,
        stage: a.stage_name,
        action: a.action_name,
        token: a.token,
        expires: a.expires,
        review_link: a.approval_review_link,
        custom_data: a.custom_data,
    })
}

/// The permissive raw shapes. Only fields Tollgate reads are declared; numbers that AWS writes either as numbers or
/// strings are read as [`Value`].
mod raw;

#[cfg(test)]
mod tests;

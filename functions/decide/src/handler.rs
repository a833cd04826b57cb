//! A function URL request -> the caller from `requestContext.authorizer.iam.userArn` (Lambda put it there after
//! checking the SigV4 signature; never from the body) -> a [`DecideRequest`] from the body -> the domain's
//! [`serve`] at the server's clock -> an HTTP answer with one sentence.
//!
//! The body names the operation and its target only: a field the request shape does not have (a principal, an
//! approver, a time) is refused, so no one can believe it was honoured. Neither the raw event nor the body is logged.

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_domain::gate::approval::{serve, DecideReply, DecideRequest, DecisionKind, ServerPorts};
use tollgate_domain::gate::policy::ArnPattern;
use tollgate_domain::gate::ApprovalKey;

/// A body larger than this is refused (a decision is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The function's settings.
pub struct Settings {
    pub administrators: Vec<ArnPattern>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecideFnError {
    #[error("not an event the decide function handles (expected a function URL request)")]
    Unsupported,
}

impl From<DecideFnError> for Diagnostic {
    fn from(e: DecideFnError) -> Diagnostic {
        Diagnostic {
            error_type: "NonRetryable.Unsupported".to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The body of a request: the operation and its target, nothing about who or when.
#[derive(Debug, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    Approve(StageBody),
    Reject(StageBody),
    Override(StageBody),
    Freeze {
        scope: String,
        #[serde(default)]
        from: Option<String>,
        until: String,
        reason: String,
    },
    Unfreeze {
        scope: String,
        reason: String,
    },
    IdentityLink {
        chat: String,
        principal: String,
    },
    IdentityUnlink {
        chat: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageBody {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl From<Body> for DecideRequest {
    fn from(body: Body) -> DecideRequest {
        let stage = |s: StageBody, decision| DecideRequest::Decide {
            key: ApprovalKey {
                account: s.account,
                region: s.region,
                pipeline: s.pipeline,
                execution_id: s.execution_id,
                stage: s.stage,
            },
            decision,
            reason: s.reason,
        };
        match body {
            Body::Approve(s) => stage(s, DecisionKind::Approve),
            Body::Reject(s) => stage(s, DecisionKind::Reject),
            Body::Override(s) => stage(s, DecisionKind::Override),
            Body::Freeze {
                scope,
                from,
                until,
                reason,
            } => DecideRequest::Freeze {
                scope,
                from,
                until,
                reason,
            },
            Body::Unfreeze { scope, reason } => DecideRequest::Unfreeze { scope, reason },
            Body::IdentityLink { chat, principal } => DecideRequest::Link { chat, principal },
            Body::IdentityUnlink { chat } => DecideRequest::Unlink { chat },
        }
    }
}

fn reply(status: u16, message: impl Into<String>) -> DecideReply {
    DecideReply {
        status,
        message: message.into(),
    }
}

/// The function URL answer: the status and `{"message": "..."}`.
pub fn http_response(r: &DecideReply) -> Value {
    json!({
        "statusCode": r.status,
        "headers": {"content-type": "application/json"},
        "body": json!({"message": r.message}).to_string(),
    })
}

/// The authenticated caller: the IAM principal Lambda verified the request's signature for. `None` when the request
/// has no IAM context (a URL whose AuthType is not AWS_IAM, or an event built by hand).
pub fn caller(event: &Value) -> Option<String> {
    event
        .pointer("/requestContext/authorizer/iam/userArn")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|arn| arn.starts_with("arn:"))
        .map(str::to_string)
}

fn parse_body(event: &Value) -> Result<Body, DecideReply> {
    let raw = event.get("body").and_then(Value::as_str).unwrap_or("");
    let bytes = if event.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        aws_smithy_types::base64::decode(raw).map_err(|_| reply(400, "the body is not valid base64"))?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(reply(413, format!("the body is over {MAX_BODY_BYTES} bytes")));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        reply(
            400,
            format!(
                "the request is not a decision Tollgate understands ({e}); the caller and the time are never taken from the body"
            ),
        )
    })
}

/// Handles one invocation.
pub async fn handle(
    event: &Value,
    ports: &ServerPorts<'_>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Value, DecideFnError> {
    if event.pointer("/requestContext/http").is_none() {
        return Err(DecideFnError::Unsupported);
    }
    Ok(http_response(&answer(event, ports, settings, now).await))
}

async fn answer(event: &Value, ports: &ServerPorts<'_>, settings: &Settings, now: DateTime<Utc>) -> DecideReply {
    let Some(caller) = caller(event) else {
        tracing::warn!("refused a request without an IAM request context");
        return reply(
            401,
            "the request carries no IAM identity: call the decide URL signed with SigV4 (its AuthType is AWS_IAM)",
        );
    };
    if event.pointer("/requestContext/http/method").and_then(Value::as_str) != Some("POST") {
        return reply(405, "send decisions with POST");
    }
    let body = match parse_body(event) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request = DecideRequest::from(body);
    match serve(ports, &settings.administrators, &caller, request, now).await {
        Ok(r) => {
            tracing::info!(caller = %caller, status = r.status, "decision request served");
            r
        }
        Err(e) => {
            tracing::error!(caller = %caller, error = %e, "decision request failed");
            reply(
                500,
                "the decision could not be recorded; nothing may have been recorded, try again",
            )
        }
    }
}

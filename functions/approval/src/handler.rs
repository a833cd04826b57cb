//! The approval function's two inputs, told apart by shape:
//!
//! - a **function URL request** (`requestContext.http`): the chat endpoint. The signature is checked before anything
//!   else is read, then the replay guard, then the body is parsed and the decision made as the linked principal;
//!   the answer is an HTTP status with a short JSON message for the chat user;
//! - an **SNS event** (`Records[].Sns`): CodePipeline Manual approval notifications, stored, enriched and announced.
//!
//! Neither the raw event nor a body is ever logged: SNS messages carry approval tokens, chat bodies are the user's.

use chrono::{DateTime, Duration, Utc};
use lambda_runtime::Diagnostic;
use serde_json::{json, Value};
use tollgate_aws::chat_auth::{verify, SignatureError, SigningSecret};
use tollgate_domain::gate::approval::{
    handle_approval_request, handle_chat_command, parse_chat_body, record_refusal, AnnounceError, Announced, ChatError,
    ChatIdentities, ChatReply, ChatSettings, DecideError, DecisionPorts, ReplayGuard, RequestPorts,
    SIGNATURE_WINDOW_SECS,
};
use tollgate_domain::record::parse::{parse_inbound, Inbound};
use tollgate_domain::record::ports::{EventRecorder, Rejected, StoreError};
use tollgate_domain::tell::notify::{Notification, NotificationKind, Severity};

/// A chat body larger than this is refused (chat platforms send a few KB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every port the function uses.
pub struct Ports<'a> {
    pub decisions: DecisionPorts<'a>,
    pub requests: RequestPorts<'a>,
    pub identities: &'a dyn ChatIdentities,
    pub replay: &'a dyn ReplayGuard,
    /// Where SNS messages that are not approval requests are kept with their reason.
    pub rejected: &'a dyn EventRecorder,
}

/// The endpoint's settings and its signing secret.
pub struct Settings {
    pub chat: ChatSettings,
    pub secret: SigningSecret,
    /// The chat workspace (team id) this endpoint serves: a decision signed for a user of any other workspace is
    /// refused, whatever its signature.
    pub workspace: String,
}

/// What the caller is told for a 403: what was refused, no approver list, principal or policy in it (the audit entry
/// and the log hold the reason).
pub const FORBIDDEN: &str = "Refused: you may not make this decision. The refusal is recorded.";
/// What the caller is told for a request signed for another chat workspace.
pub const OTHER_WORKSPACE: &str = "Refused: the request comes from a chat workspace this endpoint does not serve.";
/// What the caller is told when Tollgate failed: no AWS error, table name or clock in it.
pub const FAILED: &str = "Refused: Tollgate could not make the decision; nothing was decided.";
/// What the caller is told when a dependency is briefly unavailable.
pub const UNAVAILABLE: &str = "Refused: Tollgate is briefly unavailable; nothing was decided, try again.";

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("not an event the approval function handles (expected a function URL request or an SNS event): {0}")]
    Unsupported(String),
    /// A store or the topic failed; Lambda retries the SNS invocation and the request is handled again, once.
    #[error("approval request of {pipeline} / {stage} not handled, will be retried: {source}")]
    Announce {
        pipeline: String,
        stage: String,
        #[source]
        source: AnnounceError,
    },
    #[error("an SNS message could not be kept after it was refused: {0}")]
    Keep(#[source] StoreError),
}

impl From<ApprovalError> for Diagnostic {
    fn from(e: ApprovalError) -> Diagnostic {
        let error_type = match &e {
            ApprovalError::Unsupported(_) => "NonRetryable.Unsupported",
            ApprovalError::Announce { .. } => "Retryable.Announce",
            ApprovalError::Keep(_) => "Retryable.Keep",
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// Handles one invocation.
pub async fn handle(
    event: &Value,
    ports: &Ports<'_>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Value, ApprovalError> {
    if event.pointer("/requestContext/http").is_some() {
        let reply = handle_http(event, ports, settings, now).await;
        return Ok(http_response(&reply));
    }
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let mut handled = Vec::new();
        for record in records {
            handled.push(handle_sns_record(record, ports, now).await?);
        }
        return Ok(json!({ "handled": handled }));
    }
    Err(ApprovalError::Unsupported(match event {
        Value::Object(o) => format!("an object with keys {:?}", o.keys().take(8).collect::<Vec<_>>()),
        _ => "not a JSON object".into(),
    }))
}

/// The function URL's answer: the status and `{"response_type": "ephemeral", "text": ...}`, which chat platforms
/// show to the user who asked only.
pub fn http_response(reply: &ChatReply) -> Value {
    json!({
        "statusCode": reply.status,
        "headers": {"content-type": "application/json"},
        "body": json!({"response_type": "ephemeral", "text": reply.text}).to_string(),
    })
}

fn reply(status: u16, text: impl Into<String>) -> ChatReply {
    ChatReply {
        status,
        text: text.into(),
    }
}

async fn handle_http(event: &Value, ports: &Ports<'_>, settings: &Settings, now: DateTime<Utc>) -> ChatReply {
    let method = event
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
        .unwrap_or("");
    if method != "POST" {
        return reply(405, format!("method {method} not allowed: POST a signed request"));
    }
    let body = match request_body(event) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let header = |name: &str| {
        event
            .get("headers")
            .and_then(Value::as_object)
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string)
    };
    // Authenticate before reading anything of the body.
    let digest = match verify(&settings.secret, header, &body, now) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(refused = %e, "chat request refused");
            return reply(401, e.public_text());
        }
    };
    // Kept past the window, so a captured request cannot come back while its timestamp is still accepted.
    match ports
        .replay
        .first_sighting(&digest, now + Duration::seconds(2 * SIGNATURE_WINDOW_SECS + 60))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(refused = %SignatureError::Replayed, "chat request refused");
            return reply(401, SignatureError::Replayed.public_text());
        }
        Err(e) => {
            tracing::error!(error = %e, "replay guard unavailable");
            return reply(503, UNAVAILABLE);
        }
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return reply(400, "the body is not UTF-8");
    };
    let command = match parse_chat_body(text) {
        Ok(c) => c,
        Err(ChatError::Invalid(m)) => return reply(400, m),
        Err(ChatError::Store(e)) => {
            tracing::error!(error = %e, "chat request could not be read");
            return reply(503, UNAVAILABLE);
        }
    };
    if command.user.workspace != settings.workspace {
        tracing::warn!(chat_user = %command.user, "chat request from another workspace refused");
        let key = command
            .target
            .key(&settings.chat.default_account, &settings.chat.default_region);
        let why = "the request was signed for a chat workspace this endpoint does not serve";
        let detail = json!({"via": "chat", "chat_user": command.user.id(), "reason": command.reason});
        if let Err(e) = record_refusal(
            ports.decisions.audit,
            &key,
            &command.user.id(),
            command.decision,
            why,
            detail,
            now,
        )
        .await
        {
            tracing::error!(error = %e, "refusal not recorded");
            return reply(503, UNAVAILABLE);
        }
        return reply(403, OTHER_WORKSPACE);
    }
    tracing::info!(chat_user = %command.user, decision = command.decision.as_str(), pipeline = %command.target.pipeline,
        stage = %command.target.stage, execution_id = %command.target.execution_id, "chat decision");
    match handle_chat_command(&ports.decisions, ports.identities, &settings.chat, &command, now).await {
        Ok(r) if r.status == 403 => {
            // The decision code's own text names the principal and why the policy refused it: the log and the
            // audit entry keep that, the caller learns only that it was refused.
            tracing::warn!(status = r.status, refused = %r.text, "chat decision refused");
            reply(403, FORBIDDEN)
        }
        Ok(r) => {
            tracing::info!(status = r.status, "chat decision answered");
            r
        }
        Err(e @ (DecideError::Transient(_) | DecideError::Store(StoreError::Transient(_)))) => {
            tracing::error!(error = %e, "chat decision failed");
            reply(503, UNAVAILABLE)
        }
        Err(e) => {
            tracing::error!(error = %e, "chat decision failed");
            reply(500, FAILED)
        }
    }
}

fn request_body(event: &Value) -> Result<Vec<u8>, ChatReply> {
    let raw = event.get("body").and_then(Value::as_str).unwrap_or("");
    let bytes = if event.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        aws_smithy_types::base64::decode(raw).map_err(|_| reply(400, "the body is not valid base64"))?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(reply(413, format!("the body is over {MAX_BODY_BYTES} bytes")));
    }
    Ok(bytes)
}

/// The account and region of an SNS topic ARN (`arn:aws:sns:<region>:<account>:<name>`).
fn topic_origin(topic_arn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = topic_arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sns", region, account, _name] if !region.is_empty() && !account.is_empty() => {
            Some((account.to_string(), region.to_string()))
        }
        _ => None,
    }
}

/// The message with its `approval.token` removed wherever it appears (the review link carries it too), so a kept
/// message holds no token.
fn without_token(message: &str) -> String {
    match serde_json::from_str::<Value>(message) {
        Ok(mut v) => {
            let token = v.pointer("/approval/token").and_then(Value::as_str).map(str::to_string);
            if let Some(t) = v.pointer_mut("/approval/token") {
                *t = json!("(removed)");
            }
            let text = v.to_string();
            match token.filter(|t| !t.is_empty()) {
                Some(t) => text.replace(&t, "(removed)"),
                None => text,
            }
        }
        // Not JSON at all: nothing in it can be read as a token field, but keep it only in part.
        Err(_) => message.chars().take(2048).collect(),
    }
}

async fn handle_sns_record(record: &Value, ports: &Ports<'_>, now: DateTime<Utc>) -> Result<Value, ApprovalError> {
    let sns = record.get("Sns").unwrap_or(&Value::Null);
    let message_id = sns
        .get("MessageId")
        .and_then(Value::as_str)
        .unwrap_or("unknown-message")
        .to_string();
    let message = sns.get("Message").and_then(Value::as_str).unwrap_or("");
    let message_id_owned = message_id.clone();
    let message_id_ref = &message_id_owned;
    let origin = sns.get("TopicArn").and_then(Value::as_str).and_then(topic_origin);
    let refuse = |reason: String| async move {
        tracing::warn!(message_id = %message_id, reason = %reason, "SNS message refused and kept");
        ports
            .rejected
            .keep_rejected(&Rejected::new(
                &message_id,
                now,
                reason.clone(),
                &without_token(message),
            ))
            .await
            .map_err(ApprovalError::Keep)?;
        Ok::<Value, ApprovalError>(json!({"message_id": message_id, "rejected": reason}))
    };
    let Some((account, region)) = origin else {
        return refuse("the SNS record has no usable TopicArn (arn:aws:sns:<region>:<account>:<topic>)".into()).await;
    };
    let request = match parse_inbound(message.as_bytes()) {
        Ok(Inbound::ApprovalRequest(r)) => r,
        Ok(_) => return refuse("the SNS message is not a CodePipeline Manual approval notification".into()).await,
        Err(e) => return refuse(format!("cannot parse the SNS message: {e}")).await,
    };
    let region = request.region.clone().unwrap_or(region);
    let announced = match handle_approval_request(&ports.requests, &request, &account, &region, now).await {
        Ok(a) => a,
        Err(source) => {
            // No dead-letter queue may hold the message (it carries the token): the failure is kept here, without
            // the token, and Lambda retries the invocation.
            let kept = Rejected::new(
                message_id_ref,
                now,
                format!("approval request not handled yet (Lambda retries it): {source}"),
                &without_token(message),
            );
            if let Err(e) = ports.rejected.keep_rejected(&kept).await {
                tracing::error!(error = %e, "failed approval request not kept");
            }
            return Err(ApprovalError::Announce {
                pipeline: request.pipeline.clone(),
                stage: request.stage.clone(),
                source,
            });
        }
    };
    let (outcome, digest) = match &announced {
        Announced::Published { token_digest } => ("published", token_digest),
        Announced::Duplicate { token_digest } => ("duplicate", token_digest),
        Announced::NotPending { token_digest, why } => {
            return refuse_request(
                ports,
                &request,
                (&account, &region),
                token_digest,
                why,
                message_id_ref,
                message,
                now,
            )
            .await;
        }
    };
    tracing::info!(pipeline = %request.pipeline, stage = %request.stage, action = %request.action,
        token_sha256 = %digest.get(..16).unwrap_or(digest), outcome, "manual approval request");
    Ok(json!({"pipeline": request.pipeline, "stage": request.stage, "action": request.action, "outcome": outcome}))
}

/// A request CodePipeline is not waiting for: kept without its token, told once (the first delivery), never
/// announced or stored as a manual approval.
#[allow(clippy::too_many_arguments)]
async fn refuse_request(
    ports: &Ports<'_>,
    request: &tollgate_domain::record::parse::ApprovalRequest,
    (account, region): (&str, &str),
    token_digest: &str,
    why: &str,
    message_id: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Value, ApprovalError> {
    let short = token_digest.get(..16).unwrap_or(token_digest);
    tracing::warn!(pipeline = %request.pipeline, stage = %request.stage, action = %request.action,
        token_sha256 = %short, why, "manual approval request refused: CodePipeline is not waiting for it");
    let reason = format!("approval request refused: {why}");
    ports
        .rejected
        .keep_rejected(&Rejected::new(message_id, now, reason.clone(), &without_token(message)))
        .await
        .map_err(ApprovalError::Keep)?;
    // Told once: a duplicate delivery of the same request finds the marker and says nothing again.
    let first = ports
        .replay
        .first_sighting(
            &tollgate_domain::gate::approval::refused_request_marker(token_digest),
            now + Duration::days(30),
        )
        .await
        .map_err(ApprovalError::Keep)?;
    if first {
        let notification = Notification {
            key: format!("approval-request-refused:{short}"),
            kind: NotificationKind::ApprovalRequestRefused,
            severity: Severity::Critical,
            account: account.to_string(),
            region: region.to_string(),
            pipeline: Some(request.pipeline.clone()),
            thread: request.pipeline.clone(),
            title: format!(
                "{}: an approval request for {} / {} was refused",
                request.pipeline, request.stage, request.action
            ),
            lines: vec![
                format!("{why}: the request was not announced and cannot be decided through Tollgate."),
                "Only CodePipeline publishes approval requests: find who else can publish on the approval topic."
                    .into(),
            ],
            next_steps: vec![
                "Check the pipeline's state in the console and the topic's publishers in CloudTrail".into(),
            ],
            link: None,
            resources: vec![format!("arn:aws:codepipeline:{region}:{account}:{}", request.pipeline)],
        };
        ports
            .requests
            .notifier
            .publish(&notification)
            .await
            .map_err(|e| ApprovalError::Announce {
                pipeline: request.pipeline.clone(),
                stage: request.stage.clone(),
                source: e.into(),
            })?;
    }
    Ok(
        json!({"pipeline": request.pipeline, "stage": request.stage, "action": request.action,
        "outcome": "refused", "told": first}),
    )
}

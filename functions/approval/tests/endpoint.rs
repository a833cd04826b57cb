//! The approval function's handler with its ports in memory: the chat endpoint refuses unsigned, tampered, expired,
//! future and replayed requests before reading them, decides as the linked principal, refuses and records
//! unauthorised approvers; SNS messages that are not approval requests are kept with their reason, without a token.

mod common;

use chrono::{Duration, Utc};
use common::*;
use serde_json::{json, Value};
use tollgate_domain::gate::approval::ChatIdentities as _;
use tollgate_domain::gate::ApprovalRecords;
use tollgate_domain::memory::MemoryApprovalResults;
use tollgate_domain::record::ports::TimelineQueries;

fn key() -> tollgate_domain::gate::ApprovalKey {
    tollgate_domain::gate::ApprovalKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        execution_id: EXECUTION.into(),
        stage: "Production".into(),
    }
}

#[tokio::test]
async fn signature_checks_come_first_and_refuse_every_bad_request() {
    let body = fixture_body();
    let tampered = body.replace("U0001", "U0002");
    let cases: Vec<(&str, Value, u64, &str)> = vec![
        (
            "unsigned",
            url_event(&body, None),
            401,
            "Refused: the request is not signed.",
        ),
        (
            "expired",
            url_event(&body, Some(now() - Duration::seconds(301))),
            401,
            "Refused: the request's timestamp is outside the accepted window.",
        ),
        (
            "future",
            url_event(&body, Some(now() + Duration::seconds(301))),
            401,
            "Refused: the request's timestamp is outside the accepted window.",
        ),
        (
            "tampered",
            {
                let mut e = url_event(&body, Some(now()));
                e["body"] = Value::String(tampered);
                e
            },
            401,
            "Refused: the request's signature is not valid.",
        ),
    ];
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    for (name, event, status, text) in cases {
        let (got, reply) = call(&ports, &event, now()).await;
        assert_eq!(got, status, "{name}: {reply}");
        // The whole answer: one sentence, no clock, age or expected value in it.
        assert_eq!(reply, text, "{name}");
    }
    // Nothing was read, decided or recorded for any of them.
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    assert!(w.audit_actions().await.is_empty());
}

#[tokio::test]
async fn a_valid_request_decides_once_and_its_replay_is_refused() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    let event = url_event(&fixture_body(), Some(now() - Duration::seconds(20)));
    let (status, text) = call(&ports, &event, now()).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!(
            "approved checkout-service / Production / {EXECUTION} as {ALICE} (chat:T0001:U0001)"
        )),
        "{text}"
    );
    let a = w.gate.latest_approval(&key()).await.unwrap().unwrap();
    assert_eq!(
        (a.principal_arn.as_str(), a.reason.as_deref()),
        (ALICE, Some("canary looks healthy"))
    );

    // The same request again, within the window: refused as replayed, nothing recorded twice.
    let (status, text) = call(&ports, &event, now() + Duration::seconds(30)).await;
    assert_eq!(
        (status, text.as_str()),
        (401, "Refused: the request was already used once.")
    );
    assert_eq!(
        w.audit_actions().await,
        vec![(ALICE.to_string(), "approval.approve".to_string())]
    );
}

#[tokio::test]
async fn an_unauthorised_approver_gets_403_and_the_refusal_is_in_the_audit_trail() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    // Mallory signs nothing herself: the platform signed that she, U0666, asked. Her body names Alice in vain.
    let body = format!(
        "{}&principal_arn={}",
        slash(
            "U0666",
            &format!("approve checkout-service Production {EXECUTION} ship it")
        ),
        ALICE.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, text) = call(&ports, &url_event(&body, Some(now())), now()).await;
    assert_eq!(status, 403, "{text}");
    // Said in one sentence; no approver list, pattern or principal in it (the audit entry keeps why).
    assert_eq!(text, approval::handler::FORBIDDEN);
    assert!(!text.contains("arn:") && !text.contains("ReleaseManager"), "{text}");
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    assert_eq!(
        w.audit_actions().await,
        vec![("chat:T0001:U0666".to_string(), "approval.refused".to_string())]
    );
}

#[tokio::test]
async fn a_signed_but_malformed_command_gets_the_usage_and_other_methods_are_refused() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    let (status, text) = call(
        &ports,
        &url_event(&slash("U0001", "approve checkout-service"), Some(now())),
        now(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("usage: /tollgate approve|reject|override"), "{text}");
    let mut get = url_event(&fixture_body(), Some(now()));
    get["requestContext"]["http"]["method"] = json!("GET");
    assert_eq!(call(&ports, &get, now()).await.0, 405);
}

#[tokio::test]
async fn a_base64_body_is_verified_as_sent() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    let body = fixture_body();
    let mut event = url_event(&body, Some(now()));
    event["body"] = json!(aws_smithy_types::base64::encode(body.as_bytes()));
    event["isBase64Encoded"] = json!(true);
    let (status, text) = call(&ports, &event, now()).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn an_sns_message_that_is_not_an_approval_is_kept_without_its_token() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    let mut event = sns_event();
    let broken = json!({"region": "eu-west-1", "approval": {"pipelineName": "checkout-service", "token": TOKEN}});
    event["Records"][0]["Sns"]["Message"] = json!(broken.to_string());
    let out = approval::handler::handle(&event, &ports, &settings(), now())
        .await
        .unwrap();
    let reason = out["handled"][0]["rejected"].as_str().unwrap();
    assert!(reason.contains("approval.stageName"), "{reason}");
    let kept = w.store.rejected(now().date_naive(), 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].message_id, "95df01b4-ee98-5cb9-9903-4c221d41eb5e");
    assert!(!kept[0].body.contains(TOKEN), "{}", kept[0].body);
    assert!(w.notifier.sent().is_empty());
}

#[tokio::test]
async fn an_unknown_event_is_a_non_retryable_error() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let err = approval::handler::handle(&json!({"hello": 1}), &w.ports(&results), &settings(), Utc::now())
        .await
        .unwrap_err();
    let d: lambda_runtime::Diagnostic = err.into();
    assert_eq!(d.error_type, "NonRetryable.Unsupported");
}

#[tokio::test]
async fn an_upper_case_copy_of_an_accepted_signature_is_refused_as_replayed() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    let event = url_event(&fixture_body(), Some(now()));
    assert_eq!(call(&ports, &event, now()).await.0, 200);
    // The same bytes written in upper-case hex: a valid signature, but the one already used.
    let mut again = event.clone();
    let sig = again["headers"]["x-slack-signature"].as_str().unwrap().to_string();
    let upper = format!("v0={}", sig.strip_prefix("v0=").unwrap().to_ascii_uppercase());
    assert_ne!(sig, upper);
    again["headers"]["x-slack-signature"] = json!(upper);
    let (status, text) = call(&ports, &again, now()).await;
    assert_eq!(
        (status, text.as_str()),
        (401, "Refused: the request was already used once.")
    );
    assert_eq!(
        w.audit_actions().await,
        vec![(ALICE.to_string(), "approval.approve".to_string())],
        "decided once"
    );
}

#[tokio::test]
async fn a_signed_request_for_another_workspace_is_refused_and_recorded() {
    let w = World::new().await;
    // Alice's user id exists in another workspace too: the link of T0001:U0001 must not serve it.
    w.chat
        .link(&tollgate_domain::gate::approval::LinkedIdentity {
            chat_user: tollgate_domain::gate::approval::ChatUser::new("T9999", "U0001").unwrap(),
            principal_arn: ALICE.into(),
            linked_by: "arn:aws:iam::111122223333:role/Admin".into(),
            at: now(),
        })
        .await
        .unwrap();
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    let body = fixture_body().replace("team_id=T0001", "team_id=T9999");
    assert!(body.contains("team_id=T9999"), "{body}");
    let (status, text) = call(&ports, &url_event(&body, Some(now())), now()).await;
    assert_eq!((status, text.as_str()), (403, approval::handler::OTHER_WORKSPACE));
    assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    assert_eq!(
        w.audit_actions().await,
        vec![("chat:T9999:U0001".to_string(), "approval.refused".to_string())]
    );
}

/// A store whose every call fails with AWS's own words, table name and all.
struct Broken;

#[async_trait::async_trait]
impl tollgate_domain::gate::approval::ChatIdentities for Broken {
    async fn identity(
        &self,
        _: &tollgate_domain::gate::approval::ChatUser,
    ) -> Result<Option<tollgate_domain::gate::approval::LinkedIdentity>, tollgate_domain::record::ports::StoreError>
    {
        Err(tollgate_domain::record::ports::StoreError::Permanent(
            "DynamoDB GetItem (identity) on table tollgate-prod failed: AccessDeniedException: User arn:aws:sts::1:x"
                .into(),
        ))
    }
    async fn link(
        &self,
        _: &tollgate_domain::gate::approval::LinkedIdentity,
    ) -> Result<(), tollgate_domain::record::ports::StoreError> {
        unreachable!()
    }
    async fn unlink(
        &self,
        _: &tollgate_domain::gate::approval::ChatUser,
    ) -> Result<Option<tollgate_domain::gate::approval::LinkedIdentity>, tollgate_domain::record::ports::StoreError>
    {
        unreachable!()
    }
}

#[tokio::test]
async fn a_failure_answers_500_without_aws_text_or_table_names() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let mut ports = w.ports(&results);
    ports.identities = &Broken;
    let (status, text) = call(&ports, &url_event(&fixture_body(), Some(now())), now()).await;
    assert_eq!((status, text.as_str()), (500, approval::handler::FAILED));
    for leak in ["DynamoDB", "tollgate-prod", "AccessDenied", "arn:", "2026"] {
        assert!(!text.contains(leak), "{text}");
    }
}

#[tokio::test]
async fn a_failed_announcement_is_kept_without_its_token_and_retried() {
    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    w.notifier.fail_next(1);
    let err = approval::handler::handle(&sns_event(), &ports, &settings(), now())
        .await
        .unwrap_err();
    let d: lambda_runtime::Diagnostic = err.into();
    assert_eq!(d.error_type, "Retryable.Announce");
    assert!(!d.error_message.contains(TOKEN), "{}", d.error_message);
    let kept = w.store.rejected(now().date_naive(), 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].reason.contains("not handled yet"), "{}", kept[0].reason);
    assert!(!kept[0].body.contains(TOKEN), "{}", kept[0].body);
    assert!(!kept[0].body.contains("EXAMPLETOKEN"), "{}", kept[0].body);
    // Lambda's retry announces it.
    let out = approval::handler::handle(&sns_event(), &ports, &settings(), now())
        .await
        .unwrap();
    assert_eq!(out["handled"][0]["outcome"], "published", "{out}");
}

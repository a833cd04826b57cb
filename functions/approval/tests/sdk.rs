//! Manual approvals at CodePipeline's HTTP layer: the SNS fixture through the handler, then a signed chat decision,
//! with the real `CodePipelineApprovalResults` over a mocked client (aws-smithy-mocks): the exact PutApprovalResult
//! request, one call per decision, and AWS's refusals reported with AWS's message and recorded.

mod common;

use std::sync::{Arc, Mutex};

use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput;
use aws_sdk_codepipeline::operation::put_approval_result::{
    PutApprovalResultError, PutApprovalResultInput, PutApprovalResultOutput,
};
use aws_sdk_codepipeline::types::error::{ApprovalAlreadyCompletedException, InvalidApprovalTokenException};
use aws_sdk_codepipeline::types::{
    ActionExecution, ActionExecutionStatus, ActionState, ApprovalStatus, StageExecution, StageExecutionStatus,
    StageState,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use common::*;
use tollgate_aws::manual_approvals::{CodePipelineApprovalResults, CodePipelineApprovals};
use tollgate_domain::audit::AuditLog;
use tollgate_domain::record::ports::TimelineQueries;

type Seen = Arc<Mutex<Vec<PutApprovalResultInput>>>;

fn accepted(seen: Seen) -> Rule {
    mock!(aws_sdk_codepipeline::Client::put_approval_result)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.clone());
            true
        })
        .then_output(|| PutApprovalResultOutput::builder().build())
}

/// GetPipelineState of checkout-service: Production / Approve in `status` with `token`.
fn state(token: &'static str, status: ActionExecutionStatus) -> Rule {
    mock!(aws_sdk_codepipeline::Client::get_pipeline_state)
        .match_requests(|r| r.name() == Some("checkout-service"))
        .then_output(move || {
            GetPipelineStateOutput::builder()
                .pipeline_name("checkout-service")
                .stage_states(StageState::builder().stage_name("Staging").build())
                .stage_states(
                    StageState::builder()
                        .stage_name("Production")
                        .latest_execution(
                            StageExecution::builder()
                                .pipeline_execution_id(EXECUTION)
                                .status(StageExecutionStatus::InProgress)
                                .build()
                                .unwrap(),
                        )
                        .action_states(
                            ActionState::builder()
                                .action_name("Approve")
                                .latest_execution(
                                    ActionExecution::builder().status(status.clone()).token(token).build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
}

fn waiting() -> Rule {
    state(TOKEN, ActionExecutionStatus::InProgress)
}

async fn announced(w: &World, results: &CodePipelineApprovalResults) {
    let out = approval::handler::handle(&sns_event(), &w.ports(results), &settings(), now())
        .await
        .unwrap();
    assert_eq!(out["handled"][0]["outcome"], "published", "{out}");
}

#[tokio::test]
async fn an_approval_from_chat_sends_the_exact_put_approval_result_once() {
    let w = World::new().await;
    let seen: Seen = Default::default();
    let rule = accepted(seen.clone());
    let read = waiting();
    let results =
        CodePipelineApprovalResults::new(mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&read, &rule]));
    announced(&w, &results).await;
    // A duplicate delivery of the notification: stored once, published once.
    let again = approval::handler::handle(&sns_event(), &w.ports(&results), &settings(), now())
        .await
        .unwrap();
    assert_eq!(again["handled"][0]["outcome"], "duplicate");
    assert_eq!(w.notifier.sent().len(), 1);

    let (status, text) = call(&w.ports(&results), &url_event(&fixture_body(), Some(now())), now()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(rule.num_calls(), 1);
    // The token was read fresh at decision time: the table holds its digest only.
    assert_eq!(read.num_calls(), 1);
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.pipeline_name(), Some("checkout-service"));
    assert_eq!(r.stage_name(), Some("Production"));
    assert_eq!(r.action_name(), Some("Approve"));
    assert_eq!(r.token(), Some(TOKEN));
    let result = r.result().unwrap();
    assert_eq!(result.status(), &ApprovalStatus::Approved);
    assert_eq!(
        result.summary(),
        format!("Approved by {ALICE} (chat:T0001:U0001) via Tollgate: canary looks healthy")
    );

    // A second decision, signed anew: CodePipeline is not called again.
    let reject = slash(
        "U0001",
        &format!("reject checkout-service Production {EXECUTION} wrong build"),
    );
    let (status, text) = call(&w.ports(&results), &url_event(&reject, Some(now())), now()).await;
    assert_eq!(status, 409, "{text}");
    assert_eq!(rule.num_calls(), 1);
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, ALICE);
    assert_eq!(entries[0].action, "approval.approve");
    assert_eq!(entries[0].detail["manual_approval"]["result"], "accepted");
}

#[tokio::test]
async fn a_rejection_sends_rejected_with_the_reason() {
    let w = World::new().await;
    let seen: Seen = Default::default();
    let rule = accepted(seen.clone());
    let read = waiting();
    let results =
        CodePipelineApprovalResults::new(mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&read, &rule]));
    announced(&w, &results).await;
    let reject = slash(
        "U0001",
        &format!("reject checkout-service Production {EXECUTION} p99 doubled"),
    );
    let (status, text) = call(&w.ports(&results), &url_event(&reject, Some(now())), now()).await;
    assert_eq!(status, 200, "{text}");
    let sent = seen.lock().unwrap().clone();
    let result = sent[0].result().unwrap();
    assert_eq!(result.status(), &ApprovalStatus::Rejected);
    assert_eq!(
        result.summary(),
        format!("Rejected by {ALICE} (chat:T0001:U0001) via Tollgate: p99 doubled")
    );
}

async fn refused_by_aws(error: fn() -> PutApprovalResultError, message: &str) {
    let w = World::new().await;
    let rule = mock!(aws_sdk_codepipeline::Client::put_approval_result).then_error(error);
    let read = waiting();
    let results =
        CodePipelineApprovalResults::new(mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&read, &rule]));
    announced(&w, &results).await;
    let (status, text) = call(&w.ports(&results), &url_event(&fixture_body(), Some(now())), now()).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains(message), "{text}");
    let entries = w.audit.entries(SCOPE).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].action.as_str()),
        (ALICE, "approval.refused")
    );
    assert!(
        entries[0].detail["refused"].as_str().unwrap().contains(message),
        "{}",
        entries[0].detail
    );

    // Not retried blindly: another decision finds the refusal and calls nothing.
    let again = slash(
        "U0001",
        &format!("approve checkout-service Production {EXECUTION} retry"),
    );
    let (status, text) = call(&w.ports(&results), &url_event(&again, Some(now())), now()).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("CodePipeline refused"), "{text}");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn an_expired_token_is_reported_with_aws_message_and_recorded() {
    refused_by_aws(
        || {
            PutApprovalResultError::InvalidApprovalTokenException(
                InvalidApprovalTokenException::builder()
                    .message("The approval request already received a response or has expired.")
                    .build(),
            )
        },
        "InvalidApprovalTokenException: The approval request already received a response or has expired.",
    )
    .await;
}

#[tokio::test]
async fn an_approval_completed_in_the_console_is_reported_with_aws_message_and_recorded() {
    refused_by_aws(
        || {
            PutApprovalResultError::ApprovalAlreadyCompletedException(
                ApprovalAlreadyCompletedException::builder()
                    .message("The approval action has already been approved or rejected.")
                    .build(),
            )
        },
        "ApprovalAlreadyCompletedException: The approval action has already been approved or rejected.",
    )
    .await;
}

#[tokio::test]
async fn an_unauthorised_approver_causes_no_codepipeline_call() {
    let w = World::new().await;
    let rule = accepted(Default::default());
    let read = waiting();
    let results =
        CodePipelineApprovalResults::new(mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&read, &rule]));
    announced(&w, &results).await;
    let body = slash(
        "U0666",
        &format!("approve checkout-service Production {EXECUTION} ship it"),
    );
    let (status, _) = call(&w.ports(&results), &url_event(&body, Some(now())), now()).await;
    assert_eq!(status, 403);
    assert_eq!(rule.num_calls(), 0);
    assert_eq!(
        w.audit_actions().await,
        vec![("chat:T0001:U0666".to_string(), "approval.refused".to_string())]
    );
}

/// The handler's ports with the real GetPipelineState adapter announcing requests.
async fn deliver(w: &World, pipelines: &CodePipelineApprovals) -> serde_json::Value {
    let results = tollgate_domain::memory::MemoryApprovalResults::new();
    let mut ports = w.ports(&results);
    ports.requests.pipelines = pipelines;
    approval::handler::handle(&sns_event(), &ports, &settings(), now())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_matching_the_waiting_approval_is_announced() {
    let w = World::new().await;
    let read = waiting();
    let pipelines = CodePipelineApprovals::new(mock_client!(aws_sdk_codepipeline, [&read]));
    let out = deliver(&w, &pipelines).await;
    assert_eq!(out["handled"][0]["outcome"], "published", "{out}");
    assert_eq!(read.num_calls(), 1);
    let stored = w.chat.manual_approvals();
    assert_eq!(
        stored[0].execution_id.as_deref(),
        Some(EXECUTION),
        "the execution CodePipeline names"
    );
}

#[tokio::test]
async fn a_forged_request_is_refused_kept_without_token_told_once_and_not_announced() {
    let w = World::new().await;
    // CodePipeline waits at Production / Approve, with another token than the message's.
    let read = state("the-real-token-0123", ActionExecutionStatus::InProgress);
    let pipelines = CodePipelineApprovals::new(mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&read]));
    let first = deliver(&w, &pipelines).await;
    assert_eq!(first["handled"][0]["outcome"], "refused", "{first}");
    let second = deliver(&w, &pipelines).await;
    assert_eq!(second["handled"][0]["outcome"], "refused", "{second}");
    assert_eq!(read.num_calls(), 2);
    assert!(
        w.chat.manual_approvals().is_empty(),
        "not stored, so no decision can use it"
    );
    let sent = w.notifier.sent();
    assert_eq!(sent.len(), 1, "told once");
    assert_eq!(
        sent[0].kind,
        tollgate_domain::tell::notify::NotificationKind::ApprovalRequestRefused
    );
    let kept = w.store.rejected(now().date_naive(), 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].reason.contains("another token"), "{}", kept[0].reason);
    assert!(!kept[0].body.contains(TOKEN), "{}", kept[0].body);
    assert!(!serde_json::to_string(&sent[0]).unwrap().contains(TOKEN));
}

#[tokio::test]
async fn a_request_for_an_approval_that_is_not_in_progress_is_refused() {
    let w = World::new().await;
    let read = state(TOKEN, ActionExecutionStatus::Succeeded);
    let pipelines = CodePipelineApprovals::new(mock_client!(aws_sdk_codepipeline, [&read]));
    let out = deliver(&w, &pipelines).await;
    assert_eq!(out["handled"][0]["outcome"], "refused", "{out}");
    assert!(w.chat.manual_approvals().is_empty());
}

#[tokio::test]
async fn a_decision_after_the_approval_stopped_waiting_sends_nothing() {
    let w = World::new().await;
    let rule = accepted(Default::default());
    // Announced while waiting; decided in the console since: GetPipelineState shows it Succeeded.
    let read = state(TOKEN, ActionExecutionStatus::Succeeded);
    let results =
        CodePipelineApprovalResults::new(mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&read, &rule]));
    announced(&w, &results).await;
    let (status, text) = call(&w.ports(&results), &url_event(&fixture_body(), Some(now())), now()).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("no longer waits"), "{text}");
    assert_eq!((read.num_calls(), rule.num_calls()), (1, 0));
}

//! [`CloudFormationChangeSets`]: the changeset action's side of CloudFormation (DescribeStacks, CreateChangeSet,
//! DescribeChangeSet paged with NextToken, ExecuteChangeSet, DescribeStackEvents), translating the SDK's types into
//! `tollgate_domain::rollback::changeset` values and its errors into transient (a later invocation may succeed) or refused.

use async_trait::async_trait;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetError;
use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetError;
use aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetError;
use aws_sdk_cloudformation::types::{Capability, ChangeSetType, Parameter};
use aws_sdk_cloudformation::Client;
use chrono::{DateTime, Utc};
use tollgate_domain::rollback::changeset::{
    ChangeAction, ChangeDetail, ChangeSetDescription, ChangeSets, NewChangeSet, Replacement, ResourceChange,
    StackApiError, StackState,
};

/// DescribeChangeSet pages read at most (100 changes each): a change set of more than 5000 changes is refused
/// rather than half-reviewed.
const MAX_PAGES: usize = 50;
/// DescribeStackEvents pages read when looking for the failure's reason.
const MAX_EVENT_PAGES: usize = 5;

/// The CloudFormation adapter of [`ChangeSets`].
#[derive(Debug, Clone)]
pub struct CloudFormationChangeSets {
    client: Client,
}

impl CloudFormationChangeSets {
    pub fn new(client: Client) -> Self {
        CloudFormationChangeSets { client }
    }
}

fn api_error<E>(what: &str, err: &SdkError<E>) -> StackApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("CloudFormation {what} failed: {}", DisplayErrorContext(err));
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or_default();
            if code.contains("Throttl") || code == "RequestLimitExceeded" || service.raw().status().is_server_error() {
                StackApiError::Transient(text)
            } else {
                StackApiError::Refused(text)
            }
        }
        _ => StackApiError::Transient(text),
    }
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The SDK's change into the domain's.
pub fn resource_change(r: &aws_sdk_cloudformation::types::ResourceChange) -> ResourceChange {
    ResourceChange {
        logical_id: r.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: r.physical_resource_id().map(str::to_string),
        resource_type: r.resource_type().unwrap_or_default().to_string(),
        action: ChangeAction::from_api(r.action().map(|a| a.as_str()).unwrap_or("")),
        replacement: r.replacement().and_then(|x| Replacement::from_api(x.as_str())),
        scope: r.scope().iter().map(|s| s.as_str().to_string()).collect(),
        details: r
            .details()
            .iter()
            .map(|d| ChangeDetail {
                attribute: d.target().and_then(|t| t.attribute()).map(|a| a.as_str().to_string()),
                name: d.target().and_then(|t| t.name()).map(str::to_string),
                requires_recreation: d
                    .target()
                    .and_then(|t| t.requires_recreation())
                    .map(|r| r.as_str().to_string()),
                change_source: d.change_source().map(|c| c.as_str().to_string()),
                causing_entity: d.causing_entity().map(str::to_string),
            })
            .collect(),
    }
}

#[async_trait]
impl ChangeSets for CloudFormationChangeSets {
    #[tracing::instrument(skip(self))]
    async fn stack(&self, stack: &str) -> Result<Option<StackState>, StackApiError> {
        let out = match self.client.describe_stacks().stack_name(stack).send().await {
            Ok(out) => out,
            // CloudFormation says a missing stack with a ValidationError "Stack with id X does not exist".
            Err(e)
                if e.code() == Some("ValidationError") && e.message().is_some_and(|m| m.contains("does not exist")) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(api_error("DescribeStacks", &e)),
        };
        let Some(s) = out.stacks().first() else { return Ok(None) };
        Ok(Some(StackState {
            stack_id: s.stack_id().unwrap_or_default().to_string(),
            status: s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default(),
            status_reason: s.stack_status_reason().map(str::to_string),
        }))
    }

    #[tracing::instrument(skip_all, fields(stack = %c.stack, change_set = %c.name, create = c.create_stack))]
    async fn create(&self, c: &NewChangeSet) -> Result<bool, StackApiError> {
        let parameters: Vec<Parameter> = c
            .parameters
            .iter()
            .map(|(k, v)| Parameter::builder().parameter_key(k).parameter_value(v).build())
            .collect();
        let capabilities: Vec<Capability> = c.capabilities.iter().map(|x| Capability::from(x.as_str())).collect();
        let result = self
            .client
            .create_change_set()
            .stack_name(&c.stack)
            .change_set_name(&c.name)
            .client_token(&c.name)
            .change_set_type(if c.create_stack {
                ChangeSetType::Create
            } else {
                ChangeSetType::Update
            })
            .template_body(&c.template_body)
            .set_parameters((!parameters.is_empty()).then_some(parameters))
            .set_capabilities((!capabilities.is_empty()).then_some(capabilities))
            .set_role_arn(c.role_arn.clone())
            .description(&c.description)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(CreateChangeSetError::AlreadyExistsException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(api_error("CreateChangeSet", &e)),
        }
    }

    #[tracing::instrument(skip(self))]
    async fn describe(&self, stack: &str, name: &str) -> Result<Option<ChangeSetDescription>, StackApiError> {
        let mut next: Option<String> = None;
        let mut description: Option<ChangeSetDescription> = None;
        for _ in 0..MAX_PAGES {
            let out = match self
                .client
                .describe_change_set()
                .stack_name(stack)
                .change_set_name(name)
                .set_next_token(next.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(DescribeChangeSetError::ChangeSetNotFoundException(_))
                    ) =>
                {
                    return Ok(None)
                }
                // DescribeChangeSet of a stack that does not exist (yet) is a ValidationError, not ChangeSetNotFound.
                Err(e)
                    if e.code() == Some("ValidationError")
                        && e.message().is_some_and(|m| m.contains("does not exist")) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(api_error("DescribeChangeSet", &e)),
            };
            let changes = out
                .changes()
                .iter()
                .filter_map(|c| c.resource_change())
                .map(resource_change);
            let d = description.get_or_insert_with(|| ChangeSetDescription {
                id: out.change_set_id().map(str::to_string),
                name: out.change_set_name().unwrap_or(name).to_string(),
                stack_id: out.stack_id().map(str::to_string),
                status: out.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                status_reason: out.status_reason().map(str::to_string),
                execution_status: out.execution_status().map(|s| s.as_str().to_string()),
                created_at: out.creation_time().and_then(to_chrono),
                changes: Vec::new(),
                next_token: None,
            });
            d.changes.extend(changes);
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(description),
            }
        }
        Err(StackApiError::Refused(format!(
            "change set {name} of stack {stack} has more than {MAX_PAGES} pages of changes; review it in the console"
        )))
    }

    #[tracing::instrument(skip(self))]
    async fn execute(&self, stack: &str, name: &str) -> Result<(), StackApiError> {
        let result = self
            .client
            .execute_change_set()
            .stack_name(stack)
            .change_set_name(name)
            .client_request_token(name)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The same token was used: an earlier invocation executed it.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(ExecuteChangeSetError::TokenAlreadyExistsException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(api_error("ExecuteChangeSet", &e)),
        }
    }

    #[tracing::instrument(skip(self))]
    async fn failure_reason(&self, stack: &str, since: Option<DateTime<Utc>>) -> Result<Option<String>, StackApiError> {
        let mut next: Option<String> = None;
        // Newest first: the last failure seen going back in time is the first one that happened.
        let mut first: Option<String> = None;
        for _ in 0..MAX_EVENT_PAGES {
            let out = self
                .client
                .describe_stack_events()
                .stack_name(stack)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| api_error("DescribeStackEvents", &e))?;
            for e in out.stack_events() {
                let at = e.timestamp().and_then(to_chrono);
                if let (Some(since), Some(at)) = (since, at) {
                    if at < since {
                        return Ok(first);
                    }
                }
                let failed = e.resource_status().is_some_and(|s| s.as_str().ends_with("_FAILED"));
                if let (true, Some(reason)) = (failed, e.resource_status_reason()) {
                    // "Resource creation cancelled" follows the real failure; it is not the reason.
                    if !reason.contains("cancelled") || first.is_none() {
                        first = Some(format!(
                            "{} ({}): {reason}",
                            e.logical_resource_id().unwrap_or("?"),
                            e.resource_type().unwrap_or("?")
                        ));
                    }
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput;
    use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
    use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
    use aws_sdk_cloudformation::operation::describe_stacks::{DescribeStacksError, DescribeStacksOutput};
    use aws_sdk_cloudformation::types::error::{AlreadyExistsException, InsufficientCapabilitiesException};
    use aws_sdk_cloudformation::types::{
        Change, ChangeSetStatus, ExecutionStatus, ResourceAttribute, ResourceChangeDetail, ResourceStatus,
        ResourceTargetDefinition, Stack, StackEvent, StackStatus,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_types::error::ErrorMetadata;

    fn change(logical: &str, kind: &str, action: aws_sdk_cloudformation::types::ChangeAction) -> Change {
        Change::builder()
            .r#type(aws_sdk_cloudformation::types::ChangeType::Resource)
            .resource_change(
                aws_sdk_cloudformation::types::ResourceChange::builder()
                    .logical_resource_id(logical)
                    .resource_type(kind)
                    .action(action)
                    .replacement(aws_sdk_cloudformation::types::Replacement::True)
                    .scope(ResourceAttribute::Properties)
                    .details(
                        ResourceChangeDetail::builder()
                            .target(
                                ResourceTargetDefinition::builder()
                                    .attribute(ResourceAttribute::Properties)
                                    .name("KeySchema")
                                    .requires_recreation(aws_sdk_cloudformation::types::RequiresRecreation::Always)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    #[tokio::test]
    async fn describe_reads_every_page_into_one_change_list() {
        let rule = mock!(Client::describe_change_set)
            .match_requests(|r| {
                r.stack_name() == Some("checkout-infra")
                    && r.change_set_name() == Some("tollgate-e1")
                    && r.next_token().is_none()
            })
            .then_output(|| {
                DescribeChangeSetOutput::builder()
                    .change_set_name("tollgate-e1")
                    .change_set_id("arn:cs")
                    .status(ChangeSetStatus::CreateComplete)
                    .execution_status(ExecutionStatus::Available)
                    .changes(change(
                        "OrdersTable",
                        "AWS::DynamoDB::Table",
                        aws_sdk_cloudformation::types::ChangeAction::Modify,
                    ))
                    .next_token("page-2")
                    .build()
            });
        let second_page = mock!(Client::describe_change_set)
            .match_requests(|r| r.stack_name() == Some("checkout-infra") && r.next_token() == Some("page-2"))
            .then_output(|| {
                DescribeChangeSetOutput::builder()
                    .change_set_name("tollgate-e1")
                    .status(ChangeSetStatus::CreateComplete)
                    .changes(change(
                        "Old",
                        "AWS::SNS::Topic",
                        aws_sdk_cloudformation::types::ChangeAction::Remove,
                    ))
                    .build()
            });
        let client = mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, [&rule, &second_page]);
        let d = CloudFormationChangeSets::new(client)
            .describe("checkout-infra", "tollgate-e1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.status, "CREATE_COMPLETE");
        assert_eq!(d.execution_status.as_deref(), Some("AVAILABLE"));
        assert_eq!(d.changes.len(), 2);
        assert_eq!(d.changes[0].replacement, Some(Replacement::True));
        assert_eq!(d.changes[0].details[0].name.as_deref(), Some("KeySchema"));
        assert_eq!(d.changes[0].details[0].requires_recreation.as_deref(), Some("Always"));
        assert_eq!(d.changes[1].action, ChangeAction::Remove);
        assert_eq!((rule.num_calls(), second_page.num_calls()), (1, 1));
    }

    fn new_change_set(create_stack: bool) -> NewChangeSet {
        let mut parameters = BTreeMap::new();
        parameters.insert("Environment".to_string(), "production".to_string());
        NewChangeSet {
            stack: "checkout-infra".into(),
            name: "tollgate-e1".into(),
            template_body: "Resources: {}".into(),
            parameters,
            capabilities: vec!["CAPABILITY_IAM".into()],
            role_arn: None,
            create_stack,
            description: "Tollgate review".into(),
        }
    }

    #[tokio::test]
    async fn create_sends_type_parameters_and_capabilities_and_an_existing_one_is_not_an_error() {
        let rule = mock!(Client::create_change_set)
            .match_requests(|r| {
                r.stack_name() == Some("checkout-infra")
                    && r.change_set_name() == Some("tollgate-e1")
                    && r.client_token() == Some("tollgate-e1")
                    && r.change_set_type() == Some(&ChangeSetType::Update)
                    && r.template_body() == Some("Resources: {}")
                    && r.capabilities() == [Capability::CapabilityIam]
                    && r.parameters().len() == 1
                    && r.parameters()[0].parameter_key() == Some("Environment")
                    && r.parameters()[0].parameter_value() == Some("production")
            })
            .sequence()
            .output(|| CreateChangeSetOutput::builder().id("arn:cs").build())
            .error(|| CreateChangeSetError::AlreadyExistsException(AlreadyExistsException::builder().build()))
            .build();
        let client = mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, [&rule]);
        let cfn = CloudFormationChangeSets::new(client);
        assert!(cfn.create(&new_change_set(false)).await.unwrap());
        assert!(!cfn.create(&new_change_set(false)).await.unwrap());
        assert_eq!(rule.num_calls(), 2);

        let refused = mock!(Client::create_change_set)
            .match_requests(|r| r.change_set_type() == Some(&ChangeSetType::Create))
            .then_error(|| {
                CreateChangeSetError::InsufficientCapabilitiesException(
                    InsufficientCapabilitiesException::builder()
                        .message("Requires capabilities : [CAPABILITY_NAMED_IAM]")
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, [&refused]);
        let err = CloudFormationChangeSets::new(client)
            .create(&new_change_set(true))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StackApiError::Refused(m) if m.contains("CAPABILITY_NAMED_IAM")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_stack_is_none_and_an_existing_one_gives_its_status() {
        let rule = mock!(Client::describe_stacks)
            .sequence()
            .error(|| {
                DescribeStacksError::generic(
                    ErrorMetadata::builder()
                        .code("ValidationError")
                        .message("Stack with id checkout-infra does not exist")
                        .build(),
                )
            })
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(
                        Stack::builder()
                            .stack_id("arn:stack")
                            .stack_name("checkout-infra")
                            .stack_status(StackStatus::UpdateComplete)
                            .build(),
                    )
                    .build()
            })
            .build();
        let client = mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, [&rule]);
        let cfn = CloudFormationChangeSets::new(client);
        assert_eq!(cfn.stack("checkout-infra").await.unwrap(), None);
        assert_eq!(
            cfn.stack("checkout-infra").await.unwrap().unwrap().status,
            "UPDATE_COMPLETE"
        );
    }

    #[tokio::test]
    async fn the_first_failure_since_the_execution_is_the_reason() {
        let at = |s: i64| aws_smithy_types::DateTime::from_secs(s);
        let rule = mock!(Client::describe_stack_events).then_output(move || {
            let event = |id: &str, status: ResourceStatus, reason: &str, t: i64| {
                StackEvent::builder()
                    .logical_resource_id(id)
                    .resource_type("AWS::DynamoDB::Table")
                    .resource_status(status)
                    .resource_status_reason(reason)
                    .timestamp(at(t))
                    .build()
            };
            DescribeStackEventsOutput::builder()
                .stack_events(event(
                    "checkout-infra",
                    ResourceStatus::UpdateFailed,
                    "later",
                    1_000_300,
                ))
                .stack_events(event(
                    "Queue",
                    ResourceStatus::UpdateFailed,
                    "Resource update cancelled",
                    1_000_200,
                ))
                .stack_events(event(
                    "OrdersTable",
                    ResourceStatus::UpdateFailed,
                    "Table already exists",
                    1_000_100,
                ))
                .stack_events(event(
                    "Old",
                    ResourceStatus::CreateFailed,
                    "before this execution",
                    900_000,
                ))
                .build()
        });
        let client = mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, [&rule]);
        let reason = CloudFormationChangeSets::new(client)
            .failure_reason("checkout-infra", DateTime::from_timestamp(1_000_000, 0))
            .await
            .unwrap();
        assert_eq!(
            reason.as_deref(),
            Some("OrdersTable (AWS::DynamoDB::Table): Table already exists")
        );
    }
}

//! [`ResourceGroupsTaggingAlarms`]: the names of the CloudWatch alarms that carry a policy's `alarms.tags`, from the
//! Resource Groups Tagging API (`tag:GetResources`, resource type `cloudwatch:alarm`), in the client's region.
//!
//! The gate combines it with [`crate::cloudwatch::CloudWatchAlarms`] through
//! [`tollgate_domain::gate::TaggedAlarms`]: names from here, states from DescribeAlarms. Every failure is a
//! [`FactError`] naming the operation and the service's error code; the policy decides whether it fails the gate.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_resourcegroupstagging::error::{DisplayErrorContext, SdkError};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use aws_sdk_resourcegroupstagging::Client;
use tollgate_domain::gate::{AlarmsByTags, FactError};

/// The resource type filter of CloudWatch alarms (metric and composite alike).
pub const ALARM_RESOURCE_TYPE: &str = "cloudwatch:alarm";
/// GetResources returns at most 100 resources per page.
const RESOURCES_PER_PAGE: i32 = 100;
/// Pages read at most: 100 pages are 10,000 alarms, far more than a gate can mean; more is a runaway selection.
const MAX_PAGES: usize = 100;

/// The alarm name in a CloudWatch alarm ARN, `arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>`. Alarm
/// names may themselves contain `:`, so everything after `alarm:` is the name.
pub fn alarm_name_of(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    match parts.as_slice() {
        ["arn", _, "cloudwatch", _, _, "alarm", name] if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// Alarm names by tags over GetResources.
#[derive(Debug, Clone)]
pub struct ResourceGroupsTaggingAlarms {
    client: Client,
}

impl ResourceGroupsTaggingAlarms {
    pub fn new(client: Client) -> Self {
        ResourceGroupsTaggingAlarms { client }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }
}

#[async_trait]
impl AlarmsByTags for ResourceGroupsTaggingAlarms {
    #[tracing::instrument(skip_all, fields(tags = tags.len()))]
    async fn alarms_tagged(&self, tags: &BTreeMap<String, String>) -> Result<Vec<String>, FactError> {
        // One filter per key, each with its one value: GetResources ANDs the keys.
        let filters: Vec<TagFilter> = tags
            .iter()
            .map(|(key, value)| TagFilter::builder().key(key).values(value).build())
            .collect();
        let mut names: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .get_resources()
                .resource_type_filters(ALARM_RESOURCE_TYPE)
                .set_tag_filters(Some(filters.clone()))
                .resources_per_page(RESOURCES_PER_PAGE)
                .set_pagination_token(token.take())
                .send()
                .await
                .map_err(|e| failed(&e))?;
            for mapping in out.resource_tag_mapping_list() {
                let arn = mapping.resource_arn().unwrap_or_default();
                let name = alarm_name_of(arn).ok_or_else(|| {
                    FactError(format!(
                        "tag:GetResources returned {arn:?} for resource type {ALARM_RESOURCE_TYPE}, which is not a \
                         CloudWatch alarm ARN"
                    ))
                })?;
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            // The last page has an empty token.
            match out.pagination_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => {
                    tracing::debug!(found = names.len(), "tagged alarms found");
                    return Ok(names);
                }
            }
        }
        Err(FactError(format!(
            "tag:GetResources still had more alarms after {MAX_PAGES} pages ({} alarms): narrow alarms.tags",
            names.len()
        )))
    }
}

fn failed<E>(err: &SdkError<E>) -> FactError
where
    E: std::error::Error + 'static,
{
    FactError(format!("tag:GetResources failed: {}", DisplayErrorContext(err)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_resourcegroupstagging::operation::get_resources::{GetResourcesError, GetResourcesOutput};
    use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_types::error::ErrorMetadata;

    fn arn(name: &str) -> String {
        format!("arn:aws:cloudwatch:eu-west-1:111122223333:alarm:{name}")
    }

    fn page(names: &[&str], token: &str) -> GetResourcesOutput {
        let mut out = GetResourcesOutput::builder().pagination_token(token);
        for n in names {
            out = out.resource_tag_mapping_list(ResourceTagMapping::builder().resource_arn(arn(n)).build());
        }
        out.build()
    }

    fn tags() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("service".to_string(), "checkout".to_string()),
            ("team".to_string(), "payments".to_string()),
        ])
    }

    #[tokio::test]
    async fn get_resources_asks_for_alarms_with_every_tag_and_follows_the_pages() {
        let exact = |r: &aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesInput| {
            let filters: Vec<(Option<&str>, &[String])> =
                r.tag_filters().iter().map(|f| (f.key(), f.values())).collect();
            r.resource_type_filters() == ["cloudwatch:alarm"]
                && filters
                    == [
                        (Some("service"), &["checkout".to_string()][..]),
                        (Some("team"), &["payments".to_string()][..]),
                    ]
                && r.resources_per_page() == Some(100)
                && r.tags_per_page().is_none()
                && r.resource_arn_list().is_empty()
        };
        let first = mock!(Client::get_resources)
            .match_requests(move |r| exact(r) && r.pagination_token().is_none())
            .then_output(|| page(&["checkout-5xx", "checkout:latency:p99"], "page-2"));
        let second = mock!(Client::get_resources)
            .match_requests(move |r| exact(r) && r.pagination_token() == Some("page-2"))
            .then_output(|| page(&["checkout-errors", "checkout-5xx"], ""));
        let client = mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, [&first, &second]);
        let names = ResourceGroupsTaggingAlarms::new(client)
            .alarms_tagged(&tags())
            .await
            .unwrap();
        assert_eq!(names, ["checkout-5xx", "checkout:latency:p99", "checkout-errors"]);
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn no_tagged_alarm_is_an_empty_answer_in_one_request() {
        let rule = mock!(Client::get_resources).then_output(|| page(&[], ""));
        let client = mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, [&rule]);
        let names = ResourceGroupsTaggingAlarms::new(client)
            .alarms_tagged(&tags())
            .await
            .unwrap();
        assert!(names.is_empty());
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn get_resources_errors_name_the_operation_and_the_code() {
        let rule = mock!(Client::get_resources).then_error(|| {
            GetResourcesError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform tag:GetResources")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, [&rule]);
        let err = ResourceGroupsTaggingAlarms::new(client)
            .alarms_tagged(&tags())
            .await
            .unwrap_err();
        assert!(
            err.0.starts_with("tag:GetResources failed") && err.0.contains("AccessDeniedException"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_resource_that_is_not_an_alarm_is_an_error_not_a_skipped_alarm() {
        let rule = mock!(Client::get_resources).then_output(|| {
            GetResourcesOutput::builder()
                .resource_tag_mapping_list(
                    ResourceTagMapping::builder()
                        .resource_arn("arn:aws:sns:eu-west-1:111122223333:topic")
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, [&rule]);
        let err = ResourceGroupsTaggingAlarms::new(client)
            .alarms_tagged(&tags())
            .await
            .unwrap_err();
        assert!(err.0.contains("not a CloudWatch alarm ARN"), "{err}");
    }

    #[test]
    fn alarm_names_are_read_from_arns() {
        assert_eq!(alarm_name_of(&arn("a:b:c")), Some("a:b:c"));
        assert_eq!(alarm_name_of("arn:aws-cn:cloudwatch:cn-north-1:1:alarm:x"), Some("x"));
        assert_eq!(alarm_name_of("arn:aws:cloudwatch:eu-west-1:1:alarm:"), None);
        assert_eq!(alarm_name_of("arn:aws:cloudwatch:eu-west-1:1:dashboard/x"), None);
    }
}

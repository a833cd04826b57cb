//! [`CodePipelineTags`]: what Tollgate knows of a pipeline beyond its events (its team and its production stages),
//! read from the pipeline's tags with CodePipeline `ListTagsForResource`.
//!
//! Teams tag their pipelines: `team` (the tag name is configurable) names the owning team, and
//! `tollgate:production-stages` lists the production stage names, comma separated, in order of preference. A pipeline
//! this function cannot read gets the default configuration with a warning, never a failed run: in a hub-and-spoke
//! install the pipelines of member accounts are not readable without a role in each of them, and a pipeline may have
//! been deleted since its executions were recorded.

use aws_sdk_codepipeline::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_codepipeline::Client;
use tollgate_domain::measure::metrics::PipelineConfig;

/// The tag that names a pipeline's team unless configured otherwise (`TOLLGATE_TEAM_TAG`).
pub const DEFAULT_TEAM_TAG: &str = "team";
/// The tag that lists a pipeline's production stage names, comma separated, in order of preference.
pub const PRODUCTION_STAGES_TAG: &str = "tollgate:production-stages";

/// Error codes that mean "this function may not or cannot read that pipeline's tags": no retry changes them, so the
/// pipeline gets the default configuration. `AccessDenied*`: a pipeline of another account (or region) that the role
/// may not read; `ResourceNotFound`: the pipeline was deleted; `InvalidArn`/`Validation`: a name CodePipeline does
/// not accept in an ARN.
const UNREADABLE_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "ResourceNotFoundException",
    "InvalidArnException",
    "ValidationException",
];

/// Tags could not be read for a reason worth a retry of the whole run (throttling, a timeout, a 5xx, credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CodePipeline ListTagsForResource of {arn} failed: {message}; the run can be retried")]
pub struct TagsError {
    pub arn: String,
    pub message: String,
}

/// Reads pipeline configurations from CodePipeline tags, in the client's region.
#[derive(Debug, Clone)]
pub struct CodePipelineTags {
    client: Client,
    team_tag: String,
}

impl CodePipelineTags {
    /// `team_tag`: the tag whose value is the pipeline's team ([`DEFAULT_TEAM_TAG`] unless configured).
    pub fn new(client: Client, team_tag: impl Into<String>) -> Self {
        CodePipelineTags {
            client,
            team_tag: team_tag.into(),
        }
    }

    pub fn team_tag(&self) -> &str {
        &self.team_tag
    }

    /// The configuration of one pipeline from its tags. One request per call (more only if CodePipeline pages the
    /// tags); callers that look a pipeline up more than once in a run should keep the answer.
    ///
    /// A pipeline outside the client's region is not asked for (a regional endpoint does not answer for another
    /// region's ARN); it gets the default configuration, as does a pipeline the function may not or cannot read.
    #[tracing::instrument(skip(self), fields(team_tag = %self.team_tag))]
    pub async fn pipeline_config(
        &self,
        account: &str,
        region: &str,
        pipeline: &str,
    ) -> Result<PipelineConfig, TagsError> {
        let arn = pipeline_arn(account, region, pipeline);
        if let Some(own) = self.client.config().region() {
            if own.as_ref() != region {
                tracing::warn!(
                    arn,
                    function_region = own.as_ref(),
                    "pipeline in another region: its tags are not read; using the default configuration"
                );
                return Ok(PipelineConfig::default());
            }
        }
        let mut tags: Vec<(String, String)> = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let result = self
                .client
                .list_tags_for_resource()
                .resource_arn(&arn)
                .set_next_token(next_token.take())
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(err) => {
                    if let Some(code) = unreadable(&err) {
                        tracing::warn!(
                            arn,
                            code,
                            message = err.message().unwrap_or(""),
                            "cannot read the pipeline's tags; using the default configuration (no team, default \
                             production stage)"
                        );
                        return Ok(PipelineConfig::default());
                    }
                    return Err(TagsError {
                        arn,
                        message: DisplayErrorContext(&err).to_string(),
                    });
                }
            };
            tags.extend(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())));
            match out.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
        let config = config_from_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), &self.team_tag);
        tracing::debug!(arn, team = config.team.as_deref(), stages = ?config.production_stages, "pipeline tags read");
        Ok(config)
    }
}

/// The error code when `err` says the pipeline cannot be read by this function at all.
fn unreadable<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(_) => err.code().filter(|code| UNREADABLE_CODES.contains(code)),
        _ => None,
    }
}

/// `arn:aws:codepipeline:<region>:<account>:<pipeline>`.
pub fn pipeline_arn(account: &str, region: &str, pipeline: &str) -> String {
    format!("arn:{}:codepipeline:{region}:{account}:{pipeline}", partition(region))
}

/// The partition of a region: pipeline ARNs in China and GovCloud regions are not `arn:aws:`.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A pipeline's configuration from its tags: the team tag's value (trimmed; blank means none), and the production
/// stage names (comma separated, trimmed, blanks and repeats dropped, order kept).
pub fn config_from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>, team_tag: &str) -> PipelineConfig {
    let mut config = PipelineConfig::default();
    for (key, value) in tags {
        if key == team_tag {
            let team = value.trim();
            config.team = (!team.is_empty()).then(|| team.to_string());
        } else if key == PRODUCTION_STAGES_TAG {
            config.production_stages.clear();
            for stage in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !config.production_stages.iter().any(|s| s == stage) {
                    config.production_stages.push(stage.to_string());
                }
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codepipeline::config::retry::RetryConfig;
    use aws_sdk_codepipeline::config::Region;
    use aws_sdk_codepipeline::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_codepipeline::types::Tag;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    const ARN: &str = "arn:aws:codepipeline:eu-west-1:111122223333:checkout-service";

    fn tags(rules: &[&Rule]) -> CodePipelineTags {
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, rules, |b| b
            .region(Region::new("eu-west-1"))
            .retry_config(RetryConfig::disabled()));
        CodePipelineTags::new(client, DEFAULT_TEAM_TAG)
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag::builder().key(key).value(value).build().unwrap()
    }

    /// An error answer as CodePipeline (JSON 1.1 protocol) sends it.
    fn error_rule(status: u16, code: &str, message: &str) -> Rule {
        let body = serde_json::json!({ "__type": code, "message": message }).to_string();
        mock!(Client::list_tags_for_resource)
            .sequence()
            .http_status(status, Some(body))
            .build()
    }

    #[tokio::test]
    async fn team_and_production_stages_come_from_the_tags() {
        let rule = mock!(Client::list_tags_for_resource)
            .match_requests(|req| req.resource_arn() == Some(ARN) && req.next_token().is_none())
            .then_output(|| {
                ListTagsForResourceOutput::builder()
                    .tags(tag("team", " payments "))
                    .tags(tag("tollgate:production-stages", "Production, Prod-EU,,Production"))
                    .tags(tag("cost-center", "42"))
                    .build()
            });
        let config = tags(&[&rule])
            .pipeline_config("111122223333", "eu-west-1", "checkout-service")
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(
            config,
            PipelineConfig {
                team: Some("payments".into()),
                production_stages: vec!["Production".into(), "Prod-EU".into()],
            }
        );
    }

    #[tokio::test]
    async fn a_pipeline_without_tags_gets_the_default_configuration() {
        let rule = mock!(Client::list_tags_for_resource)
            .match_requests(|req| req.resource_arn() == Some(ARN))
            .then_output(|| ListTagsForResourceOutput::builder().build());
        let config = tags(&[&rule])
            .pipeline_config("111122223333", "eu-west-1", "checkout-service")
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(config, PipelineConfig::default());
    }

    #[tokio::test]
    async fn access_denied_gives_the_default_configuration_not_an_error() {
        // A pipeline of a member account: the control plane's role may not read it.
        let arn = "arn:aws:codepipeline:eu-west-1:444455556666:orders";
        let message = format!(
            "User: arn:aws:sts::111122223333:assumed-role/metrics/fn is not authorized to perform: \
             codepipeline:ListTagsForResource on resource: {arn}"
        );
        let rule = error_rule(400, "AccessDeniedException", &message);
        let config = tags(&[&rule])
            .pipeline_config("444455556666", "eu-west-1", "orders")
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(config, PipelineConfig::default());
    }

    #[tokio::test]
    async fn a_deleted_pipeline_gives_the_default_configuration() {
        let rule = error_rule(400, "ResourceNotFoundException", "The pipeline does not exist");
        let config = tags(&[&rule])
            .pipeline_config("111122223333", "eu-west-1", "checkout-service")
            .await
            .unwrap();
        assert_eq!((rule.num_calls(), config), (1, PipelineConfig::default()));
    }

    #[tokio::test]
    async fn throttling_is_an_error_that_names_the_pipeline() {
        let rule = error_rule(400, "ThrottlingException", "Rate exceeded");
        let err = tags(&[&rule])
            .pipeline_config("111122223333", "eu-west-1", "checkout-service")
            .await
            .unwrap_err();
        assert_eq!(err.arn, ARN);
        assert!(err.to_string().contains("ThrottlingException"), "{err}");
    }

    #[tokio::test]
    async fn tags_are_read_across_pages() {
        let first = mock!(Client::list_tags_for_resource)
            .match_requests(|req| req.next_token().is_none())
            .then_output(|| {
                ListTagsForResourceOutput::builder()
                    .tags(tag("team", "payments"))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(Client::list_tags_for_resource)
            .match_requests(|req| req.next_token() == Some("page-2"))
            .then_output(|| {
                ListTagsForResourceOutput::builder()
                    .tags(tag("tollgate:production-stages", "Live"))
                    .build()
            });
        let config = tags(&[&first, &second])
            .pipeline_config("111122223333", "eu-west-1", "checkout-service")
            .await
            .unwrap();
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
        assert_eq!(config.team.as_deref(), Some("payments"));
        assert_eq!(config.production_stages, ["Live"]);
    }

    #[tokio::test]
    async fn a_pipeline_in_another_region_is_not_asked_for() {
        // Sequential mode with no rule: any request would fail the call.
        let config = tags(&[])
            .pipeline_config("111122223333", "us-east-1", "checkout-service")
            .await
            .unwrap();
        assert_eq!(config, PipelineConfig::default());
    }

    #[test]
    fn blank_team_is_no_team_and_the_team_tag_name_is_configurable() {
        let config = config_from_tags([("team", "  "), ("owner", "search")], "team");
        assert_eq!(config.team, None);
        let config = config_from_tags([("team", "payments"), ("owner", "search")], "owner");
        assert_eq!(config.team.as_deref(), Some("search"));
    }

    #[test]
    fn arns_carry_the_partition_of_the_region() {
        assert_eq!(pipeline_arn("111122223333", "eu-west-1", "checkout-service"), ARN);
        assert_eq!(
            pipeline_arn("111122223333", "cn-north-1", "p"),
            "arn:aws-cn:codepipeline:cn-north-1:111122223333:p"
        );
    }
}

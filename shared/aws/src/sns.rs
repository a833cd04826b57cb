//! [`SnsNotifier`]: publishes each notification once to one SNS topic, in a form every kind of subscriber reads.
//!
//! The message is a per-protocol JSON document (`MessageStructure=json`): chat and program subscribers (SQS, Lambda,
//! HTTPS, the default, and so Amazon Q Developer in chat applications) get the custom notification document, email
//! subscribers get plain text. Message attributes carry what subscription filter policies select on.

use async_trait::async_trait;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use serde_json::json;
use tollgate_domain::tell::notify::Notification;
use tollgate_domain::tell::ports::{Notifier, NotifyError};

/// The SNS adapter of [`Notifier`].
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

/// The `Message` of a `MessageStructure=json` publish: one text per protocol.
pub(crate) fn message(n: &Notification) -> String {
    let chat = n.chat_message().to_string();
    json!({
        "default": chat,
        "sqs": chat,
        "lambda": chat,
        "https": chat,
        "email": n.email_text(),
        "email-json": chat,
    })
    .to_string()
}

/// Message attributes for subscription filter policies. SNS refuses empty string values, so empty ones are left out.
pub(crate) fn attributes(n: &Notification) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("kind", n.kind.as_str().to_string()),
        ("severity", n.severity.as_str().to_string()),
        ("account", n.account.clone()),
        ("region", n.region.clone()),
    ];
    if let Some(pipeline) = &n.pipeline {
        out.push(("pipeline", pipeline.clone()));
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

#[async_trait]
impl Notifier for SnsNotifier {
    #[tracing::instrument(skip_all, fields(topic = %self.topic_arn, key = %notification.key, kind = notification.kind.as_str()))]
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message_structure("json")
            .message(message(notification))
            .subject(notification.email_subject());
        for (name, value) in attributes(notification) {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| NotifyError(format!("SNS Publish to {}: attribute {name}: {e}", self.topic_arn)))?;
            request = request.message_attributes(name, value);
        }
        let out = request.send().await.map_err(|e| {
            NotifyError(format!(
                "SNS Publish of notification {} to {} failed: {}",
                notification.key,
                self.topic_arn,
                DisplayErrorContext(&e)
            ))
        })?;
        tracing::info!(message_id = out.message_id().unwrap_or("?"), "notification published");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sns::operation::publish::PublishOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use tollgate_domain::tell::notify::{NotificationKind, Severity};

    fn notification(pipeline: Option<&str>) -> Notification {
        Notification {
            key: "execution_failed#2026-11-20T09:25:01Z".into(),
            kind: NotificationKind::ExecutionFailed,
            severity: Severity::Critical,
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: pipeline.map(str::to_string),
            thread: "exec-1".into(),
            title: "checkout-service failed in Production".into(),
            lines: vec!["Deploy failed: *JobFailed*".into()],
            next_steps: vec!["Open the deployment".into()],
            link: Some("https://example.com".into()),
            resources: vec![],
        }
    }

    #[test]
    fn message_has_a_text_per_protocol() {
        let n = notification(Some("checkout-service"));
        let doc: serde_json::Value = serde_json::from_str(&message(&n)).unwrap();
        let chat = n.chat_message();
        for protocol in ["default", "sqs", "lambda", "https", "email-json"] {
            let text = doc[protocol]
                .as_str()
                .unwrap_or_else(|| panic!("{protocol} is not a string"));
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(text).unwrap(),
                chat,
                "{protocol}"
            );
        }
        assert_eq!(doc["email"].as_str().unwrap(), n.email_text());
    }

    #[test]
    fn pipeline_attribute_only_when_known() {
        let names = |n: &Notification| attributes(n).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(&notification(Some("p"))),
            ["kind", "severity", "account", "region", "pipeline"]
        );
        assert_eq!(names(&notification(None)), ["kind", "severity", "account", "region"]);
    }

    #[tokio::test]
    async fn publish_sends_json_structure_subject_and_attributes() {
        let n = notification(Some("checkout-service"));
        let expected_subject = n.email_subject();
        let rule = mock!(Client::publish)
            .match_requests(move |req| {
                let attrs = req.message_attributes().cloned().unwrap_or_default();
                let attr = |k: &str| attrs.get(k).and_then(|v| v.string_value()).map(str::to_string);
                req.topic_arn() == Some("arn:aws:sns:eu-west-1:111122223333:tollgate")
                    && req.message_structure() == Some("json")
                    && req.subject() == Some(expected_subject.as_str())
                    && attrs.values().all(|v| v.data_type() == "String")
                    && attr("kind").as_deref() == Some("execution_failed")
                    && attr("severity").as_deref() == Some("critical")
                    && attr("account").as_deref() == Some("111122223333")
                    && attr("region").as_deref() == Some("eu-west-1")
                    && attr("pipeline").as_deref() == Some("checkout-service")
            })
            .then_output(|| PublishOutput::builder().message_id("m-1").build());
        let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule]);
        let notifier = SnsNotifier::new(client, "arn:aws:sns:eu-west-1:111122223333:tollgate");
        notifier.publish(&n).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn publish_failure_names_the_topic_and_the_reason() {
        let rule = mock!(Client::publish)
            .sequence()
            .http_status(
                403,
                Some(
                    r#"<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code><Message>not allowed to publish</Message></Error></ErrorResponse>"#
                        .into(),
                ),
            )
            .build();
        let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule]);
        let notifier = SnsNotifier::new(client, "arn:aws:sns:eu-west-1:111122223333:tollgate");
        let err = notifier.publish(&notification(None)).await.unwrap_err();
        assert!(err.0.contains("arn:aws:sns:eu-west-1:111122223333:tollgate"), "{err}");
        assert!(err.0.contains("AuthorizationError"), "{err}");
    }
}

//! `tollgate dlq`: listing and redriving the ingest queue's dead-letter queue on the local endpoint.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use tollgate::dlq;
use tollgate::local::{self, Names};
use tollgate::template::Template;
use tollgate_integration_tests::{local_clients, unique_prefix, workspace};

#[tokio::test]
async fn redrive_moves_every_dead_letter_back_with_its_body_and_attributes() {
    let Some(c) = local_clients("dlq").await else {
        return;
    };
    let template = Template::load(&workspace("infra/template.yaml")).expect("template");
    let env = local::provision(&c, &template, &Names::with_prefix(&unique_prefix("dlq")))
        .await
        .expect("provisioned");
    let bodies: Vec<String> = (0..23)
        .map(|i| format!(r#"{{"source":"aws.codepipeline","detail-type":"CodePipeline Pipeline Execution State Change","n":{i}}}"#))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        c.sqs
            .send_message()
            .queue_url(&env.dlq_url)
            .message_body(body)
            .message_attributes(
                "origin",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(format!("o-{i}"))
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("sent to the DLQ");
    }

    let listed = dlq::list(&c.sqs, &env.dlq_url, usize::MAX).await.expect("list");
    assert_eq!(listed.len(), 23);
    assert!(listed
        .iter()
        .all(|d| d.summary == "aws.codepipeline / CodePipeline Pipeline Execution State Change"));
    // Listing hid nothing: the redrive right after finds every message.
    assert_eq!(dlq::depth(&c.sqs, &env.dlq_url).await.expect("depth"), 23);

    let source = dlq::source_queue(&c.sqs, &env.dlq_url).await.expect("source queue");
    assert_eq!(source.rsplit('/').next(), env.queue_url.rsplit('/').next());
    let first = dlq::redrive(&c.sqs, &env.dlq_url, &env.queue_url, Some(5))
        .await
        .expect("redrive");
    assert_eq!(first.moved, 5, "--max is honoured");
    let rest = dlq::redrive(&c.sqs, &env.dlq_url, &env.queue_url, None)
        .await
        .expect("redrive");
    assert_eq!((rest.moved, rest.send_failures, rest.delete_failures), (18, 0, 0));
    assert_eq!(dlq::depth(&c.sqs, &env.dlq_url).await.expect("depth"), 0);

    let mut back: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let got = c
            .sqs
            .receive_message()
            .queue_url(&env.queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let origin = m
                .message_attributes()
                .and_then(|a| a.get("origin"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            back.insert(origin, m.body().unwrap_or_default().to_string());
            c.sqs
                .delete_message()
                .queue_url(&env.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    let want: BTreeMap<String, String> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("o-{i}"), b.clone()))
        .collect();
    assert_eq!(back, want, "same bodies, same attributes, each once");

    let attrs = c
        .sqs
        .get_queue_attributes()
        .queue_url(&env.queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .expect("attributes");
    assert!(attrs
        .attributes()
        .is_some_and(|a| a.contains_key(&QueueAttributeName::RedrivePolicy)));
}

/// An empty receive does not end a redrive while the queue's counts still show messages: the ones another consumer
/// held in flight come back after their visibility timeout and are moved too.
#[tokio::test]
async fn redrive_keeps_receiving_until_the_counts_say_the_queue_is_empty() {
    let Some(c) = local_clients("dlq-inflight").await else {
        return;
    };
    let template = Template::load(&workspace("infra/template.yaml")).expect("template");
    let env = local::provision(&c, &template, &Names::with_prefix(&unique_prefix("dlqin")))
        .await
        .expect("provisioned");
    for i in 0..14 {
        c.sqs
            .send_message()
            .queue_url(&env.dlq_url)
            .message_body(format!(r#"{{"n":{i}}}"#))
            .send()
            .await
            .expect("sent to the DLQ");
    }
    // Another consumer holds some in flight for a second: at first, receives find none of them.
    let held = c
        .sqs
        .receive_message()
        .queue_url(&env.dlq_url)
        .max_number_of_messages(4)
        .visibility_timeout(1)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
        .len() as u64;
    assert!(held > 0);

    let listed = dlq::list(&c.sqs, &env.dlq_url, usize::MAX).await.expect("list");
    assert!(listed.len() as u64 >= 14 - held, "{} listed", listed.len());
    let moved = dlq::redrive(&c.sqs, &env.dlq_url, &env.queue_url, None)
        .await
        .expect("redrive");
    assert_eq!(
        (moved.moved, moved.send_failures, moved.delete_failures),
        (14, 0, 0),
        "the held messages were waited for and moved"
    );
    assert_eq!(dlq::depth(&c.sqs, &env.dlq_url).await.expect("depth"), 0);
}

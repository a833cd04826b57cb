//! `DynamoDbBaselines` against a real DynamoDB API (moto server): nothing published reads as no baseline, a
//! published baseline reads back as written, a newer publication replaces it, and the gate's `apply_baseline` refuses
//! a loosening read from the table. Runs only when `TOLLGATE_TEST_ENDPOINT` is set; otherwise prints SKIPPED.

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_dynamodb::Client;
use chrono::{TimeZone, Utc};
use tollgate_aws::baselines::{DynamoDbBaselines, BASELINE_SK};
use tollgate_domain::gate::policy::{apply_baseline, parse_policy, BaselineSource, GateSite, MemoryPipelineTags};

async fn fixture(test: &str) -> Option<(Client, String)> {
    let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
        println!("SKIPPED: set TOLLGATE_TEST_ENDPOINT to run {test} against a local DynamoDB");
        return None;
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tollgate-test"))
        .build();
    let client = Client::from_conf(config);
    let table = format!(
        "tollgate-{test}-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
    .replace('_', "-");
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, k| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(k)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("CreateTable");
    Some((client, table))
}

const BASE: &str = "version: 1\nname: org\nmax_wait: 6h\nbake:\n  after_stage: Staging\n  duration: 2h\n";

#[tokio::test]
async fn a_published_baseline_reads_back_and_the_newest_publication_wins() {
    let Some((client, table)) = fixture("baseline_store").await else {
        return;
    };
    let store = DynamoDbBaselines::new(client.clone(), &table, "default");
    assert_eq!(
        store.active_baseline().await.unwrap(),
        None,
        "nothing published: no baseline"
    );

    let at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
    store
        .publish(BASE, "arn:aws:sts::111122223333:assumed-role/Platform/ana", at)
        .await
        .unwrap();
    let read = store.active_baseline().await.unwrap().expect("published");
    assert_eq!((read.name.as_str(), read.text.as_str()), ("default", BASE));
    assert_eq!(read.published_at, at);
    assert_eq!(read.published_by, "arn:aws:sts::111122223333:assumed-role/Platform/ana");

    // The item is where the template's LeadingKeys conditions expect it.
    let item = client
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("BASELINE#default".into()),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(BASELINE_SK.into()))
        .send()
        .await
        .unwrap();
    assert!(item.item.is_some());

    let newer = BASE.replace("duration: 2h", "duration: 3h");
    store
        .publish(&newer, "arn:aws:iam::111122223333:role/Platform", at)
        .await
        .unwrap();
    assert_eq!(store.active_baseline().await.unwrap().unwrap().text, newer);
    // Another name is another baseline.
    let other = DynamoDbBaselines::new(client.clone(), &table, "strict");
    assert_eq!(other.active_baseline().await.unwrap(), None);

    // The gate's merge, reading the table: a shorter bake is refused, naming the field.
    let text = "version: 1\nname: p\nmax_wait: 1h\nbake:\n  after_stage: Staging\n  duration: 1h\n";
    let policy = parse_policy("p.yaml", text).unwrap();
    let site = GateSite {
        account: "111122223333",
        region: "eu-west-1",
        pipeline: "checkout",
        stage: "Production",
    };
    let err = apply_baseline(
        &store,
        &MemoryPipelineTags::new(&[]),
        site,
        "p.yaml",
        text,
        policy.clone(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("p.yaml:6:13: bake.duration: 1h is shorter than the baseline's 3h"),
        "{err}"
    );
    let applied = apply_baseline(
        &other,
        &MemoryPipelineTags::new(&[]),
        site,
        "p.yaml",
        text,
        policy.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        (applied.policy, applied.applied),
        (policy, None),
        "no baseline: the policy alone"
    );
    client.delete_table().table_name(&table).send().await.unwrap();
}

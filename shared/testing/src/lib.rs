//! Test set-up shared by the crates' tests, so that each is written once: the local AWS endpoint (moto server) or a
//! clear skip, unique resource names, the timeline table as `infra/template.yaml` declares it, a counter of the
//! DynamoDB requests a client sends, and the demo story. A dev-dependency only: nothing here ships in a function.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

/// The variable `make test` sets to the local endpoint's URL.
pub const ENDPOINT_VAR: &str = "TOLLGATE_TEST_ENDPOINT";

/// The local endpoint's URL, or `None` after printing why `test` is skipped.
pub fn endpoint(test: &str) -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(url) => Some(url),
        Err(_) => {
            println!("SKIPPED {test}: set {ENDPOINT_VAR} (`make test` starts moto server and sets it)");
            None
        }
    }
}

/// A resource name unique to this run: `prefix-test-<nanoseconds>`, with `_` turned into `-`.
pub fn unique_name(prefix: &str, test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{test}-{nanos}").replace('_', "-")
}

/// A path in the workspace, from its root.
pub fn workspace(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path)
}

/// The demo story (`events/story/failed-deploy-and-fix.json`): a failed production deployment and its fix.
pub const STORY: &str = include_str!("../../../events/story/failed-deploy-and-fix.json");

/// The demo story's events as JSON values, in story order.
pub fn story_json() -> Vec<serde_json::Value> {
    serde_json::from_str(STORY).expect("the story is a JSON array")
}

/// The demo story's events as message bodies, in story order.
pub fn story_bodies() -> Vec<String> {
    story_json().iter().map(|e| e.to_string()).collect()
}

/// Counts the DynamoDB requests a client sends (retries included), by operation: add it with `.interceptor(..)`.
#[derive(Debug, Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<String>>>);

impl Requests {
    /// The operations sent since the last take, in order.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The operations sent since the last take, counted.
    pub fn take_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for op in self.take() {
            *counts.entry(op).or_default() += 1;
        }
        counts
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("?");
        let operation = target.rsplit('.').next().unwrap_or(target).to_string();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(operation);
        Ok(())
    }
}

/// The table's key schema and indexes as infra/template.yaml declares them, except that the indexes project only
/// what the queries read (docs/table-design.md explains why): the adapters must work with either.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("name and kind are set")
    };
    let index = |name: &str, include: &[&str]| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(&format!("{name}pk"), KeyType::Hash))
            .key_schema(key(&format!("{name}sk"), KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .set_non_key_attributes(Some(include.iter().map(|a| a.to_string()).collect()))
                    .build(),
            )
            .build()
            .expect("name and keys are set")
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
                .into_iter()
                .map(attr)
                .collect(),
        ))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index(
            "gsi1",
            &["account", "region", "pipeline", "execution_id", "pstates"],
        ))
        .global_secondary_indexes(index(
            "gsi2",
            &[
                "account",
                "region",
                "deployment_id",
                "application",
                "deployment_group",
                "pipeline",
                "execution_id",
            ],
        ))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateTable {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_loads_and_names_are_unique() {
        assert!(story_bodies().len() > 10);
        assert!(workspace("infra/template.yaml").is_file());
        assert!(unique_name("t", "a_b").starts_with("t-a-b-"));
    }
}

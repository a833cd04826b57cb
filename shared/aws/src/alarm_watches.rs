//! [`DynamoDbAlarmWatches`]: which pipeline stages each alarm protects, in the Tollgate table (docs/table-design.md,
//! "Alarm watches").
//!
//! One item per (alarm, stage): `pk = ALARMWATCH#<account>/<region>/<alarm>`, `sk = <pipeline>#<stage>`, with the
//! stage's names, `until` and a `ttl` at `until`. The gate writes them on a pass with a plain PutItem (one alarm) or
//! BatchWriteItem (25 items a call), so a second pass only refreshes them; the guard reads one alarm's partition with
//! one Query (paged) and ignores items past their `until` that DynamoDB's TTL has not removed yet.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::AsyncSleep;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use tollgate_domain::gate::{alarm_watch_pk, AlarmWatches, WatchedStage};
use tollgate_domain::record::ports::StoreError;

type Item = HashMap<String, AttributeValue>;

/// BatchWriteItem takes at most 25 requests.
const ITEMS_PER_BATCH: usize = 25;
/// Alarms registered for one stage at most (4 BatchWriteItem calls): a bound on one pass's writes. A policy whose
/// tags select more alarms has the rest found by tag only, and a warning says so.
pub const MAX_WATCHED_ALARMS: usize = 100;
/// Attempts of one batch whose items DynamoDB returns unprocessed (throttled), before giving up as transient.
const BATCH_ATTEMPTS: u32 = 3;
/// Pages of one alarm's watches read at most (1 MB each, thousands of items): a bound on one alarm's work.
const MAX_QUERY_PAGES: usize = 10;

/// The DynamoDB adapter of [`AlarmWatches`].
#[derive(Debug, Clone)]
pub struct DynamoDbAlarmWatches {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// `<pipeline>#<stage>`: pipeline names cannot contain `#`, so the sort key is unambiguous.
pub fn alarm_watch_sk(stage: &WatchedStage) -> String {
    format!("{}#{}", stage.pipeline, stage.stage)
}

/// Throttling, timeouts and 5xx are transient; everything else (validation, missing table, access) is not.
fn store_error<E>(what: &str, table: &str, err: &SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("DynamoDB {what} on table {table} failed: {}", DisplayErrorContext(err));
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or_default();
            if code.contains("Throttl")
                || code == "ProvisionedThroughputExceededException"
                || code == "RequestLimitExceeded"
                || code == "InternalServerError"
                || service.raw().status().is_server_error()
            {
                StoreError::Transient(text)
            } else {
                StoreError::Permanent(text)
            }
        }
        _ => StoreError::Transient(text),
    }
}

impl DynamoDbAlarmWatches {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbAlarmWatches {
            client,
            table: table.into(),
        }
    }

    fn item(&self, account: &str, region: &str, alarm: &str, stage: &WatchedStage, until: DateTime<Utc>) -> Item {
        Item::from([
            ("pk".to_string(), s(alarm_watch_pk(account, region, alarm))),
            ("sk".to_string(), s(alarm_watch_sk(stage))),
            ("kind".to_string(), s("alarm_watch")),
            ("account".to_string(), s(account)),
            ("region".to_string(), s(region)),
            ("alarm_name".to_string(), s(alarm)),
            ("pipeline".to_string(), s(&stage.pipeline)),
            ("stage".to_string(), s(&stage.stage)),
            ("until".to_string(), s(until.to_rfc3339_opts(SecondsFormat::Secs, true))),
            ("ttl".to_string(), AttributeValue::N(until.timestamp().to_string())),
        ])
    }

    async fn put_one(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", &self.table, &e))?;
        Ok(())
    }

    /// One BatchWriteItem of at most 25 puts, its unprocessed items sent again up to [`BATCH_ATTEMPTS`] times.
    async fn put_batch(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let mut requests: Vec<WriteRequest> = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(|e| StoreError::Permanent(format!("alarm watch item cannot be built: {e}")))
            })
            .collect::<Result<_, _>>()?;
        for attempt in 1..=BATCH_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| store_error("BatchWriteItem", &self.table, &e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            if attempt < BATCH_ATTEMPTS {
                // The client's own sleep (none in tests): a short backoff before the throttled rest.
                if let Some(sleep) = self.client.config().sleep_impl() {
                    sleep.sleep(StdDuration::from_millis(50 * u64::from(attempt))).await;
                }
            }
        }
        Err(StoreError::Transient(format!(
            "DynamoDB BatchWriteItem on table {}: {} alarm watch items still unprocessed after {BATCH_ATTEMPTS} attempts",
            self.table,
            requests.len()
        )))
    }
}

#[async_trait]
impl AlarmWatches for DynamoDbAlarmWatches {
    async fn watch(
        &self,
        account: &str,
        region: &str,
        alarms: &[String],
        stage: &WatchedStage,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // One item per alarm: a batch must not hold the same key twice.
        let alarms: Vec<&String> = alarms
            .iter()
            .filter(|a| !a.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if alarms.len() > MAX_WATCHED_ALARMS {
            tracing::warn!(
                pipeline = %stage.pipeline,
                stage = %stage.stage,
                alarms = alarms.len(),
                registered = MAX_WATCHED_ALARMS,
                "more alarms than a stage is registered with; the rest protect it only through tags"
            );
        }
        let items: Vec<Item> = alarms
            .into_iter()
            .take(MAX_WATCHED_ALARMS)
            .map(|alarm| self.item(account, region, alarm, stage, until))
            .collect();
        let mut items = items;
        if items.len() <= 1 {
            return match items.pop() {
                Some(item) => self.put_one(item).await,
                None => Ok(()),
            };
        }
        for chunk in items.chunks(ITEMS_PER_BATCH) {
            self.put_batch(chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn watchers(
        &self,
        account: &str,
        region: &str,
        alarm_name: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<WatchedStage>, StoreError> {
        let pk = alarm_watch_pk(account, region, alarm_name);
        // Keyed by stage: each stage once, however many pages.
        let mut found: BTreeSet<WatchedStage> = BTreeSet::new();
        let mut start: Option<Item> = None;
        for _ in 0..MAX_QUERY_PAGES {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_values(":pk", s(&pk))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", &self.table, &e))?;
            for item in out.items() {
                let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let (pipeline, stage) = (get("pipeline"), get("stage"));
                if pipeline.is_empty() || stage.is_empty() {
                    tracing::warn!(pk, sk = get("sk"), "alarm watch without pipeline or stage; ignored");
                    continue;
                }
                // DynamoDB removes expired items within days, not at once.
                let expired = item
                    .get("ttl")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|ttl| ttl <= at.timestamp());
                if !expired {
                    found.insert(WatchedStage { pipeline, stage });
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found.into_iter().collect()),
            }
        }
        tracing::warn!(
            pk,
            pages = MAX_QUERY_PAGES,
            "more alarm watches than read; the rest are ignored"
        );
        Ok(found.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    //! The exact requests at the SDK's HTTP layer (aws-smithy-mocks), and a round trip against a local DynamoDB API
    //! (moto) when `TOLLGATE_TEST_ENDPOINT` is set.

    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;

    const TABLE: &str = "tollgate";

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn production() -> WatchedStage {
        WatchedStage {
            pipeline: "checkout-service".into(),
            stage: "Production".into(),
        }
    }

    fn str_of<'a>(item: &'a Item, k: &str) -> &'a str {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            .unwrap_or("")
    }

    #[tokio::test]
    async fn one_alarm_is_one_plain_put_item_of_the_watch_with_its_ttl() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.table_name() == Some(TABLE)
                    && r.condition_expression().is_none()
                    && str_of(item, "pk") == "ALARMWATCH#111122223333/eu-west-1/checkout-service-5xx"
                    && str_of(item, "sk") == "checkout-service#Production"
                    && str_of(item, "kind") == "alarm_watch"
                    && str_of(item, "alarm_name") == "checkout-service-5xx"
                    && str_of(item, "pipeline") == "checkout-service"
                    && str_of(item, "stage") == "Production"
                    && str_of(item, "until") == "2026-12-20T14:28:00Z"
                    && item.get("ttl").and_then(|v| v.as_n().ok()).map(String::as_str) == Some("1797776880")
            })
            .then_output(|| PutItemOutput::builder().build());
        let watches = DynamoDbAlarmWatches::new(mock_client!(aws_sdk_dynamodb, [&put]), TABLE);
        watches
            .watch(
                "111122223333",
                "eu-west-1",
                &["checkout-service-5xx".to_string(), "checkout-service-5xx".to_string()],
                &production(),
                t("2026-12-20T14:28:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(put.num_calls(), 1, "the duplicate alarm is written once");
    }

    #[tokio::test]
    async fn many_alarms_are_written_in_batches_of_25_and_unprocessed_items_sent_again() {
        let alarms: Vec<String> = (0..30).map(|i| format!("alarm-{i:02}")).collect();
        let puts = |r: &aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput| -> Vec<String> {
            r.request_items()
                .and_then(|m| m.get(TABLE))
                .map(|reqs| {
                    reqs.iter()
                        .filter_map(|w| w.put_request())
                        .map(|p| str_of(p.item(), "pk").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let expected = |range: std::ops::Range<usize>| -> Vec<String> {
            range
                .map(|i| format!("ALARMWATCH#111122223333/eu-west-1/alarm-{i:02}"))
                .collect()
        };
        let (first, second) = (expected(0..25), expected(25..30));
        // The first batch comes back with its last item unprocessed (throttled), which is sent again alone.
        let first_batch = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .match_requests(move |r| puts(r) == first)
            .then_output(|| {
                let item = Item::from([
                    ("pk".to_string(), s("ALARMWATCH#111122223333/eu-west-1/alarm-24")),
                    ("sk".to_string(), s("checkout-service#Production")),
                ]);
                let retry = WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build();
                BatchWriteItemOutput::builder()
                    .unprocessed_items(TABLE, vec![retry])
                    .build()
            });
        let retried = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .match_requests(move |r| puts(r) == ["ALARMWATCH#111122223333/eu-west-1/alarm-24".to_string()])
            .then_output(|| BatchWriteItemOutput::builder().build());
        let second_batch = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .match_requests(move |r| puts(r) == second)
            .then_output(|| BatchWriteItemOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&first_batch, &retried, &second_batch]
        );
        DynamoDbAlarmWatches::new(client, TABLE)
            .watch(
                "111122223333",
                "eu-west-1",
                &alarms,
                &production(),
                t("2026-12-20T14:28:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(
            (first_batch.num_calls(), retried.num_calls(), second_batch.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn watchers_is_one_query_of_the_alarm_partition_without_expired_items() {
        let item = |pipeline: &str, stage: &str, ttl: &str| {
            Item::from([
                ("pipeline".to_string(), s(pipeline)),
                ("stage".to_string(), s(stage)),
                ("ttl".to_string(), AttributeValue::N(ttl.into())),
            ])
        };
        let query = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| {
                r.table_name() == Some(TABLE)
                    && r.key_condition_expression() == Some("#pk = :pk")
                    && r.expression_attribute_values().and_then(|v| v.get(":pk"))
                        == Some(&s("ALARMWATCH#111122223333/eu-west-1/checkout-service-5xx"))
            })
            .then_output(move || {
                QueryOutput::builder()
                    .items(item("checkout-service", "Production", "1797776880"))
                    .items(item("old-service", "Production", "1763600000"))
                    .build()
            });
        let watches = DynamoDbAlarmWatches::new(mock_client!(aws_sdk_dynamodb, [&query]), TABLE);
        let found = watches
            .watchers(
                "111122223333",
                "eu-west-1",
                "checkout-service-5xx",
                t("2026-11-20T14:28:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(found, vec![production()]);
        assert_eq!(query.num_calls(), 1);
    }

    #[tokio::test]
    async fn what_the_gate_writes_the_guard_reads_back_from_dynamodb() {
        let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
            println!("SKIPPED: set TOLLGATE_TEST_ENDPOINT (e.g. http://127.0.0.1:5055) to run the round trip");
            return;
        };
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new("eu-west-1"))
            .load()
            .await;
        let client = Client::new(&sdk);
        let table = format!(
            "tollgate-watches-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .unwrap()
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .send()
            .await
            .unwrap();
        let watches = DynamoDbAlarmWatches::new(client, &table);
        let now = Utc::now();
        let alarms: Vec<String> = (0..27).map(|i| format!("alarm-{i:02}")).collect();
        let orders = WatchedStage {
            pipeline: "orders".into(),
            stage: "Release".into(),
        };
        // A batch of 27 (25 + 2), then a single PutItem, then the same again: a refresh, not a second item.
        for _ in 0..2 {
            watches
                .watch(
                    "111122223333",
                    "eu-west-1",
                    &alarms,
                    &production(),
                    now + chrono::Duration::days(30),
                )
                .await
                .unwrap();
            watches
                .watch(
                    "111122223333",
                    "eu-west-1",
                    &alarms[26..],
                    &orders,
                    now + chrono::Duration::days(30),
                )
                .await
                .unwrap();
        }
        let read = |alarm: &'static str| watches.watchers("111122223333", "eu-west-1", alarm, now);
        assert_eq!(read("alarm-00").await.unwrap(), vec![production()]);
        assert_eq!(read("alarm-26").await.unwrap(), vec![production(), orders.clone()]);
        assert!(read("alarm-99").await.unwrap().is_empty());
        // Other accounts' and regions' alarms of the same name are other partitions.
        assert!(watches
            .watchers("444455556666", "eu-west-1", "alarm-26", now)
            .await
            .unwrap()
            .is_empty());
        // Past `until`, a watch no longer counts.
        assert!(watches
            .watchers(
                "111122223333",
                "eu-west-1",
                "alarm-26",
                now + chrono::Duration::days(31)
            )
            .await
            .unwrap()
            .is_empty());
    }
}

//! The fixture of the DynamoDB adapter's tests against the local endpoint (moto server): a fresh table per test, a
//! store over it and a counter of the requests sent. Runs only when `TOLLGATE_TEST_ENDPOINT` names the endpoint;
//! otherwise each test prints SKIPPED and passes.

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::Client;
use tollgate_aws::DynamoDbStore;
use tollgate_test_support::create_table;
pub use tollgate_test_support::Requests;

pub struct Fixture {
    pub client: Client,
    pub table: String,
    pub store: DynamoDbStore,
    pub requests: Requests,
}

impl Fixture {
    /// A fresh table on the test endpoint, or `None` (after saying so) when no endpoint is configured.
    pub async fn new(test: &str) -> Option<Fixture> {
        let endpoint = tollgate_test_support::endpoint(test)?;
        let requests = Requests::default();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tollgate-test"))
            .interceptor(requests.clone())
            .build();
        let client = Client::from_conf(config);
        let table = tollgate_test_support::unique_name("tollgate", test);
        create_table(&client, &table).await;
        requests.take();
        let store = DynamoDbStore::new(client.clone(), &table, 30);
        Some(Fixture {
            client,
            table,
            store,
            requests,
        })
    }

    pub async fn drop_table(self) {
        self.client
            .delete_table()
            .table_name(&self.table)
            .send()
            .await
            .expect("DeleteTable");
    }
}

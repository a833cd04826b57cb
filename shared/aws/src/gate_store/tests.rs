use super::*;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use tollgate_domain::gate::policy::Outcome;
use tollgate_domain::gate::{FailureKind, JobAnswer};

fn decision() -> GateDecision {
    let at = DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .unwrap()
        .with_timezone(&Utc);
    GateDecision {
        id: "job-1".into(),
        job_id: "job-1".into(),
        decided_by: "tollgate:gate".into(),
        decided_at: at,
        context: None,
        policy: None,
        outcome: Outcome::Fail,
        summary: "failed: approval".into(),
        checks: vec![],
        explanation: "FAIL: failed: approval\n".into(),
        first_evaluated_at: at,
        previous: vec![],
        answer: JobAnswer::Failure {
            kind: FailureKind::JobFailed,
            message: "FAIL".into(),
            external_execution_id: "job-1".into(),
        },
        override_applied: None,
    }
}

#[tokio::test]
async fn a_decision_is_one_conditional_put_keyed_by_job_id() {
    let rule = mock!(Client::put_item)
        .match_requests(|r| {
            let item = r.item().unwrap();
            r.condition_expression() == Some("attribute_not_exists(pk)")
                && item["pk"].as_s().unwrap() == "GATEJOB#job-1"
                && item["sk"].as_s().unwrap() == "DECISION"
                && item["outcome"].as_s().unwrap() == "fail"
                && item["notified"].as_bool().unwrap() == &false
        })
        .then_output(|| PutItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    assert_eq!(store.record_decision(&decision()).await.unwrap(), DecisionWrite::New);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn a_duplicate_returns_the_stored_decision_without_another_request() {
    let stored = decision();
    let json = serde_json::to_string(&stored).unwrap();
    let rule = mock!(Client::put_item).then_error(move || {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .message("exists")
                .set_item(Some(HashMap::from([
                    ("pk".to_string(), s("GATEJOB#job-1")),
                    (DECISION.to_string(), s(json.clone())),
                    (NOTIFIED.to_string(), AttributeValue::Bool(true)),
                ])))
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let mut again = decision();
    again.summary = "a second evaluation that must not be kept".into();
    let write = store.record_decision(&again).await.unwrap();
    assert_eq!(
        write,
        DecisionWrite::Duplicate {
            stored: Box::new(stored),
            notified: true
        }
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn the_latest_approval_is_one_query_newest_first() {
    let rule = mock!(Client::query)
        .match_requests(|r| {
            let values = r.expression_attribute_values().unwrap();
            values[":pk"].as_s().unwrap() == "APPROVAL#111122223333#eu-west-1#checkout#e-1#Production"
                && r.scan_index_forward() == Some(false)
                && r.limit() == Some(1)
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(HashMap::from([
                    (
                        "principal_arn".to_string(),
                        s("arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice"),
                    ),
                    ("groups".to_string(), AttributeValue::L(vec![s("release-managers")])),
                    ("decision".to_string(), s("approve")),
                    ("reason".to_string(), s("bake looks fine")),
                    ("at".to_string(), s("2026-11-20T14:00:00.000Z")),
                ]))
                .build()
        });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let key = ApprovalKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout".into(),
        execution_id: "e-1".into(),
        stage: "Production".into(),
    };
    let found = store.latest_approval(&key).await.unwrap().unwrap();
    assert_eq!(found.decision, ApprovalDecision::Approve);
    assert_eq!(found.groups, vec!["release-managers".to_string()]);
    assert_eq!(found.reason.as_deref(), Some("bake looks fine"));
}

fn freeze() -> FreezeRecord {
    FreezeRecord {
        scope: "pipeline:111122223333/eu-west-1/checkout".into(),
        from: FreezeBound::parse("2026-11-20T10:00:00Z").unwrap(),
        until: FreezeBound::parse("2026-11-27").unwrap(),
        reason: "incident INC-42".into(),
        by: "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice".into(),
        at: DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    }
}

fn freeze_item(f: &FreezeRecord) -> Item {
    HashMap::from([
        ("pk".to_string(), s(freeze_pk(&f.scope))),
        ("sk".to_string(), s("ACTIVE")),
        ("scope".to_string(), s(&f.scope)),
        ("from".to_string(), s(f.from.to_string())),
        ("until".to_string(), s(f.until.to_string())),
        ("reason".to_string(), s(&f.reason)),
        ("by".to_string(), s(&f.by)),
        ("at".to_string(), s("2026-11-20T10:00:00.000Z")),
    ])
}

#[tokio::test]
async fn a_freeze_is_one_item_per_scope() {
    let rule = mock!(Client::put_item)
        .match_requests(|r| {
            let item = r.item().unwrap();
            r.condition_expression().is_none()
                && item["pk"].as_s().unwrap() == "FREEZE#pipeline:111122223333/eu-west-1/checkout"
                && item["sk"].as_s().unwrap() == "ACTIVE"
                && item["until"].as_s().unwrap() == "2026-11-27"
                && item["from"].as_s().unwrap() == "2026-11-20T10:00:00+00:00"
                && item["by"].as_s().unwrap().ends_with("ReleaseManager/alice")
        })
        .then_output(|| PutItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    store.record_freeze(&freeze()).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn active_freezes_read_each_scope_and_skip_absent_ones() {
    let pipeline = mock!(Client::get_item)
        .match_requests(|r| {
            r.key().unwrap()["pk"].as_s().unwrap() == "FREEZE#pipeline:111122223333/eu-west-1/checkout"
                && r.key().unwrap()["sk"].as_s().unwrap() == "ACTIVE"
                && r.consistent_read() == Some(true)
        })
        .then_output(|| GetItemOutput::builder().set_item(Some(freeze_item(&freeze()))).build());
    let global = mock!(Client::get_item)
        .match_requests(|r| r.key().unwrap()["pk"].as_s().unwrap() == "FREEZE#global")
        .then_output(|| GetItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&pipeline, &global]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let scopes = vec![freeze().scope, "global".to_string()];
    assert_eq!(store.active_freezes(&scopes).await.unwrap(), vec![freeze()]);
    assert_eq!((pipeline.num_calls(), global.num_calls()), (1, 1));
}

#[tokio::test]
async fn lifting_a_freeze_deletes_it_and_returns_what_was_there() {
    let rule = mock!(Client::delete_item)
        .match_requests(|r| {
            r.key().unwrap()["pk"].as_s().unwrap() == "FREEZE#global" && r.return_values() == Some(&ReturnValue::AllOld)
        })
        .then_output(|| {
            let mut f = freeze();
            f.scope = "global".into();
            DeleteItemOutput::builder()
                .set_attributes(Some(freeze_item(&f)))
                .build()
        });
    let none = mock!(Client::delete_item).then_output(|| DeleteItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule, &none]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let lifted = store.lift_freeze("global").await.unwrap().unwrap();
    assert_eq!(
        (lifted.scope.as_str(), lifted.reason.as_str()),
        ("global", "incident INC-42")
    );
    assert_eq!(store.lift_freeze("global").await.unwrap(), None);
}

fn key() -> ApprovalKey {
    ApprovalKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout".into(),
        execution_id: "e-1".into(),
        stage: "Production".into(),
    }
}

#[tokio::test]
async fn an_override_is_put_under_its_gate_and_the_latest_is_one_query() {
    let put = mock!(Client::put_item)
        .match_requests(|r| {
            let item = r.item().unwrap();
            item["pk"].as_s().unwrap() == "OVERRIDE#111122223333#eu-west-1#checkout#e-1#Production"
                && item["sk"].as_s().unwrap() == "AT#2026-11-20T14:00:00.000Z#arn:aws:iam::1:user/bob"
                && item["reason"].as_s().unwrap() == "hotfix for INC-42"
                && item.contains_key("ttl")
        })
        .then_output(|| PutItemOutput::builder().build());
    let query = mock!(Client::query)
        .match_requests(|r| {
            r.expression_attribute_values().unwrap()[":pk"].as_s().unwrap()
                == "OVERRIDE#111122223333#eu-west-1#checkout#e-1#Production"
                && r.scan_index_forward() == Some(false)
                && r.limit() == Some(1)
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(HashMap::from([
                    ("by".to_string(), s("arn:aws:iam::1:user/bob")),
                    ("reason".to_string(), s("hotfix for INC-42")),
                    ("at".to_string(), s("2026-11-20T14:00:00.000Z")),
                ]))
                .build()
        });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&put, &query]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let o = OverrideRecord {
        key: key(),
        by: "arn:aws:iam::1:user/bob".into(),
        reason: "hotfix for INC-42".into(),
        at: DateTime::parse_from_rfc3339("2026-11-20T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    };
    store.record_override(&o).await.unwrap();
    assert_eq!(store.latest_override(&key()).await.unwrap(), Some(o));
    assert_eq!((put.num_calls(), query.num_calls()), (1, 1));
}

// ------------------------------------------------------------------ deployment leases

fn lease(pipeline: &str, execution: &str, at: &str) -> DeploymentLease {
    let at = DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc);
    DeploymentLease {
        environment: "production".into(),
        wave: Some("1".into()),
        holder: ExecutionKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: pipeline.into(),
            execution_id: execution.into(),
        },
        stage: "Production".into(),
        decision_id: format!("job-{execution}"),
        acquired_at: at,
        expires_at: at + tollgate_domain::gate::LEASE_EXPIRY,
    }
}

#[tokio::test]
async fn a_free_lease_is_one_conditional_put_that_only_an_absent_or_own_lease_lets_through() {
    let rule = mock!(Client::put_item)
        .match_requests(|r| {
            let item = r.item().unwrap();
            let values = r.expression_attribute_values().unwrap();
            r.condition_expression() == Some("attribute_not_exists(pk) OR #holder = :me")
                && r.expression_attribute_names().unwrap()["#holder"] == "holder"
                && values.len() == 1
                && values[":me"].as_s().unwrap() == "111122223333/eu-west-1/payments/pay-1"
                && item["pk"].as_s().unwrap() == "LEASE#production#WAVE#1"
                && item["sk"].as_s().unwrap() == "LEASE"
                && item["holder"].as_s().unwrap() == "111122223333/eu-west-1/payments/pay-1"
                && item["wave"].as_s().unwrap() == "1"
                && item["acquired_at"].as_s().unwrap() == "2026-11-20T14:00:00.000Z"
                && item["expires_at"].as_s().unwrap() == "2026-11-21T14:00:00.000Z"
                && item["ttl"].as_n().unwrap() == "1795874400"
                && r.return_values_on_condition_check_failure() == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
        })
        .then_output(|| PutItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let claim = store
        .claim_lease(&lease("payments", "pay-1", "2026-11-20T14:00:00Z"), None)
        .await;
    assert_eq!(claim.unwrap(), LeaseClaim::Acquired);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn replacing_a_finished_holder_requires_it_to_be_exactly_the_lease_that_was_read() {
    let old = lease("payments", "pay-1", "2026-11-20T13:00:00Z");
    let rule = mock!(Client::put_item)
        .match_requests(|r| {
            let values = r.expression_attribute_values().unwrap();
            r.condition_expression()
                == Some("attribute_not_exists(pk) OR #holder = :me OR (#holder = :old AND #acquired = :old_at)")
                && r.expression_attribute_names().unwrap()["#acquired"] == "acquired_at"
                && values[":me"].as_s().unwrap() == "111122223333/eu-west-1/search/s-1"
                && values[":old"].as_s().unwrap() == "111122223333/eu-west-1/payments/pay-1"
                && values[":old_at"].as_s().unwrap() == "2026-11-20T13:00:00.000Z"
        })
        .then_output(|| PutItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let mine = lease("search", "s-1", "2026-11-20T14:00:00Z");
    assert_eq!(
        store.claim_lease(&mine, Some(&old)).await.unwrap(),
        LeaseClaim::Acquired
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn a_lost_race_answers_with_the_winners_lease_from_the_failed_condition() {
    let winner = lease("payments", "pay-1", "2026-11-20T14:00:00Z");
    let client_item = {
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, []);
        DynamoDbGateStore::new(client, "tollgate", 400).lease_item(&winner)
    };
    let rule = mock!(Client::put_item).then_error(move || {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .message("held")
                .set_item(Some(client_item.clone()))
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let claim = store
        .claim_lease(&lease("search", "s-1", "2026-11-20T14:00:01Z"), None)
        .await;
    assert_eq!(claim.unwrap(), LeaseClaim::HeldBy(Box::new(winner)));
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn the_lease_is_read_consistently_and_an_unreadable_one_is_an_error() {
    let rule = mock!(Client::get_item)
        .match_requests(|r| {
            r.key().unwrap()["pk"].as_s().unwrap() == "LEASE#staging"
                && r.key().unwrap()["sk"].as_s().unwrap() == "LEASE"
                && r.consistent_read() == Some(true)
        })
        .then_output(|| {
            GetItemOutput::builder()
                .item("pk", s("LEASE#staging"))
                .item("environment", s("staging"))
                .build()
        });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]);
    let store = DynamoDbGateStore::new(client, "tollgate", 400);
    let err = store.lease("staging", None).await.unwrap_err();
    assert!(
        err.to_string().contains("deployment lease") && err.to_string().contains("`account`"),
        "{err}"
    );
}

/// Two gates, one lease, against a real DynamoDB API (moto server): runs only with `TOLLGATE_TEST_ENDPOINT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gates_racing_for_one_lease_on_dynamodb_let_exactly_one_through() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    use tollgate_domain::gate::{claim_deployment_lease, JobContext, LeaseResult};
    use tollgate_domain::memory::MemoryStore;

    let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
        println!("SKIPPED: set TOLLGATE_TEST_ENDPOINT (e.g. http://127.0.0.1:5055) to race two gates on DynamoDB");
        return;
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .build();
    let client = Client::from_conf(config);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!("tollgate-leases-{nanos}");
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, k: KeyType| {
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

    let policy = tollgate_domain::gate::policy::parse_policy(
        "p.yaml",
        "version: 1\nname: p\nmax_wait: 1h\nconcurrency:\n  environment: production\n  wave: 1\n",
    )
    .unwrap();
    let ctx = |pipeline: &str, execution: &str| JobContext {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: pipeline.into(),
        stage: "Production".into(),
        action: "Gate".into(),
        execution_id: execution.into(),
    };
    let timelines = MemoryStore::new();
    let now = DateTime::parse_from_rfc3339("2026-11-20T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    // Many rounds, each with a fresh environment, each gate with its own client: exactly one winner every time.
    for round in 0..10 {
        let policy = tollgate_domain::gate::policy::parse_policy(
            "p.yaml",
            &format!("version: 1\nname: p\nmax_wait: 1h\nconcurrency:\n  environment: prod-{round}\n"),
        )
        .unwrap();
        let (a, b) = (
            DynamoDbGateStore::new(client.clone(), &table, 30),
            DynamoDbGateStore::new(client.clone(), &table, 30),
        );
        let (ca, cb) = (
            ctx("payments", &format!("p-{round}")),
            ctx("search", &format!("s-{round}")),
        );
        let (ra, rb) = tokio::join!(
            claim_deployment_lease(&policy, &ca, "ja", &a, &timelines, now),
            claim_deployment_lease(&policy, &cb, "jb", &b, &timelines, now)
        );
        let winners = [&ra, &rb].into_iter().filter(|r| **r == LeaseResult::Acquired).count();
        assert_eq!(winners, 1, "round {round}: {ra:?} / {rb:?}");
        let held = a.lease(&format!("prod-{round}"), None).await.unwrap().unwrap();
        let loser = if ra == LeaseResult::Acquired { &rb } else { &ra };
        assert_eq!(loser, &LeaseResult::HeldBy(vec![held.describe()]), "round {round}");
    }

    // The holder re-evaluating keeps it; once the holder's lease expires, the other gate replaces it.
    let store = DynamoDbGateStore::new(client.clone(), &table, 30);
    let holder = ctx("payments", "p-main");
    assert_eq!(
        claim_deployment_lease(&policy, &holder, "j1", &store, &timelines, now).await,
        LeaseResult::Acquired
    );
    assert_eq!(
        claim_deployment_lease(&policy, &holder, "j2", &store, &timelines, now).await,
        LeaseResult::Acquired
    );
    let other = ctx("search", "s-main");
    assert!(matches!(
        claim_deployment_lease(&policy, &other, "k1", &store, &timelines, now).await,
        LeaseResult::HeldBy(_)
    ));
    let later = now + tollgate_domain::gate::LEASE_EXPIRY;
    assert_eq!(
        claim_deployment_lease(&policy, &other, "k2", &store, &timelines, later).await,
        LeaseResult::Acquired
    );
    let held = store.lease("production", Some("1")).await.unwrap().unwrap();
    assert_eq!(held.holder.execution_id, "s-main");
    assert_eq!(held.decision_id, "k2");

    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("DeleteTable");
}

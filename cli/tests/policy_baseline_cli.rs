//! The `tollgate` binary with an organisation baseline: `policy validate --baseline`, `policy effective` (and its
//! output read back by `policy validate`), and `gate explain --baseline` with its exit statuses (0 PASS, 1 FAIL,
//! 2 WAIT). The explain cases that read facts run against the local endpoint when `TOLLGATE_TEST_ENDPOINT` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

const BASE: &str = r#"version: 1
name: org-baseline
timezone: UTC
max_wait: 6h
on_error: fail_closed
freezes:
  - name: last-year
    from: 2020-12-20
    to: 2021-01-04
approval:
  approvers:
    - "arn:aws:iam::111122223333:role/ReleaseManager*"
  on_error: fail_closed
rules:
  - name: production
    match:
      stages: ["Prod*"]
    bake:
      after_stage: Staging
      duration: 2h
"#;

const GOOD: &str = r#"version: 1
name: checkout-gate
max_wait: 2h
alarms:
  names: [checkout-5xx]
approval:
  approvers:
    - "arn:aws:iam::111122223333:role/ReleaseManager-Checkout"
"#;

const LOOSE: &str = r#"version: 1
name: checkout-gate
max_wait: 12h
approval:
  approvers:
    - "arn:aws:iam::111122223333:role/Developer"
  reason_required: false
  on_error: fail_open
"#;

fn tollgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    c.args(args)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("tollgate runs")
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tollgate-baseline-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn file(name: &str, text: &str) -> String {
    let p = dir().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn validate_names_each_loosened_field_and_fails() {
    let (base, good, loose) = (
        file("v-base.yaml", BASE),
        file("v-good.yaml", GOOD),
        file("v-loose.yaml", LOOSE),
    );
    let o = tollgate(&["policy", "validate", "--baseline", &base, &good], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("ok (policy checkout-gate; tightens baseline org-baseline"),
        "{out}"
    );

    let o = tollgate(&["policy", "validate", "--baseline", &base, &good, &loose], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    for field in [
        "max_wait",
        "approval.approvers[0]",
        "approval.reason_required",
        "approval.on_error",
    ] {
        assert!(out.contains(&format!(": {field}: ")), "{field} named: {out}");
    }
    assert!(
        out.contains(&format!("{loose}:3:11: max_wait: 12h is longer")),
        "file:line: {out}"
    );
    assert!(err.contains("1 of 2 policy file(s) invalid"), "{err}");

    // Without a baseline the loose policy is a valid policy, as before.
    let o = tollgate(&["policy", "validate", &loose], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // A stage no rule matches is checked against the top level only; a production stage against its rule too.
    let no_bake = file(
        "v-nobake.yaml",
        &format!("{GOOD}bake:\n  after_stage: Staging\n  duration: 30m\n"),
    );
    let o = tollgate(
        &["policy", "validate", "--baseline", &base, "--stage", "Beta", &no_bake],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = tollgate(
        &[
            "policy",
            "validate",
            "--baseline",
            &base,
            "--stage",
            "Production",
            &no_bake,
        ],
        &[],
    );
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(": bake.duration: 30m is shorter") && out.contains("rule production"),
        "{out}"
    );
}

#[test]
fn effective_prints_the_merged_policy_that_validate_accepts_again() {
    let (base, good) = (file("e-base.yaml", BASE), file("e-good.yaml", GOOD));
    for stage in [None, Some("Production")] {
        let mut args = vec!["policy", "effective", "--baseline", &base, &good];
        if let Some(s) = stage {
            args.extend(["--stage", s]);
        }
        let o = tollgate(&args, &[]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{err}");
        let policy = tollgate_domain::gate::policy::parse_policy("effective", &out).expect("the output is a policy");
        assert_eq!(policy.name, "checkout-gate");
        assert_eq!(policy.max_wait.as_secs(), 7200);
        assert_eq!(
            policy.freezes.as_ref().unwrap()[0].name,
            "last-year",
            "the baseline's freeze: {out}"
        );
        assert_eq!(policy.alarms.as_ref().unwrap().names, ["checkout-5xx"]);
        let approval = policy.approval.as_ref().unwrap();
        assert!(approval.reason_required);
        assert_eq!(approval.approvers.len(), 1);
        assert_eq!(
            policy.bake.is_some(),
            stage.is_some(),
            "the production rule's bake: {out}"
        );

        let again = file("e-effective.yaml", &out);
        let mut args = vec!["policy", "validate", "--baseline", &base, &again];
        if let Some(s) = stage {
            args.extend(["--stage", s]);
        }
        let o = tollgate(&args, &[]);
        assert_eq!(o.status.code(), Some(0), "round trip: {:?}\n{out}", text(&o));
        let o = tollgate(&["policy", "effective", "--baseline", &base, &again], &[]);
        let (twice, _) = text(&o);
        let twice = tollgate_domain::gate::policy::parse_policy("twice", &twice).unwrap();
        if stage.is_none() {
            assert_eq!(twice, policy, "merging the effective policy again changes nothing");
        }
    }

    // A policy with no checks of its own gets the baseline's approvers.
    let bare = file("e-bare.yaml", "version: 1\nname: bare\nmax_wait: 1h\n");
    let o = tollgate(&["policy", "effective", "--baseline", &base, &bare], &[]);
    let (out, _) = text(&o);
    assert!(out.contains("arn:aws:iam::111122223333:role/ReleaseManager*"), "{out}");

    let loose = file("e-loose.yaml", LOOSE);
    let o = tollgate(&["policy", "effective", "--baseline", &base, &loose], &[]);
    let (out, err) = text(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(out.is_empty(), "nothing printed for a loosening policy: {out}");
    assert!(
        err.contains(": on_error: ") || err.contains("approval.on_error"),
        "{err}"
    );
}

#[test]
fn explain_fails_with_status_1_on_a_loosening_before_reading_any_fact() {
    let (base, loose) = (file("x-base.yaml", BASE), file("x-loose.yaml", LOOSE));
    // Nothing listens on this endpoint: a loosening is decided before any AWS call.
    let env = [("AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    let common = [
        "gate",
        "explain",
        "--baseline",
        &base,
        "--policy",
        &loose,
        "--pipeline",
        "checkout",
        "--stage",
        "Beta",
        "--account",
        "111122223333",
        "--table",
        "t",
        "--execution",
        "e-1",
    ];
    let o = tollgate(&common, &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("FAIL: the policy") && out.contains("approval.on_error"),
        "{out}"
    );
    let mut json = common.to_vec();
    json.extend(["--format", "json"]);
    let o = tollgate(&json, &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["outcome"], "fail");
    assert!(doc["summary"].as_str().unwrap().contains("max_wait"), "{doc}");
}

async fn table(endpoint: &str) -> String {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "t",
        ))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let name = format!(
        "tollgate-explain-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("CreateTable");
    name
}

#[tokio::test]
async fn explain_exits_0_on_pass_1_on_fail_and_2_on_wait_with_json() {
    let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
        println!("SKIPPED: set TOLLGATE_TEST_ENDPOINT to run gate explain against a local DynamoDB");
        return;
    };
    let table = table(&endpoint).await;
    let base = file("m-base.yaml", "version: 1\nname: org\ntimezone: UTC\nmax_wait: 6h\nfreezes:\n  - name: old\n    from: 2020-01-01\n    to: 2020-01-02\n");
    let quiet = file("m-quiet.yaml", "version: 1\nname: quiet\nmax_wait: 1h\n");
    let approval = file(
        "m-approval.yaml",
        "version: 1\nname: approved\nmax_wait: 1h\napproval:\n  approvers: [\"arn:aws:iam::111122223333:role/RM\"]\n",
    );
    let loose = file("m-loose.yaml", "version: 1\nname: loose\nmax_wait: 9h\n");
    let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];
    let run = |policy: &str, format: &str| {
        tollgate(
            &[
                "gate",
                "explain",
                "--baseline",
                &base,
                "--policy",
                policy,
                "--pipeline",
                "checkout",
                "--stage",
                "Production",
                "--account",
                "111122223333",
                "--table",
                &table,
                "--execution",
                "e-1",
                "--format",
                format,
            ],
            &env,
        )
    };
    for (policy, status, outcome) in [(&quiet, 0, "pass"), (&loose, 1, "fail"), (&approval, 2, "wait")] {
        let o = run(policy, "json");
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(status), "{policy}: {out}{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(doc["outcome"], outcome, "{doc}");
        if outcome != "fail" {
            assert!(
                doc["checks"].as_array().unwrap().iter().any(|c| c["check"] == "freeze"),
                "the baseline's freeze is evaluated: {doc}"
            );
        }
        let o = run(policy, "text");
        assert_eq!(o.status.code(), Some(status), "{:?}", text(&o));
        assert!(
            text(&o).0.contains(&format!("{}:", outcome.to_uppercase())),
            "{:?}",
            text(&o)
        );
    }
    assert!(Path::new(&quiet).exists());
}

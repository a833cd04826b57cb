//! The functions the benchmark measures, as a table: binary name, the environment its `config.rs` requires, the SDK
//! clients it builds at init (for the fair baseline), a new event and a duplicate event. A function added to the
//! workspace is measured by adding one row here.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tollgate_aws::chat_auth::{sign, SigningSecret};

/// Names of the local resources the functions are pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub table: String,
    pub topic_arn: String,
    /// The approval function's signing secret in the local Secrets Manager ([`BENCH_SIGNING_SECRET`]).
    pub signing_secret_arn: String,
}

/// What kind of delivery an invocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// An event never seen before.
    New,
    /// The same event again (an at-least-once redelivery); the first delivery of it is made as a warm-up.
    Duplicate,
}

/// One invocation's payload, and the request id when a redelivery must reuse it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub payload: Value,
    pub request_id: Option<String>,
}

/// A row of the table.
pub struct FunctionSpec {
    /// The binary (`target/release/<binary>`) and the package.
    pub binary: &'static str,
    /// Baselines are measured for comparison; functions against them.
    pub baseline: bool,
    /// The SDK clients the function builds at init, for `empty-sdk-function`'s `TOLLGATE_BENCH_CLIENTS`.
    pub clients: &'static str,
    /// Environment beyond the Lambda and AWS variables every run gets.
    pub env: fn(&Resources) -> Vec<(String, String)>,
    /// The invocation for a delivery; `nonce` is unique per harness run and `seq` per event.
    pub event: fn(Delivery, &str, u64) -> Invocation,
    /// Whether a response says the event was processed (errors are caught separately).
    pub check: fn(&Value) -> Result<(), String>,
}

fn table_and_topic(r: &Resources) -> Vec<(String, String)> {
    vec![
        ("TOLLGATE_TABLE_NAME".into(), r.table.clone()),
        ("TOLLGATE_TOPIC_ARN".into(), r.topic_arn.clone()),
    ]
}

fn no_env(_: &Resources) -> Vec<(String, String)> {
    Vec::new()
}

fn any_response(_: &Value) -> Result<(), String> {
    Ok(())
}

/// The empty function answers with its input: any event will do.
fn echo_event(_: Delivery, nonce: &str, seq: u64) -> Invocation {
    Invocation {
        payload: json!({"bench": nonce, "seq": seq}),
        request_id: None,
    }
}

/// Events per execution among the new events: an execution item holds every event of its execution and the write
/// returns the whole item, so the cost of an event grows with its execution's size. Real executions have 20 to 60
/// events (the demo story's have 18 and 37); 25 keeps the figure representative and the same from run to run.
pub const EVENTS_PER_EXECUTION: u64 = 25;

/// A CodePipeline stage event; new events fill executions of [`EVENTS_PER_EXECUTION`] events, the duplicate is the
/// only event of its own execution.
fn stage_event(delivery: Delivery, nonce: &str, seq: u64) -> Value {
    let (execution, second) = match delivery {
        Delivery::New => (
            format!("bench-{nonce}-{}", seq / EVENTS_PER_EXECUTION),
            seq % EVENTS_PER_EXECUTION,
        ),
        Delivery::Duplicate => (format!("bench-{nonce}-duplicate"), 0),
    };
    let time = format!("2026-11-18T10:{:02}:{:02}Z", second / 60 % 60, second % 60);
    json!({
        "version": "0",
        "id": format!("{execution}-{second}"),
        "detail-type": "CodePipeline Stage Execution State Change",
        "source": "aws.codepipeline",
        "account": "111122223333",
        "time": time,
        "region": "eu-west-1",
        "resources": ["arn:aws:codepipeline:eu-west-1:111122223333:checkout-service"],
        "detail": {
            "pipeline": "checkout-service",
            "execution-id": execution,
            "stage": "Production",
            "state": "STARTED",
            "version": 1
        }
    })
}

/// An SQS batch of one message (the per-event figure; Lambda batches up to 10 in production).
fn ingest_event(delivery: Delivery, nonce: &str, seq: u64) -> Invocation {
    let body = stage_event(delivery, nonce, seq).to_string();
    // SQS redelivers a message under its own id.
    let message_id = match delivery {
        Delivery::New => format!("bench-{nonce}-{seq}"),
        Delivery::Duplicate => format!("bench-{nonce}-repeated"),
    };
    Invocation {
        payload: json!({"Records": [{
            "messageId": message_id,
            "receiptHandle": "bench-receipt-handle",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1763629200000",
                "SenderId": "AIDAEXAMPLE",
                "ApproximateFirstReceiveTimestamp": "1763629200100"
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-west-1:111122223333:tollgate-ingest",
            "awsRegion": "eu-west-1"
        }]}),
        request_id: None,
    }
}

fn ingest_check(response: &Value) -> Result<(), String> {
    match response.get("batchItemFailures").and_then(Value::as_array) {
        Some(failures) if failures.is_empty() => Ok(()),
        _ => Err(format!("the batch was not fully processed: {response}")),
    }
}

/// The daily schedule; a redelivery of the same run keeps its request id (the function's idempotency key).
fn metrics_event(delivery: Delivery, nonce: &str, seq: u64) -> Invocation {
    let id = match delivery {
        Delivery::New => format!("bench-metrics-{nonce}-{seq}"),
        Delivery::Duplicate => format!("bench-metrics-{nonce}-repeated"),
    };
    Invocation {
        payload: json!({
            "version": "0",
            "id": id,
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": "111122223333",
            "time": "2026-11-23T06:00:00Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:scheduler:eu-west-1:111122223333:schedule/default/tollgate-metrics"],
            "detail": {}
        }),
        request_id: Some(id),
    }
}

/// The gate's sample job (functions/gate/events), with a job id per new event; a duplicate repeats one job id.
pub const GATE_JOB: &str = include_str!("../../functions/gate/events/codepipeline-job-gate.json");
/// Where the sample job's input artifact lives; the harness uploads the repository's `policies/` there.
pub const GATE_ARTIFACT_BUCKET: &str = "codepipeline-eu-west-1-111122223333";
pub const GATE_ARTIFACT_KEY: &str = "checkout-service/SourceArti/TdOSFRV";

fn gate_event(delivery: Delivery, nonce: &str, seq: u64) -> Invocation {
    let mut payload: Value = serde_json::from_str(GATE_JOB).unwrap_or(Value::Null);
    let job_id = match delivery {
        Delivery::New => format!("bench-job-{nonce}-{seq}"),
        Delivery::Duplicate => format!("bench-job-{nonce}-repeated"),
    };
    if let Some(job) = payload.get_mut("CodePipeline.job") {
        job["id"] = Value::String(job_id);
    }
    Invocation {
        payload,
        request_id: None,
    }
}

fn hook_env(r: &Resources) -> Vec<(String, String)> {
    let mut env = table_and_topic(r);
    // The hook refuses to start without a check; one alarm is the smallest configuration.
    env.push(("TOLLGATE_HOOK_ALARMS".into(), BENCH_ALARM.into()));
    env
}

/// A CodeDeploy lifecycle hook invocation; a redelivery repeats the hook execution id.
fn hook_event(delivery: Delivery, nonce: &str, seq: u64) -> Invocation {
    let execution = match delivery {
        Delivery::New => format!("bench-hook-{nonce}-{seq}"),
        Delivery::Duplicate => format!("bench-hook-{nonce}-repeated"),
    };
    Invocation {
        payload: json!({"DeploymentId": "d-BENCH0001", "LifecycleEventHookExecutionId": execution}),
        request_id: None,
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmm` (UTC) of a Unix time in milliseconds; the harness has no date library.
fn utc_millis(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, sec, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{milli:03}")
}

/// The alarm the guard and the hook are given, and the gate's policy names: the harness answers DescribeAlarms with
/// it (and the policy's second alarm) in state OK.
pub const BENCH_ALARM: &str = "checkout-service-5xx";

/// A CloudWatch alarm going to ALARM now (the guard skips changes older than its 15-minute limit), in an SQS batch
/// of one message. New events are distinct state changes of the alarm; the duplicate is one change redelivered
/// under its message id. The alarm protects nothing in progress (no recorded deployment, no tagged pipeline or
/// stack): discovery runs and nothing is rolled back, the common case.
fn guard_event(delivery: Delivery, nonce: &str, seq: u64) -> Invocation {
    let (message_id, at) = match delivery {
        Delivery::New => {
            new_sequence();
            (format!("bench-guard-{nonce}-{seq}"), now_millis())
        }
        // The duplicate must stay the same change, and recent: its time is fixed by the first delivery of the
        // sequence (see `duplicate_time`).
        Delivery::Duplicate => (format!("bench-guard-{nonce}-repeated"), duplicate_time() * 1000),
    };
    let time = utc_millis(at);
    let body = json!({
        "version": "0",
        "id": message_id,
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "111122223333",
        "time": format!("{}Z", &time[..19]),
        "region": "eu-west-1",
        "resources": [format!("arn:aws:cloudwatch:eu-west-1:111122223333:alarm:{BENCH_ALARM}")],
        "detail": {
            "alarmName": BENCH_ALARM,
            "state": {
                "value": "ALARM",
                "reason": "Threshold Crossed: 1 out of the last 1 datapoints [42.0] was greater than the threshold (10.0)",
                "timestamp": format!("{time}+0000")
            },
            "previousState": {"value": "OK", "reason": "previous", "timestamp": "2026-11-20T08:00:00.000+0000"},
            "configuration": {"description": "checkout-service production: ALB target 5XX responses above 10 per minute"}
        }
    });
    Invocation {
        payload: json!({"Records": [{
            "messageId": message_id,
            "receiptHandle": "bench-receipt-handle",
            "body": body.to_string(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": at.to_string(),
                "SenderId": "AIDAEVENTBRIDGE",
                "ApproximateFirstReceiveTimestamp": at.to_string()
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-west-1:111122223333:tollgate-guard",
            "awsRegion": "eu-west-1"
        }]}),
        request_id: None,
    }
}

// The Unix time (seconds) of the current sequence of duplicate deliveries. Every measured sequence of duplicates
// follows a new event (`measure.rs`), which clears it; the first duplicate of the sequence sets it. So the repeats
// are byte for byte the first delivery, and within the approval function's 5-minute signature window and the
// guard's 15-minute alarm age however slow the run (callgrind). Per thread: the harness delivers from one thread,
// and tests running side by side do not share it.
thread_local! {
    static DUPLICATE_TIME: Cell<Option<i64>> = const { Cell::new(None) };
}

fn duplicate_time() -> i64 {
    DUPLICATE_TIME.with(|t| {
        let at = t.get().unwrap_or_else(|| now_millis() / 1000);
        t.set(Some(at));
        at
    })
}

fn new_sequence() {
    DUPLICATE_TIME.with(|t| t.set(None));
}

/// Where the changeset job's input artifact lives (a zip of [`CHANGESET_TEMPLATE`] as `stack.yaml`).
pub const CHANGESET_ARTIFACT_KEY: &str = "checkout-infra/SourceArti/bench-stack";
/// The template the changeset jobs review: one topic, a harmless change set (executed).
pub const CHANGESET_TEMPLATE: &str = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n";

/// A CodePipeline job of the changeset action, its first invocation (no continuation token). Each new event is a
/// job on a stack of its own (`tollgate-bench-<nonce>-<seq>`, created by the change set): the artifact is read and
/// CreateChangeSet sent. The duplicate redelivers one job: the function looks at CloudFormation as it is now and
/// takes the next step (review and execute once, then report the finished stack).
fn changeset_event(delivery: Delivery, nonce: &str, seq: u64) -> Invocation {
    let (job_id, stack) = match delivery {
        Delivery::New => (
            format!("bench-cs-job-{nonce}-{seq}"),
            format!("tollgate-bench-{nonce}-{seq}"),
        ),
        Delivery::Duplicate => (
            format!("bench-cs-job-{nonce}-repeated"),
            format!("tollgate-bench-{nonce}-repeated"),
        ),
    };
    let params = json!({"stack": stack, "template": "stack.yaml"}).to_string();
    Invocation {
        payload: json!({"CodePipeline.job": {
            "id": job_id,
            "accountId": "111122223333",
            "data": {
                "actionConfiguration": {"configuration": {"FunctionName": "tollgate-changeset", "UserParameters": params}},
                "inputArtifacts": [{"name": "SourceArtifact", "revision": "ec964d3d4496e0c7a2308ca3071aa7bab414de23",
                    "location": {"type": "S3", "s3Location":
                        {"bucketName": GATE_ARTIFACT_BUCKET, "objectKey": CHANGESET_ARTIFACT_KEY}}}],
                "outputArtifacts": [],
                "artifactCredentials": {"accessKeyId": "testing", "secretAccessKey": "testing",
                    "sessionToken": "testing", "expirationTime": 1795190400000u64}
            }
        }}),
        request_id: None,
    }
}

/// The approval function's signing secret, stored in the local Secrets Manager by the harness (a fixture).
pub const BENCH_SIGNING_SECRET: &str = "tollgate-bench-signing-secret-0123456789";
/// The chat user the harness links (`tollgate identity link`) to [`BENCH_APPROVER`].
pub const BENCH_CHAT_USER: &str = "T0001:U0001";
pub const BENCH_APPROVER: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";

fn approval_env(r: &Resources) -> Vec<(String, String)> {
    let mut env = table_and_topic(r);
    env.push(("TOLLGATE_SIGNING_SECRET_ARN".into(), r.signing_secret_arn.clone()));
    env.push((
        "TOLLGATE_APPROVERS".into(),
        "{approval: {approvers: ['arn:aws:sts::111122223333:assumed-role/ReleaseManager/*']}}".into(),
    ));
    env.push(("TOLLGATE_ACCOUNT".into(), "111122223333".into()));
    env
}

/// A signed function URL request: the slash command `/tollgate approve checkout-service Production <execution>
/// <reason>` by the linked chat user. Each new event approves another execution (an approval record and its audit
/// entry); the duplicate is one request sent again, which the replay guard refuses.
fn approval_event(delivery: Delivery, nonce: &str, seq: u64) -> Invocation {
    let (execution, signed_at) = match delivery {
        Delivery::New => {
            new_sequence();
            (format!("bench-{nonce}-{seq}"), now_millis() / 1000)
        }
        Delivery::Duplicate => (format!("bench-{nonce}-repeated"), duplicate_time()),
    };
    let (team, user) = BENCH_CHAT_USER.split_once(':').unwrap_or(("T0001", "U0001"));
    let body = format!(
        "token=ignored&team_id={team}&team_domain=example-shop&channel_id=C0001&user_id={user}&user_name=alice\
         &command=%2Ftollgate&text=approve+checkout-service+Production+{execution}+canary+looks+healthy"
    );
    let signature = SigningSecret::new(BENCH_SIGNING_SECRET.as_bytes().to_vec())
        .map(|secret| sign(&secret, signed_at, body.as_bytes()))
        .unwrap_or_default();
    Invocation {
        payload: json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/",
            "rawQueryString": "",
            "headers": {
                "content-type": "application/x-www-form-urlencoded",
                "host": "abcdefghij.lambda-url.eu-west-1.on.aws",
                "x-slack-request-timestamp": signed_at.to_string(),
                "x-slack-signature": signature
            },
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abcdefghij",
                "domainName": "abcdefghij.lambda-url.eu-west-1.on.aws",
                "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                    "userAgent": "Slackbot 1.0"},
                "requestId": format!("bench-url-{execution}"),
                "routeKey": "$default",
                "stage": "$default",
                "timeEpoch": signed_at * 1000
            },
            "body": body,
            "isBase64Encoded": false
        }),
        request_id: None,
    }
}

/// A new request is decided (200); a request sent again is refused as a replay. Anything else (not linked, not
/// an approver, a bad signature) means the harness's set-up is wrong, and the figures would be of a refusal.
fn approval_check(response: &Value) -> Result<(), String> {
    let status = response.get("statusCode").and_then(Value::as_u64);
    let text = response.get("body").and_then(Value::as_str).unwrap_or("");
    match status {
        Some(200) => Ok(()),
        Some(401) if text.contains("already used") => Ok(()),
        _ => Err(format!("the request was not decided: {response}")),
    }
}

/// Every function and baseline, in the order of the report. `clients` lists the SDK clients each function's
/// `main.rs` builds at init (the gate and changeset keep only an S3 configuration there: their S3 client is built
/// per job with the job's artifact credentials).
pub fn table() -> Vec<FunctionSpec> {
    vec![
        FunctionSpec {
            binary: "empty-function",
            baseline: true,
            clients: "",
            env: no_env,
            event: echo_event,
            check: any_response,
        },
        FunctionSpec {
            binary: "ingest",
            baseline: false,
            clients: "dynamodb,sns",
            env: table_and_topic,
            event: ingest_event,
            check: ingest_check,
        },
        FunctionSpec {
            binary: "metrics",
            baseline: false,
            clients: "dynamodb,sns,codepipeline",
            env: table_and_topic,
            event: metrics_event,
            check: any_response,
        },
        FunctionSpec {
            binary: "gate",
            baseline: false,
            clients: "dynamodb,sns,codepipeline,cloudwatch,tagging",
            env: table_and_topic,
            event: gate_event,
            check: any_response,
        },
        FunctionSpec {
            binary: "guard",
            baseline: false,
            clients: "dynamodb,sns,codepipeline,codedeploy,cloudformation,tagging",
            env: table_and_topic,
            event: guard_event,
            check: ingest_check,
        },
        FunctionSpec {
            binary: "hook",
            baseline: false,
            clients: "dynamodb,sns,cloudwatch,codedeploy",
            env: hook_env,
            event: hook_event,
            check: any_response,
        },
        FunctionSpec {
            binary: "changeset",
            baseline: false,
            clients: "dynamodb,sns,codepipeline,cloudformation",
            env: table_and_topic,
            event: changeset_event,
            check: any_response,
        },
        FunctionSpec {
            binary: "approval",
            baseline: false,
            clients: "dynamodb,sns,codepipeline,secretsmanager",
            env: approval_env,
            event: approval_event,
            check: approval_check,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_events_differ_and_duplicates_repeat() {
        for spec in table() {
            let a = (spec.event)(Delivery::New, "n", 1);
            let b = (spec.event)(Delivery::New, "n", 2);
            assert_ne!(a, b, "{}: two new events are the same", spec.binary);
            if spec.binary != "empty-function" {
                let d1 = (spec.event)(Delivery::Duplicate, "n", 3);
                let d2 = (spec.event)(Delivery::Duplicate, "n", 4);
                assert_eq!(d1.payload, d2.payload, "{}: duplicates differ", spec.binary);
            }
        }
    }

    #[test]
    fn gate_job_gets_its_id_replaced() {
        let job = gate_event(Delivery::New, "n", 7);
        assert_eq!(job.payload["CodePipeline.job"]["id"], "bench-job-n-7");
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_millis(0), "1970-01-01T00:00:00.000");
        assert_eq!(utc_millis(1_795_184_880_123), "2026-11-20T14:28:00.123");
        assert_eq!(utc_millis(951_782_400_000), "2000-02-29T00:00:00.000");
    }

    #[test]
    fn a_guard_event_is_an_alarm_change_of_now_in_an_sqs_batch() {
        let event = guard_event(Delivery::New, "n", 1).payload;
        let body: Value = serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["detail"]["alarmName"], BENCH_ALARM);
        assert_eq!(body["detail"]["state"]["value"], "ALARM");
        let stamp = body["detail"]["state"]["timestamp"].as_str().unwrap();
        assert_eq!(&stamp[..16], &utc_millis(now_millis())[..16]);
    }

    #[test]
    fn approval_requests_carry_a_valid_signature_and_a_duplicate_repeats_it() {
        let secret = SigningSecret::new(BENCH_SIGNING_SECRET.as_bytes().to_vec()).unwrap();
        let request = approval_event(Delivery::New, "n", 1).payload;
        let header = |name: &str| request["headers"][name].as_str().map(str::to_string);
        let body = request["body"].as_str().unwrap().as_bytes().to_vec();
        let now = chrono::Utc::now();
        assert!(tollgate_aws::chat_auth::verify(&secret, header, &body, now).is_ok());
        let d1 = approval_event(Delivery::Duplicate, "n", 2);
        let d2 = approval_event(Delivery::Duplicate, "n", 3);
        assert_eq!(d1.payload["headers"], d2.payload["headers"]);
        assert_ne!(d1.payload["headers"], request["headers"]);
    }

    #[test]
    fn approval_check_accepts_decisions_and_replays_only() {
        assert!(approval_check(&json!({"statusCode": 200, "body": "{}"})).is_ok());
        let replay =
            json!({"statusCode": 401, "body": "Refused: the request was sent before: its signature was already used"});
        assert!(approval_check(&replay).is_ok());
        assert!(approval_check(&json!({"statusCode": 403, "body": "Refused: not linked"})).is_err());
    }

    #[test]
    fn changeset_jobs_name_their_own_stack() {
        let job = changeset_event(Delivery::New, "n", 4).payload;
        let params = job["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]["UserParameters"]
            .as_str()
            .unwrap()
            .to_string();
        let params: Value = serde_json::from_str(&params).unwrap();
        assert_eq!(params["stack"], "tollgate-bench-n-4");
        assert_eq!(params["template"], "stack.yaml");
    }

    #[test]
    fn ingest_check_refuses_a_batch_with_failures() {
        assert!(ingest_check(&json!({"batchItemFailures": []})).is_ok());
        assert!(ingest_check(&json!({"batchItemFailures": [{"itemIdentifier": "x"}]})).is_err());
    }
}

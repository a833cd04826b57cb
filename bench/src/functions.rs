//! The functions the benchmark measures, as a table: binary name, the environment its `config.rs` requires, the SDK
//! clients it builds at init (for the fair baseline), a new event and a duplicate event. A function added to the
//! workspace is measured by adding one row here.

use serde_json::{json, Value};

/// Names of the local resources the functions are pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub table: String,
    pub topic_arn: String,
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
    env.push(("TOLLGATE_HOOK_ALARMS".into(), "checkout-service-5xx".into()));
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

/// Every function and baseline, in the order of the report.
pub fn table() -> Vec<FunctionSpec> {
    // Skeletons build no SDK client yet: no SDK baseline to compare with.
    let echo = |binary| FunctionSpec {
        binary,
        baseline: false,
        clients: "",
        env: table_and_topic,
        event: echo_event,
        check: any_response,
    };
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
            clients: "dynamodb,sns,codepipeline,cloudwatch,s3",
            env: table_and_topic,
            event: gate_event,
            check: any_response,
        },
        // Being built: measured with a generic event until they have their own row.
        echo("guard"),
        FunctionSpec {
            binary: "hook",
            baseline: false,
            clients: "dynamodb,sns,cloudwatch",
            env: hook_env,
            event: hook_event,
            check: any_response,
        },
        echo("changeset"),
        echo("approval"),
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
            if ["ingest", "metrics", "gate", "hook"].contains(&spec.binary) {
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
    fn ingest_check_refuses_a_batch_with_failures() {
        assert!(ingest_check(&json!({"batchItemFailures": []})).is_ok());
        assert!(ingest_check(&json!({"batchItemFailures": [{"itemIdentifier": "x"}]})).is_err());
    }
}

//! The harness's own logic, fast enough for `make test`: the Runtime API emulator serving the (debug) empty function,
//! and the counting proxy in front of a stand-in endpoint. The release benchmark itself is `make bench`.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use tollgate_bench::emulator::{Emulator, Outcome};
use tollgate_bench::functions::table;
use tollgate_bench::http::{read_message, write_message, Message};
use tollgate_bench::measure::{lambda_env, Bench, Target};
use tollgate_bench::proxy::{CountingProxy, Counts, Stub};

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A stand-in for the local endpoint: answers every request with 200 and `{"served":true}`, one per connection.
fn fake_endpoint() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            if let Ok(Some(_)) = read_message(&mut reader, false) {
                let headers = [("Content-Type".to_string(), "application/json".to_string())];
                let _ = write_message(&mut writer, "HTTP/1.1 200 OK", &headers, br#"{"served":true}"#);
            }
        }
    });
    addr
}

fn send(proxy: &CountingProxy, target: &str, body: &str) -> Message {
    let addr = proxy.endpoint().trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let headers = [
        (
            "Authorization".to_string(),
            "AWS4-HMAC-SHA256 Credential=k/20261122/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
                .to_string(),
        ),
        ("X-Amz-Target".to_string(), target.to_string()),
    ];
    write_message(&mut writer, "POST / HTTP/1.1", &headers, body.as_bytes()).unwrap();
    writer.flush().unwrap();
    read_message(&mut BufReader::new(stream), true).unwrap().unwrap()
}

#[test]
fn proxy_counts_each_operation_and_answers_stubbed_ones_itself() {
    let stub = Stub {
        status: 200,
        headers: vec![("Content-Type".into(), "application/x-amz-json-1.0".into())],
        body: br#"{"stubbed":true}"#.to_vec(),
    };
    let proxy = CountingProxy::start(fake_endpoint(), [("dynamodb.DescribeTable".to_string(), stub)].into()).unwrap();
    let forwarded = send(&proxy, "DynamoDB_20120810.UpdateItem", "{}");
    assert_eq!(forwarded.status(), 200);
    assert_eq!(forwarded.body, br#"{"served":true}"#);
    send(&proxy, "DynamoDB_20120810.UpdateItem", "{}");
    let stubbed = send(&proxy, "DynamoDB_20120810.DescribeTable", "{}");
    assert_eq!(stubbed.body, br#"{"stubbed":true}"#);
    assert_eq!(
        proxy.snapshot(),
        Counts::from([("dynamodb.UpdateItem".into(), 2), ("dynamodb.DescribeTable".into(), 1)])
    );
    assert_eq!(proxy.stubbed(), Counts::from([("dynamodb.DescribeTable".into(), 1)]));
    assert!(proxy.failures().is_empty(), "{:?}", proxy.failures());
}

#[test]
fn emulator_serves_the_empty_function_and_records_its_answers() {
    let emulator = Emulator::start().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_empty-function"))
        .env("AWS_LAMBDA_RUNTIME_API", emulator.address())
        .envs(lambda_env("empty-function", "http://127.0.0.1:9".into()))
        .spawn()
        .unwrap();
    let first_next = emulator.wait_next_calls(1, Duration::from_secs(30));
    let id = emulator.invoke(br#"{"hello":"tollgate"}"#.to_vec(), None);
    let outcome = emulator.wait_outcome(&id, Duration::from_secs(30));
    let retried = emulator.invoke(br#"{"again":1}"#.to_vec(), Some("fixed-id"));
    let retried_outcome = emulator.wait_outcome(&retried, Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    assert!(first_next.is_some(), "the function never asked for work");
    match outcome {
        Some(Outcome::Response { body, .. }) => assert_eq!(body, br#"{"hello":"tollgate"}"#),
        other => panic!("expected the echoed event, got {other:?}"),
    }
    assert_eq!(retried, "fixed-id");
    assert!(
        matches!(retried_outcome, Some(Outcome::Response { .. })),
        "{retried_outcome:?}"
    );
    assert!(emulator.init_error().is_none());
}

#[test]
fn native_run_measures_init_events_and_memory_of_the_empty_function() {
    let proxy = CountingProxy::start(fake_endpoint(), Default::default()).unwrap();
    let bench = Bench {
        proxy: &proxy,
        out_dir: out_dir("native"),
        nonce: "test".into(),
        sequence: std::cell::Cell::new(0),
        timeout: Duration::from_secs(30),
    };
    let specs = table();
    let target = Target {
        name: "empty-function".into(),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_empty-function")),
        env: Vec::new(),
        spec: &specs[0],
    };
    let run = bench.native_run(&target, 3).unwrap();
    assert!(run.init > Duration::ZERO);
    assert_eq!(run.new_events.len(), 3);
    assert_eq!(run.duplicates.len(), 3);
    assert!(run.peak_rss_kb > 0, "VmHWM was not read");
    assert!(
        run.new_requests.is_empty(),
        "the empty function made AWS requests: {:?}",
        run.new_requests
    );
}

#[test]
fn a_function_that_exits_at_init_is_reported_with_its_output() {
    let proxy = CountingProxy::start(fake_endpoint(), Default::default()).unwrap();
    let bench = Bench {
        proxy: &proxy,
        out_dir: out_dir("exits"),
        nonce: "test".into(),
        sequence: std::cell::Cell::new(0),
        timeout: Duration::from_secs(30),
    };
    let specs = table();
    // `false` exits at once with status 1, as a function whose config.rs refuses to start does.
    let target = Target {
        name: "exits-at-init".into(),
        binary: PathBuf::from("false"),
        env: Vec::new(),
        spec: &specs[0],
    };
    let err = bench.native_run(&target, 1).unwrap_err().to_string();
    assert!(
        err.contains("exits-at-init") && err.contains("before asking for work"),
        "{err}"
    );
}

//! A counting HTTP proxy in front of the local AWS endpoint: every request a function sends is counted by service
//! and operation, as it reaches the endpoint (retries included), then forwarded. Operations the local endpoint does
//! not serve can be answered here with a canned response ("stubs"), which are counted and reported as such.
//!
//! The operation is read from what the SDK puts on the wire: the `X-Amz-Target` header (JSON protocols), the
//! `/service/<S>/operation/<Op>` path (RPC v2 CBOR), the `Action` of a query-protocol form body, or the method of
//! a REST call (S3); the service is the signing name of the request's SigV4 credential scope.

use std::collections::BTreeMap;
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::http::{read_message, write_message, Message};

/// A canned answer for an operation the local endpoint lacks. [`JOB_ID_PLACEHOLDER`] in the body is replaced by the
/// request's `jobId`.
#[derive(Debug, Clone)]
pub struct Stub {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Stands for the request's `jobId` (a JSON-protocol field) in a stub's body: GetJobDetails then answers each job
/// with a pipeline execution of its own.
pub const JOB_ID_PLACEHOLDER: &str = "{{jobId}}";

/// The stub's body for `request`, with the placeholder replaced (JSON-escaped) when the request names a job.
fn stub_body(stub: &Stub, request: &Message) -> Vec<u8> {
    let body = String::from_utf8_lossy(&stub.body);
    if !body.contains(JOB_ID_PLACEHOLDER) {
        return stub.body.clone();
    }
    let job_id = serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|v| v.get("jobId").and_then(serde_json::Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let escaped = serde_json::Value::String(job_id).to_string();
    body.replace(JOB_ID_PLACEHOLDER, escaped.trim_matches('"')).into_bytes()
}

/// Requests by `service.Operation`.
pub type Counts = BTreeMap<String, u64>;

#[derive(Default)]
struct Inner {
    counts: Counts,
    stubbed: Counts,
    /// Requests the endpoint answered with a server error: what a benchmark must not hide.
    failures: Vec<String>,
}

/// The proxy; it serves until the harness exits.
pub struct CountingProxy {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl CountingProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `upstream` (`127.0.0.1:5055`).
    pub fn start(upstream: SocketAddr, stubs: BTreeMap<String, Stub>) -> io::Result<CountingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let stubs = Arc::new(stubs);
        let accept_inner = inner.clone();
        thread::Builder::new().name("proxy-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (inner, stubs) = (accept_inner.clone(), stubs.clone());
                let _ = thread::Builder::new()
                    .name("proxy-conn".into())
                    .spawn(move || relay(stream, upstream, &inner, &stubs));
            }
        })?;
        Ok(CountingProxy { addr, inner })
    }

    /// `http://host:port`, the value of `AWS_ENDPOINT_URL` for the functions.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn snapshot(&self) -> Counts {
        lock(&self.inner).counts.clone()
    }

    pub fn stubbed(&self) -> Counts {
        lock(&self.inner).stubbed.clone()
    }

    /// Server errors seen so far, as `operation: status body-start`.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.inner).failures.clone()
    }
}

/// Requests made between two snapshots, by operation (operations with none left out).
pub fn difference(later: &Counts, earlier: &Counts) -> Counts {
    later
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(earlier.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn relay(client: TcpStream, upstream: SocketAddr, inner: &Mutex<Inner>, stubs: &BTreeMap<String, Stub>) {
    let Ok(mut writer) = client.try_clone() else { return };
    let mut reader = BufReader::new(client);
    while let Ok(Some(request)) = read_message(&mut reader, false) {
        let operation = operation_of(&request);
        lock(inner)
            .counts
            .entry(operation.clone())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let answer = match stubs.get(&operation) {
            Some(stub) => {
                lock(inner)
                    .stubbed
                    .entry(operation.clone())
                    .and_modify(|n| *n += 1)
                    .or_insert(1);
                Ok((
                    format!("HTTP/1.1 {} Stubbed", stub.status),
                    stub.headers.clone(),
                    stub_body(stub, &request),
                ))
            }
            // The endpoint's `Connection: close` is for the proxy's own connection, not the function's.
            None => forward(&request, upstream).map(|r| {
                let headers = r
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("connection"))
                    .cloned();
                (r.start_line.clone(), headers.collect(), r.body)
            }),
        };
        let (line, headers, body) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                let text = format!("the local endpoint {upstream} did not answer: {e}");
                lock(inner).failures.push(format!("{operation}: {text}"));
                ("HTTP/1.1 502 Bad Gateway".to_string(), Vec::new(), text.into_bytes())
            }
        };
        let status = Message {
            start_line: line.clone(),
            ..Message::default()
        }
        .status();
        if status >= 500 {
            let start: String = String::from_utf8_lossy(&body).chars().take(160).collect();
            lock(inner).failures.push(format!("{operation}: {status} {start}"));
        }
        if write_message(&mut writer, &line, &headers, &body).is_err() {
            return;
        }
    }
}

/// One request on its own connection: the local endpoint serves one request at a time and closes cleanly.
fn forward(request: &Message, upstream: SocketAddr) -> io::Result<Message> {
    let stream = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut headers = request.headers.clone();
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("connection"));
    headers.push(("Connection".to_string(), "close".to_string()));
    write_message(&mut writer, &request.start_line, &headers, &request.body)?;
    let mut reader = BufReader::new(stream);
    read_message(&mut reader, true)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the endpoint closed without answering"))
}

/// `service.Operation` of an SDK request.
pub fn operation_of(request: &Message) -> String {
    let service = request
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unsigned")
        .to_string();
    if let Some(target) = request.header("x-amz-target") {
        let op = target.rsplit('.').next().unwrap_or(target);
        return format!("{service}.{op}");
    }
    let (method, target) = request.method_and_target();
    if let Some(rest) = target
        .split("/operation/")
        .nth(1)
        .filter(|_| target.starts_with("/service/"))
    {
        return format!("{service}.{}", rest.split(['?', '/']).next().unwrap_or(rest));
    }
    let form = request
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let body = if form {
        String::from_utf8_lossy(&request.body).into_owned()
    } else {
        String::new()
    };
    for pairs in [body.as_str(), query] {
        if let Some(action) = pairs.split('&').find_map(|p| p.strip_prefix("Action=")) {
            return format!("{service}.{action}");
        }
    }
    // REST protocols (S3): the method and whether the path names an object or a bucket.
    let path = target.split('?').next().unwrap_or("");
    let segments = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).count();
    let noun = if segments >= 2 { "Object" } else { "Bucket" };
    let verb = match method {
        "GET" => "Get",
        "PUT" => "Put",
        "HEAD" => "Head",
        "DELETE" => "Delete",
        "POST" => "Post",
        other => other,
    };
    format!("{service}.{verb}{noun}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str, headers: &[(&str, &str)], body: &str) -> Message {
        Message {
            start_line: line.to_string(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    const AUTH_DYNAMODB: &str =
        "AWS4-HMAC-SHA256 Credential=testing/20261122/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0";
    const AUTH_SNS: &str =
        "AWS4-HMAC-SHA256 Credential=testing/20261122/eu-west-1/sns/aws4_request, SignedHeaders=host, Signature=0";

    #[test]
    fn json_protocol_operation_comes_from_the_target_header() {
        let r = request(
            "POST / HTTP/1.1",
            &[
                ("Authorization", AUTH_DYNAMODB),
                ("X-Amz-Target", "DynamoDB_20120810.UpdateItem"),
            ],
            "{}",
        );
        assert_eq!(operation_of(&r), "dynamodb.UpdateItem");
    }

    #[test]
    fn query_protocol_operation_comes_from_the_form_action() {
        let r = request(
            "POST / HTTP/1.1",
            &[
                ("Authorization", AUTH_SNS),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "Action=Publish&Version=2010-03-31&TopicArn=arn",
        );
        assert_eq!(operation_of(&r), "sns.Publish");
    }

    #[test]
    fn cbor_and_rest_operations_come_from_the_path() {
        let auth = AUTH_DYNAMODB.replace("dynamodb", "monitoring");
        let r = request(
            "POST /service/GraniteServiceVersion20100801/operation/DescribeAlarms HTTP/1.1",
            &[("Authorization", &auth)],
            "",
        );
        assert_eq!(operation_of(&r), "monitoring.DescribeAlarms");
        let auth = AUTH_DYNAMODB.replace("dynamodb", "s3");
        let r = request(
            "GET /bucket/some/key?x-id=GetObject HTTP/1.1",
            &[("Authorization", &auth)],
            "",
        );
        assert_eq!(operation_of(&r), "s3.GetObject");
    }

    #[test]
    fn a_stub_answers_with_the_requests_job_id_in_place_of_the_placeholder() {
        let stub = Stub {
            status: 200,
            headers: Vec::new(),
            body: br#"{"pipelineExecutionId":"{{jobId}}"}"#.to_vec(),
        };
        let get = request(
            "POST / HTTP/1.1",
            &[("X-Amz-Target", "CodePipeline_20150709.GetJobDetails")],
            r#"{"jobId":"job-7"}"#,
        );
        assert_eq!(stub_body(&stub, &get), br#"{"pipelineExecutionId":"job-7"}"#.to_vec());
        let fixed = Stub {
            body: b"{}".to_vec(),
            ..stub
        };
        assert_eq!(stub_body(&fixed, &get), b"{}".to_vec());
    }

    #[test]
    fn difference_keeps_only_operations_that_grew() {
        let earlier = Counts::from([("a".into(), 2), ("b".into(), 1)]);
        let later = Counts::from([("a".into(), 5), ("b".into(), 1), ("c".into(), 1)]);
        assert_eq!(
            difference(&later, &earlier),
            Counts::from([("a".into(), 3), ("c".into(), 1)])
        );
    }
}

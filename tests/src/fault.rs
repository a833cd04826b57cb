//! A fault-injecting HTTP proxy in front of the local AWS endpoint.
//!
//! SDK clients pointed at the proxy see the failures a real AWS region produces: throttling and 5xx answers in each
//! service's own protocol, connections reset before the request reaches the service, and the dangerous one, a request
//! that the service applied but whose answer never arrived (reset, or stalled past the client's attempt timeout).
//! An SDK interceptor cannot produce that last case: the proxy forwards the request, lets moto apply it, and then
//! loses the answer.
//!
//! Whether the n-th request is faulted, and how, depends only on the seed and n, so a seed gives the same fault
//! pattern over the request sequence (which request is n-th depends on task scheduling when clients run
//! concurrently). Every upstream request opens its own connection with `Connection: close`: moto serves one
//! connection at a time, and a kept-alive upstream connection would block every other client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate::local::Rng;

/// One kind of injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// 400 with the service's throttling error (DynamoDB `ProvisionedThroughputExceededException`, SQS
    /// `RequestThrottled`, SNS `Throttling`); nothing reaches the service.
    Throttle,
    /// 500 or 503 with the service's internal-error body; nothing reaches the service.
    ServerError,
    /// The connection is reset before the request is forwarded; nothing reaches the service.
    ResetBeforeForward,
    /// The request is forwarded and applied, then the connection is reset instead of answering.
    ResponseLost,
    /// The request is forwarded and applied, then the answer is held past the client's attempt timeout.
    Stall,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::ResetBeforeForward,
        FaultKind::ResponseLost,
        FaultKind::Stall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::ServerError => "5xx",
            FaultKind::ResetBeforeForward => "reset-before-forward",
            FaultKind::ResponseLost => "response-lost",
            FaultKind::Stall => "stall",
        }
    }

    /// Whether the service applied the request although the client saw a failure.
    pub fn applied(self) -> bool {
        matches!(self, FaultKind::ResponseLost | FaultKind::Stall)
    }
}

/// What to inject.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    pub seed: u64,
    /// The share of requests that fail (0 to 1).
    pub share: f64,
    /// Relative weights of the kinds among faulted requests.
    pub weights: Vec<(FaultKind, u32)>,
    /// The longest a stalled answer is held: it is held until the client hangs up (its attempt timeout), at most this.
    pub stall: Duration,
}

impl FaultConfig {
    /// 10% of requests: a third throttled, a quarter 5xx, the rest connection failures, a fifth of them after the
    /// request was applied (half reset, a few stalled).
    pub fn ten_percent(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            share: 0.10,
            weights: vec![
                (FaultKind::Throttle, 30),
                (FaultKind::ServerError, 25),
                (FaultKind::ResetBeforeForward, 20),
                (FaultKind::ResponseLost, 20),
                (FaultKind::Stall, 5),
            ],
            stall: Duration::from_secs(120),
        }
    }

    /// The fault of the `n`-th request (0-based), if any: a pure function of the seed and `n`.
    pub fn fault_of(&self, n: u64) -> Option<FaultKind> {
        let mut rng = Rng::new(self.seed ^ n.wrapping_mul(0x9E6C_63D0_676A_9A99));
        if rng.unit() >= self.share {
            return None;
        }
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut pick = (rng.unit() * total as f64) as u32;
        for (kind, w) in &self.weights {
            if pick < *w {
                return Some(*kind);
            }
            pick -= w;
        }
        self.weights.last().map(|(k, _)| *k)
    }
}

/// What the proxy saw and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FaultStats {
    pub requests: u64,
    /// Faults by kind and by the operation they hit (`DynamoDB.UpdateItem`, `SNS.Publish`, `SQS.ReceiveMessage`).
    pub faults: BTreeMap<(FaultKind, String), u64>,
}

impl FaultStats {
    pub fn total(&self) -> u64 {
        self.faults.values().sum()
    }

    pub fn by_kind(&self) -> BTreeMap<FaultKind, u64> {
        let mut out = BTreeMap::new();
        for ((kind, _), n) in &self.faults {
            *out.entry(*kind).or_default() += n;
        }
        out
    }

    /// Faults of `kind` that hit `operation`.
    pub fn count(&self, kind: FaultKind, operation: &str) -> u64 {
        self.faults.get(&(kind, operation.to_string())).copied().unwrap_or(0)
    }
}

/// A running proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    upstream: SocketAddr,
    config: FaultConfig,
    enabled: AtomicBool,
    sequence: AtomicU64,
    stats: Mutex<FaultStats>,
}

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the local endpoint {0:?} is not an http://host:port address")]
    Endpoint(String),
    #[error("cannot listen on 127.0.0.1 for the fault proxy: {0}")]
    Listen(#[source] std::io::Error),
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`http://127.0.0.1:5055`).
    pub async fn start(upstream: &str, config: FaultConfig) -> Result<FaultProxy, ProxyError> {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|_| ProxyError::Endpoint(upstream.to_string()))?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(ProxyError::Listen)?;
        let addr = listener.local_addr().map_err(ProxyError::Listen)?;
        let state = Arc::new(State {
            upstream,
            config,
            enabled: AtomicBool::new(true),
            sequence: AtomicU64::new(0),
            stats: Mutex::new(FaultStats::default()),
        });
        let accepting = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = accepting.clone();
                tokio::spawn(async move {
                    // A client that goes away mid-request is not our concern; the SDK reports it to its caller.
                    let _ = serve(client, &state).await;
                });
            }
        });
        Ok(FaultProxy { addr, state, task })
    }

    /// `http://127.0.0.1:<port>`: the endpoint URL for SDK clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Turns injection on or off (off: a transparent proxy).
    pub fn set_enabled(&self, on: bool) {
        self.state.enabled.store(on, Ordering::SeqCst);
    }

    pub fn stats(&self) -> FaultStats {
        lock(&self.state.stats).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One HTTP/1.1 request as read from the client.
struct Request {
    /// Request line and headers, without the blank line.
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// `Service.Operation`, from the JSON protocols' `X-Amz-Target` or the query protocol's `Action`.
    fn operation(&self) -> (Service, String) {
        if let Some(target) = self.header("x-amz-target") {
            let (prefix, op) = target.split_once('.').unwrap_or((target, ""));
            let service = if prefix.starts_with("DynamoDB") {
                Service::DynamoDb
            } else if prefix.starts_with("AmazonSQS") {
                Service::Sqs
            } else {
                Service::Other
            };
            return (service, format!("{}.{op}", service.name()));
        }
        let body = String::from_utf8_lossy(&self.body);
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("unknown");
        (Service::Sns, format!("SNS.{action}"))
    }

    /// The request for the upstream: the same, on a connection that closes after the answer.
    fn upstream_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for line in self.head.lines() {
            if line.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    DynamoDb,
    Sqs,
    Sns,
    Other,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::DynamoDb => "DynamoDB",
            Service::Sqs => "SQS",
            Service::Sns => "SNS",
            Service::Other => "Other",
        }
    }
}

/// Serves one client connection: requests one after the other, as HTTP/1.1 keep-alive clients send them.
async fn serve(mut client: TcpStream, state: &State) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut client, &mut buffer).await? else {
            return Ok(());
        };
        let n = state.sequence.fetch_add(1, Ordering::SeqCst);
        let fault = if state.enabled.load(Ordering::SeqCst) {
            state.config.fault_of(n)
        } else {
            None
        };
        let (service, operation) = request.operation();
        {
            let mut stats = lock(&state.stats);
            stats.requests += 1;
            if let Some(kind) = fault {
                *stats.faults.entry((kind, operation.clone())).or_default() += 1;
            }
        }
        match fault {
            None => {
                let answer = forward(state.upstream, &request).await?;
                client.write_all(&answer).await?;
            }
            Some(FaultKind::Throttle) => client.write_all(&throttle(service)).await?,
            Some(FaultKind::ServerError) => client.write_all(&server_error(service, n)).await?,
            Some(FaultKind::ResetBeforeForward) => return reset(client),
            Some(FaultKind::ResponseLost) => {
                forward(state.upstream, &request).await?;
                return reset(client);
            }
            Some(FaultKind::Stall) => {
                forward(state.upstream, &request).await?;
                // Hold the answer until the client gives up (its attempt timeout), however long that takes on this
                // machine; `stall` only bounds the hold for a client without a timeout.
                let mut byte = [0u8; 1];
                let _ = tokio::time::timeout(state.config.stall, client.read(&mut byte)).await;
                return reset(client);
            }
        }
    }
}

/// Closes with a TCP reset (SO_LINGER 0), the way a dropped connection looks to the client.
fn reset(client: TcpStream) -> std::io::Result<()> {
    client.set_zero_linger()?;
    drop(client);
    Ok(())
}

/// Reads one request (head and `Content-Length` body); `None` when the client closed the connection.
async fn read_request(client: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(i) = find(buffer, b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut request = Request { head, body: Vec::new() };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return Err(std::io::Error::other(
            "chunked request bodies are not supported by the fault proxy",
        ));
    }
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 65536];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    request.body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Ok(Some(request))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends the request upstream on its own connection and returns the whole answer, framed with a `Content-Length`
/// when the upstream closed the connection to end it, so the client's connection can stay open.
async fn forward(upstream: SocketAddr, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).await?;
    conn.write_all(&request.upstream_bytes()).await?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await?;
    let Some(head_end) = find(&answer, b"\r\n\r\n") else {
        return Err(std::io::Error::other("the local endpoint sent no complete HTTP answer"));
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
    let body = &answer[head_end + 4..];
    let mut out = String::new();
    let mut framed = false;
    for line in head.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        framed |= lower.starts_with("content-length:") || lower.starts_with("transfer-encoding:");
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !framed {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Ok(bytes)
}

fn http(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: fault-proxy\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn json_error(status: &str, content_type: &str, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"__type": code, "message": message}).to_string();
    http(status, content_type, &body)
}

fn query_error(status: &str, kind: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>{kind}</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
    );
    http(status, "text/xml", &body)
}

fn throttle(service: Service) -> Vec<u8> {
    match service {
        Service::DynamoDb => json_error(
            "400 Bad Request",
            "application/x-amz-json-1.0",
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
        Service::Sqs => json_error(
            "400 Bad Request",
            "application/x-amz-json-1.0",
            "com.amazonaws.sqs#RequestThrottled",
            "Rate exceeded",
        ),
        Service::Sns | Service::Other => query_error("400 Bad Request", "Sender", "Throttling", "Rate exceeded"),
    }
}

fn server_error(service: Service, n: u64) -> Vec<u8> {
    let unavailable = n % 2 == 0;
    let status = if unavailable {
        "503 Service Unavailable"
    } else {
        "500 Internal Server Error"
    };
    match service {
        Service::DynamoDb if unavailable => json_error(
            status,
            "application/x-amz-json-1.0",
            "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
            "Service unavailable",
        ),
        Service::DynamoDb => json_error(
            status,
            "application/x-amz-json-1.0",
            "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "Internal server error",
        ),
        Service::Sqs => json_error(
            status,
            "application/x-amz-json-1.0",
            "com.amazonaws.sqs#InternalError",
            "We encountered an internal error. Please try again.",
        ),
        Service::Sns | Service::Other => query_error(status, "Receiver", "InternalError", "Internal error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_pattern_is_a_function_of_the_seed_and_the_share_holds() {
        let config = FaultConfig::ten_percent(42);
        let pattern: Vec<_> = (0..20_000).map(|n| config.fault_of(n)).collect();
        assert_eq!(pattern, (0..20_000).map(|n| config.fault_of(n)).collect::<Vec<_>>());
        let faulted = pattern.iter().flatten().count() as f64 / 20_000.0;
        assert!((0.09..0.11).contains(&faulted), "{faulted}");
        for kind in FaultKind::ALL {
            assert!(pattern.contains(&Some(kind)), "{kind:?} never drawn");
        }
        let other = FaultConfig::ten_percent(43);
        assert_ne!(pattern, (0..20_000).map(|n| other.fault_of(n)).collect::<Vec<_>>());
    }

    #[test]
    fn a_zero_share_injects_nothing() {
        let config = FaultConfig {
            share: 0.0,
            ..FaultConfig::ten_percent(1)
        };
        assert!((0..5_000).all(|n| config.fault_of(n).is_none()));
    }
}

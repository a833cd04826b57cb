//! The signed request, checked at the HTTP layer: a local TCP server captures what the CLI sends.

use super::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A one-request HTTP server answering `status` with `body`; the request it received, as text.
async fn server(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before sending a whole request");
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8(received).unwrap()
    });
    (url, handle)
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    let head = &request[..request.find("\r\n\r\n").unwrap()];
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_184_880) // 2026-11-20T14:28:00Z
}

fn approve() -> Value {
    json!({"operation": "approve", "account": "111122223333", "region": "eu-west-1", "pipeline": "checkout-service",
        "execution_id": "e-1", "stage": "Production", "reason": "canary ok"})
}

#[tokio::test]
async fn the_request_is_signed_with_sigv4_for_lambda_with_the_body_hash() {
    let (url, captured) = server(
        200,
        r#"{"message": "approved checkout-service / Production / e-1 as bob"}"#,
    )
    .await;
    let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some("session-token".into()), None, "test");
    let message = call(&url, "eu-west-1", credentials, &approve(), time()).await.unwrap();
    assert_eq!(message, "approved checkout-service / Production / e-1 as bob");
    let request = captured.await.unwrap();
    assert!(request.starts_with("POST / HTTP/1.1\r\n"), "{request}");
    let authorization = header(&request, "authorization").expect("an Authorization header");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261120/eu-west-1/lambda/aws4_request, "),
        "{authorization}"
    );
    let signed = authorization
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    for h in [
        "content-type",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-security-token",
    ] {
        assert!(signed.split(';').any(|s| s == h), "{h} is not signed: {signed}");
    }
    let signature = authorization.split("Signature=").nth(1).unwrap();
    assert!(
        signature.len() == 64 && signature.chars().all(|c| c.is_ascii_hexdigit()),
        "{signature}"
    );
    assert_eq!(header(&request, "x-amz-date"), Some("20261120T142800Z"));
    assert_eq!(header(&request, "x-amz-security-token"), Some("session-token"));
    let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        header(&request, "x-amz-content-sha256"),
        Some(hex::encode(Sha256::digest(body.as_bytes())).as_str())
    );
    // The body says what and why, never who or when.
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(sent, approve());
}

#[tokio::test]
async fn a_refusal_is_the_servers_sentence_and_an_error() {
    let (url, captured) = server(
        403,
        r#"{"message": "refused: separation of duties: you started this execution and may not approve it; the refusal is recorded"}"#,
    )
    .await;
    let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    let err = call(&url, "eu-west-1", credentials, &approve(), time())
        .await
        .unwrap_err();
    assert!(matches!(err, DecideCallError::Refused { status: 403, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "refused: separation of duties: you started this execution and may not approve it; the refusal is recorded"
    );
    captured.await.unwrap();
}

#[test]
fn the_region_comes_from_the_function_url() {
    assert_eq!(
        url_region("https://abcdefghij.lambda-url.eu-west-1.on.aws/").as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(url_region("http://127.0.0.1:9000/"), None);
}

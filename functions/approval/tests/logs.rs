//! What the approval function logs: ids, decisions and token digests, never an approval token, a signing secret or
//! a chat body. Every log line of an announced request, a decision and a refused request is captured at TRACE level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use common::*;
use tollgate_domain::memory::MemoryApprovalResults;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_secret_or_body_is_ever_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = World::new().await;
    let results = MemoryApprovalResults::new();
    let ports = w.ports(&results);
    approval::handler::handle(&sns_event(), &ports, &settings(), now())
        .await
        .unwrap();
    let (status, _) = call(&ports, &url_event(&fixture_body(), Some(now())), now()).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &ports,
        &url_event(&fixture_body(), Some(now() - Duration::hours(1))),
        now(),
    )
    .await;
    assert_eq!(status, 401);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("manual approval request") && logs.contains("chat decision"),
        "{logs}"
    );
    for secret in [
        TOKEN,
        "EXAMPLETOKEN",
        std::str::from_utf8(SECRET).unwrap(),
        "canary+looks+healthy",
        "canary looks",
    ] {
        assert!(!logs.contains(secret), "{secret:?} was logged:\n{logs}");
    }
}

//! [`TcpHttpProbe`]: the hook's HTTP probe, one `GET` over a plain TCP connection (HTTP/1.1, `Connection: close`),
//! reading only the status line. Plain http only: Tollgate does not add a second HTTP client or TLS stack to the
//! function for it (docs/hook.md says why and what to probe instead).

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_domain::rollback::hook::{HttpProbe, ProbeUrl};

/// Bytes read before the status line must have ended.
const MAX_HEAD_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Default)]
pub struct TcpHttpProbe;

/// The status code of an HTTP/1.x status line (`HTTP/1.1 503 Service Unavailable`).
pub fn status_of(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

async fn get(url: &ProbeUrl) -> Result<u16, String> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let mut stream = TcpStream::connect((host, url.port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    // RFC 9112: the Host header carries the port unless it is the scheme's default.
    let authority = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tollgate-hook\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request to {url}: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&head[..end]).to_string();
            return status_of(&line).ok_or_else(|| format!("{url} answered something that is not HTTP: {line:?}"));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(format!("{url} sent {MAX_HEAD_BYTES} bytes without a status line"));
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read the answer of {url}: {e}"))?;
        if n == 0 {
            return Err(format!("{url} closed the connection without answering"));
        }
        head.extend_from_slice(&buf[..n]);
    }
}

#[async_trait]
impl HttpProbe for TcpHttpProbe {
    async fn get_status(&self, url: &ProbeUrl, timeout: Duration) -> Result<u16, String> {
        match tokio::time::timeout(timeout, get(url)).await {
            Ok(result) => result,
            Err(_) => Err(format!("{url} did not answer within {}s", timeout.as_secs_f32())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection server that answers `response` and keeps the request it got.
    async fn serve(response: &'static [u8]) -> (ProbeUrl, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            socket.write_all(response).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let url = ProbeUrl::parse(&format!("http://127.0.0.1:{port}/health?deep=1")).unwrap();
        (url, handle)
    }

    #[tokio::test]
    async fn the_status_code_is_read_and_the_request_is_a_plain_get() {
        let (url, server) = serve(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
        let status = TcpHttpProbe.get_status(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!(status, 503);
        let request = server.await.unwrap();
        let expected = format!("GET /health?deep=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", url.port);
        assert!(request.starts_with(&expected), "{request}");
        assert!(request.contains("Connection: close"), "{request}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_garbage_is_not_a_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _keep = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let url = ProbeUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = TcpHttpProbe
            .get_status(&url, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("did not answer within"), "{err}");

        let (url, _server) = serve(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        let err = TcpHttpProbe.get_status(&url, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.contains("not HTTP"), "{err}");
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_of("HTTP/1.0 404"), Some(404));
        assert_eq!(status_of("HTTP/2 200"), None);
        assert_eq!(status_of("HTTP/1.1 2000 OK"), None);
    }
}

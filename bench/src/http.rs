//! Just enough HTTP/1.1 for the harness: the Lambda runtime client and the SDK speak plain HTTP/1.1 to 127.0.0.1, with
//! `Content-Length` or chunked bodies. Nothing here is exposed beyond the loopback interface.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// Requests and responses larger than this are refused: the biggest Lambda payload is 6 MB.
const MAX_BODY: usize = 8 * 1024 * 1024;
const MAX_HEAD_LINE: usize = 64 * 1024;

/// One HTTP message: its first line, headers in order and the whole body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Method and target of a request line (`GET /path HTTP/1.1`).
    pub fn method_and_target(&self) -> (&str, &str) {
        let mut parts = self.start_line.split_whitespace();
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }

    /// Status code of a response line (`HTTP/1.1 200 OK`); 0 when the line is not one.
    pub fn status(&self) -> u16 {
        self.start_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn read_line(r: &mut BufReader<TcpStream>) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(MAX_HEAD_LINE as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid("an HTTP header line is too long or cut short".into()));
    }
    let text = String::from_utf8(line).map_err(|_| invalid("an HTTP header line is not UTF-8".into()))?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Reads one message; `None` when the peer closed the connection before a new message began.
/// `body_to_eof`: a response without length or chunking runs to the end of the connection (a request has no body).
pub fn read_message(r: &mut BufReader<TcpStream>, body_to_eof: bool) -> io::Result<Option<Message>> {
    let start_line = loop {
        match read_line(r)? {
            None => return Ok(None),
            // Tolerates blank lines between messages, as RFC 9112 asks of a server.
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("connection closed inside HTTP headers".into()))?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("malformed HTTP header line {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut message = Message {
        start_line,
        headers,
        body: Vec::new(),
    };
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        message.body = read_chunked(r)?;
    } else if let Some(len) = message.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("Content-Length {len:?} is not a number")))?;
        if len > MAX_BODY {
            return Err(invalid(format!(
                "a body of {len} bytes is over the {MAX_BODY}-byte limit"
            )));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        message.body = body;
    } else if body_to_eof {
        r.by_ref().take(MAX_BODY as u64).read_to_end(&mut message.body)?;
    }
    Ok(Some(message))
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("connection closed inside a chunked body".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| invalid(format!("malformed chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            while let Some(l) = read_line(r)? {
                if l.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid(format!("a chunked body over the {MAX_BODY}-byte limit")));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// Writes a message with a `Content-Length` (any `Content-Length` or `Transfer-Encoding` header given is replaced:
/// bodies are always sent whole).
pub fn write_message(
    w: &mut impl Write,
    start_line: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("{start_line}\r\n");
    for (k, v) in headers {
        let skip = ["content-length", "transfer-encoding"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h));
        if !skip {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

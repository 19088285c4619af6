//! A raw HTTP/1.1 client for the attacker's tests: it sends exactly the bytes it is given
//! (dot segments, doubled slashes, header values no client library would send, bodies that
//! stall), where reqwest and the `url` crate would normalise or refuse them.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer read off the wire.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The problem code of a problem+json answer.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// The host and port of a base URL such as `http://127.0.0.1:1234`.
pub fn address(base: &str) -> String {
    base.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Sends `method target` with `headers` (and `body`, with its length) on a new connection
/// and reads the whole answer.
pub async fn send(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawAnswer {
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {}\r\n", address(base));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = TcpStream::connect(address(base)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    read_answer(&mut stream, method == "HEAD").await
}

/// Reads one answer from `stream`; a `HEAD` answer has no body whatever its length says.
pub async fn read_answer(stream: &mut TcpStream, head_only: bool) -> RawAnswer {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        assert!(read > 0, "connection closed before an answer: {buffer:?}");
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = buffer[header_end..].to_vec();
    if !head_only && status != 204 && status != 304 {
        match length {
            Some(length) => {
                while body.len() < length {
                    let read = stream.read(&mut chunk).await.unwrap();
                    if read == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..read]);
                }
                body.truncate(length);
            }
            None => {
                let _ = stream.read_to_end(&mut body).await;
            }
        }
    } else {
        body.clear();
    }
    RawAnswer {
        status,
        headers,
        body,
    }
}

/// Sends `request` byte for byte (head and body, however malformed) on a new connection and
/// reads the answer.
pub async fn send_bytes(base: &str, request: &[u8]) -> RawAnswer {
    let mut stream = TcpStream::connect(address(base)).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_answer(&mut stream, false).await
}

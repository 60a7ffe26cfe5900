//! For the hostile-request tests: a raw TCP pod that records every byte it receives on each
//! connection and parses just enough HTTP/1.1 (Content-Length or chunked framing) to know where
//! each request ends, and a raw TCP client that writes exact bytes and reads exact replies.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// One request as the pod saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Index of the pod connection it came on.
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    /// Lowercased names, in the order received.
    pub headers: Vec<(String, String)>,
    /// Decoded (de-chunked) body.
    pub body: Vec<u8>,
    /// The framing ended properly (all Content-Length bytes, or the last chunk and the blank
    /// line). An incomplete request is recorded when its connection closes.
    pub complete: bool,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The one value of `name`; panics when it appears more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} more than once: {self:?}");
        all.first().copied()
    }
}

/// Everything a pod received.
#[derive(Default, Debug)]
pub struct Record {
    /// Raw bytes per connection, in accept order.
    pub conns: Vec<Vec<u8>>,
    /// Per connection: tether closed it.
    pub closed: Vec<bool>,
    /// Per connection: bytes that belong to complete requests.
    pub parsed: Vec<usize>,
    pub requests: Vec<Seen>,
}

/// What the pod sends back for a complete request (nothing: no answer).
pub type Reply = fn(&Seen) -> Vec<u8>;

/// `200 OK` naming the request (`GET /x`), so answers can be told apart.
pub fn echo(seen: &Seen) -> Vec<u8> {
    let body = format!("{} {}", seen.method, seen.target);
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

pub struct RawPod {
    pub addr: SocketAddr,
    pub record: Arc<Mutex<Record>>,
}

impl RawPod {
    pub async fn start(reply: Reply) -> RawPod {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let shared = record.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let conn = {
                    let mut r = shared.lock().unwrap();
                    r.conns.push(Vec::new());
                    r.closed.push(false);
                    r.parsed.push(0);
                    r.conns.len() - 1
                };
                tokio::spawn(serve(s, conn, shared.clone(), reply));
            }
        });
        RawPod { addr, record }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.record.lock().unwrap().requests.clone()
    }

    /// `METHOD target` of every request, with ` (incomplete)` when its framing never ended.
    pub fn lines(&self) -> Vec<String> {
        let suffix = |complete| if complete { "" } else { " (incomplete)" };
        self.requests().into_iter().map(|r| format!("{} {}{}", r.method, r.target, suffix(r.complete))).collect()
    }

    /// Bytes received that are not part of a complete request (connections still open).
    pub fn unparsed(&self) -> String {
        let r = self.record.lock().unwrap();
        r.conns.iter().zip(&r.parsed).map(|(c, p)| String::from_utf8_lossy(&c[*p..]).into_owned()).collect()
    }

    /// The pod received exactly these requests (see `lines`), and no other byte.
    pub fn got_exactly(&self, lines: &[&str]) {
        assert_eq!(self.lines(), lines, "the pod received:\n{}", self.raw());
        let complete = self.requests().iter().all(|r| r.complete);
        if complete {
            assert_eq!(self.unparsed(), "", "bytes outside any request");
        }
    }

    /// Tether never opened a connection to this pod.
    pub fn untouched(&self) {
        assert!(self.record.lock().unwrap().conns.is_empty(), "the pod received:\n{}", self.raw());
    }

    /// All bytes of all connections (lossy text, for messages and `contains` checks).
    pub fn raw(&self) -> String {
        let r = self.record.lock().unwrap();
        r.conns
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n--- next connection ---\n")
    }

    /// Waits until some connection has received `needle`.
    pub async fn wait_bytes(&self, needle: &[u8]) {
        wait_for("bytes at the pod", || async {
            self.record.lock().unwrap().conns.iter().any(|c| find(c, needle).is_some())
        })
        .await;
    }

    /// Waits until tether has closed the connection that carried the request for `target`.
    pub async fn wait_closed(&self, target: &str) {
        wait_for(&format!("tether to close the connection of {target}"), || async {
            let r = self.record.lock().unwrap();
            r.requests.iter().any(|s| s.target == target && r.closed[s.conn])
        })
        .await;
    }
}

async fn serve(mut s: TcpStream, conn: usize, record: Arc<Mutex<Record>>, reply: Reply) {
    let mut buf = Vec::new();
    let mut pos = 0;
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            let mut r = record.lock().unwrap();
            if pos < buf.len() {
                let (mut partial, _) = parse(&buf[pos..], conn);
                partial.complete = false;
                r.requests.push(partial);
            }
            r.closed[conn] = true;
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        record.lock().unwrap().conns[conn].extend_from_slice(&chunk[..n]);
        // Every complete request in what has arrived, in order.
        while let (seen, Some(used)) = parse(&buf[pos..], conn) {
            pos += used;
            let answer = reply(&seen);
            {
                let mut r = record.lock().unwrap();
                r.parsed[conn] = pos;
                r.requests.push(seen);
            }
            // One write: a misbehaving answer arrives as one piece, as it would from one send.
            if !answer.is_empty() && s.write_all(&answer).await.is_err() {
                break;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request at the start of `bytes`, and how many bytes it used when it is complete.
fn parse(bytes: &[u8], conn: usize) -> (Seen, Option<usize>) {
    let mut seen = Seen {
        conn,
        method: String::new(),
        target: String::new(),
        version: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        complete: false,
    };
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        seen.body = bytes.to_vec();
        return (seen, None);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").splitn(3, ' ');
    seen.method = first.next().unwrap_or("").to_owned();
    seen.target = first.next().unwrap_or("").to_owned();
    seen.version = first.next().unwrap_or("").to_owned();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        seen.headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut at = head_end + 4;
    let chunked = seen.all("transfer-encoding").iter().any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let Some(eol) = find(&bytes[at..], b"\r\n") else { return (seen, None) };
            let size_text = String::from_utf8_lossy(&bytes[at..at + eol]);
            let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
                return (seen, None);
            };
            at += eol + 2;
            if size == 0 {
                // Trailer lines, then the blank line.
                let Some(end) = find(&bytes[at - 2..], b"\r\n\r\n") else { return (seen, None) };
                seen.complete = true;
                return (seen, Some(at - 2 + end + 4));
            }
            let available = bytes.len().saturating_sub(at).min(size);
            seen.body.extend_from_slice(&bytes[at..at + available]);
            if bytes.len() < at + size + 2 {
                return (seen, None);
            }
            at += size + 2;
        }
    }
    let length: usize = seen.header("content-length").map_or(0, |v| v.parse().unwrap());
    let available = bytes.len().saturating_sub(at).min(length);
    seen.body = bytes[at..at + available].to_vec();
    if available < length {
        return (seen, None);
    }
    seen.complete = true;
    (seen, Some(at + length))
}

/// A response as the client read it off the wire.
#[derive(Debug)]
pub struct Answer {
    /// `HTTP/1.1 200 OK`
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A raw client connection to tether.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client { stream: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// More bytes; false when the connection ended.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("no answer within {DEADLINE:?}; have {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// The next response, framed by its headers; `None` if the connection closed first.
    /// `bodyless`: the answer to a HEAD (a 1xx, 204 and 304 never have a body).
    pub async fn answer(&mut self, bodyless: bool) -> Option<Answer> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "closed mid-head: {:?}", String::from_utf8_lossy(&self.buf));
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|l| l.split_once(':').unwrap_or((l, "")))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut answer = Answer { status_line, headers, body: Vec::new() };
        let status = answer.status();
        if bodyless || (100..200).contains(&status) || status == 204 || status == 304 {
            return Some(answer);
        }
        if answer.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                while find(&self.buf, b"\r\n").is_none() {
                    assert!(self.fill().await, "closed mid-chunk: {answer:?}");
                }
                let eol = find(&self.buf, b"\r\n").unwrap();
                let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..eol]).unwrap(), 16).unwrap();
                while self.buf.len() < eol + 2 + size + 2 {
                    assert!(self.fill().await, "closed mid-chunk: {answer:?}");
                }
                answer.body.extend_from_slice(&self.buf[eol + 2..eol + 2 + size]);
                self.buf.drain(..eol + 2 + size + 2);
                if size == 0 {
                    return Some(answer);
                }
            }
        }
        let length: usize = answer.header("content-length").map_or(0, |v| v.parse().unwrap());
        while self.buf.len() < length {
            assert!(self.fill().await, "closed mid-body: {answer:?}");
        }
        answer.body = self.buf.drain(..length).collect();
        Some(answer)
    }

    /// Reads on until tether closes the connection: the bytes that came after the last answer
    /// (none, for a well-framed exchange).
    pub async fn rest_until_closed(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }
}

/// Sends `bytes` on a new connection and expects tether to answer once and then close it:
/// the answer (`None`: closed without one) and whatever came after it (nothing, when framed).
pub async fn answer_then_close(addr: SocketAddr, bytes: &[u8]) -> (Option<Answer>, Vec<u8>) {
    let mut c = Client::connect(addr).await;
    c.send(bytes).await;
    let answer = c.answer(false).await;
    (answer, c.rest_until_closed().await)
}

/// The first answer to `bytes` on a new connection (the connection is then dropped).
pub async fn first_answer(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut c = Client::connect(addr).await;
    c.send(bytes).await;
    c.answer(false).await.expect("an answer")
}

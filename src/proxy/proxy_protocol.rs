//! PROXY protocol v1 and v2 (HAProxy's), as load balancers in front of an ingress send it:
//! the real client address precedes the first byte of the client's own traffic.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest header accepted (v1 is at most 107 bytes; v2 with its TLVs is usually < 300).
const MAX_HEADER: usize = 2048;
/// The longest v1 line, CRLF included (the spec's and ppp's limit).
const V1_MAX: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no complete PROXY header within the timeout")]
    Timeout,
    #[error("not a PROXY protocol header")]
    Invalid,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Consumes the PROXY header at the start of `stream`. Returns the client address it names,
/// or `None` for `UNKNOWN`/`LOCAL` headers (health checks of the balancer: use the peer).
pub async fn read_header(stream: &mut TcpStream, timeout: Duration) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; MAX_HEADER];
    loop {
        // Peek, so that nothing after the header is taken from the HTTP (or TLS) parser.
        let n =
            tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await.map_err(|_| ProxyHeaderError::Timeout)??;
        if n == 0 {
            return Err(ProxyHeaderError::Invalid);
        }
        let (len, addr) = match parse(&buf[..n]) {
            Peeked::Incomplete => {
                if n == MAX_HEADER {
                    return Err(ProxyHeaderError::Invalid);
                }
                // The rest of the header is still on its way; peeking again at once would spin.
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProxyHeaderError::Timeout);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            Peeked::Invalid => return Err(ProxyHeaderError::Invalid),
            Peeked::Header { len, client } => (len, client),
        };
        let mut consumed = vec![0u8; len];
        stream.read_exact(&mut consumed).await?;
        return Ok(addr);
    }
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Peeked {
    /// A header may still complete with more bytes.
    Incomplete,
    Invalid,
    /// A complete header of `len` bytes at the start of the buffer, naming `client` (`None`
    /// for `UNKNOWN`/`LOCAL`).
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
}

/// Parses the start of a connection's bytes; pure, so it can be tested (and fuzzed) on a slice.
pub fn parse(buf: &[u8]) -> Peeked {
    // ppp judges a v1 line before its end and gets some cuts wrong (`.. 51000 ` is an empty
    // port, `.. 51000 +` a bad one, half a UTF-8 character is invalid, a last bare `\n` or `\r`
    // ends the line), so whether a header was accepted depended on how TCP split it (fuzzing).
    // ppp reads a v1 line up to its first CR and the byte after it: decide once both are here,
    // or the line is longer than v1 allows (which ppp rejects).
    let line_end = buf.iter().position(|&b| b == b'\r').is_some_and(|cr| cr + 1 < buf.len());
    if buf.starts_with(b"PROXY ") && !line_end && buf.len() < V1_MAX {
        return Peeked::Incomplete;
    }
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        return Peeked::Incomplete;
    }
    match parsed {
        HeaderResult::V1(Ok(h)) => Peeked::Header { len: h.header.len(), client: v1_addr(&h.addresses) },
        HeaderResult::V2(Ok(h)) => Peeked::Header { len: h.len(), client: v2_addr(&h) },
        _ => Peeked::Invalid,
    }
}

fn v1_addr(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_addr(header: &v2::Header<'_>) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match &header.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn through(header: &[u8], then: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(header).await.unwrap();
        client.write_all(then).await.unwrap();
        client.shutdown().await.unwrap();
        let result = read_header(&mut server, Duration::from_secs(5)).await;
        let mut rest = Vec::new();
        if result.is_ok() {
            server.read_to_end(&mut rest).await.unwrap();
        }
        (result, rest)
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_and_leave_the_request() {
        let (addr, rest) = through(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n", b"GET / HTTP/1.1\r\n").await;
        assert_eq!(addr.unwrap(), Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (SocketAddr::from(([198, 51, 100, 9], 40000)), SocketAddr::from(([10, 0, 0, 1], 80))),
        )
        .build()
        .unwrap();
        let (addr, rest) = through(&v2, b"GET /x").await;
        assert_eq!(addr.unwrap(), Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(rest, b"GET /x");

        let (addr, _) = through(b"PROXY UNKNOWN\r\n", b"").await;
        assert_eq!(addr.unwrap(), None, "a balancer health check: use the peer");
    }

    #[test]
    fn a_header_cut_anywhere_waits_for_the_rest() {
        for (line, client) in [
            ("PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n", "203.0.113.7:51000"),
            ("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n", "[2001:db8::1]:51000"),
            ("PROXY TCP4 2.0.3.7 10.0.0.1 1 +104\r\n", "2.0.3.7:1"), // ppp takes a `+`
            ("PROXY UNKNOWN é\r\n", ""),
        ] {
            let whole = Peeked::Header { len: line.len(), client: client.parse().ok() };
            assert_eq!(parse(line.as_bytes()), whole);
            for cut in 1..line.len() {
                assert_eq!(parse(&line.as_bytes()[..cut]), Peeked::Incomplete, "{:?}", &line.as_bytes()[..cut]);
            }
        }
        // A bare LF is no line end: a v1 header is decided at its CR.
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \n"), Peeked::Incomplete);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \nGET / HTTP/1.1\r\n"), Peeked::Invalid);
        assert_eq!(parse(b"PROXY UNKNOWN x \nHost: y\r\n"), Peeked::Header { len: 26, client: None });
        assert_eq!(parse(b"PROXY UNKNOWN : \n x\r"), Peeked::Incomplete, "ppp: a 20-byte header");
        assert_eq!(parse(b"PROXY UNKNOWN : \n x\r\n"), Peeked::Header { len: 21, client: None });
        // Once the line is there, or longer than any v1 line, it is judged as before.
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 51000 \r\n"), Peeked::Invalid);
        assert_eq!(parse(b"PROXY UNKNOWN \xff\r\n"), Peeked::Invalid);
        assert_eq!(parse(&[b"PROXY ".as_slice(), &[b'x'; 101]].concat()), Peeked::Invalid);
        assert_eq!(parse(b"GET / HTTP/1.1"), Peeked::Invalid, "not PROXY: no waiting");
    }

    #[tokio::test]
    async fn garbage_is_rejected() {
        let (result, _) = through(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"").await;
        assert!(matches!(result, Err(ProxyHeaderError::Invalid)), "{result:?}");
    }
}

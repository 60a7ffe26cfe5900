//! PROXY protocol v1 and v2 (HAProxy's), as load balancers in front of an ingress send it:
//! the real client address precedes the first byte of the client's own traffic.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest header accepted (v1 is at most 107 bytes; v2 with its TLVs is usually < 300).
const MAX_HEADER: usize = 2048;

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
        let parsed = HeaderResult::parse(&buf[..n]);
        if parsed.is_incomplete() {
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
        let (len, addr) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_addr(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.len(), v2_addr(&h)),
            _ => return Err(ProxyHeaderError::Invalid),
        };
        let mut consumed = vec![0u8; len];
        stream.read_exact(&mut consumed).await?;
        return Ok(addr);
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

    #[tokio::test]
    async fn garbage_is_rejected() {
        let (result, _) = through(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"").await;
        assert!(matches!(result, Err(ProxyHeaderError::Invalid)), "{result:?}");
    }
}

//! The HTTP edge: the fuzz input is what a client sends on a plain connection, served by
//! tether's own HTTP/1.1 server (`proxy::h1_server`, as `proxy::conn::serve` does after the
//! accept) and the phases, over an in-memory duplex. The table is `fixture.yaml`'s: hosts under
//! `fuzz.test` reach routes with access checks, redirects, canaries and affinity but no
//! endpoints (503, so nothing is ever dialled); every other host sees what an empty table
//! answers.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::proxy::client_addr::TrustedProxies;
use crate::proxy::conn::OpenTracker;
use crate::proxy::forward::{ProxyState, Timeouts};
use crate::proxy::h1_server::{self, Serving};
use crate::proxy::headers::ClientInfo;
use crate::proxy::observe::Telemetry;
use crate::proxy::server::ConnLimits;
use crate::upstream::UpstreamRegistry;

/// More than any answer of a local response needs; a client reading forever is not the point.
const MAX_RESPONSE: usize = 1 << 20;
/// Turns of the runtime without a new byte after which the server waits for the client.
const IDLE_TURNS: usize = 4;
/// With the client's write side closed every connection ends at once; only a hang reaches this.
const CAP: Duration = Duration::from_secs(5);

struct Edge {
    runtime: tokio::runtime::Runtime,
    state: Arc<ProxyState>,
    limits: ConnLimits,
    client: Arc<ClientInfo>,
    /// Never sent: a connection stops when its client is done.
    stop: watch::Sender<Option<Duration>>,
}

fn edge() -> &'static Edge {
    static EDGE: OnceLock<Edge> = OnceLock::new();
    EDGE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let state = Arc::new(ProxyState {
            table: Arc::new(ArcSwap::new(super::fixture_table().clone())),
            accept_nginx_cookies: true,
            timeouts: Timeouts::default(),
            // The peer below is a trusted proxy, so X-Forwarded-* parsing is fuzzed too.
            trusted_proxies: TrustedProxies::parse(&["127.0.0.0/8".into()]).expect("a CIDR"),
            max_body: 1 << 20,
            telemetry: Telemetry::leak(Metrics::new(1, 1000), None),
            limit_status: http::StatusCode::TOO_MANY_REQUESTS,
            auth_pools: UpstreamRegistry::new(1, Duration::from_secs(60)),
            own_pod_h1: false,
        });
        let limits = ConnLimits { header_timeout: Duration::from_secs(1), ..ConnLimits::default() };
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
        let client = Arc::new(ClientInfo::new(peer, 80, false).trusted(true));
        Edge { runtime, state, limits, client, stop: watch::channel(None).0 }
    })
}

/// Writes `data` as the client, closes the client's write side, reads the answer to the end.
pub fn http_request(data: &[u8]) {
    let edge = edge();
    // Room for every answer: the client only reads once it has written everything.
    let (mut client, server) = tokio::io::duplex(MAX_RESPONSE + data.len());
    let serving = Serving {
        state: edge.state.clone(),
        client: edge.client.clone(),
        open: OpenTracker::default(),
        limits: edge.limits,
    };
    let conn = h1_server::serve(server, serving, edge.stop.subscribe());
    let talk = async move {
        let mut answer = Vec::new();
        let _ = client.write_all(data).await;
        // A server may take a closed side as the end of the connection (hyper's did, dropping
        // the last request's answer). So first let the server answer what it has (all in
        // memory: it is done when a few turns of the runtime bring nothing new).
        let mut idle = 0;
        while idle < IDLE_TURNS && answer.len() < MAX_RESPONSE {
            tokio::task::yield_now().await;
            match read_ready(&mut client, &mut answer) {
                Some(0) => return answer, // the server closed (`Connection: close`, an error)
                Some(_) => idle = 0,
                None => idle += 1,
            }
        }
        let _ = client.shutdown().await;
        let _ = (&mut client).take(MAX_RESPONSE as u64).read_to_end(&mut answer).await;
        answer
    };
    // (The timeout is made inside the runtime: it needs the runtime's timer.)
    let answer = edge.runtime.block_on(async { tokio::time::timeout(CAP, async { tokio::join!(conn, talk).1 }).await });
    let answer = answer.unwrap_or_else(|_| panic!("the connection was still open {CAP:?} after the client closed"));
    // Whatever came back is HTTP/1.x responses (garbage gets a 400).
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1."), "{:?}", String::from_utf8_lossy(&answer));
}

/// Appends what the server has sent so far without waiting: `None` when nothing is there yet,
/// `Some(0)` at the end of the stream.
fn read_ready(client: &mut tokio::io::DuplexStream, answer: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    let mut buf = tokio::io::ReadBuf::new(&mut chunk);
    let waker = std::task::Waker::noop();
    match std::pin::Pin::new(client).poll_read(&mut std::task::Context::from_waker(waker), &mut buf) {
        std::task::Poll::Ready(Ok(())) => {
            answer.extend_from_slice(buf.filled());
            Some(buf.filled().len())
        }
        std::task::Poll::Ready(Err(_)) => Some(0),
        std::task::Poll::Pending => None,
    }
}

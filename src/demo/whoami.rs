//! `tether whoami`: the demo pod. Answers with its pod name, hostname, a per-process id and
//! the request's headers, like the `whoami` images the sticky-session tutorials use.
//! `?sleep=MS` delays the answer (to show timeouts); `?chunks=N&pause=MS` streams N lines with a
//! pause between them (to show streaming); request bodies are counted, not kept. A WebSocket
//! upgrade gets an echo that names the pod.

use std::convert::Infallible;
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Who this pod is.
#[derive(Debug, serde::Serialize)]
pub struct Identity {
    pub name: String,
    pub hostname: String,
    pub uuid: String,
}

impl Identity {
    pub fn new(name: &str) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| std::env::var("HOSTNAME").unwrap_or_default());
        Identity { name: name.to_owned(), hostname, uuid: uuid::Uuid::new_v4().to_string() }
    }
}

/// Binds and serves forever. Prints `whoami NAME listening on http://ADDR` (or `https://`)
/// once bound. HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN with `tls`); with `tls` the
/// certificate is self-signed, made at start, as many pods behind an ingress have.
pub async fn serve(addr: SocketAddr, name: &str, tls: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e} (change --listen)")))?;
    let bound = listener.local_addr()?;
    let acceptor = if tls { Some(tls_acceptor(name)?) } else { None };
    println!("whoami {name} listening on {}://{bound}", if tls { "https" } else { "http" });
    let identity = Arc::new(Identity::new(name));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let identity = identity.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            match acceptor {
                None => {
                    let service = service_fn(move |req| answer(identity.clone(), peer, false, req));
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                }
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = service_fn(move |req| answer(identity.clone(), peer, true, req));
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

fn tls_acceptor(name: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let fail = |e: String| std::io::Error::other(e);
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).map_err(|e| fail(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .map_err(|e| fail(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[derive(serde::Serialize)]
struct Reply<'a> {
    pod: &'a str,
    hostname: &'a str,
    uuid: &'a str,
    remote_addr: String,
    method: String,
    uri: String,
    /// `HTTP/1.1` or `HTTP/2.0`, and whether the connection was TLS.
    version: String,
    tls: bool,
    headers: Vec<(String, String)>,
    body_bytes: u64,
    /// SHA-256 of the body, hex: what a test compares with what it sent.
    body_sha256: String,
}

async fn answer(
    identity: Arc<Identity>,
    peer: SocketAddr,
    tls: bool,
    mut req: Request<Incoming>,
) -> Result<Response<PodBody>, Infallible> {
    if let Some(handshake) = crate::demo::websocket::accept(&identity, &mut req) {
        let (parts, ()) = handshake.into_parts();
        return Ok(Response::from_parts(parts, PodBody::empty()));
    }
    let (parts, mut body) = req.into_parts();
    if let Some(ms) = query_param(parts.uri.query(), "sleep").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    }
    let mut body_bytes = 0u64;
    let mut digest = <sha2::Sha256 as sha2::Digest>::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            body_bytes += data.len() as u64;
            sha2::Digest::update(&mut digest, data);
        }
    }
    let body_sha256 = sha2::Digest::finalize(digest).iter().map(|b| format!("{b:02x}")).collect();
    let reply = Reply {
        pod: &identity.name,
        hostname: &identity.hostname,
        uuid: &identity.uuid,
        remote_addr: peer.to_string(),
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: format!("{:?}", parts.version),
        tls,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body_bytes,
        body_sha256,
    };
    let wants_json =
        parts.headers.get(ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("application/json"));
    let (content_type, text) = if wants_json {
        ("application/json", serde_json::to_string(&reply).unwrap_or_default())
    } else {
        ("text/plain; charset=utf-8", plain(&reply))
    };
    let chunks = query_param(parts.uri.query(), "chunks").and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let pause = query_param(parts.uri.query(), "pause").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let body = PodBody {
        head: Some(Bytes::from(text)),
        chunks_left: chunks.min(10_000),
        sent: 0,
        pause: Duration::from_millis(pause.min(60_000)),
        sleep: None,
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// The pod name comes first, alone on its line, so `curl -s URL | head -1` shows it.
fn plain(r: &Reply<'_>) -> String {
    let mut out = String::with_capacity(512);
    let _ = writeln!(out, "{}", r.pod);
    let _ = writeln!(out, "Hostname: {}", r.hostname);
    let _ = writeln!(out, "UUID: {}", r.uuid);
    let _ = writeln!(out, "RemoteAddr: {}", r.remote_addr);
    let _ = writeln!(out, "{} {} {}{}", r.method, r.uri, r.version, if r.tls { " (TLS)" } else { "" });
    for (k, v) in &r.headers {
        let _ = writeln!(out, "{k}: {v}");
    }
    let _ = writeln!(out, "BodyBytes: {}", r.body_bytes);
    let _ = writeln!(out, "BodySha256: {}", r.body_sha256);
    out
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The reply, then optionally `chunk N` lines with a pause before each.
pub struct PodBody {
    head: Option<Bytes>,
    chunks_left: u32,
    sent: u32,
    pause: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PodBody {
    fn empty() -> Self {
        PodBody { head: None, chunks_left: 0, sent: 0, pause: Duration::ZERO, sleep: None }
    }
}

impl Body for PodBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if self.chunks_left == 0 {
            return Poll::Ready(None);
        }
        let pause = self.pause;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        self.chunks_left -= 1;
        self.sent += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!("chunk {}\n", self.sent))))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.chunks_left == 0
    }
}

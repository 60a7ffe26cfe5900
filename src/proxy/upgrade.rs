//! WebSockets (and any HTTP/1.1 `Upgrade`): the upgrade request is routed like any other
//! (so it gets its affinity decision and cookie), and once the pod answers 101 both
//! connections are spliced until either side closes.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::h1::head::known;
use crate::h1::rules::lists;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::conn::OpenTracker;

/// The protocol a client asks to upgrade to (`Connection: upgrade` + `Upgrade: x`).
pub fn requested(req: &ClientRequest) -> Option<HeaderValue> {
    let asks = req.lines().every(known::CONNECTION).any(|v| lists(v, b"upgrade"));
    asks.then(|| req.known_value(known::UPGRADE)).flatten()
}

/// Puts back the two hop-by-hop headers an upgrade needs (stripping removed them).
pub fn restore(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol.clone());
}

/// The client's side of an upgrade: its connection, once the server that read the request
/// hands it over after writing the 101.
pub enum ClientUpgrade {
    /// hyper's server.
    Hyper(OnUpgrade),
    /// tether's own server (`proxy::h1_server`), through the request's [`OwnUpgrade`].
    Own(oneshot::Receiver<Tunnel>),
}

/// A connection a tunnel can run over.
pub trait TunnelIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TunnelIo for T {}

/// A client connection handed over for a tunnel, with the bytes the client sent after its
/// request head (they are the tunnel's first bytes).
pub struct Tunnel {
    pub io: Box<dyn TunnelIo>,
    pub early: Bytes,
}

/// Put in a request's extensions by tether's own server when the request asks for an upgrade:
/// where its connection will come from. (Extensions must be `Clone`; only one takes it.)
#[derive(Clone)]
pub struct OwnUpgrade(pub Arc<Mutex<Option<oneshot::Receiver<Tunnel>>>>);

impl ClientUpgrade {
    /// The client's side of `req`'s upgrade, from whichever server read it.
    pub fn take(req: &mut ClientRequest) -> Self {
        let own = req.extensions_mut().remove::<OwnUpgrade>();
        match own.and_then(|own| own.0.lock().ok()?.take()) {
            Some(receiver) => ClientUpgrade::Own(receiver),
            None => {
                // hyper hands its upgrade over through a request's extensions.
                let mut carrier = Request::new(());
                *carrier.extensions_mut() = std::mem::take(req.extensions_mut());
                let on = hyper::upgrade::on(&mut carrier);
                *req.extensions_mut() = std::mem::take(carrier.extensions_mut());
                ClientUpgrade::Hyper(on)
            }
        }
    }

    async fn connection(self) -> Result<Tunnel, String> {
        match self {
            ClientUpgrade::Hyper(on) => match on.await {
                Ok(upgraded) => Ok(Tunnel { io: Box::new(TokioIo::new(upgraded)), early: Bytes::new() }),
                Err(e) => Err(e.to_string()),
            },
            ClientUpgrade::Own(receiver) => receiver.await.map_err(|_| "the client connection ended".to_owned()),
        }
    }
}

/// After a 101 from the pod: splice the client and pod connections in the background.
pub fn splice<B>(client: ClientUpgrade, pod_response: &mut Response<B>, tracker: &OpenTracker) {
    let pod = hyper::upgrade::on(pod_response);
    let hold = tracker.hold();
    tokio::spawn(async move {
        let _hold = hold;
        let pod = async { pod.await.map_err(|e| e.to_string()) };
        let (client, pod) = match tokio::try_join!(client.connection(), pod) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(%e, "upgrade did not complete");
                return;
            }
        };
        run(client, TokioIo::new(pod), Bytes::new()).await;
    });
}

/// After a 101 from a pod on tether's own connection: the bytes the pod sent after its head go
/// to the client first, then both connections are spliced in the background.
pub fn splice_pod(client: ClientUpgrade, pod: crate::upstream::PodConn, early: Bytes, tracker: &OpenTracker) {
    let hold = tracker.hold();
    tokio::spawn(async move {
        let _hold = hold;
        match client.connection().await {
            Ok(client) => run(client, pod.stream, early).await,
            Err(e) => tracing::debug!(%e, "upgrade did not complete"),
        }
    });
}

/// Each side's early bytes first, then both ways until either side closes.
async fn run<P: AsyncRead + AsyncWrite + Unpin>(mut client: Tunnel, mut pod: P, pod_early: Bytes) {
    if !pod_early.is_empty() && client.io.write_all(&pod_early).await.is_err() {
        return;
    }
    if !client.early.is_empty() && pod.write_all(&client.early).await.is_err() {
        return;
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut client.io, &mut pod).await {
        tracing::debug!(%e, "upgraded connection ended with an error");
    }
}

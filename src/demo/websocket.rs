//! The demo pod's WebSocket echo (`GET /` with `Upgrade: websocket`): it greets with its pod
//! name, then answers every text message with `POD: message`, so a test (or a browser) sees
//! which pod holds the socket and that data flows both ways.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::demo::whoami::Identity;

/// A WebSocket handshake answer, when the request asks for one; the echo runs once the
/// connection is upgraded.
pub fn accept<B>(identity: &Arc<Identity>, req: &mut Request<B>) -> Option<Response<()>> {
    let wants = req.headers().get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = req.headers().get(SEC_WEBSOCKET_KEY)?.clone();
    if !wants {
        return None;
    }
    let upgrade = hyper::upgrade::on(req);
    let name = identity.name.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if ws.send(Message::text(name.clone())).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = ws.next().await {
            let reply = match message {
                Message::Text(text) => Message::text(format!("{name}: {text}")),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()?);
    Some(response)
}

//! WebSockets (and any HTTP/1.1 `Upgrade`): the upgrade request is routed like any other
//! (so it gets its affinity decision and cookie), and once the pod answers 101 both
//! connections are spliced until either side closes.

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::proxy::conn::OpenTracker;

/// The protocol a client asks to upgrade to (`Connection: upgrade` + `Upgrade: x`).
pub fn requested<B>(req: &Request<B>) -> Option<HeaderValue> {
    let asks = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))));
    asks.then(|| req.headers().get(UPGRADE).cloned()).flatten()
}

/// Puts back the two hop-by-hop headers an upgrade needs (stripping removed them).
pub fn restore(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol.clone());
}

/// After a 101 from the pod: splice the client and pod connections in the background.
pub fn splice<B>(client: OnUpgrade, pod_response: &mut Response<B>, tracker: &OpenTracker) {
    let pod = hyper::upgrade::on(pod_response);
    let hold = tracker.hold();
    tokio::spawn(async move {
        let _hold = hold;
        let (client, pod) = match tokio::try_join!(client, pod) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(%e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut pod = TokioIo::new(pod);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut pod).await {
            tracing::debug!(%e, "upgraded connection ended with an error");
        }
    });
}

/// After a 101 from a pod on tether's own connection: the bytes the pod sent after its head go
/// to the client first, then both connections are spliced in the background.
pub fn splice_pod(client: OnUpgrade, mut pod: crate::upstream::PodConn, early: bytes::Bytes, tracker: &OpenTracker) {
    use tokio::io::AsyncWriteExt;
    let hold = tracker.hold();
    tokio::spawn(async move {
        let _hold = hold;
        let client = match client.await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(%e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        if !early.is_empty() && client.write_all(&early).await.is_err() {
            return;
        }
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut pod.stream).await {
            tracing::debug!(%e, "upgraded connection ended with an error");
        }
    });
}

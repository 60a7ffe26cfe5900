//! How tether talks to a pod: HTTP/1.1 (the default), HTTP/1.1 over TLS, or HTTP/2 in clear
//! text or over TLS (ingress-nginx `backend-protocol: HTTPS | GRPC | GRPCS`, and `HTTP2`).
//!
//! TLS to pods does not verify the pod's certificate and sends no SNI, as ingress-nginx does
//! by default (`proxy-ssl-verify: off`): pods behind a Service commonly have self-signed ones.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::upstream::request_body::UpstreamBody;
use crate::worker::hyper_rt::WorkerExecutor;

/// The protocol spoken to the pods of a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PodProtocol {
    #[default]
    Http1,
    /// HTTP/1.1 over TLS (`HTTPS`).
    Https,
    /// HTTP/2 with prior knowledge (`GRPC`, `HTTP2`).
    H2c,
    /// HTTP/2 over TLS, ALPN h2 (`GRPCS`).
    H2Tls,
}

impl PodProtocol {
    pub fn tls(self) -> bool {
        matches!(self, PodProtocol::Https | PodProtocol::H2Tls)
    }

    pub fn h2(self) -> bool {
        matches!(self, PodProtocol::H2c | PodProtocol::H2Tls)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PodProtocol::Http1 => "HTTP/1.1",
            PodProtocol::Https => "HTTP/1.1 over TLS",
            PodProtocol::H2c => "HTTP/2 (h2c)",
            PodProtocol::H2Tls => "HTTP/2 over TLS",
        }
    }
}

/// A connection to a pod that can take a request.
#[derive(Debug)]
pub enum Sender {
    H1(http1::SendRequest<UpstreamBody>),
    /// Multiplexed: clones share the connection.
    H2(http2::SendRequest<UpstreamBody>),
}

pub type SendFailure = hyper::client::conn::TrySendError<http::Request<UpstreamBody>>;

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(s) => s.is_ready(),
        }
    }

    pub async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    pub fn try_send_request(
        &mut self,
        req: http::Request<UpstreamBody>,
    ) -> impl Future<Output = Result<http::Response<Incoming>, SendFailure>> {
        match self {
            Sender::H1(s) => Either::Left(s.try_send_request(req)),
            Sender::H2(s) => Either::Right(s.try_send_request(req)),
        }
    }

    /// Another handle on the same HTTP/2 connection.
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Sender::H2(s.clone())),
        }
    }
}

/// Speaks HTTP on an open connection; the connection task runs in the background.
pub async fn handshake<I>(io: I, protocol: PodProtocol) -> hyper::Result<Sender>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if protocol.h2() {
        let (sender, conn) = http2::handshake(WorkerExecutor, TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(Sender::H2(sender));
    }
    let (sender, conn) = http1::Builder::new().writev(false).handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // Errors here are the pod closing an idle connection; the next checkout sees it.
        // With upgrades: a 101 hands the connection to the WebSocket tunnel.
        let _ = conn.with_upgrades().await;
    });
    Ok(Sender::H1(sender))
}

/// The TLS client configuration for pods (ALPN h2 or http/1.1), built once.
pub fn tls_config(protocol: PodProtocol) -> Arc<rustls::ClientConfig> {
    static H1: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static H2: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let slot = if protocol.h2() { &H2 } else { &H1 };
    slot.get_or_init(|| {
        let provider = crate::tls::provider();
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyPodCertificate(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![if protocol.h2() { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
        config.enable_sni = false;
        Arc::new(config)
    })
    .clone()
}

/// Accepts any certificate the pod presents (signatures are still checked, so the handshake
/// is a real one); see the module comment.
#[derive(Debug)]
struct AnyPodCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyPodCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

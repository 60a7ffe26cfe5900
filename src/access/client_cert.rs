//! Client-certificate authentication (ingress-nginx `auth-tls-*`): a CA bundle from a Secret,
//! checked by rustls during the handshake of the hosts that ask for it (chosen by SNI), and
//! again per request, so a request whose Host differs from the handshake's name cannot use a
//! connection verified for another host's CA.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// A certificate signed by the CA is required (`on`, the default).
    On,
    /// One is asked for; when sent it must be signed by the CA (`optional`).
    Optional,
    /// One is asked for and passed on unverified (`optional_no_ca`).
    OptionalNoCa,
}

impl VerifyMode {
    pub fn parse(value: &str) -> Option<VerifyMode> {
        match value {
            "on" => Some(VerifyMode::On),
            "optional" => Some(VerifyMode::Optional),
            "optional_no_ca" => Some(VerifyMode::OptionalNoCa),
            _ => None,
        }
    }
}

/// The client-certificate rule of an Ingress's hosts.
pub struct ClientCertRule {
    pub mode: VerifyMode,
    /// `auth-tls-verify-depth` (default 1): the most certificates a client may present.
    pub depth: usize,
    /// `auth-tls-pass-certificate-to-upstream`: the leaf, URL-escaped PEM, in `ssl-client-cert`.
    pub pass_certificate: bool,
    /// `auth-tls-error-page`: a refused request is redirected (302) here instead of a 400.
    pub error_page: Option<HeaderValue>,
    /// `auth-tls-match-cn`: the subject CN must match this expression (else 403).
    pub match_cn: Option<regex::Regex>,
    /// SHA-256 of the CA bundle: what a connection was verified against.
    pub ca_id: [u8; 32],
    /// `Secret ns/name`.
    pub source: Box<str>,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The handshake configuration for this rule's hosts, made on the first handshake.
    server_config: OnceLock<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ClientCertRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientCertRule({} {:?})", self.source, self.mode)
    }
}

/// Why a `ca.crt` cannot verify client certificates; the route then fails closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaBundleError {
    #[error("ca.crt is not PEM: {0}")]
    NotPem(String),
    #[error("ca.crt holds no CERTIFICATE block")]
    NoCertificate,
    #[error("ca.crt holds a certificate that cannot be a CA: {0}")]
    NotACa(String),
    #[error("ca.crt cannot verify clients: {0}")]
    Verifier(String),
}

impl ClientCertRule {
    /// A rule verifying against the CA certificates of `ca_pem` (`ca.crt`).
    pub fn new(
        ca_pem: &[u8],
        mode: VerifyMode,
        source: &str,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ClientCertRule, CaBundleError> {
        let certs = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaBundleError::NotPem(e.to_string()))?;
        if certs.is_empty() {
            return Err(CaBundleError::NoCertificate);
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| CaBundleError::NotACa(e.to_string()))?;
        }
        let verifier: Arc<dyn ClientCertVerifier> = match mode {
            VerifyMode::OptionalNoCa => Arc::new(AnyClientCert { provider: provider.clone() }),
            // A missing certificate is allowed at the TLS level so the request can get the
            // HTTP answer nginx gives (400, or the error page); a bad one fails the handshake.
            VerifyMode::On | VerifyMode::Optional => {
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| CaBundleError::Verifier(e.to_string()))?
            }
        };
        Ok(ClientCertRule {
            mode,
            depth: 1,
            pass_certificate: false,
            error_page: None,
            match_cn: None,
            ca_id: Sha256::digest(ca_pem).into(),
            source: source.into(),
            verifier,
            server_config: OnceLock::new(),
        })
    }

    /// The listener's configuration with this rule's verifier (same certificates and ALPN).
    /// Should it not build, the listener's own serves: it asks for no certificate, so the
    /// request check refuses (never open).
    pub fn server_config(&self, base: &Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
        self.server_config
            .get_or_init(|| {
                let built = rustls::ServerConfig::builder_with_provider(base.crypto_provider().clone())
                    .with_safe_default_protocol_versions()
                    .map(|b| b.with_client_cert_verifier(self.verifier.clone()).with_cert_resolver(base.cert_resolver.clone()));
                match built {
                    Ok(mut config) => {
                        config.alpn_protocols = base.alpn_protocols.clone();
                        Arc::new(config)
                    }
                    Err(e) => {
                        tracing::error!(rule = %self.source, error = %e, "cannot build the client-certificate TLS configuration");
                        base.clone()
                    }
                }
            })
            .clone()
    }

    pub fn describe(&self) -> String {
        let need = match self.mode {
            VerifyMode::On => "a client certificate signed by the CA of",
            VerifyMode::Optional => "no client certificate, or one signed by the CA of",
            VerifyMode::OptionalNoCa => "no client certificate, or any (unverified), per",
        };
        format!(
            "requests over TLS need {need} {}; others get 400; over plain HTTP these routes answer 503",
            self.source
        )
    }
}

/// What a connection's client presented, recorded after its handshake.
#[derive(Debug)]
pub struct PeerCertificate {
    /// The CA bundle (`ClientCertRule::ca_id`) that verified it; `None` when unverified.
    pub verified_by: Option<[u8; 32]>,
    /// Certificates presented, leaf first.
    pub chain_len: usize,
    /// The leaf as URL-escaped PEM (`ssl-client-cert`).
    pub escaped_pem: Option<HeaderValue>,
    pub subject: HeaderValue,
    pub issuer: HeaderValue,
    /// The subject's common name.
    pub common_name: Option<String>,
}

impl PeerCertificate {
    pub fn new(chain: &[CertificateDer<'_>], verified_by: Option<[u8; 32]>) -> Option<PeerCertificate> {
        let leaf = chain.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let subject = parsed.subject().to_string();
        let issuer = parsed.issuer().to_string();
        let common_name = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
        let mut escaped = String::new();
        crate::access::external::escape_into(&mut escaped, &pem_of(leaf.as_ref()));
        Some(PeerCertificate {
            verified_by,
            chain_len: chain.len(),
            escaped_pem: HeaderValue::try_from(escaped).ok(),
            subject: HeaderValue::try_from(subject).unwrap_or(HeaderValue::from_static("")),
            issuer: HeaderValue::try_from(issuer).unwrap_or(HeaderValue::from_static("")),
            common_name,
        })
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// `optional_no_ca`: asks for a certificate and takes any, still checking that the client
/// holds its key (the handshake signature).
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

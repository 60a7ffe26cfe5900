//! TLS termination: certificates from `kubernetes.io/tls` Secrets chosen by SNI, a default
//! certificate for everything else, and the rustls server configuration (ALPN h2, http/1.1).

pub mod certs;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;

pub use certs::{CertStore, Certificate};

/// The crypto provider used everywhere (ring: pure Rust and assembly, no C toolchain needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration of the TLS listener; `certificates` picks one per handshake.
pub fn server_config(certificates: Arc<dyn ResolvesServerCert>) -> anyhow::Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The default certificate: `--default-cert`/`--default-key`, else a self-signed one made now.
pub fn default_certificate(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Arc<CertifiedKey>> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let cert_pem = std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
            let key_pem = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
            let parsed =
                Certificate::from_pem(&cert_pem, &key_pem).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            Ok(parsed.key)
        }
        (None, None) => {
            tracing::warn!(
                "no --default-cert/--default-key: unknown TLS hosts get a self-signed certificate generated at start"
            );
            let generated = rcgen::generate_simple_self_signed(vec!["tether.invalid".to_owned()])
                .context("cannot generate a self-signed certificate")?;
            let parsed = Certificate::from_pem(
                generated.cert.pem().as_bytes(),
                generated.signing_key.serialize_pem().as_bytes(),
            )
            .map_err(|e| anyhow::anyhow!("self-signed certificate: {e}"))?;
            Ok(parsed.key)
        }
        _ => anyhow::bail!("--default-cert and --default-key go together"),
    }
}

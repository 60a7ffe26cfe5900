//! Certificates as the route table holds them: parsed once per reload, looked up per handshake.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a Secret's `tls.crt` and `tls.key` cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("tls.crt is not PEM: {0}")]
    NotPem(rustls::pki_types::pem::Error),
    #[error("tls.crt holds no CERTIFICATE block")]
    NoCertificate,
    #[error("tls.key holds no private key: {0}")]
    NoKey(rustls::pki_types::pem::Error),
    #[error("tls.crt and tls.key do not make a usable pair: {0}")]
    NotAPair(rustls::Error),
}

impl CertificateError {
    /// True when `tls.key` is at fault (not the certificate, nor the pair).
    pub fn is_about_the_key(&self) -> bool {
        matches!(self, CertificateError::NoKey(_))
    }
}

/// A certificate chain with its key, and which Secret it came from.
#[derive(Clone, Debug)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// `Secret ns/name` (empty for the default certificate).
    pub source: Box<str>,
}

impl Certificate {
    /// Parses PEM `tls.crt` (leaf first, then intermediates) and `tls.key` (PKCS#8, PKCS#1 or
    /// SEC1), and checks that the key belongs to the certificate.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, CertificateError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CertificateError::NotPem)?;
        if chain.is_empty() {
            return Err(CertificateError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(CertificateError::NoKey)?;
        let certified = CertifiedKey::from_der(chain, key, &super::provider()).map_err(CertificateError::NotAPair)?;
        Ok(Certificate { key: Arc::new(certified), source: "".into() })
    }
}

/// The leaf certificate's notAfter, unix seconds.
fn not_after(cert: &Certificate) -> Option<i64> {
    let leaf = cert.key.cert.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// Certificates by host: exact names, and `*.example.com` wildcards (one label, as TLS
/// wildcards go).
#[derive(Clone, Debug, Default)]
pub struct CertStore {
    exact: HashMap<Box<str>, Certificate>,
    /// `*.example.com` stored as `.example.com`.
    wildcard: HashMap<Box<str>, Certificate>,
}

impl CertStore {
    /// Adds a host's certificate; the first one given for a host stays (oldest Ingress wins).
    /// Returns the holder when the host already has one.
    pub fn insert(&mut self, host: &str, cert: Certificate) -> Result<(), &Certificate> {
        let host = host.to_ascii_lowercase();
        let map = if host.starts_with("*.") { &mut self.wildcard } else { &mut self.exact };
        let key: Box<str> = host.strip_prefix('*').unwrap_or(&host).into();
        if map.contains_key(&key) {
            return Err(&map[&key]);
        }
        map.insert(key, cert);
        Ok(())
    }

    /// The certificate for a TLS server name.
    pub fn find(&self, server_name: &str) -> Option<&Certificate> {
        let name = server_name.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            &lower
        } else {
            name
        };
        self.exact.get(name).or_else(|| {
            let dot = name.find('.')?;
            self.wildcard.get(&name[dot..])
        })
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Each host (wildcards as `*.example.com`) with its leaf certificate's notAfter (unix
    /// seconds), sorted by host.
    pub fn expiry(&self) -> Vec<(String, i64)> {
        let exact = self.exact.iter().map(|(h, c)| (h.to_string(), c));
        let wildcard = self.wildcard.iter().map(|(h, c)| (format!("*{h}"), c));
        let mut out: Vec<(String, i64)> =
            exact.chain(wildcard).filter_map(|(host, cert)| Some((host, not_after(cert)?))).collect();
        out.sort();
        out
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn parses_a_pair_and_rejects_garbage_and_mismatched_keys() {
        let (crt, key) = cert_for(&["a.test"]);
        assert!(Certificate::from_pem(crt.as_bytes(), key.as_bytes()).is_ok());
        let err = Certificate::from_pem(b"not pem", key.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        let err = Certificate::from_pem(crt.as_bytes(), b"-----BEGIN PRIVATE KEY-----\nxx\n").unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");
        let (_, other_key) = cert_for(&["b.test"]);
        let err = Certificate::from_pem(crt.as_bytes(), other_key.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("usable pair"), "{err}");
    }

    #[test]
    fn exact_names_beat_wildcards_and_wildcards_cover_one_label() {
        let (crt, key) = cert_for(&["x.test"]);
        let cert = |source: &str| Certificate {
            source: source.into(),
            ..Certificate::from_pem(crt.as_bytes(), key.as_bytes()).unwrap()
        };
        let mut store = CertStore::default();
        store.insert("*.example.com", cert("wild")).unwrap();
        store.insert("api.example.com", cert("exact")).unwrap();
        assert!(store.insert("API.example.com", cert("late")).is_err(), "first one stays");
        assert_eq!(&*store.find("api.example.com").unwrap().source, "exact");
        assert_eq!(&*store.find("Shop.Example.com").unwrap().source, "wild");
        assert!(store.find("a.b.example.com").is_none(), "a wildcard covers one label");
        assert!(store.find("example.com").is_none());
    }
}

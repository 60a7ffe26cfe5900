//! OpenShift Route `spec.tls`, as the OpenShift router serves it: `edge` ends TLS here with the
//! Route's own certificate (else the default one), `reencrypt` also speaks TLS to the pod,
//! `passthrough` hands the TLS connection to a pod chosen by the client address (no cookie: the
//! router cannot see inside). `insecureEdgeTerminationPolicy` says what plain HTTP gets.

use crate::diag::Diagnostic;
use crate::model::openshift::RouteTls;
use crate::route::filters::Filters;
use crate::tls::Certificate;
use crate::upstream::PodProtocol;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// No `spec.tls`: plain HTTP.
    None,
    Edge,
    Reencrypt,
    Passthrough,
}

/// A Route's TLS settings, checked.
#[derive(Debug)]
pub struct RouteTlsPlan {
    pub termination: Termination,
    /// The Route's own certificate (edge, reencrypt).
    pub certificate: Option<Certificate>,
    /// What plain HTTP requests get (`None` for Routes without TLS: served as usual).
    pub plain: Option<Filters>,
}

impl RouteTlsPlan {
    /// How tether talks to the pods.
    pub fn pod_protocol(&self) -> PodProtocol {
        if self.termination == Termination::Reencrypt {
            PodProtocol::Https
        } else {
            PodProtocol::Http1
        }
    }

    /// The OpenShift router's cookie on TLS Routes is `SameSite=None` (and `Secure`).
    pub fn is_tls(&self) -> bool {
        self.termination != Termination::None
    }
}

/// Reads `spec.tls`. Errors (a certificate that does not parse, an unknown termination) come
/// back as `(field, reason)`; the Route is then skipped (and its last good version kept).
pub fn plan(tls: Option<&RouteTls>, notes: &mut Vec<(String, Diagnostic)>) -> Result<RouteTlsPlan, (String, String)> {
    let Some(tls) = tls else {
        return Ok(RouteTlsPlan { termination: Termination::None, certificate: None, plain: None });
    };
    let termination = match tls.termination.as_deref().unwrap_or("") {
        "edge" => Termination::Edge,
        "reencrypt" => Termination::Reencrypt,
        "passthrough" => Termination::Passthrough,
        other => {
            return Err(("spec.tls.termination".into(), format!("{other:?} is not edge|reencrypt|passthrough")));
        }
    };
    let certificate = match (&tls.certificate, &tls.key) {
        (Some(cert), Some(key)) if termination != Termination::Passthrough => {
            let mut chain = cert.clone();
            if let Some(ca) = &tls.ca_certificate {
                chain.push('\n');
                chain.push_str(ca);
            }
            let parsed = Certificate::from_pem(chain.as_bytes(), key.as_bytes()).map_err(|reason| {
                let field = if reason.is_about_the_key() { "spec.tls.key" } else { "spec.tls.certificate" };
                (
                    field.to_owned(),
                    reason.to_string().replace("tls.crt", "the certificate").replace("tls.key", "the key"),
                )
            })?;
            Some(parsed)
        }
        (Some(_), None) | (None, Some(_)) if termination != Termination::Passthrough => {
            return Err(("spec.tls".into(), "certificate and key go together".into()));
        }
        _ => None,
    };
    if termination == Termination::Reencrypt && tls.destination_ca_certificate.is_some() {
        notes.push((
            "spec.tls.destinationCACertificate".into(),
            Diagnostic::notice("the pod's certificate is not verified (as ingress-nginx's backend-protocol: HTTPS)"),
        ));
    }
    let policy = tls.insecure_edge_termination_policy.as_deref().unwrap_or("None");
    let plain = match (policy, termination) {
        ("Allow", Termination::Passthrough) => {
            notes.push((
                "spec.tls.insecureEdgeTerminationPolicy".into(),
                Diagnostic::warning("Allow is not valid for passthrough Routes (OpenShift rejects it); None is used"),
            ));
            Filters { https_only: true, ..Filters::default() }
        }
        ("Allow", _) => Filters::default(),
        // The OpenShift router's redirect is HAProxy's `redirect scheme https`: a 302.
        ("Redirect", _) => Filters { to_https: Some(302), ..Filters::default() },
        ("None" | "", _) => Filters { https_only: true, ..Filters::default() },
        (other, _) => {
            return Err((
                "spec.tls.insecureEdgeTerminationPolicy".into(),
                format!("{other:?} is not Allow|Redirect|None"),
            ));
        }
    };
    let plain = Filters { passthrough: termination == Termination::Passthrough, ..plain };
    Ok(RouteTlsPlan { termination, certificate, plain: Some(plain) })
}

//! Ingress `spec.tls`: each listed host gets the certificate of the named `kubernetes.io/tls`
//! Secret (in the Ingress's namespace). A Secret that does not parse is an error on the Secret
//! (so the reloader keeps its last good version); a missing one leaves the host on the default
//! certificate, as ingress-nginx does.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;

use crate::diag::Diagnostic;
use crate::model::{self, Sourced};
use crate::model::{ObjectKind, ObjectRef};
use crate::tls::{CertStore, Certificate};

/// What `spec.tls` gives the route table.
#[derive(Default)]
pub struct TlsHosts {
    pub certs: CertStore,
    /// Hosts listed in some `spec.tls` (lowercase), whether or not their Secret is usable:
    /// their plain-HTTP requests are redirected unless `ssl-redirect: "false"`.
    pub hosts: HashSet<String>,
}

/// Reads the certificates the Ingresses (oldest first) ask for.
pub fn compile_tls(
    ingresses: &[&Sourced<Ingress>],
    secrets: &[Sourced<Secret>],
    diags: &mut Vec<Diagnostic>,
) -> TlsHosts {
    let by_name: HashMap<(&str, &str), &Sourced<Secret>> =
        secrets.iter().map(|s| ((model::namespace(&s.obj.metadata), model::name(&s.obj.metadata)), s)).collect();
    let mut parsed: HashMap<(String, String), Option<Certificate>> = HashMap::new();
    let mut out = TlsHosts::default();
    for ing in ingresses {
        let Some(spec) = ing.obj.spec.as_ref().filter(|s| s.tls.as_ref().is_some_and(|t| !t.is_empty())) else {
            continue;
        };
        let ns = model::namespace(&ing.obj.metadata);
        let object = ObjectRef::of(ObjectKind::Ingress, &ing.obj.metadata);
        let rule_hosts: Vec<String> =
            spec.rules.iter().flatten().filter_map(|r| r.host.clone()).filter(|h| !h.is_empty()).collect();
        for (ti, tls) in spec.tls.iter().flatten().enumerate() {
            let field = format!("spec.tls[{ti}]");
            // Without hosts, the entry covers the Ingress's own rule hosts.
            let hosts = tls.hosts.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| rule_hosts.clone());
            out.hosts.extend(hosts.iter().map(|h| h.to_ascii_lowercase()));
            let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else { continue };
            let key = (ns.to_owned(), secret_name.to_owned());
            let cert = parsed
                .entry(key)
                .or_insert_with(|| match by_name.get(&(ns, secret_name)) {
                    Some(secret) => parse_secret(secret, diags),
                    None => {
                        diags.push(
                            Diagnostic::warning(format!(
                                "Secret {ns}/{secret_name} not found; its hosts get the default certificate"
                            ))
                            .maybe_file(ing.file.as_ref())
                            .object(&object)
                            .field(format!("{field}.secretName")),
                        );
                        None
                    }
                })
                .clone();
            let Some(cert) = cert else { continue };
            for host in &hosts {
                if let Err(holder) = out.certs.insert(host, cert.clone()) {
                    if holder.source != cert.source {
                        diags.push(
                            Diagnostic::warning(format!(
                                "host {host} already has the certificate of {} (from an older Ingress); this one is \
                                 ignored",
                                holder.source
                            ))
                            .maybe_file(ing.file.as_ref())
                            .object(&object)
                            .field(format!("{field}.hosts")),
                        );
                    }
                }
            }
        }
    }
    out
}

/// `tls.crt` and `tls.key` from `data` (base64 in the manifest) or `stringData` (plain, wins
/// as the API server merges it).
pub fn parse_secret(secret: &Sourced<Secret>, diags: &mut Vec<Diagnostic>) -> Option<Certificate> {
    let object = ObjectRef::of(ObjectKind::Secret, &secret.obj.metadata);
    let value = |key: &str| -> Option<(Vec<u8>, String)> {
        if let Some(v) = secret.obj.string_data.as_ref().and_then(|d| d.get(key)) {
            return Some((v.clone().into_bytes(), format!("stringData[{key}]")));
        }
        let v = secret.obj.data.as_ref().and_then(|d| d.get(key))?;
        Some((v.0.clone(), format!("data[{key}]")))
    };
    let fail = |field: String, reason: String| {
        Diagnostic::error(reason).maybe_file(secret.file.as_ref()).object(&object).field(field)
    };
    let (Some((crt, crt_field)), Some((key, key_field))) = (value("tls.crt"), value("tls.key")) else {
        diags.push(fail("data".into(), "a kubernetes.io/tls Secret needs tls.crt and tls.key".into()));
        return None;
    };
    match Certificate::from_pem(&crt, &key) {
        Ok(mut cert) => {
            cert.source = object.to_string().into();
            Some(cert)
        }
        Err(reason) => {
            let field = if reason.is_about_the_key() { key_field } else { crt_field };
            diags.push(fail(field, reason.to_string()));
            None
        }
    }
}

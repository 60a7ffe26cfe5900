//! Access policies: each dialect reads its annotations into an [`AccessSpec`]; here Secrets
//! are resolved and the spec becomes the route's [`AccessPolicy`]. Whatever cannot be
//! honoured exactly closes the routes (503) with an error that says so: never served open.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use crate::access::basic::{challenge, Users};
use crate::access::client_cert::{CaBundleError, ClientCertRule, VerifyMode};
use crate::access::cors::Cors;
use crate::access::limits::{LimitConfig, RateLimits};
use crate::access::{AccessPolicy, BasicAuth, ExternalAuth, SourceRanges};
use crate::compile::dialect::annotation_field;
use crate::diag::Diagnostic;
use crate::model::{self, ObjectRef, Sourced};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretFormat {
    /// Key `auth`: htpasswd lines.
    AuthFile,
    /// Every key a user, its value the hash.
    AuthMap,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicSpec {
    /// (namespace, name).
    pub secret: (String, String),
    pub format: SecretFormat,
    pub realm: String,
}

/// `auth-tls-*` before the CA Secret is read.
#[derive(Clone, Debug)]
pub struct ClientCertSpec {
    pub secret: (String, String),
    pub mode: VerifyMode,
    pub depth: usize,
    pub pass: bool,
    pub error_page: Option<http::HeaderValue>,
    pub match_cn: Option<regex::Regex>,
}

/// What one object's annotations ask of access, before Secrets are read.
#[derive(Debug, Default)]
pub struct AccessSpec {
    /// (annotation key, reason) of each restriction that cannot be honoured.
    pub closed: Vec<(String, String)>,
    pub ranges: SourceRanges,
    /// `satisfy: any`: the source range *or* authentication suffices.
    pub satisfy_any: bool,
    pub basic: Option<BasicSpec>,
    pub external: Option<ExternalAuth>,
    pub client_cert: Option<ClientCertSpec>,
    pub limits: Option<(LimitConfig, Vec<ipnet::IpNet>)>,
    pub cors: Option<Cors>,
    /// (annotation key, what it does in words).
    pub explained: Vec<(String, String)>,
    /// Settings that restrict nothing and are not honoured, noted at their annotation.
    pub notes: Vec<Diagnostic>,
}

impl AccessSpec {
    pub fn close(&mut self, key: String, reason: String) {
        self.closed.push((key, reason));
    }
    pub fn warn(&mut self, key: String, reason: String) {
        self.notes.push(Diagnostic::warning(reason).field(annotation_field(&key)));
    }
    pub fn explain(&mut self, key: String, words: String) {
        self.explained.push((key, words));
    }
}

/// Where diagnostics about the object point.
pub struct Origin<'a> {
    pub file: Option<&'a std::path::PathBuf>,
    pub object: &'a ObjectRef,
}

/// The policy for an object's routes (`None` when it has no access settings), reporting what
/// was closed and why.
pub fn build(
    mut spec: AccessSpec,
    secrets: &[Sourced<Secret>],
    origin: &Origin<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<AccessPolicy>> {
    let field = annotation_field;
    diags.extend(spec.notes.drain(..).map(|d| d.maybe_file(origin.file).object(origin.object)));
    let basic = spec.basic.take().and_then(|b| match basic_auth(&b, secrets) {
        Ok((auth, problems)) => {
            for p in problems {
                diags.push(
                    Diagnostic::warning(format!("Secret {}/{}: {p}; that user cannot log in", b.secret.0, b.secret.1))
                        .maybe_file(origin.file)
                        .object(origin.object)
                        .field(field(&format!("{}auth-secret", crate::compile::dialect::nginx::PREFIX))),
                );
            }
            let words = format!(
                "requests need a user of Secret {}/{} ({} users; Basic, realm {:?}); others get 401",
                b.secret.0,
                b.secret.1,
                auth.users.len(),
                b.realm
            );
            let prefix = crate::compile::dialect::nginx::PREFIX;
            spec.explained.push((format!("{prefix}auth-secret"), format!("{} users", auth.users.len())));
            spec.explained.push((format!("{prefix}auth-type"), words));
            Some(auth)
        }
        Err(reason) => {
            spec.closed.push((format!("{}auth-secret", crate::compile::dialect::nginx::PREFIX), reason.to_string()));
            None
        }
    });
    let prefix = crate::compile::dialect::nginx::PREFIX;
    let client_cert = spec.client_cert.take().and_then(|c| match client_cert_rule(&c, secrets) {
        Ok(rule) => {
            spec.explained.push((format!("{prefix}auth-tls-secret"), rule.describe()));
            Some(Arc::new(rule))
        }
        Err(reason) => {
            spec.closed.push((format!("{prefix}auth-tls-secret"), reason.to_string()));
            None
        }
    });
    for (key, reason) in &spec.closed {
        diags.push(
            Diagnostic::error(format!("{reason}: access cannot be enforced as written, so its routes answer 503"))
                .maybe_file(origin.file)
                .object(origin.object)
                .field(field(key))
                .fails_closed(),
        );
    }
    if let Some((key, reason)) = spec.closed.first() {
        return Some(AccessPolicy::closed(format!("{key}: {reason}")));
    }
    let ranges = (!spec.ranges.allow.is_empty() || !spec.ranges.deny.is_empty()).then_some(spec.ranges);
    let rate = spec.limits.map(|(config, exempt)| {
        let limits = RateLimits::new(config, exempt);
        spec.explained.push((format!("{}limit-rps", crate::compile::dialect::nginx::PREFIX), limits.describe()));
        limits
    });
    let policy = AccessPolicy {
        closed: None,
        satisfy_any: spec.satisfy_any,
        ranges,
        rate,
        basic,
        external: spec.external,
        client_cert,
        cors: spec.cors,
        explained: spec.explained.into_iter().map(|(k, w)| (k.into_boxed_str(), w)).collect(),
    };
    (!policy.is_empty()).then(|| Arc::new(policy))
}

/// The users of an `auth-secret`, or why there are none to be had.
fn basic_auth(spec: &BasicSpec, secrets: &[Sourced<Secret>]) -> Result<(BasicAuth, Vec<String>), SecretError> {
    let (ns, name) = (&spec.secret.0, &spec.secret.1);
    let secret = find_secret(secrets, ns, name, "auth-secret")?;
    let entries = secret_entries(&secret.obj);
    let (users, problems) = match spec.format {
        SecretFormat::AuthFile => {
            let text = entries
                .iter()
                .find(|(k, _)| k == "auth")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| SecretError::missing_key(ns, name, "auth", " (auth-secret-type: auth-file)"))?;
            let text = String::from_utf8(text).map_err(|_| SecretError::NotText(secret_ref(ns, name), "auth"))?;
            Users::from_htpasswd(&text)
        }
        SecretFormat::AuthMap => {
            let texts: Vec<(String, String)> = entries
                .iter()
                .filter_map(|(k, v)| String::from_utf8(v.clone()).ok().map(|v| (k.clone(), v.trim().to_owned())))
                .collect();
            Users::from_map(texts.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
    };
    if users.is_empty() {
        return Err(SecretError::NoUsers(secret_ref(ns, name)));
    }
    let problems = problems
        .into_iter()
        .map(|p| match (p.line, p.user) {
            (0, Some(u)) => format!("user {u:?}: {}", p.reason),
            (line, Some(u)) => format!("line {line} (user {u:?}): {}", p.reason),
            (line, None) => format!("line {line}: {}", p.reason),
        })
        .collect();
    Ok((BasicAuth { users: Arc::new(users), challenge: challenge(&spec.realm) }, problems))
}

/// The CA bundle of an `auth-tls-secret` (key `ca.crt`) as a verifying rule.
fn client_cert_rule(spec: &ClientCertSpec, secrets: &[Sourced<Secret>]) -> Result<ClientCertRule, SecretError> {
    let (ns, name) = (&spec.secret.0, &spec.secret.1);
    let secret = find_secret(secrets, ns, name, "auth-tls-secret")?;
    let ca = secret_entries(&secret.obj)
        .into_iter()
        .find(|(k, _)| k == "ca.crt")
        .map(|(_, v)| v)
        .ok_or_else(|| SecretError::missing_key(ns, name, "ca.crt", ""))?;
    let source = secret_ref(ns, name);
    let mut rule = ClientCertRule::new(&ca, spec.mode, &source, crate::tls::provider())
        .map_err(|e| SecretError::CaBundle(source.clone(), e))?;
    rule.depth = spec.depth;
    rule.pass_certificate = spec.pass;
    rule.error_page = spec.error_page.clone();
    rule.match_cn = spec.match_cn.clone();
    Ok(rule)
}

/// The Secret `ns/name` an annotation names, or why it is not there.
fn find_secret<'a>(
    secrets: &'a [Sourced<Secret>],
    ns: &str,
    name: &str,
    annotation: &'static str,
) -> Result<&'a Sourced<Secret>, SecretError> {
    secrets
        .iter()
        .find(|s| model::namespace(&s.obj.metadata) == ns && model::name(&s.obj.metadata) == name)
        .ok_or_else(|| SecretError::NotFound(secret_ref(ns, name), annotation))
}

/// Why the Secret an access annotation names cannot be used; the routes then fail closed.
#[derive(Debug, thiserror::Error)]
enum SecretError {
    #[error("{0} ({1}) not found")]
    NotFound(String, &'static str),
    #[error("{secret} has no key `{key}`{context}")]
    MissingKey { secret: String, key: &'static str, context: &'static str },
    #[error("{0} key `{1}` is not text")]
    NotText(String, &'static str),
    #[error("{0} holds no user tether can verify")]
    NoUsers(String),
    #[error("{0}: {1}")]
    CaBundle(String, CaBundleError),
}

impl SecretError {
    fn missing_key(ns: &str, name: &str, key: &'static str, context: &'static str) -> SecretError {
        SecretError::MissingKey { secret: secret_ref(ns, name), key, context }
    }
}

/// How diagnostics name a Secret.
fn secret_ref(ns: &str, name: &str) -> String {
    format!("Secret {ns}/{name}")
}

/// A Secret's keys and values: `data` (decoded) and `stringData` (as a file may give it).
fn secret_entries(secret: &Secret) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.retain(|(key, _)| key != k);
        out.push((k.clone(), v.clone().into_bytes()));
    }
    out
}

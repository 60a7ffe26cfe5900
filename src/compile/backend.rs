//! Backends: a Service port resolved to endpoints, with its affinity decided once for every
//! route that reaches it. Cookie affinity from an Ingress (ingress-nginx dialect) wins over
//! affinity the Service asks for itself (Traefik annotations, `sessionAffinity: ClientIP`).

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::ServiceBackendPort;
use rustc_hash::FxHashMap as HashMap;

use crate::affinity::cookie::{RouteSticky, StickyPolicy};
use crate::affinity::hash_key::HashKey;
use crate::compile::dialect::{tether, traefik, AnnotationReader};
use crate::compile::memo::{BackendInputs, BackendMemo, Front, Memo};
use crate::compile::service::ServiceIndex;
use crate::compile::CompileOptions;
use crate::diag::Diagnostic;
use crate::model::{ObjectKind, ObjectRef};
use crate::route::{Backend, Balance, Endpoint};
use crate::upstream::PodProtocol;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct BackendRef {
    pub namespace: String,
    pub service: String,
    /// The Service port number (or its name when the Service does not resolve it).
    pub port: String,
    /// Set for an OpenShift Route: each Route is a backend of its own (own sessions, own
    /// backend_settings), as in the OpenShift router.
    pub owner: Option<String>,
}

impl BackendRef {
    /// The same Service port spelled by name or by number is one backend.
    pub fn canonical(mut self, services: &ServiceIndex<'_>) -> Self {
        if let Cow::Owned(named) = self.canonical_ref(services) {
            self = named;
        }
        self
    }

    /// As [`canonical`](Self::canonical), copying only when a port name is replaced.
    pub fn canonical_ref(&self, services: &ServiceIndex<'_>) -> Cow<'_, Self> {
        if self.port.parse::<i32>().is_ok() {
            return Cow::Borrowed(self);
        }
        match services.port_number(&self.namespace, &self.service, &self.port) {
            Some(number) => Cow::Owned(BackendRef { port: number.to_string(), ..self.clone() }),
            None => Cow::Borrowed(self),
        }
    }
}

/// How a backend balances requests that carry no session, and how it talks to its pods: the
/// oldest object's choice wins.
#[derive(Clone, Debug, Default)]
pub struct BackendSettings {
    /// Hash this request expression (ingress-nginx `upstream-hash-by`, OpenShift `source`).
    pub hash_by: Option<Arc<HashKey>>,
    pub balance: Balance,
    /// ingress-nginx `backend-protocol`.
    pub protocol: PodProtocol,
}

/// The winning affinity of a backend and which Ingress set it.
pub struct BackendAffinity {
    pub policy: Arc<StickyPolicy>,
    pub owner: ObjectRef,
}

/// Builds each backend once, so routes sharing a Service port share its state.
pub struct BackendBuilder<'a> {
    front: Front,
    services: &'a ServiceIndex<'a>,
    options: &'a CompileOptions,
    built: HashMap<BackendRef, Arc<Backend>>,
    /// What this compile built or kept, for the next one.
    fresh: Vec<((Front, BackendRef), Arc<BackendMemo>)>,
    affinity: &'a HashMap<BackendRef, BackendAffinity>,
    backend_settings: &'a HashMap<BackendRef, BackendSettings>,
    keys: Arc<crate::affinity::token::CookieKeys>,
    keys_id: String,
}

impl<'a> BackendBuilder<'a> {
    pub fn new(
        front: Front,
        services: &'a ServiceIndex<'a>,
        options: &'a CompileOptions,
        affinity: &'a HashMap<BackendRef, BackendAffinity>,
        backend_settings: &'a HashMap<BackendRef, BackendSettings>,
    ) -> Self {
        let keys = Arc::new(options.keys.clone());
        // Names the keys without revealing them: digests of nothing under each.
        let keys_id = format!(
            "{:x}/{:x}",
            keys.current.digest("tether/keys-id", b""),
            keys.previous.as_ref().map_or(0, |k| k.digest("tether/keys-id", b""))
        );
        BackendBuilder {
            front,
            services,
            options,
            built: HashMap::default(),
            fresh: Vec::new(),
            affinity,
            backend_settings,
            keys,
            keys_id,
        }
    }

    /// Leaves what was built (or kept) for the next compile.
    pub fn finish(self, next: &mut Memo) {
        for (key, memo) in self.fresh {
            if memo.backend.fingerprint != 0 {
                next.by_fingerprint.insert(memo.backend.fingerprint, memo.backend.clone());
            }
            next.backends.insert(key, memo);
        }
    }

    /// The objects and settings a backend is built from.
    fn inputs(&self, key: &BackendRef, members: &[(BackendRef, u32)]) -> BackendInputs {
        let mut services = Vec::with_capacity(members.len() + 1);
        let (mut slices, mut legacy) = (Vec::with_capacity(members.len()), Vec::with_capacity(members.len()));
        for (r, _) in members {
            let (service, s, l) = self.services.objects(&r.namespace, &r.service);
            services.push(service);
            slices.push(s);
            legacy.push(l);
        }
        services.push(self.services.service(&key.namespace, &key.service).map(|s| s.obj.clone()));
        BackendInputs {
            members: members.to_vec(),
            services,
            slices,
            legacy,
            affinity: self.affinity.get(key).map(|a| a.policy.clone()),
            settings: self.backend_settings.get(key).cloned(),
            keys_id: self.keys_id.clone(),
        }
    }

    pub fn get(&mut self, r: &BackendRef, diags: &mut Vec<Diagnostic>) -> Arc<Backend> {
        if let Some(b) = self.built.get(r) {
            return b.clone();
        }
        self.get_weighted(r, &[(r.clone(), 1)], diags)
    }

    /// A backend over several Service ports with weights (OpenShift `alternateBackends`, Gateway
    /// API `backendRefs`): a member's weight is shared by its endpoints, as the OpenShift router
    /// does. `key` (the first member, with an owner) carries the affinity.
    pub fn get_weighted(
        &mut self,
        key: &BackendRef,
        members: &[(BackendRef, u32)],
        diags: &mut Vec<Diagnostic>,
    ) -> Arc<Backend> {
        if let Some(b) = self.built.get(key) {
            return b.clone();
        }
        let inputs = self.inputs(key, members);
        let memo_key = (self.front, key.clone());
        if let Some(m) = self.options.previous.backends.get(&memo_key).filter(|m| m.inputs == inputs) {
            diags.extend(m.diagnostics.iter().cloned());
            self.built.insert(key.clone(), m.backend.clone());
            self.fresh.push((memo_key, m.clone()));
            return m.backend.clone();
        }
        let first_diagnostic = diags.len();
        let backend = self.build(key, members, diags);
        let memo = BackendMemo { inputs, backend: backend.clone(), diagnostics: diags[first_diagnostic..].to_vec() };
        self.fresh.push((memo_key, Arc::new(memo)));
        self.built.insert(key.clone(), backend.clone());
        backend
    }

    fn build(&mut self, key: &BackendRef, members: &[(BackendRef, u32)], diags: &mut Vec<Diagnostic>) -> Arc<Backend> {
        let protocol = self.backend_settings.get(key).map(|s| s.protocol).unwrap_or_default();
        let mut name = None;
        // (endpoint, weight, ingress-nginx upstream name), before any digest is computed.
        let mut specs = Vec::new();
        let mut problems = Vec::new();
        for (r, weight) in members {
            let port = service_port(&r.port);
            let resolved = match self.services.resolve(&r.namespace, &r.service, &port) {
                Ok(resolved) => resolved,
                Err(reason) => {
                    // Ingress paths report it themselves, with their file and field.
                    if self.front != Front::Ingress {
                        diags.push(
                            Diagnostic::warning(format!("{reason}; its routes answer 503")).object(ObjectRef::new(
                                ObjectKind::Service,
                                &r.namespace,
                                &r.service,
                            )),
                        );
                    }
                    name.get_or_insert_with(|| format!("{}/{}:{}", r.namespace, r.service, r.port));
                    problems.push(reason.to_string());
                    continue;
                }
            };
            for problem in &resolved.problems {
                diags.push(Diagnostic::warning(problem.clone()).object(ObjectRef::new(
                    ObjectKind::Service,
                    &r.namespace,
                    &r.service,
                )));
            }
            name.get_or_insert_with(|| match &key.owner {
                None => format!("{}/{}:{}", r.namespace, r.service, resolved.port),
                Some(owner) => format!("{}/{}:{} for {owner}", r.namespace, r.service, resolved.port),
            });
            // ingress-nginx names the upstream `<namespace>-<service>-<port>`.
            let nginx_name: Arc<str> = format!("{}-{}-{}", r.namespace, r.service, r.port).into();
            let per_endpoint =
                if resolved.endpoints.is_empty() { 0 } else { weight * 1000 / resolved.endpoints.len() as u32 };
            let weight = if *weight == 0 { 0 } else { per_endpoint.max(1) };
            specs.extend(resolved.endpoints.into_iter().map(|e| (e, weight, nginx_name.clone())));
        }
        let name = name.unwrap_or_else(|| format!("{}/{}:{}", key.namespace, key.service, key.port));
        let problem = match (specs.is_empty(), problems.first()) {
            (false, _) => None,
            (true, Some(reason)) => Some(reason.clone()),
            (true, None) => Some(format!("Service {}/{} has no ready endpoints", key.namespace, key.service)),
        };
        let (sticky, client_ip) = self.affinity_of(key, &name, diags);
        let settings = self.backend_settings.get(key);
        let (hash_by, balance) = settings.map(|b| (b.hash_by.clone(), b.balance)).unwrap_or_default();

        // Everything the backend is built from: the same fingerprint gives the same backend, so
        // the previous table's is kept (its counters and pools with it).
        let mut fp = Fingerprint::default();
        let _ = write!(
            fp,
            "{name}|{problem:?}|{protocol:?}|{sticky:?}|{client_ip}|{hash_by:?}|{balance:?}|{}|",
            self.keys_id
        );
        for (e, weight, nginx_name) in &specs {
            let _ = write!(fp, "{}|{}|{:?}|{weight}|{nginx_name};", e.identity, e.addr, e.state);
        }
        let fingerprint = fp.finish();
        if let Some(kept) = self.options.previous.by_fingerprint.get(&fingerprint) {
            return kept.clone();
        }

        let keys = &self.options.keys;
        let endpoints = specs
            .into_iter()
            .map(|(e, weight, nginx_name)| Endpoint {
                digest: keys.current.digest("tether/endpoint", e.identity.as_bytes()),
                previous_digest: keys.previous.as_ref().map(|k| k.digest("tether/endpoint", e.identity.as_bytes())),
                nginx_key: crate::affinity::nginx_cookie::persistent_key(&nginx_name, e.addr),
                upstream: Default::default(),
                identity: e.identity.into(),
                addr: e.addr,
                state: e.state,
                weight,
            })
            .collect();
        // The scope only separates backends inside the MAC; it need not be secret, and being
        // unkeyed it survives key rotation.
        let scope = xxhash_rust::xxh3::xxh3_64(format!("tether/backend/{name}").as_bytes());
        let mut backend = Backend::new(name, endpoints, scope, sticky, problem);
        backend.keys = self.keys.clone();
        backend.client_ip_affinity = client_ip;
        backend.hash_by = hash_by;
        backend.balance = balance;
        backend.protocol = protocol;
        backend.fingerprint = fingerprint;
        Arc::new(backend)
    }

    /// True when routes to this backend without their own affinity should still issue cookies
    /// (the Service asked for them).
    pub fn service_issues_cookies(&self, r: &BackendRef) -> bool {
        !self.affinity.contains_key(r) && self.built.get(r).is_some_and(|b| b.sticky.is_some())
    }

    /// The backend's affinity: the oldest Ingress's cookie settings, else the Service's own
    /// (Traefik annotations), else `sessionAffinity: ClientIP`.
    fn affinity_of(
        &self,
        r: &BackendRef,
        name: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> (Option<Arc<StickyPolicy>>, bool) {
        let from_ingress = self.affinity.get(r).map(|a| a.policy.clone());
        let Some(service) = self.services.service(&r.namespace, &r.service) else { return (from_ingress, false) };
        let object = ObjectRef::of(ObjectKind::Service, &service.obj.metadata);
        let annotations = service.obj.metadata.annotations.as_ref();
        let mut theirs = AnnotationReader::new(annotations, traefik::PREFIX);
        let mut traefik = traefik::parse(&mut theirs, name);
        // tether's own cookie options apply to the Service's own cookie.
        let mut ours = AnnotationReader::new(annotations, tether::PREFIX);
        tether::apply(&mut ours, ObjectKind::Service, traefik.sticky.as_mut());
        for reader in [&mut theirs, &mut ours] {
            reader.place_notes(service.file.as_ref(), &object, diags);
        }
        let spec = service.obj.spec.as_ref();
        let client_ip = spec.and_then(|s| s.session_affinity.as_deref()) == Some("ClientIP");
        if client_ip {
            let timeout = spec
                .and_then(|s| s.session_affinity_config.as_ref())
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if timeout.is_some() {
                diags.push(
                    Diagnostic::notice(
                        "ClientIP affinity is a consistent hash of the client address: it lasts while the pod lives \
                         instead of expiring after timeoutSeconds of inactivity (tether keeps no per-client table)",
                    )
                    .maybe_file(service.file.as_ref())
                    .object(&object)
                    .field("spec.sessionAffinityConfig.clientIP.timeoutSeconds"),
                );
            }
        }
        match (from_ingress, traefik.sticky) {
            (Some(policy), Some(_)) => {
                diags.push(
                    Diagnostic::notice(
                        "the Ingress's cookie affinity takes precedence over the Service's Traefik sticky cookie",
                    )
                    .maybe_file(service.file.as_ref())
                    .object(&object),
                );
                (Some(policy), client_ip)
            }
            (Some(policy), None) => (Some(policy), client_ip),
            (None, Some(policy)) => (Some(Arc::new(policy)), client_ip),
            (None, None) => (None, client_ip),
        }
    }
}

/// A 128-bit hash of what is written into it (with `write!`, so `Debug` forms of the inputs
/// can be hashed without building strings).
#[derive(Default)]
struct Fingerprint(xxhash_rust::xxh3::Xxh3Default);

impl Fingerprint {
    fn finish(&self) -> u128 {
        // 0 marks backends built outside compile(); never produce it.
        self.0.digest128().max(1)
    }
}

impl std::fmt::Write for Fingerprint {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// A route's view of its backend's affinity: the cookie Path is the policy's, else
/// `default_path`; `issues_cookies` is false for routes that only honour the cookie.
pub fn route_sticky(backend: &Backend, default_path: &str, issues_cookies: bool) -> Option<RouteSticky> {
    backend.sticky.as_ref().map(|policy| RouteSticky {
        policy: policy.clone(),
        cookie_path: policy.path.clone().unwrap_or_else(|| default_path.into()),
        issues_cookies,
    })
}

/// A port as written (number or name) in the shape Service resolution takes.
pub fn service_port(port: &str) -> ServiceBackendPort {
    match port.parse::<i32>() {
        Ok(n) => ServiceBackendPort { number: Some(n), name: None },
        Err(_) => ServiceBackendPort { number: None, name: Some(port.to_owned()) },
    }
}

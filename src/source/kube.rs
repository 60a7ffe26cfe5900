//! The Kubernetes API source: kube-rs watchers and reflector stores for the kinds tether
//! routes on, feeding the same [`Snapshot`] and `compile()` as the manifest directory.
//!
//! Each kind is listed, then watched (re-listed after `410 Gone`, retried with backoff after a
//! dropped connection). A watch error never empties a store, so the route table keeps the last
//! objects it saw. A kind the controller may not read (403) is reported with the verb and the
//! resource and served as empty, instead of crash-looping.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::diag::Diagnostic;
use crate::model::{ObjectKind, ObjectRef, Snapshot, Sourced};
use crate::source::Source;

/// Each watched resource's standing problem (a 403, a CRD not installed), by resource name.
type Problems = Mutex<BTreeMap<String, Diagnostic>>;

/// How to reach the API server and what to watch.
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    /// A kubeconfig file; without it, in-cluster config, else `$KUBECONFIG`/`~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Namespaces to watch; empty = all.
    pub namespaces: Vec<String>,
    /// `--cookie-key-secret`: (namespace, name) of the Secret with the cookie keys.
    pub cookie_key_secret: Option<(String, String)>,
}

/// The stores of every watched kind (one per namespace watched).
pub struct KubeSource {
    ingresses: Vec<Store<Ingress>>,
    ingress_classes: Vec<Store<IngressClass>>,
    services: Vec<Store<Service>>,
    endpoint_slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
    /// Gateway API and OpenShift kinds, when their CRDs are installed.
    custom: Vec<(CustomKind, Store<DynamicObject>)>,
    /// Problems the watchers met (403s), reported with every reload while they last.
    problems: Arc<Problems>,
}

/// Started watchers: the source, a channel that says "something changed", and a counter of
/// watchers that have not finished their first list.
pub struct Started {
    pub source: KubeSource,
    pub changed: mpsc::Receiver<()>,
    pub unsynced: Arc<AtomicUsize>,
}

pub async fn client(options: &KubeOptions) -> anyhow::Result<Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kube_options = KubeConfigOptions { context: options.context.clone(), ..Default::default() };
    let config = match &options.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &kube_options).await?
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&kube_options).await?,
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// The cookie keys from a Secret (`--cookie-key-secret ns/name`): `current` and optionally
/// `previous`, as the Helm chart creates it, so every replica signs with the same key.
pub async fn cookie_keys(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<crate::affinity::token::CookieKeys> {
    use anyhow::Context;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("cannot read Secret {namespace}/{name} (get secrets)"))?;
    keys_of(&secret).with_context(|| format!("Secret {namespace}/{name}"))
}

/// The keys a cookie-key Secret holds.
fn keys_of(secret: &Secret) -> anyhow::Result<crate::affinity::token::CookieKeys> {
    use anyhow::Context;
    let value = |key: &str| secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone());
    let current = value("current").context("no `current` key")?;
    let current = crate::affinity::key::key_from_bytes(&current).context("Secret key `current`")?;
    let previous = match value("previous") {
        Some(v) => Some(crate::affinity::key::key_from_bytes(&v).context("Secret key `previous`")?),
        None => None,
    };
    Ok(crate::affinity::token::CookieKeys { current, previous })
}

/// Watches the cookie-key Secret; every change that yields valid keys is sent on (a rotation:
/// `previous` = the old key, `current` = the new one).
pub fn watch_cookie_keys(
    client: Client,
    namespace: String,
    name: String,
) -> mpsc::Receiver<crate::affinity::token::CookieKeys> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff().applied_objects());
        let mut last: Option<Vec<u8>> = None;
        while let Some(event) = stream.next().await {
            let Ok(secret) = event else { continue };
            let fingerprint = serde_json::to_vec(&secret.data).unwrap_or_default();
            if last.as_ref() == Some(&fingerprint) {
                continue;
            }
            last = Some(fingerprint);
            // The watch delivered the Secret itself: no second read.
            match keys_of(&secret) {
                Ok(keys) => {
                    tracing::info!(secret = %format!("{namespace}/{name}"), "cookie keys changed; recompiling with them");
                    if tx.send(keys).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the cookie-key Secret changed but its keys are not usable; keeping the old ones")
                }
            }
        }
    });
    rx
}

/// Starts a watcher per kind and namespace.
pub fn start(client: Client, options: &KubeOptions) -> Started {
    let (tx, rx) = mpsc::channel(1);
    let unsynced = Arc::new(AtomicUsize::new(0));
    let problems = Arc::new(Problems::default());
    let namespaces: Vec<Option<String>> =
        if options.namespaces.is_empty() { vec![None] } else { options.namespaces.iter().cloned().map(Some).collect() };
    let w = Watchers { tx, unsynced: unsynced.clone(), problems: problems.clone() };
    let all = watcher::Config::default;
    let source = KubeSource {
        ingresses: namespaces.iter().map(|ns| w.watch(scoped(&client, ns), all())).collect(),
        // IngressClasses are cluster-scoped.
        ingress_classes: vec![w.watch(Api::all(client.clone()), all())],
        services: namespaces.iter().map(|ns| w.watch(scoped(&client, ns), all())).collect(),
        endpoint_slices: namespaces.iter().map(|ns| w.watch(scoped(&client, ns), all())).collect(),
        // TLS Secrets (certificates) and Opaque ones (auth users, CA bundles); service-account
        // tokens and registry credentials are none of tether's business.
        secrets: namespaces
            .iter()
            .flat_map(|ns| {
                [
                    w.watch(scoped(&client, ns), all().fields("type=kubernetes.io/tls")),
                    w.watch(scoped(&client, ns), all().fields("type=Opaque")),
                ]
            })
            .collect(),
        custom: CustomKind::ALL
            .iter()
            .flat_map(|&kind| {
                let ar = kind.api_resource();
                let cluster = kind == CustomKind::GatewayClass;
                let scopes: Vec<Option<String>> = if cluster { vec![None] } else { namespaces.clone() };
                let resource = format!("{}.{}", ar.plural, ar.group);
                scopes
                    .into_iter()
                    .map(|ns| {
                        let api = match &ns {
                            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                            None => Api::all_with(client.clone(), &ar),
                        };
                        (kind, w.watch_dyn(api, ar.clone(), resource.clone(), all(), true))
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        problems,
    };
    Started { source, changed: rx, unsynced }
}

/// The kinds tether reads that Kubernetes does not define (CRDs), with their own serde types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CustomKind {
    GatewayClass,
    Gateway,
    HttpRoute,
    BackendTrafficPolicy,
    OpenShiftRoute,
}

impl CustomKind {
    const ALL: [CustomKind; 5] = [
        CustomKind::GatewayClass,
        CustomKind::Gateway,
        CustomKind::HttpRoute,
        CustomKind::BackendTrafficPolicy,
        CustomKind::OpenShiftRoute,
    ];

    fn object_kind(self) -> ObjectKind {
        match self {
            CustomKind::GatewayClass => ObjectKind::GatewayClass,
            CustomKind::Gateway => ObjectKind::Gateway,
            CustomKind::HttpRoute => ObjectKind::HTTPRoute,
            CustomKind::BackendTrafficPolicy => ObjectKind::BackendTrafficPolicy,
            CustomKind::OpenShiftRoute => ObjectKind::Route,
        }
    }

    pub(crate) fn api_resource(self) -> ApiResource {
        let kind = self.object_kind();
        let plural = match self {
            CustomKind::GatewayClass => "gatewayclasses",
            CustomKind::Gateway => "gateways",
            CustomKind::HttpRoute => "httproutes",
            CustomKind::BackendTrafficPolicy => "xbackendtrafficpolicies",
            CustomKind::OpenShiftRoute => "routes",
        };
        let (group, version) = kind.api_version().split_once('/').unwrap_or(("", kind.api_version()));
        let gvk = GroupVersionKind::gvk(group, version, kind.as_str());
        ApiResource::from_gvk_with_plural(&gvk, plural)
    }

    /// Adds one object to the snapshot, through the same serde types as the file source.
    fn add(self, object: &DynamicObject, snapshot: &mut Snapshot) -> Result<(), ObjectError> {
        let value = serde_json::to_value(object).map_err(ObjectError::Encode)?;
        fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ObjectError> {
            serde_path_to_error::deserialize(value)
                .map_err(|e| ObjectError::Field { field: e.path().to_string(), reason: e.inner().to_string() })
        }
        match self {
            CustomKind::GatewayClass => snapshot.gateway_classes.push(Sourced::new(None, typed(value)?)),
            CustomKind::Gateway => snapshot.gateways.push(Sourced::new(None, typed(value)?)),
            CustomKind::HttpRoute => snapshot.http_routes.push(Sourced::new(None, typed(value)?)),
            CustomKind::BackendTrafficPolicy => {
                snapshot.backend_traffic_policies.push(Sourced::new(None, typed(value)?))
            }
            CustomKind::OpenShiftRoute => snapshot.routes.push(Sourced::new(None, typed(value)?)),
        }
        Ok(())
    }
}

/// Why a watched custom object does not fit its typed model (it is left out of the snapshot).
#[derive(Debug, thiserror::Error)]
enum ObjectError {
    #[error("cannot re-encode the object: {0}")]
    Encode(serde_json::Error),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
}

/// A namespaced kind in one namespace, or in all.
fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

struct Watchers {
    tx: mpsc::Sender<()>,
    unsynced: Arc<AtomicUsize>,
    problems: Arc<Problems>,
}

/// The wait after a list or watch refused (403, or 404 for a CRD not installed), doubled at
/// each refusal in a row up to the maximum, and started over once the kind is listed.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

impl Watchers {
    /// A built-in kind (its k8s-openapi type names it).
    fn watch<K>(&self, api: Api<K>, config: watcher::Config) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let group = K::group(&());
        let resource =
            if group.is_empty() { K::plural(&()).into_owned() } else { format!("{}.{group}", K::plural(&())) };
        self.watch_dyn(api, (), resource, config, false)
    }

    /// Any kind; `optional` kinds (CRDs) that the API server does not know (404) are skipped
    /// with a notice instead of being retried as an error.
    fn watch_dyn<K>(
        &self,
        api: Api<K>,
        dyntype: K::DynamicType,
        resource: String,
        config: watcher::Config,
        optional: bool,
    ) -> Store<K>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
    {
        let writer = reflector::store::Writer::new(dyntype);
        let reader = writer.as_reader();
        let stream = reflector::reflector(writer, watcher::watcher(api, config)).default_backoff();
        let (tx, unsynced, problems) = (self.tx.clone(), self.unsynced.clone(), self.problems.clone());
        unsynced.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut synced = false;
            let mut retry = RETRY_FIRST;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::InitDone) => {
                        retry = RETRY_FIRST;
                        forget(&problems, &resource);
                        if !synced {
                            synced = true;
                            unsynced.fetch_sub(1, Ordering::SeqCst);
                        }
                        let _ = tx.try_send(());
                    }
                    Ok(Event::Apply(_) | Event::Delete(_)) if synced => {
                        let _ = tx.try_send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let code = api_error_code(&e);
                        let problem = match code {
                            Some(403) => Some(Diagnostic::error(forbidden_reason(&resource))),
                            Some(404) if optional => Some(Diagnostic::notice(format!(
                                "the {resource} CRD is not installed; skipped (watched again in case it appears)"
                            ))),
                            _ => None,
                        };
                        if code != Some(404) || !optional {
                            tracing::warn!(%resource, error = %e, "watch failed; retrying (the last objects keep serving)");
                        }
                        if let Some(problem) = problem {
                            remember(&problems, &resource, problem);
                            // Served as empty rather than blocking readiness for ever.
                            if !synced {
                                synced = true;
                                unsynced.fetch_sub(1, Ordering::SeqCst);
                                let _ = tx.try_send(());
                            }
                        }
                        // kube's own backoff starts over at every restart of the watcher (which
                        // begins with an event of its own), so alone it retries a missing CRD
                        // or a forbidden kind about once a second for ever: every replica would
                        // keep asking the API server. The stream is not polled while this waits.
                        // (Other errors, a 410 Gone or a dropped connection, retry at once.)
                        if matches!(code, Some(403 | 404)) {
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(RETRY_MAX);
                        }
                    }
                }
            }
        });
        reader
    }
}

fn forbidden_reason(resource: &str) -> String {
    format!("forbidden: list/watch {resource} (add the verb to tether's ClusterRole); served as empty")
}

fn api_error_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(r))
        | watcher::Error::WatchStartFailed(kube::Error::Api(r)) => Some(r.code),
        _ => None,
    }
}

/// A watch's problem, kept (the first one) until its resource lists again.
fn remember(problems: &Problems, resource: &str, problem: Diagnostic) {
    problems.lock().unwrap_or_else(|e| e.into_inner()).entry(resource.to_owned()).or_insert(problem);
}

fn forget(problems: &Problems, resource: &str) {
    problems.lock().unwrap_or_else(|e| e.into_inner()).remove(resource);
}

fn objects<K: Resource<DynamicType = ()> + Clone + 'static>(stores: &[Store<K>]) -> Vec<Sourced<K>> {
    stores.iter().flat_map(|s| s.state()).map(|o| Sourced { file: None, obj: o }).collect()
}

impl Source for KubeSource {
    fn load(&mut self) -> (Snapshot, Vec<Diagnostic>) {
        let mut snapshot = Snapshot {
            ingresses: objects(&self.ingresses),
            ingress_classes: objects(&self.ingress_classes),
            services: objects(&self.services),
            endpoint_slices: objects(&self.endpoint_slices),
            secrets: objects(&self.secrets),
            ..Snapshot::default()
        };
        let mut problems: Vec<Diagnostic> =
            self.problems.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for (kind, store) in &self.custom {
            for object in store.state() {
                if let Err(error) = kind.add(&object, &mut snapshot) {
                    let name = ObjectRef::of(kind.object_kind(), &object.metadata);
                    let problem = Diagnostic::error(error.to_string()).object(&name);
                    problems.push(match error {
                        ObjectError::Field { field, .. } => problem.field(field),
                        ObjectError::Encode(_) => problem,
                    });
                }
            }
        }
        (snapshot, problems)
    }

    fn origin(&self) -> Option<&std::path::Path> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_kinds_are_watched_and_named_with_the_api_spelling() {
        for kind in CustomKind::ALL {
            let ar = kind.api_resource();
            let object = kind.object_kind();
            assert_eq!((ar.kind.as_str(), ar.api_version.as_str()), (object.as_str(), object.api_version()));
        }
        let meta = kube::api::ObjectMeta { name: Some("web".into()), ..Default::default() };
        assert_eq!(ObjectRef::of(CustomKind::HttpRoute.object_kind(), &meta).to_string(), "HTTPRoute default/web");
    }
}

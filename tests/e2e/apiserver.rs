//! A test Kubernetes API server speaking the real protocol over HTTP: LIST with a
//! resourceVersion, WATCH as newline-delimited JSON events (ADDED, MODIFIED, DELETED, BOOKMARK),
//! `410 Gone` on demand, dropped connections on demand, and 403 for a forbidden resource.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::broadcast;

mod discovery;

type Body = http_body_util::Either<
    Full<Bytes>,
    StreamBody<tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, Infallible>>>,
>;

/// `(api prefix, plural)` of the kinds tether watches.
fn collection(api_version: &str, kind: &str) -> (String, &'static str) {
    let prefix = if api_version == "v1" { "/api/v1".to_owned() } else { format!("/apis/{api_version}") };
    let plural = match kind {
        "Service" => "services",
        "Secret" => "secrets",
        "Ingress" => "ingresses",
        "IngressClass" => "ingressclasses",
        "EndpointSlice" => "endpointslices",
        "GatewayClass" => "gatewayclasses",
        "Gateway" => "gateways",
        "HTTPRoute" => "httproutes",
        "XBackendTrafficPolicy" => "xbackendtrafficpolicies",
        "Route" => "routes",
        "Lease" => "leases",
        other => panic!("the test API server does not know {other}"),
    };
    (prefix, plural)
}

#[derive(Clone, Debug)]
struct Event {
    collection: String,
    rv: u64,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// collection → (namespace, name) → object
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    history: Vec<Event>,
    forbidden: HashSet<String>,
    /// Watches started from a resourceVersion older than this get 410 Gone.
    compacted_before: u64,
    /// The Gateway API and OpenShift CRDs exist (else their paths are 404, as on a bare
    /// cluster).
    crds: bool,
    /// Status writes received (PATCH of `.../status`).
    status_writes: usize,
    /// LIST requests answered, and watches refused with 410 Gone.
    lists: usize,
    gones: usize,
    /// Requests answered 404 for a CRD not installed or 403 for a forbidden kind.
    refusals: usize,
    /// Every access as RBAC sees it: (verb, API group, resource[/subresource]).
    accesses: HashSet<(String, String, String)>,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Option<Event>>,
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State { rv: 1, ..State::default() }));
        let (events, _) = broadcast::channel(1024);
        let (st, ev) = (state.clone(), events.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (st, ev) = (st.clone(), ev.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (st, ev) = (st.clone(), ev.clone());
                        async move {
                            use http_body_util::BodyExt;
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            record(&st, &parts.method, &parts.uri);
                            let response = match parts.method {
                                hyper::Method::GET => handle(&st, &ev, hyper::Request::from_parts(parts, ())),
                                _ => write(&st, &ev, &parts.method, parts.uri.path(), &body),
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ApiServer { addr, state, events }
    }

    /// A kubeconfig pointing at this server.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"http://{}\"}}\n\
                 users:\n- name: test\n  user: {{token: test}}\ncontexts:\n- name: test\n  \
                 context: {{cluster: test, user: test}}\ncurrent-context: test\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    /// Creates or replaces an object (from YAML), as `kubectl apply` would.
    pub fn apply(&self, yaml: &str) {
        for doc in yaml.split("\n---\n") {
            let mut object: Value = serde_yaml_ng::from_str(doc).unwrap();
            let api_version = object["apiVersion"].as_str().unwrap().to_owned();
            let kind = object["kind"].as_str().unwrap().to_owned();
            let (prefix, plural) = collection(&api_version, &kind);
            let ns = object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            let mut st = self.state.lock().unwrap();
            st.rv += 1;
            let rv = st.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            object["metadata"]["namespace"] = json!(ns);
            let key = format!("{prefix}/{plural}");
            let existed = st.objects.entry(key.clone()).or_default().insert((ns, name), object.clone()).is_some();
            let event = Event { collection: key, rv, kind: if existed { "MODIFIED" } else { "ADDED" }, object };
            st.history.push(event.clone());
            let _ = self.events.send(Some(event));
        }
    }

    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        let (prefix, plural) = collection(api_version, kind);
        let key = format!("{prefix}/{plural}");
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let removed = st.objects.entry(key.clone()).or_default().remove(&(namespace.to_owned(), name.to_owned()));
        if let Some(mut object) = removed {
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            let event = Event { collection: key, rv, kind: "DELETED", object };
            st.history.push(event.clone());
            let _ = self.events.send(Some(event));
        }
    }

    /// Every (verb, group, resource) tether used so far.
    pub fn accesses(&self) -> HashSet<(String, String, String)> {
        self.state.lock().unwrap().accesses.clone()
    }

    /// (LIST requests answered, watches refused with 410 Gone) so far.
    pub fn lists_and_gones(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.lists, st.gones)
    }

    /// Requests refused so far (404 for a missing CRD, 403 for a forbidden kind).
    pub fn refusals(&self) -> usize {
        self.state.lock().unwrap().refusals
    }

    /// How many status writes tether made.
    pub fn status_writes(&self) -> usize {
        self.state.lock().unwrap().status_writes
    }

    /// An object as stored (to check what tether wrote).
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (prefix, plural) = collection(api_version, kind);
        let st = self.state.lock().unwrap();
        st.objects.get(&format!("{prefix}/{plural}"))?.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Installs the Gateway API and OpenShift Route CRDs.
    pub fn install_crds(&self) {
        self.state.lock().unwrap().crds = true;
    }

    /// Answers 403 to every request for this kind from now on.
    pub fn forbid(&self, api_version: &str, kind: &str) {
        let (prefix, plural) = collection(api_version, kind);
        self.state.lock().unwrap().forbidden.insert(format!("{prefix}/{plural}"));
    }

    /// Drops every open watch; watches resumed from an older resourceVersion get 410 Gone.
    pub fn drop_watches_and_compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.compacted_before = st.rv + 1;
        let _ = self.events.send(None);
    }
}

/// Notes a request the way RBAC sees it.
fn record(state: &Mutex<State>, method: &hyper::Method, uri: &hyper::Uri) {
    let path: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (group, rest): (&str, &[&str]) = match path.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _, rest @ ..] => (group, rest),
        _ => return,
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] => rest,
        rest => rest,
    };
    let watch = uri.query().is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    let (resource, verb) = match (rest, method.as_str()) {
        ([plural], "GET") => (plural.to_string(), if watch { "watch" } else { "list" }),
        ([plural], "POST") => (plural.to_string(), "create"),
        ([plural, _], "GET") => (plural.to_string(), "get"),
        ([plural, _], "PUT") => (plural.to_string(), "update"),
        ([plural, _, sub], "PATCH") => (format!("{plural}/{sub}"), "patch"),
        ([plural, _, sub], "PUT") => (format!("{plural}/{sub}"), "update"),
        _ => return,
    };
    state.lock().unwrap().accesses.insert((verb.to_owned(), group.to_owned(), resource));
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": reason, "code": code})
}

fn respond(code: u16, body: Value) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(http_body_util::Either::Left(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

/// POST (create), PUT (replace, with resourceVersion conflicts) and PATCH of `/status`
/// (merge patch), for Leases and Ingress status.
fn write(
    state: &Arc<Mutex<State>>,
    events: &broadcast::Sender<Option<Event>>,
    method: &hyper::Method,
    path: &str,
    body: &[u8],
) -> hyper::Response<Body> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, ns, plural, name, of_status) = match parts.as_slice() {
        ["apis", g, v, "namespaces", ns, plural] => (format!("/apis/{g}/{v}"), *ns, *plural, None, false),
        ["apis", g, v, "namespaces", ns, plural, name] => (format!("/apis/{g}/{v}"), *ns, *plural, Some(*name), false),
        ["apis", g, v, "namespaces", ns, plural, name, "status"] => {
            (format!("/apis/{g}/{v}"), *ns, *plural, Some(*name), true)
        }
        _ => return respond(404, status(404, "NotFound", "no such path")),
    };
    let key = format!("{prefix}/{plural}");
    let Ok(incoming) = serde_json::from_slice::<Value>(body) else {
        return respond(400, status(400, "BadRequest", "not JSON"));
    };
    let mut st = state.lock().unwrap();
    let collection = st.objects.entry(key.clone()).or_default();
    let (name, mut object) = match (method.as_str(), name) {
        ("POST", None) => {
            let name = incoming["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            if collection.contains_key(&(ns.to_owned(), name.clone())) {
                return respond(409, status(409, "AlreadyExists", "already exists"));
            }
            (name, incoming)
        }
        ("PUT", Some(name)) => {
            let Some(stored) = collection.get(&(ns.to_owned(), name.to_owned())) else {
                return respond(404, status(404, "NotFound", "not found"));
            };
            if incoming["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
                return respond(409, status(409, "Conflict", "the object has been modified"));
            }
            (name.to_owned(), incoming)
        }
        ("PATCH", Some(name)) if of_status => {
            let Some(mut stored) = collection.get(&(ns.to_owned(), name.to_owned())).cloned() else {
                return respond(404, status(404, "NotFound", "not found"));
            };
            stored["status"] = incoming["status"].clone();
            st.status_writes += 1;
            (name.to_owned(), stored)
        }
        _ => return respond(405, status(405, "MethodNotAllowed", "not supported here")),
    };
    st.rv += 1;
    let rv = st.rv;
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    object["metadata"]["namespace"] = json!(ns);
    let existed = st.objects.entry(key.clone()).or_default().insert((ns.to_owned(), name), object.clone()).is_some();
    let event = Event { collection: key, rv, kind: if existed { "MODIFIED" } else { "ADDED" }, object: object.clone() };
    st.history.push(event.clone());
    let _ = events.send(Some(event));
    respond(if existed { 200 } else { 201 }, object)
}

fn handle(
    state: &Arc<Mutex<State>>,
    events: &broadcast::Sender<Option<Event>>,
    req: hyper::Request<()>,
) -> hyper::Response<Body> {
    let path = req.uri().path().to_owned();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3D", "=").replace("%2F", "/")))
        .collect();
    let crds = state.lock().unwrap().crds;
    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
    if let Some(document) = discovery::document(&path, crds, &host) {
        return respond(200, document);
    }
    // /api/v1[/namespaces/NS]/PLURAL[/NAME] or /apis/G/V[/namespaces/NS]/PLURAL[/NAME]
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix_len, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (2, rest),
        ["apis", _, _, rest @ ..] => (3, rest),
        _ => return respond(404, status(404, "NotFound", "no such path")),
    };
    let (namespace, plural, single) = match rest {
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural, None),
        ["namespaces", ns, plural, name] => (Some(ns.to_string()), *plural, Some(name.to_string())),
        [plural] => (None, *plural, None),
        // A cluster-scoped object (a Namespace is `/api/v1/namespaces/NAME`).
        [plural, name] => (None, *plural, Some(name.to_string())),
        _ => return respond(404, status(404, "NotFound", "no such path")),
    };
    let key = format!("/{}/{plural}", parts[..prefix_len].join("/"));
    let mut st = state.lock().unwrap();
    let custom = key.starts_with("/apis/gateway.") || key.starts_with("/apis/route.openshift.io");
    if custom && !st.crds {
        st.refusals += 1;
        return respond(404, status(404, "NotFound", "the server could not find the requested resource"));
    }
    if st.forbidden.contains(&key) {
        st.refusals += 1;
        return respond(403, status(403, "Forbidden", &format!("{plural} is forbidden: User cannot list resource")));
    }
    let selected = |o: &Value| {
        namespace.as_deref().is_none_or(|ns| o["metadata"]["namespace"] == ns)
            && query.get("fieldSelector").is_none_or(|f| match f.strip_prefix("type=") {
                Some(t) => o["type"] == t,
                None => true,
            })
    };
    if let Some(name) = single {
        let found = st.objects.get(&key).and_then(|m| {
            m.iter()
                .find(|((ns, n), _)| *n == name && namespace.as_ref().is_none_or(|want| want == ns))
                .map(|(_, object)| object)
        });
        return match found {
            Some(object) => respond(200, object.clone()),
            None => respond(404, status(404, "NotFound", &format!("{plural} \"{name}\" not found"))),
        };
    }
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    if !watch {
        st.lists += 1;
        let items: Vec<Value> =
            st.objects.get(&key).map(|m| m.values().filter(|o| selected(o)).cloned().collect()).unwrap_or_default();
        return respond(
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
        );
    }
    let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let line = |v: Value| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{v}\n"))));
    if from < st.compacted_before {
        st.gones += 1;
        let _ =
            tx.try_send(line(json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})));
    } else {
        let backlog: Vec<Event> =
            st.history.iter().filter(|e| e.collection == key && e.rv > from && selected(&e.object)).cloned().collect();
        let mut live = events.subscribe();
        let rv_now = st.rv;
        let selected_owned = {
            let namespace = namespace.clone();
            let field = query.get("fieldSelector").cloned();
            move |o: &Value| {
                namespace.as_deref().is_none_or(|ns| o["metadata"]["namespace"] == ns)
                    && field.as_deref().and_then(|f| f.strip_prefix("type=")).is_none_or(|t| o["type"] == t)
            }
        };
        tokio::spawn(async move {
            for e in backlog {
                if tx.send(line(json!({"type": e.kind, "object": e.object}))).await.is_err() {
                    return;
                }
            }
            let bookmark = json!({"type": "BOOKMARK", "object": {"kind": "Status", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": rv_now.to_string()}}});
            let _ = tx.send(line(bookmark)).await;
            loop {
                match live.recv().await {
                    Ok(Some(e)) if e.collection == key && e.rv > from && selected_owned(&e.object) => {
                        if tx.send(line(json!({"type": e.kind, "object": e.object}))).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    // Dropped on purpose, or the server is gone: end the stream.
                    Ok(None) | Err(_) => return,
                }
            }
        });
    }
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut r = hyper::Response::new(http_body_util::Either::Right(body));
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

#!/usr/bin/env python3
"""A fake Kubernetes API server for bench/scale.sh (KUBE=1): serves the objects of a manifest
directory to `tether run --kube` the way the real API server does, and lets the driver change
them. A benchmark fixture, not a test double: only what tether asks for.

  apiserver.py --manifests DIR --kubeconfig FILE [--listen 127.0.0.20:0] [--log FILE]

Kubernetes API (what kube-rs' watcher and tether's leader election request):
  LIST   GET /api/v1/PLURAL, /apis/G/V/PLURAL, also /namespaces/NS/PLURAL: JSON with
         metadata.resourceVersion, paged by `limit`/`continue` (kube-rs asks 500 at a time),
         fieldSelector on type, metadata.name and metadata.namespace
  WATCH  the same with watch=true: newline-delimited JSON events (ADDED, MODIFIED, BOOKMARK)
         in a chunked response, from the requested resourceVersion on; closed after
         timeoutSeconds (or --watch-timeout, if shorter), as the real server does; 410 Gone (an
         ERROR event) from a resourceVersion older than the loaded state
  GET one object; POST create, PUT replace (409 on a stale resourceVersion: the Lease
         compare-and-swap), PUT/PATCH .../status (200 with the object); discovery documents.
  Anything else: 404 with a Status, never a crash.
Control interface for the driver:
  POST /__bench/apply   body: one object, JSON (fast) or YAML. Creates or replaces it
                        (ADDED/MODIFIED with a new resourceVersion) and answers once every watch
                        interested in it has written and flushed the event:
                        {"type", "resourceVersion", "watchers": N, "sent": [time.time() of each
                        flush]}
  GET  /__bench/stats   counters: requests by method and path, LISTs (and pages), watches
                        started, 410s, 404s, status writes

The kubeconfig is written once the manifests are loaded and the port is bound: its appearance
means "ready". The log (one line per request) shows what tether asked for.
"""
import argparse
import base64
import collections
import http.server
import json
import os
import queue
import re
import sys
import threading
import time
import urllib.parse

import yaml

sys.dont_write_bytecode = True
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the big config loads 10x faster

# kind -> (api prefix, plural, namespaced). The kinds tether watches or writes, plus those the
# manifests hold.
KINDS = {
    "Service": ("/api/v1", "services", True),
    "Secret": ("/api/v1", "secrets", True),
    "Namespace": ("/api/v1", "namespaces", False),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses", True),
    "IngressClass": ("/apis/networking.k8s.io/v1", "ingressclasses", False),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
}
COLLECTIONS = {prefix + "/" + plural: (kind, namespaced) for kind, (prefix, plural, namespaced) in KINDS.items()}
APPLY_WAIT = 10.0  # how long /__bench/apply waits for the watches to flush its event


def collection_of(obj):
    kind = obj.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not served here")
    prefix, plural, _ = KINDS[kind]
    return prefix + "/" + plural


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class Event:
    """One watch event, encoded once for every watch; `sent` collects the flush times."""

    def __init__(self, collection, rv, kind, obj, data):
        self.collection, self.rv, self.kind, self.obj = collection, rv, kind, obj
        self.line = b'{"type":"' + kind.encode() + b'","object":' + data + b"}\n"
        self.sent = []
        self.flushed = threading.Condition()

    def mark_sent(self):
        with self.flushed:
            self.sent.append(time.time())
            self.flushed.notify_all()


class Watch:
    def __init__(self, collection, selected):
        self.collection, self.selected = collection, selected
        self.queue = queue.SimpleQueue()


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.rv = 1
        self.objects = collections.defaultdict(dict)  # collection -> (ns, name) -> (obj, json bytes)
        self.history = []  # events after the load, for watches resumed from an older version
        self.oldest = 1  # watches from an older resourceVersion get 410 Gone
        self.watches = []
        self.pages = {}  # continue token -> (rv, items, offset)
        self.stats = collections.Counter()

    def load(self, obj):
        """An object of the manifest directory: stored without an event."""
        self.rv += 1
        self._store(obj, self.rv)
        self.oldest = self.rv

    def _store(self, obj, rv):
        collection = collection_of(obj)
        meta = obj.setdefault("metadata", {})
        if COLLECTIONS[collection][1]:
            meta.setdefault("namespace", "default")
        meta["resourceVersion"] = str(rv)
        meta.setdefault("uid", f"uid-{rv}")
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
        if obj.get("kind") == "Secret" and "stringData" in obj:
            # Write-only in the real API: folded into base64 `data`, as a Secret is read back.
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(v.encode()).decode()
        key = (meta.get("namespace", ""), meta["name"])
        existed = key in self.objects[collection]
        data = dumps(obj)
        self.objects[collection][key] = (obj, data)
        return data, existed

    def write(self, obj, must_exist=None, expect_rv=None):
        """Creates or replaces `obj` and sends the event to the watches: (event, watchers), or
        an HTTP error (code, reason)."""
        with self.lock:
            collection = collection_of(obj)
            meta = obj.get("metadata", {})
            key = (meta.get("namespace", "default" if COLLECTIONS[collection][1] else ""), meta.get("name"))
            stored = self.objects[collection].get(key)
            if must_exist is True and stored is None:
                return None, (404, "NotFound")
            if must_exist is False and stored is not None:
                return None, (409, "AlreadyExists")
            if expect_rv is not None and stored is not None and expect_rv != stored[0]["metadata"]["resourceVersion"]:
                return None, (409, "Conflict")
            self.rv += 1
            data, existed = self._store(obj, self.rv)
            event = Event(collection, self.rv, "MODIFIED" if existed else "ADDED", obj, data)
            self.history.append(event)
            watchers = 0
            for w in self.watches:
                if w.collection == collection and w.selected(obj):
                    w.queue.put(event)
                    watchers += 1
            return event, watchers


def selector(namespace, field_selector):
    """What a LIST or WATCH selects: a namespace and `type=`, `metadata.name=`,
    `metadata.namespace=` field selectors (the ones tether uses), `!=` too."""
    tests = []
    for term in filter(None, (field_selector or "").split(",")):
        m = re.fullmatch(r"([\w.]+)(!=|==|=)(.*)", term)
        if not m:
            continue
        path, op, want = m.groups()
        tests.append((path.split("."), op == "!=", want))

    def selected(obj):
        meta = obj.get("metadata", {})
        if namespace is not None and meta.get("namespace") != namespace:
            return False
        for path, negate, want in tests:
            value = obj
            for p in path:
                value = value.get(p) if isinstance(value, dict) else None
            if (str(value) == want) == negate:
                return False
        return True

    return selected


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def discovery(path):
    """The legacy discovery documents, for the kinds above (no CRDs: their paths are 404)."""
    groups = collections.defaultdict(list)
    for kind, (prefix, plural, namespaced) in KINDS.items():
        groups[prefix].append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                               "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
    if path == "/version":
        return {"major": "1", "minor": "34", "gitVersion": "v1.34.0-bench", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        gv = [p[len("/apis/"):] for p in groups if p.startswith("/apis/")]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g.split("/")[0], "versions": [{"groupVersion": g, "version": g.split("/")[1]}],
             "preferredVersion": {"groupVersion": g, "version": g.split("/")[1]}} for g in gv]}
    if path in groups:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version(path),
                "resources": groups[path]}
    return None


def parse_path(path):
    """(collection, namespace, name, subresource) of an API path, or None."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        prefix, rest = "/api/v1", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        prefix, rest = "/" + "/".join(parts[:3]), parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    collection = prefix + "/" + rest[0]
    if collection not in COLLECTIONS:
        return None
    return collection, namespace, (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked watch responses
    # Headers and body go out in separate writes: with Nagle, the body would wait for the
    # client's delayed ACK (40 ms a request), and a watch event could wait behind the last one.
    disable_nagle_algorithm = True
    state: State = None
    log = None
    # The latest a watch is closed (--watch-timeout); kube-rs asks 290 s with timeoutSeconds.
    watch_timeout = 1800

    def log_message(self, fmt, *args):  # one line per request to --log, not stderr
        if self.log:
            self.log.write(f"{time.time():.3f} {self.client_address[0]} {fmt % args}\n")
            self.log.flush()

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send_json(self, code, payload):
        data = payload if isinstance(payload, bytes) else dumps(payload)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def fail(self, code, reason, message):
        self.send_json(code, status(code, reason, message))

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with self.state.lock:
            self.state.stats[f"{method} {re.sub(r'/namespaces/[^/]+', '/namespaces/NS', url.path)}"
                             f"{' watch' if query.get('watch') in ('true', '1') else ''}"] += 1
        try:
            body = self.body() if method in ("POST", "PUT", "PATCH") else b""
            if url.path == "/__bench/apply" and method == "POST":
                return self.bench_apply(body)
            if url.path == "/__bench/stats":
                with self.state.lock:
                    stats = dict(self.state.stats)
                return self.send_json(200, stats)
            if method == "GET" and (doc := discovery(url.path.rstrip("/"))) is not None:
                return self.send_json(200, doc)
            target = parse_path(url.path)
            if target is None:
                with self.state.lock:
                    self.state.stats["not found"] += 1  # the CRDs tether keeps asking for, say
                return self.fail(404, "NotFound", "the server could not find the requested resource")
            collection, namespace, name, sub = target
            if method == "GET" and name is None:
                if query.get("watch") in ("true", "1"):
                    return self.watch(collection, namespace, query)
                return self.list(collection, namespace, query)
            if method == "GET" and sub is None:
                return self.get_one(collection, namespace, name)
            return self.write(method, collection, namespace, name, sub, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a request the fixture does not handle: an answer, not a crash
            self.log_message("error %r", e)
            try:
                self.fail(500, "InternalError", f"fake API server: {e!r}")
            except OSError:
                self.close_connection = True

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def get_one(self, collection, namespace, name):
        st = self.state
        with st.lock:
            found = st.objects[collection].get((namespace or "", name))
        if found is None:
            return self.fail(404, "NotFound", f'{collection.rsplit("/", 1)[1]} "{name}" not found')
        self.send_json(200, found[1])

    def list(self, collection, namespace, query):
        """One page: the first takes a snapshot of the selected objects, `continue` pages
        through that snapshot (a consistent list at one resourceVersion, like etcd's)."""
        st = self.state
        limit = int(query.get("limit") or 0)
        with st.lock:
            st.stats["lists"] += "continue" not in query
            st.stats["list pages"] += 1
            if "continue" in query:
                page = st.pages.pop(query["continue"], None)
                if page is None:
                    return self.fail(410, "Expired", "the continue token has expired")
                rv, items, offset = page
            else:
                selected = selector(namespace, query.get("fieldSelector"))
                rv, offset = st.rv, 0
                items = [data for _, (obj, data) in sorted(st.objects[collection].items()) if selected(obj)]
            end = offset + limit if limit else len(items)
            meta = {"resourceVersion": str(rv)}
            if end < len(items):
                token = f"{rv}-{id(items)}-{end}"
                st.pages[token] = (rv, items, end)
                meta["continue"] = token
                meta["remainingItemCount"] = len(items) - end
        head = dumps({"kind": kind_of(collection) + "List", "apiVersion": api_version(collection.rsplit("/", 1)[0]),
                      "metadata": meta})[:-1]
        self.send_json(200, head + b',"items":[' + b",".join(items[offset:end]) + b"]}")

    def watch(self, collection, namespace, query):
        st = self.state
        selected = selector(namespace, query.get("fieldSelector"))
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + min(int(query.get("timeoutSeconds") or 1800), self.watch_timeout)
        w = Watch(collection, selected)
        with st.lock:
            st.stats["watches"] += 1
            gone = since < st.oldest
            if gone:
                st.stats["gones"] += 1
            else:
                backlog = [e for e in st.history if e.collection == collection and e.rv > since and selected(e.obj)]
                st.watches.append(w)
                now = st.rv
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if gone:
                err = status(410, "Expired", f"too old resource version: {since} ({st.oldest})")
                self.chunk(dumps({"type": "ERROR", "object": err}) + b"\n")
                return self.chunk(b"")
            for e in backlog:
                self.chunk(e.line)
                e.mark_sent()
            bookmark = {"kind": kind_of(collection), "apiVersion": api_version(collection.rsplit("/", 1)[0]),
                        "metadata": {"resourceVersion": str(now)}}
            self.chunk(dumps({"type": "BOOKMARK", "object": bookmark}) + b"\n")
            while (left := deadline - time.monotonic()) > 0:
                try:
                    e = w.queue.get(timeout=left)
                except queue.Empty:
                    break
                self.chunk(e.line)
                e.mark_sent()
            self.chunk(b"")  # the end of the stream, as the real server does after timeoutSeconds
        finally:
            if not gone:
                with st.lock:
                    st.watches.remove(w)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def write(self, method, collection, namespace, name, sub, body):
        """Writes from tether: the Lease (create, replace) and status (PUT or PATCH: the
        status sent replaces the stored one)."""
        st = self.state
        try:
            incoming = json.loads(body or b"{}")
        except ValueError:
            return self.fail(400, "BadRequest", "not JSON")
        if method == "POST" and name is None:
            if namespace:
                incoming.setdefault("metadata", {}).setdefault("namespace", namespace)
            incoming.setdefault("kind", kind_of(collection))
            event, err = st.write(incoming, must_exist=False)
            return self.fail(*err, "") if err else self.send_json(201, dumps(event.obj))
        if method in ("PUT", "PATCH") and name is not None:
            with st.lock:
                stored = st.objects[collection].get((namespace or "", name))
                st.stats["status writes"] += sub == "status"
            if stored is None:
                return self.fail(404, "NotFound", f"{name} not found")
            if sub == "status":
                obj = json.loads(stored[1])
                obj["status"] = incoming.get("status")
            elif sub is None and method == "PUT":
                obj = incoming
            else:
                return self.fail(405, "MethodNotAllowed", "not supported here")
            want_rv = incoming.get("metadata", {}).get("resourceVersion") if method == "PUT" else None
            obj.setdefault("kind", kind_of(collection))
            obj.setdefault("metadata", {})["name"] = name
            if namespace:
                obj["metadata"]["namespace"] = namespace
            event, err = st.write(obj, must_exist=True, expect_rv=want_rv)
            return self.fail(*err, "the object has been modified") if err else self.send_json(200, dumps(event.obj))
        self.fail(405, "MethodNotAllowed", "not supported here")

    def bench_apply(self, body):
        try:
            obj = json.loads(body)
        except ValueError:
            obj = yaml.load(body, Loader=Loader)
        event, watchers = self.state.write(obj)
        with event.flushed:
            event.flushed.wait_for(lambda: len(event.sent) >= watchers, timeout=APPLY_WAIT)
            sent = list(event.sent)
        self.send_json(200, {"type": event.kind, "resourceVersion": str(event.rv), "watchers": watchers, "sent": sent})


def kind_of(collection):
    return COLLECTIONS[collection][0]


def api_version(prefix):
    """`v1` of /api/v1, `G/V` of /apis/G/V."""
    return prefix.removeprefix("/apis/").removeprefix("/api/")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # tether opens a dozen connections at once (one per watch)


def load_dir(state, root):
    n = 0
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith(".") or not f.endswith((".yaml", ".yml", ".json")):
                continue
            with open(os.path.join(base, f)) as fh:
                for obj in yaml.load_all(fh, Loader=Loader):
                    if obj and obj.get("kind") in KINDS:
                        state.load(obj)
                        n += 1
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifests", required=True)
    p.add_argument("--kubeconfig", required=True, help="written (atomically) once ready")
    p.add_argument("--listen", default="127.0.0.20:0", help="loopback address; port 0 = any free port")
    p.add_argument("--log", help="one line per request")
    p.add_argument("--watch-timeout", type=float, default=1800,
                   help="seconds before a watch is closed at the latest (else the client's timeoutSeconds: 290 for kube-rs)")
    a = p.parse_args()
    state = State()
    t0 = time.monotonic()
    n = load_dir(state, a.manifests)
    host, port = a.listen.rsplit(":", 1)
    Handler.state = state
    Handler.log = open(a.log, "a") if a.log else None
    Handler.watch_timeout = a.watch_timeout
    server = Server((host, int(port)), Handler)
    url = "http://%s:%d" % server.server_address[:2]
    tmp = a.kubeconfig + ".tmp"
    with open(tmp, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n"
                f"    server: {url}\nusers:\n- name: bench\n  user:\n    token: bench\n"
                "contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\ncurrent-context: bench\n")
    os.rename(tmp, a.kubeconfig)
    print(f"apiserver {url}: {n} objects loaded in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

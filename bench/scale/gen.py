#!/usr/bin/env python3
"""Deterministic cluster-scale configurations for bench/scale.sh: Kubernetes manifests for
tether, and the equivalent haproxy.cfg and nginx.conf.

  gen.py manifests SCALE DIR POD_PORT     (SCALE: big, small, big1 = big with 1 endpoint each)
  gen.py haproxy   SCALE FILE LISTEN POD_PORT
  gen.py nginx     SCALE FILE LISTEN POD_PORT PREFIX

Layout of a manifest directory (the same for every scale):
  scale-00.yaml .. scale-29.yaml   Services, EndpointSlices and Ingresses, service K in file K % 30
  slices/svc-KKKK.yaml             the EndpointSlice of each of the first 100 services, one file
                                   each (the objects the change and storm phases rewrite)
  steady.yaml                      Service + 3 real pods + Ingress steady.scale.test
  tls.yaml, tls-secret.yaml        Ingress tls.scale.test (spec.tls) and its Secret (written by
                                   scale.sh; the Secret phase rotates it)
Ingress i (host app-i.scale.test; i odd has a second path /api) goes to service i // 5, in
namespace ns-(K % 20); every Ingress carries ingress-nginx cookie-affinity annotations (persistent
for even services, balanced for odd). Endpoint e of the cluster has address 127.10.(e//256).(e%256)
(nothing listens there; no proxy ever connects: no health checks, no traffic).
"""
import os
import sys

FILES = 30
NAMESPACES = 20
DEDICATED = 100  # services whose slice has a file of its own
STEADY_PODS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]


def sizes(scale):
    """(ingresses, services, endpoints per service)"""
    return {"big": (5000, 1000, 50), "small": (500, 100, 50), "big1": (5000, 1000, 1)}[scale]


def ns(k):
    return f"ns-{k % NAMESPACES:02d}"


def svc(k):
    return f"svc-{k:04d}"


def suffix(n, width=5):
    """A pod-name-like suffix, deterministic."""
    x = (n * 2654435761 + 12345) % (36 ** width)
    out = ""
    for _ in range(width):
        x, r = divmod(x, 36)
        out += "bcdfghjklmnpqrstvwxz0123456789aeiouy"[r]
    return out


def addr(e, base=10):
    return f"127.{base + e // 65536}.{e // 256 % 256}.{e % 256}"


def service_yaml(k):
    return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {svc(k)}\n  namespace: {ns(k)}\n"
            f"  labels:\n    app.kubernetes.io/name: {svc(k)}\nspec:\n  selector:\n    app.kubernetes.io/name: {svc(k)}\n"
            f"  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n")


def endpoint_yaml(address, pod, namespace, node):
    return (f"- addresses:\n  - {address}\n  conditions:\n    ready: true\n  nodeName: node-{node:02d}\n"
            f"  targetRef:\n    kind: Pod\n    name: {pod}\n    namespace: {namespace}\n")


def slice_yaml(k, per_service, extra=0):
    """Service k's EndpointSlice: its `per_service` endpoints, then `extra` more (127.11.x.y;
    the storm's scale-up and the +1 change)."""
    out = [f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc(k)}-{suffix(k)}\n"
           f"  namespace: {ns(k)}\n  labels:\n    kubernetes.io/service-name: {svc(k)}\n"
           f"    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\n"
           f"addressType: IPv4\nports:\n- name: http\n  port: 8080\n  protocol: TCP\nendpoints:\n"]
    rs = suffix(k + 7919, 9)
    for j in range(per_service):
        e = k * per_service + j
        out.append(endpoint_yaml(addr(e), f"{svc(k)}-{rs}-{suffix(e)}", ns(k), e % 30))
    for j in range(extra):
        e = k * 1000 + j  # < 65,536 for k < 65
        out.append(endpoint_yaml(addr(e, 11), f"{svc(k)}-{rs}-x{suffix(e)}", ns(k), e % 30))
    return "".join(out)


ANNOTATIONS = ("    nginx.ingress.kubernetes.io/affinity: cookie\n"
               "    nginx.ingress.kubernetes.io/affinity-mode: {mode}\n"
               "    nginx.ingress.kubernetes.io/session-cookie-name: route\n"
               "    nginx.ingress.kubernetes.io/session-cookie-max-age: \"172800\"\n"
               "    nginx.ingress.kubernetes.io/session-cookie-samesite: Lax\n")


def paths(i):
    """(path, ...) of Ingress i, longest first."""
    return ("/api", "/") if i % 2 else ("/",)


def ingress_yaml(name, namespace, host, service, mode, path_list, tls_secret=None):
    out = [f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
           f"  annotations:\n" + ANNOTATIONS.format(mode=mode) + "spec:\n  ingressClassName: tether\n"]
    if tls_secret:
        out.append(f"  tls:\n  - hosts:\n    - {host}\n    secretName: {tls_secret}\n")
    out.append(f"  rules:\n  - host: {host}\n    http:\n      paths:\n")
    for p in path_list:
        out.append(f"      - path: {p}\n        pathType: Prefix\n        backend:\n          service:\n"
                   f"            name: {service}\n            port:\n              number: 80\n")
    return "".join(out)


def mode(k):
    return "persistent" if k % 2 == 0 else "balanced"


def app_ingress(i):
    k = i // 5
    return ingress_yaml(f"app-{i:04d}", ns(k), f"app-{i}.scale.test", svc(k), mode(k), paths(i))


def steady_yaml(pod_port):
    eps = "".join(endpoint_yaml(a, f"pod-{n + 1}", "default", n) for n, a in enumerate(STEADY_PODS))
    return ("apiVersion: v1\nkind: Service\nmetadata:\n  name: steady\n  namespace: default\nspec:\n"
            "  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\n"
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: steady-pods\n"
            "  namespace: default\n  labels:\n    kubernetes.io/service-name: steady\naddressType: IPv4\n"
            f"ports:\n- name: http\n  port: {pod_port}\n  protocol: TCP\nendpoints:\n{eps}---\n"
            + ingress_yaml("steady", "default", "steady.scale.test", "steady", "persistent", ("/",)))


def new_ingress_yaml(n):
    """The change phase's added Ingress: host new-n.scale.test, to the steady pods."""
    return ingress_yaml(f"new-{n}", "default", f"new-{n}.scale.test", "steady", "persistent", ("/",))


def tls_ingress_yaml():
    return ingress_yaml("tls-probe", "default", "tls.scale.test", "steady", "persistent", ("/",), "tls-probe")


def secret_yaml(cert_pem, key_pem):
    ind = lambda s: "".join("    " + l + "\n" for l in s.strip().splitlines())
    return ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls-probe\n  namespace: default\n"
            f"type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{ind(cert_pem)}  tls.key: |\n{ind(key_pem)}")


def write(path, text):
    """Atomically (a hidden temporary file, then rename), as tools that apply manifests do."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def manifests(scale, out, pod_port):
    n_ing, n_svc, per = sizes(scale)
    os.makedirs(os.path.join(out, "slices"), exist_ok=True)
    files = [[] for _ in range(FILES)]
    for k in range(n_svc):
        f = files[k % FILES]
        f.append(service_yaml(k))
        if k < DEDICATED:
            write(os.path.join(out, "slices", f"{svc(k)}.yaml"), slice_yaml(k, per))
        else:
            f.append(slice_yaml(k, per))
        f.extend(app_ingress(i) for i in range(5 * k, min(5 * k + 5, n_ing)))
    for n, docs in enumerate(files):
        write(os.path.join(out, f"scale-{n:02d}.yaml"), "---\n".join(docs))
    write(os.path.join(out, "steady.yaml"), steady_yaml(pod_port))
    write(os.path.join(out, "tls.yaml"), tls_ingress_yaml())


def haproxy(scale, out, listen, pod_port):
    """5,000 host+path rules as use_backend lines (longest path first), 1,000 backends of 50
    servers with cookie-insert stickiness, no health checks."""
    n_ing, n_svc, per = sizes(scale)
    o = ["global\n    nbthread 1\n    maxconn 4096\ndefaults\n    mode http\n    timeout connect 5s\n"
         "    timeout client 60s\n    timeout server 60s\n",
         f"frontend fe\n    bind {listen}\n    http-request set-var(txn.host) req.hdr(host),field(1,:),lower\n"
         "    use_backend steady if { var(txn.host) -m str steady.scale.test }\n"]
    for i in range(n_ing):
        for p in paths(i):
            cond = f"{{ var(txn.host) -m str app-{i}.scale.test }}"
            if p != "/":
                cond += f" {{ path_beg {p}/ }} || {cond} {{ path {p} }}"
            o.append(f"    use_backend {svc(i // 5)} if {cond}\n")
    o.append("backend steady\n    balance roundrobin\n    cookie SRV insert indirect nocache\n")
    o.extend(f"    server pod{n + 1} {a}:{pod_port} cookie pod{n + 1}\n" for n, a in enumerate(STEADY_PODS))
    for k in range(n_svc):
        o.append(f"backend {svc(k)}\n    balance roundrobin\n    cookie SRV insert indirect nocache\n")
        o.extend(f"    server s{j} {addr(k * per + j)}:8080 cookie s{j}\n" for j in range(per))
    with open(out, "w") as f:
        f.write("".join(o))


def nginx(scale, out, listen, pod_port, prefix):
    """One server block per Ingress host, 1,000 upstreams of 50 servers with
    `hash $cookie_route consistent` (OSS nginx has no cookie-insert), one worker."""
    n_ing, n_svc, per = sizes(scale)
    tmp = os.path.join(prefix, "tmp")
    o = [f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
         "events { worker_connections 4096; }\nhttp {\n    access_log off;\n"
         "    server_names_hash_max_size 65536;\n    server_names_hash_bucket_size 128;\n"
         + "".join(f"    {t}_temp_path {tmp}/{t};\n" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
         + "    proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n"
         "    map $cookie_route $route_setcookie { \"\" \"route=$request_id; Path=/\"; default \"\"; }\n"
         "    add_header Set-Cookie $route_setcookie;\n",
         "    upstream steady {\n        hash $cookie_route consistent;\n"
         + "".join(f"        server {a}:{pod_port};\n" for a in STEADY_PODS) + "        keepalive 16;\n    }\n"]
    for k in range(n_svc):
        o.append(f"    upstream {svc(k)} {{\n        hash $cookie_route consistent;\n"
                 + "".join(f"        server {addr(k * per + j)}:8080;\n" for j in range(per)) + "    }\n")
    o.append(f"    server {{\n        listen {listen} default_server;\n        return 404;\n    }}\n"
             f"    server {{\n        listen {listen};\n        server_name steady.scale.test;\n"
             "        location / { proxy_pass http://steady; }\n    }\n")
    for i in range(n_ing):
        locs = "".join(f"        location {p} {{ proxy_pass http://{svc(i // 5)}; }}\n" for p in paths(i))
        o.append(f"    server {{\n        listen {listen};\n        server_name app-{i}.scale.test;\n{locs}    }}\n")
    o.append("}\n")
    os.makedirs(tmp, exist_ok=True)
    with open(out, "w") as f:
        f.write("".join(o))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "manifests":
        manifests(args[0], args[1], int(args[2]))
    elif cmd == "haproxy":
        haproxy(args[0], args[1], args[2], int(args[3]))
    elif cmd == "nginx":
        nginx(args[0], args[1], args[2], int(args[3]), args[4])
    else:
        sys.exit(__doc__)

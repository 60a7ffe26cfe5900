#!/usr/bin/env bash
# Memory per idle or slow client connection: N clients (default 5,000; IDLE_CONNS) each open a
# connection to tether and send half a request head, then nothing. tether's RSS is read before
# and after, and a normal client is timed meanwhile (it must still be served).
#
#   bench/idle.sh            IDLE_CONNS=10000 bench/idle.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${IDLE_CONNS:-5000} PORT=18400 POD=18401
# TETHER_BIN=path runs a given binary instead of building one.
bin=${TETHER_BIN:-}
if [ -z "$bin" ]; then
  (cd "$ROOT" && cargo build --release --locked -q)
  bin=$ROOT/target/release/tether
fi
work=$(mktemp -d /tmp/tether-idle.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n $((N + 1024))
"$bin" whoami --listen 127.0.0.1:$POD --name pod >/dev/null & pids+=($!)
mkdir -p "$work/m"
cat >"$work/m/web.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: $POD}]
endpoints: [{addresses: [127.0.0.1], targetRef: {kind: Pod, name: pod}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  ingressClassName: tether
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML
"$bin" run --manifests "$work/m" --listen 127.0.0.1:$PORT --admin 127.0.0.1:0 --workers 1 \
  --state-dir "$work/state" --max-connections $((N + 100)) >/dev/null 2>"$work/tether.log" & tpid=$!; pids+=($tpid)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
before=$(rss $tpid)
python3 - "$PORT" "$N" "$tpid" "$before" <<'PY'
import socket, subprocess, sys, time, urllib.request
port, n, pid, before = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # half a head, never finished
    socks.append(s)
time.sleep(2)  # let the proxy take them all in
rss = int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")))
started = time.time()
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
served = time.time() - started
print(f"tether: {n} slow clients, RSS {before} -> {rss} KiB: {(rss - before) / n:.2f} KiB per connection; "
      f"another client served in {served * 1000:.1f} ms ({len(body)} bytes)")
PY

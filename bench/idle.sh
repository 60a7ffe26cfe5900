#!/usr/bin/env bash
# Memory per client connection, tether beside HAProxy 2.6 and nginx 1.22 (Debian packages) in
# the same run, one proxy thread each, in front of one `tether whoami` pod, on loopback:
#   slow    N clients (IDLE_CONNS, default 5,000) each open a connection and send half a request
#           head, then nothing (a slowloris flood); a normal client is timed meanwhile (it must
#           still be served)
#   active  N clients (KA_CONNS, default IDLE_CONNS) each complete one request and keep the
#           connection open, idle, keep-alive
# Each proxy is started afresh for each phase (so memory freed by one phase is not reused by the
# next), gets a few warm-up requests, then its RSS (VmRSS summed over its processes: nginx master
# + worker) is read before the clients connect and 2 s after; KiB per connection = the growth / N.
# What a proxy allocates at start for all its connection slots (nginx's connection array sized by
# worker_connections) is in "before", not in the per-connection figure.
#
#   bench/idle.sh                        install what is missing, build tether, all targets
#   TETHER_BIN=path bench/idle.sh        a given tether binary instead of building one
#   IDLE_CONNS=10000 KA_CONNS=2000 TARGETS="tether haproxy" PHASES=slow bench/idle.sh
#
# The table goes to bench/results/idle-<timestamp>.txt.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${IDLE_CONNS:-5000} KA=${KA_CONNS:-${IDLE_CONNS:-5000}}
TARGETS=${TARGETS:-tether haproxy nginx} PHASES=${PHASES:-slow active}
POD=18401
declare -A PORT=([tether]=18400 [haproxy]=18402 [nginx]=18403)
need=()
for tool in haproxy nginx curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
  echo "installing ${need[*]} from Debian packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
bin=${TETHER_BIN:-}
if [ -z "$bin" ]; then
  (cd "$ROOT" && cargo build --release --locked -q)
  bin=$ROOT/target/release/tether
fi
max=$((N > KA ? N : KA))
ulimit -n $((2 * max + 2048)) || { echo "cannot raise the open-file limit to $((2 * max + 2048)) (hard limit $(ulimit -Hn))" >&2; exit 1; }
work=$(mktemp -d /tmp/tether-idle.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for p in $POD "${PORT[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is in use; aborting"; exit 1; fi
done

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
cat >"$work/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn $((max + 500))
defaults
    mode http
    maxconn $((max + 500))
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-request 300s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend pod
backend pod
    server pod 127.0.0.1:$POD
CFG
cat >"$work/nginx.conf" <<CFG
worker_processes 1;
worker_rlimit_nofile $((2 * max + 2048));
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections $((max + 1000)); }
http {
    access_log off;
    client_header_timeout 300s;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    upstream pod { server 127.0.0.1:$POD; keepalive 64; }
    server {
        listen 127.0.0.1:${PORT[nginx]} backlog=4096;
        location / { proxy_pass http://pod; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CFG
haproxy -c -q -f "$work/haproxy.cfg"
nginx -t -q -p "$work" -e "$work/nginx.err" -c "$work/nginx.conf"

start_target() {  # start_target NAME -> sets TPID
  case $1 in
    tether) "$bin" run --manifests "$work/m" --listen 127.0.0.1:${PORT[tether]} --admin 127.0.0.1:0 --workers 1 \
              --state-dir "$work/state" --max-connections $((max + 100)) >/dev/null 2>"$work/tether.log" & ;;
    haproxy) haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & ;;
    nginx) nginx -p "$work" -e "$work/nginx.err" -c "$work/nginx.conf" -g 'daemon off;' >"$work/nginx.log" 2>&1 & ;;
    *) log "unknown target $1 (tether haproxy nginx)"; exit 2 ;;
  esac
  TPID=$!; pids+=("$TPID")
  local i
  for i in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:${PORT[$1]}/" && break; sleep 0.1; done
  for i in $(seq 20); do curl -sf -o /dev/null "http://127.0.0.1:${PORT[$1]}/"; done   # warm-up
}
stop_target() { kill -TERM "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; }

rows=$work/rows.tsv
for phase in $PHASES; do
  case $phase in slow) n=$N ;; active) n=$KA ;; *) log "unknown phase $phase (slow active)"; exit 2 ;; esac
  for t in $TARGETS; do
    start_target "$t"
    row=$(python3 - "${PORT[$t]}" "$n" "$phase" "$TPID" <<'PY'
import os, socket, sys, time, urllib.request
port, n, phase, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

def tree(pid):
    out = [pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out += tree(int(p))
    return out

def rss():
    total = 0
    for p in tree(root):
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total

def one_request(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed before a response head")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if " 200 " not in lines[0] + " ":
        raise SystemExit(f"status: {lines[0]}")
    fields = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    if "content-length" in fields:
        while len(body) < int(fields["content-length"]):
            body += s.recv(65536)
    else:  # chunked
        while not body.endswith(b"0\r\n\r\n"):
            body += s.recv(65536)

before = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if phase == "slow":
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # half a head, never finished
    else:
        one_request(s)  # one complete request, then the connection stays open, idle
    socks.append(s)
time.sleep(2)  # let the proxy take them all in
after = rss()
alive = 0
for s in socks:  # still open? (a closed one reads EOF at once)
    s.setblocking(False)
    try:
        alive += s.recv(1) != b""
    except BlockingIOError:
        alive += 1
started = time.time()
urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
served = (time.time() - started) * 1000
print(f"{before}\t{after}\t{(after - before) / n:.2f}\t{alive}\t{served:.1f}")
PY
)
    stop_target
    printf '%s\t%s\t%s\t%s\n' "$phase" "$t" "$n" "$row" >>"$rows"
    IFS=$'\t' read -r b a per alive ms <<<"$row"
    log "$phase $t: $n clients ($alive still open), RSS $b -> $a KiB: $per KiB per connection; another client served in $ms ms"
  done
done

ts=$(date +%Y%m%d-%H%M%S)
mkdir -p "$HERE/results"
out=$HERE/results/idle-$ts.txt
{
  echo "# $(date -Is)  $(uname -r)  $(nproc) cpus  tether $(basename "$bin")  haproxy $(haproxy -v | awk 'NR==1{print $3}')  $(nginx -v 2>&1 | cut -d' ' -f3)"
  echo "# slow = clients that sent half a request head; active = clients that completed one request and stay open keep-alive"
  python3 - "$rows" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ["phase", "target", "clients", "still open", "RSS before MB", "RSS after MB", "KiB per conn", "vs haproxy", "another client ms"]
ref = {r[0]: float(r[5]) for r in rows if r[1] == "haproxy"}
lines = [[r[0], r[1], f"{int(r[2]):,}", r[6], f"{int(r[3]) / 1024:.1f}", f"{int(r[4]) / 1024:.1f}", r[5],
          f"{float(r[5]) / ref[r[0]]:.2f}x" if ref.get(r[0]) else "NA", r[7]] for r in rows]
w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(hdr)]
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
for l in lines:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(l)))
PY
} | tee "$out"
log "table: $out"

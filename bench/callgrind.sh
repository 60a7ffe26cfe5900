#!/usr/bin/env bash
# Instructions per sticky-hit request, counted by callgrind (repeatable whatever else the
# machine does): tether (one worker) under valgrind in front of one pod, curl sending N
# keep-alive requests with a sticky cookie on one connection. Two runs (N and 2N requests)
# cancel start-up and shutdown: Ir per request = (Ir(2N) - Ir(N)) / N.
#
#   bench/callgrind.sh [TETHER_BINARY]      N=500 by default
#   BROWSER=1 bench/callgrind.sh ...         the request a browser sends (Chromium's header lines,
#                                            seven names outside http's standard set)
#   H2C=1 bench/callgrind.sh ...             HTTP/2 in clear text (tether --h2c), h2load sending the
#                                            N requests one stream at a time on one connection
#                                            (Debian's nghttp2-client; curl 7.88 sends nothing after
#                                            the first request of a multi-URL h2 prior-knowledge run)
#   NGINX_POD=1 bench/callgrind.sh ...       the pod bench/tether.sh uses (nginx, five response lines)
#                                            instead of `tether whoami` (two lines, a chunked body)
#   NEW=1 bench/callgrind.sh ...             a new session per request: no cookie sent, so every
#                                            response carries a fresh Set-Cookie (HAProxy inserts
#                                            its own)
#   HAPROXY=1 bench/callgrind.sh ...         the same count for HAProxy (Debian's 2.6, `cookie SRV
#                                            insert indirect`, as bench/tether.sh configures it) in
#                                            front of the same pod, its cookie sent: the user-space
#                                            instructions both proxies spend on one request
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
bin=${1:-}
if [[ -z $bin ]]; then (cd "$ROOT" && cargo build --release --locked -q); bin=$ROOT/target/release/tether; fi
N=${N:-500} PORT=18600 POD=18601
h2c=()
if [[ -n ${H2C:-} ]]; then
  command -v h2load >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null; }
  h2c=(--h2c)
fi
work=$(mktemp -d /tmp/tether-cg.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
if [[ -n ${NGINX_POD:-} ]]; then
  # The pod of bench/tether.sh: nginx answering with five lines (Server, Date, Content-Type,
  # Content-Length, Connection) and a fixed body.
  command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
  printf 'worker_processes 1;\nevents { worker_connections 1024; }\nhttp { access_log off; keepalive_requests 1000000;\n  server { listen 127.0.0.1:%s; location / { return 200 "pod-1"; } } }\n' "$POD" >"$work/pod.conf"
  nginx -p "$work" -c "$work/pod.conf" -g "daemon off; pid $work/nginx.pid; error_log $work/pod.err;" & pids+=($!)
else
  "$bin" whoami --listen 127.0.0.1:$POD --name pod >/dev/null & pids+=($!)
fi
mkdir -p "$work/m"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/key"
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
metadata:
  name: web
  namespace: default
  annotations: {nginx.ingress.kubernetes.io/affinity: cookie, nginx.ingress.kubernetes.io/affinity-mode: persistent, nginx.ingress.kubernetes.io/session-cookie-name: route}
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
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$PORT
    default_backend pods
backend pods
    cookie SRV insert indirect nocache
    server pod1 127.0.0.1:$POD cookie pod1
CFG
count() { # requests -> total instructions
  local n=$1 out=$work/cg.$1 proxy
  if [[ -n ${HAPROXY:-} ]]; then
    proxy=(haproxy -db -f "$work/haproxy.cfg")
  else
    proxy=("$bin" run --manifests "$work/m" --listen 127.0.0.1:$PORT --admin 127.0.0.1:0 --workers 1 "${h2c[@]}"
      --state-dir "$work/state" --cookie-key-file "$work/key")
  fi
  valgrind --tool=callgrind --callgrind-out-file="$out" "${proxy[@]}" >/dev/null 2>"$work/log.$n" & local vpid=$!
  for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
  local cookie
  cookie=$(curl -s -o /dev/null -D - "http://127.0.0.1:$PORT/" | tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}')
  local urls=()
  for _ in $(seq "$n"); do urls+=("http://127.0.0.1:$PORT/"); done
  local browser=()
  if [[ -n ${BROWSER:-} ]]; then
    browser=(-H 'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"' -H 'sec-ch-ua-mobile: ?0'
      -H 'sec-ch-ua-platform: "Linux"' -H 'Upgrade-Insecure-Requests: 1'
      -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
      -H 'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'
      -H 'Sec-Fetch-Site: same-origin' -H 'Sec-Fetch-Mode: navigate' -H 'Sec-Fetch-User: ?1'
      -H 'Sec-Fetch-Dest: document' -H "Referer: http://127.0.0.1:$PORT/"
      -H 'Accept-Encoding: gzip, deflate, br, zstd' -H 'Accept-Language: en-GB,en;q=0.9')
    cookie="$cookie; JSESSIONID=2F1C7A9E0B4D"
  fi
  local sent=(-H "Cookie: $cookie")
  [[ -n ${NEW:-} ]] && sent=()
  if [[ -n ${H2C:-} ]]; then
    h2load -n "$n" -c 1 -m 1 "${sent[@]}" "http://127.0.0.1:$PORT/" >/dev/null
  else
    curl -s "${browser[@]}" "${sent[@]}" "${urls[@]}" >/dev/null
  fi
  kill -TERM $vpid; wait $vpid 2>/dev/null || true
  awk '/^summary:/{print $2}' "$out"
}
a=$(count "$N"); b=$(count $((2 * N)))
[[ -n ${KEEP:-} ]] && echo "callgrind output kept in $work" >&2
kind="sticky-hit request"; [[ -n ${NEW:-} ]] && kind="new-session request"
echo "${HAPROXY:+HAProxy }instructions per ${BROWSER:+browser }${H2C:+h2c }$kind: $(( (b - a) / N )) (Ir $a for $N requests, $b for $((2 * N)))"

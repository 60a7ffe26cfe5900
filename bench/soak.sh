#!/usr/bin/env bash
# Soak: mixed traffic (sticky sessions, sessionless requests) with reloads (an EndpointSlice
# scaling between 2 and 3 pods every 2 s, an Ingress rewritten every 5 s) for SOAK_SECONDS
# (default 600), sampling tether's RSS and open file descriptors every 10 s. Not run in CI.
#
#   bench/soak.sh            SOAK_SECONDS=120 bench/soak.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SECS=${SOAK_SECONDS:-600} PORT=18500
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
# TETHER_BIN=path runs a given binary instead of building one.
bin=${TETHER_BIN:-}
if [ -z "$bin" ]; then
  (cd "$ROOT" && cargo build --release --locked -q)
  bin=$ROOT/target/release/tether
fi
work=$(mktemp -d /tmp/tether-soak.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
for i in 1 2 3; do "$bin" whoami --listen 127.0.0.1$i:18501 --name pod-$i >/dev/null & pids+=($!); done
mkdir -p "$work/m"
slice() { # number of pods
  { printf 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web, namespace: default, labels: {kubernetes.io/service-name: web}}\n'
    printf 'addressType: IPv4\nports: [{name: http, port: 18501}]\nendpoints:\n'
    for i in $(seq "$1"); do printf -- '- {addresses: [127.0.0.1%s], targetRef: {kind: Pod, name: pod-%s}}\n' "$i" "$i"; done
  } >"$work/m/.slice.tmp" && mv "$work/m/.slice.tmp" "$work/m/slice.yaml"
}
cat >"$work/m/web.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
  annotations: {nginx.ingress.kubernetes.io/affinity: cookie, nginx.ingress.kubernetes.io/affinity-mode: persistent}
spec:
  ingressClassName: tether
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML
slice 3
"$bin" run --manifests "$work/m" --listen 127.0.0.1:$PORT --admin 127.0.0.1:0 --workers 2 \
  --state-dir "$work/state" >/dev/null 2>"$work/tether.log" & tpid=$!; pids+=($tpid)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
cookie=$(curl -s -o /dev/null -D - "http://127.0.0.1:$PORT/" | tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}')
wrk -t1 -c32 -d"${SECS}s" -H "Cookie: $cookie" "http://127.0.0.1:$PORT/" >"$work/wrk-sticky.txt" 2>&1 & pids+=($!)
wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$PORT/" >"$work/wrk-plain.txt" 2>&1 & pids+=($!)
sample() { printf '%6s s  rss %7s KiB  fds %5s\n' "$1" "$(awk '/VmRSS/{print $2}' /proc/$tpid/status)" "$(ls /proc/$tpid/fd | wc -l)"; }
start=$(date +%s)
sample 0
next_sample=10
while (( $(date +%s) - start < SECS )); do
  t=$(( $(date +%s) - start ))
  # Scale between 2 and 3 pods every 2 s (sessions of pod-3 fail over and come back), and
  # rewrite the Ingress every 5 s (a reload that changes nothing).
  (( t % 2 == 0 )) && slice $(( 2 + t / 2 % 2 ))
  (( t % 5 == 0 )) && cp "$work/m/web.yaml" "$work/m/.web.tmp" && mv "$work/m/.web.tmp" "$work/m/web.yaml"
  (( t >= next_sample )) && { sample "$t"; next_sample=$(( next_sample + 10 )); }
  sleep 1
done
wait "${pids[-1]}" "${pids[-2]}" 2>/dev/null || true
sample "$SECS"
echo "reloads: $(grep -c 'reload applied' "$work/tether.log")"
for f in sticky plain; do echo "wrk $f:"; grep -E 'Requests/sec|requests in|Non-2xx|Socket errors' "$work/wrk-$f.txt" | sed 's/^/  /'; done

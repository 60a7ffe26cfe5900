#!/usr/bin/env bash
# Side-by-side benchmark of tether against HAProxy 2.6 and nginx 1.22 (Debian packages), all
# in front of the same three pods, on loopback, with interleaved wrk rounds (see run.sh).
#
#   bench/tether.sh            install what is missing, build, benchmark, print the table
#   ROUNDS=5 DURATION=20s bench/tether.sh    (any run.sh knob works)
#
# tether runs with a sticky cookie (ingress-nginx annotations, persistent mode, like HAProxy's
# `cookie insert`); wrk replays one real tether cookie, so every request is an affinity hit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PORT=${TETHER_PORT:-18100}

need=()
for tool in haproxy nginx wrk curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
  echo "installing ${need[*]} from Debian packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd "$ROOT" && cargo build --release --locked -q)

work=$(mktemp -d /tmp/tether-bench.XXXXXX)
trap '"$HERE/run.sh" stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/manifests"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/cookie.key"
cat >"$work/manifests/pods.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: pods, namespace: default}
spec:
  ports: [{name: http, port: 80}]
YAML
for i in 1 2 3; do
  cat >>"$work/manifests/pods.yaml" <<YAML
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: pods-$i, namespace: default, labels: {kubernetes.io/service-name: pods}}
addressType: IPv4
ports: [{name: http, port: 1808$i}]
endpoints:
- addresses: ["127.0.0.1"]
  targetRef: {kind: Pod, name: pod-$i}
YAML
done
cat >"$work/manifests/ingress.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: pods
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/affinity: "cookie"
    nginx.ingress.kubernetes.io/affinity-mode: "persistent"
    nginx.ingress.kubernetes.io/session-cookie-name: "route"
spec:
  ingressClassName: tether
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: pods, port: {number: 80}}}}
YAML

export EXTRA_NAME=tether EXTRA_PORT=$PORT
export EXTRA_START_CMD="RUST_LOG=warn exec $ROOT/target/release/tether run --manifests $work/manifests \
  --listen 127.0.0.1:$PORT --admin 127.0.0.1:0 --workers 1 --cookie-key-file $work/cookie.key"
"$HERE/run.sh" start
cookie=$(curl -s -o /dev/null -D - "http://127.0.0.1:$PORT/" | tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}')
[[ $cookie == route=* ]] || { echo "tether gave no sticky cookie" >&2; exit 1; }
"$HERE/sticky_check.sh" "$PORT" route >&2
EXTRA_COOKIE=$cookie EXTRA_START_CMD= "$HERE/run.sh" bench

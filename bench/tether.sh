#!/usr/bin/env bash
# Side-by-side benchmark of tether against HAProxy 2.6 and nginx 1.22 (Debian packages), all
# in front of the same three pods, on loopback, with interleaved wrk rounds (see run.sh).
#
#   bench/tether.sh            install what is missing, build, benchmark every scenario (~5 min)
#   SCENARIOS=hit DURATION=10s bench/tether.sh     the sticky hit only, as before issue 15
#   TETHER_BIN=/tmp/tether-before bench/tether.sh  a given binary instead of building one
#   ROUNDS=5 DURATION=20s bench/tether.sh          (any run.sh knob works)
#
# Scenarios (SCENARIOS="hit new 16k upload 2w", each one table in the same results file):
#   hit     sticky-cookie hits: wrk replays one real cookie per target (tether's, SRV=pod1,
#           route=bench), so every request goes through the affinity engine
#   new     a new session per request: no cookie sent, so tether issues a Set-Cookie and HAProxy
#           inserts its cookie every time (nginx-hash adds its route cookie)
#   16k     sticky hits on /16k: the pods answer with a 16 KiB body
#   upload  sticky hits POSTing 1 MiB each (conf/wrk-upload.lua) to /upload, where the pods read
#           the whole body before answering; body limits: tether --max-body-size 2m, nginx
#           client_max_body_size 2m with proxy_request_buffering off (streamed, as HAProxy does)
#   2w      sticky hits with two workers: tether --workers 2, HAProxy nbthread 2, nginx
#           worker_processes 2, pinned to W2_PROXY_CPU (default 0,1), wrk to W2_WRK_CPU (1) and the
#           pods to W2_BACKEND_CPU (0); on a 2-core machine wrk shares a core with one worker
#
# Defaults here (override any): DURATION=5s WARMUP=2s ROUNDS=3; TARGETS is
# "haproxy nginx-hash nginx-rr floor direct" for hit and "haproxy nginx-hash" for the others
# (tether is always added after haproxy). `floor` is a TCP relay with no HTTP in it
# (examples/floor.rs, built here; FLOOR_BIN=path to give one): its CPU per request is what the
# kernel and the runtime cost any proxy here before it does any work, so "tether minus floor"
# against "HAProxy minus floor" is what each proxy's own work costs. RESULTS=file names the results file (default
# bench/results/<timestamp>.txt); RESULTS_DIR=dir takes the raw rows of each scenario (and the
# results file when RESULTS is not given) instead of bench/results.
#
# tether runs with a sticky cookie (ingress-nginx annotations, persistent mode, like HAProxy's
# `cookie insert`).
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
bin=${TETHER_BIN:-}
if [[ -z $bin ]]; then
  (cd "$ROOT" && cargo build --release --locked -q)
  bin=$ROOT/target/release/tether
fi
SCENARIOS=${SCENARIOS:-hit new 16k upload 2w}
for sc in $SCENARIOS; do
  case $sc in hit|new|16k|upload|2w) ;; *) echo "unknown scenario '$sc' (hit new 16k upload 2w)" >&2; exit 2 ;; esac
done
needs_floor=0   # the hit scenario with its default targets, or with floor among the given ones
for sc in $SCENARIOS; do
  if [[ $sc == hit && ( -z ${TARGETS:-} || " $TARGETS " == *" floor "* ) ]]; then needs_floor=1; fi
done
if [[ $needs_floor == 1 && -z ${FLOOR_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release --locked -q --example floor)
  export FLOOR_BIN=$ROOT/target/release/examples/floor
fi
export DURATION=${DURATION:-5s} WARMUP=${WARMUP:-2s} ROUNDS=${ROUNDS:-3}
mkdir -p "$HERE/results"
export RESULTS=${RESULTS:-${RESULTS_DIR:-$HERE/results}/$(date +%Y%m%d-%H%M%S).txt}
mkdir -p "$(dirname "$RESULTS")"

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
user_targets=${TARGETS:-}
for sc in $SCENARIOS; do
  # each scenario starts everything afresh with its own settings, benchmarks, stops
  (
    export SCENARIO=$sc WORKERS=1 URL_PATH=/ NO_COOKIE=0 WRK_SCRIPT=$HERE/conf/wrk-report.lua
    export TARGETS=${user_targets:-haproxy nginx-hash}
    case $sc in
      hit) export TARGETS=${user_targets:-haproxy nginx-hash nginx-rr floor direct} ;;
      new) export NO_COOKIE=1 ;;
      16k) export URL_PATH=/16k ;;
      upload) export URL_PATH=/upload WRK_SCRIPT=$HERE/conf/wrk-upload.lua ;;
      2w) export WORKERS=2 PROXY_CPU=${W2_PROXY_CPU-0,1} WRK_CPU=${W2_WRK_CPU-1} BACKEND_CPU=${W2_BACKEND_CPU-0} ;;
    esac
    export EXTRA_START_CMD="RUST_LOG=warn exec $bin run --manifests $work/manifests \
      --listen 127.0.0.1:$PORT --admin 127.0.0.1:0 --workers $WORKERS --cookie-key-file $work/cookie.key \
      --state-dir $work/state --max-body-size 2m"
    "$HERE/run.sh" start
    cookie=$(curl -s -o /dev/null -D - "http://127.0.0.1:$PORT/" | tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}')
    [[ $cookie == route=* ]] || { echo "tether gave no sticky cookie" >&2; exit 1; }
    if [[ $sc == hit ]]; then "$HERE/sticky_check.sh" "$PORT" route >&2; fi
    EXTRA_COOKIE=$cookie EXTRA_START_CMD= "$HERE/run.sh" bench
    "$HERE/run.sh" stop
  )
done
echo "all scenarios: $RESULTS" >&2

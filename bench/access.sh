#!/usr/bin/env bash
# What each access check costs a request: one tether worker (pinned to CPU 0) in front of one
# pod, wrk on CPU 1, one host per check, interleaved rounds; proxy CPU µs per request from
# /proc (user + system), and the difference to the host without checks (A/B in one run).
#
#   bench/access.sh                 ROUNDS=3 DURATION=4s CONNS=16 by default
#   CASES="open external" bench/access.sh    a subset (open is the baseline and must be in it)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-4s} CONNS=${CONNS:-16}
PORT=18300 POD=18301 AUTH=18302
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
command -v htpasswd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils >/dev/null; }
(cd "$ROOT" && cargo build --release --locked -q)
bin=$ROOT/target/release/tether
work=$(mktemp -d /tmp/tether-access.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" whoami --listen 127.0.0.1:$POD --name pod >/dev/null & pids+=($!)
"$bin" whoami --listen 127.0.0.1:$AUTH --name auth >/dev/null & pids+=($!)
mkdir -p "$work/m"
cat >"$work/m/objects.yaml" <<YAML
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
apiVersion: v1
kind: Secret
metadata: {name: users, namespace: default}
type: Opaque
stringData:
  auth: |
    $(htpasswd -nbB -C 10 bcrypt s3cret)
    $(htpasswd -nbm apr1 s3cret)
YAML
ingress() { # name, then annotation lines
  local name=$1; shift
  { printf 'apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n  namespace: default\n' "$name"
    if (($#)); then printf '  annotations:\n'; for a in "$@"; do printf '    nginx.ingress.kubernetes.io/%s\n' "$a"; done; fi
    printf 'spec:\n  ingressClassName: tether\n  rules:\n  - host: %s.test\n    http:\n      paths:\n' "$name"
    printf '      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n'
  } >"$work/m/$name.yaml"
}
ingress open
ingress allowlist 'whitelist-source-range: "10.0.0.0/8, 127.0.0.0/8"'
ingress ratelimit 'limit-rps: "1000000"' 'limit-connections: "100000"'
ingress cors 'enable-cors: "true"' 'cors-allow-origin: "https://app.example.com"'
ingress basic 'auth-type: basic' 'auth-secret: users'
ingress external "auth-url: \"http://127.0.0.1:$AUTH/auth\""

taskset -c 0 "$bin" run --manifests "$work/m" --listen 127.0.0.1:$PORT --admin 127.0.0.1:0 --workers 1 \
  --state-dir "$work/state" >/dev/null 2>"$work/tether.log" & tpid=$!; pids+=($tpid)
for _ in $(seq 100); do curl -sf -o /dev/null -H 'Host: open.test' "http://127.0.0.1:$PORT/" && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A headers=(
  [open]="" [allowlist]="" [ratelimit]="" [cors]="Origin: https://app.example.com"
  [basic-bcrypt]="Authorization: Basic $(printf bcrypt:s3cret | base64)"
  [basic-apr1]="Authorization: Basic $(printf apr1:s3cret | base64)" [external]=""
)
read -r -a cases <<<"${CASES:-open allowlist ratelimit cors basic-bcrypt basic-apr1 external}"
declare -A results
for round in $(seq "$ROUNDS"); do
  for c in "${cases[@]}"; do
    host=${c%%-*}.test
    args=(-t1 -c"$CONNS" -d"$DURATION" -H "Host: $host")
    [[ -n ${headers[$c]} ]] && args+=(-H "${headers[$c]}")
    # The whoami auth service costs CPU too, but on its own process: only tether's is counted.
    before=$(cpu_ticks $tpid)
    out=$(taskset -c 1 wrk "${args[@]}" "http://127.0.0.1:$PORT/" 2>&1)
    after=$(cpu_ticks $tpid)
    requests=$(awk '/requests in/{print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN{printf "%.2f", t * 1e6 / hz / n}')
    results[$c]+="$us "
    printf 'round %d %-13s %9d requests (%s non-2xx) %7s us/req\n' "$round" "$c" "$requests" "$non2xx" "$us" >&2
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
base=$(median <<<"${results[open]}")
printf '\n| check | proxy CPU us/req (median of %d) | cost vs no check |\n|---|---|---|\n' "$ROUNDS"
for c in "${cases[@]}"; do
  m=$(median <<<"${results[$c]}")
  printf '| %s | %s | %+.2f |\n' "$c" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN{print a - b}')"
done

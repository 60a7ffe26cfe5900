#!/usr/bin/env bash
# Cluster scale (issue 13): 5,000 Ingresses with sticky-cookie annotations over 1,000 Services of
# 50 endpoints each (30 manifest files, ~13 MB), and a 10x smaller one. Measures tether's time
# from start to serving, RSS at rest and during reloads, memory per endpoint and per route, the
# compile+swap and served-after-write times of one-object changes (an Ingress added, an
# EndpointSlice with one endpoint more or less, a TLS Secret), and an EndpointSlice storm with
# wrk running; and HAProxy and nginx on the equivalent configuration (check time and RSS, start
# to serving, RSS). A benchmark, not a test: it prints figures and fails only when something
# does not start. All on loopback; the 50,000 endpoints (127.10.x.y) are never contacted.
#
#   bench/scale.sh                     small, then big (and big1 for memory per route/endpoint)
#   SCALE=small bench/scale.sh         only the small configuration (quick); SCALE=big: only big
#   TETHER_BIN=/path/to/tether bench/scale.sh      a given binary instead of building
#   REPS=5 STORM_SECS=30 STORM_RATE=100 COMPARE=1 (haproxy/nginx side by side) KEEP_WORK=0
#   KUBE=1   (default) also tether's Kubernetes API source: the same objects (fresh) served by a
#            fake API server (bench/scale/apiserver.py), `tether run --kube` against it; start to
#            serving, the same changes through the API (served counted from the watch event), and
#            the storm as API updates (with wrk, as for files). Not for big1. KUBE=0: files only.
#
# Generators and measurements live in bench/scale/ (gen.py, drive.py). Table in bench/results/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCALE=${SCALE:-both} REPS=${REPS:-5} STORM_SECS=${STORM_SECS:-30} STORM_RATE=${STORM_RATE:-100}
COMPARE=${COMPARE:-1} KEEP_WORK=${KEEP_WORK:-0} KUBE=${KUBE:-1}
PORT=18600 TLS=18601 ADMIN=18602 HAPROXY=18603 NGINX=18604 POD=18611   # pods on 127.0.0.11-13
case $SCALE in small) scales=(small) ;; big) scales=(big) ;; both) scales=(small big1 big) ;;
  *) echo "SCALE is small, big or both" >&2; exit 2 ;; esac

need=()
for tool in haproxy nginx wrk curl openssl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
  echo "installing ${need[*]} from Debian packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ -n ${TETHER_BIN:-} ]]; then bin=$TETHER_BIN; else (cd "$ROOT" && cargo build --release --locked -q); bin=$ROOT/target/release/tether; fi
drive() { python3 "$HERE/scale/drive.py" "$@"; }

work=$(mktemp -d /tmp/tether-scale.XXXXXX)
results=$work/results.jsonl
pids=()
cleanup() {
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null || true
  if [[ $KEEP_WORK == 1 ]]; then echo "work files kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
launch() {  # launch NAME LOG URL CMD...: start a proxy, wait until it serves the steady route
  local name=$1 log=$2 url=$3; shift 3
  local t0=$EPOCHREALTIME  # the clock starts before the fork
  "$@" >"$log" 2>&1 & lpid=$!; pids+=($lpid)
  drive serving --name "$name" --pid "$lpid" --t0 "$t0" --log "$log" --url "$url" --host steady.scale.test --results "$results"
}
stop() {  # stop PID: TERM (nginx's master takes its worker along), KILL after 10 s
  local i
  kill "$1" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
for p in $PORT $TLS $ADMIN $HAPROXY $NGINX; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port $p is in use; aborting" >&2; exit 1; fi
done

for i in 1 2 3; do "$bin" whoami --listen 127.0.0.1$i:$POD --name pod-$i >/dev/null 2>&1 & pids+=($!); done
# Certificates for the Secret phase: cert-0 at start, cert-1..REPS rotated in (ECDSA, fast).
mkdir -p "$work/certs"
for n in $(seq 0 "$REPS"); do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=tls.scale.test/O=rotation $n" \
    -addext subjectAltName=DNS:tls.scale.test -keyout "$work/certs/key-$n.pem" -out "$work/certs/cert-$n.pem" 2>/dev/null
done
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.13:$POD/" && break; sleep 0.05; done

{ echo "# $(date -Is)  $(uname -r)  $(nproc) cpus  load $(cut -d' ' -f1-3 /proc/loadavg)  tether $(git -C "$ROOT" describe --always --dirty 2>/dev/null)$([[ -n ${TETHER_BIN:-} ]] && echo " (TETHER_BIN=$TETHER_BIN)")"
  echo "# haproxy $(haproxy -v | awk 'NR==1{print $3}')  $(nginx -v 2>&1 | cut -d' ' -f3)  wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}')  reps $REPS  storm ${STORM_RATE}/s x ${STORM_SECS} s$([[ $KUBE == 1 ]] && echo "  kube: fake API server (python3 $(python3 -c 'import platform; print(platform.python_version())'))")"
} >"$work/header.txt"

manifests() {  # manifests SCALE DIR: the generated cluster, with the TLS Secret of cert-0
  mkdir -p "$2"
  python3 "$HERE/scale/gen.py" manifests "$1" "$2" "$POD"
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import gen; gen.write(sys.argv[2] + "/tls-secret.yaml", gen.secret_yaml(open(sys.argv[3]).read(), open(sys.argv[4]).read()))' \
    "$HERE/scale" "$2" "$work/certs/cert-0.pem" "$work/certs/key-0.pem"
}

changes() {  # changes NAME LOG SCALE --dir DIR | --kube URL: the one-object changes, each type REPS times
  local kind
  for kind in ingress slice-add slice-del secret; do
    drive change --name "$1" --results "$results" --kind $kind --log "$2" --scale "$3" "${@:4}" \
      --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --tls "127.0.0.1:$TLS" --certs "$work/certs" --reps "$REPS"
  done
}

storm() {  # storm NAME LOG SCALE PID SOURCE-ARGS...: the EndpointSlice storm with wrk running
  # wrk replays one sticky cookie on the steady route. A storm-free wrk run first gives
  # tether's CPU per request, to tell proxying from reloading in the storm's CPU.
  local name=$1 log=$2 s=$3 tpid=$4 cookie wpid spid; shift 4
  local wrk=(wrk -t2 -c16 -s "$HERE/conf/wrk-report.lua" -H "Host: steady.scale.test")
  cookie=$(curl -s -o /dev/null -D - -H 'Host: steady.scale.test' "http://127.0.0.1:$PORT/" | tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}')
  [[ $cookie == route=* ]] || { echo "tether gave no sticky cookie for the steady route" >&2; return 1; }
  wrk+=(-H "Cookie: $cookie")
  drive cpu --pid "$tpid" >"$work/cpu"
  "${wrk[@]}" -d10s "http://127.0.0.1:$PORT/" >"$work/wrk-base.txt" 2>&1
  drive cpu --pid "$tpid" >>"$work/cpu"
  drive wrk --name "$name" --results "$results" --key wrk_base --file "$work/wrk-base.txt" --cpu-file "$work/cpu"
  # wrk starts once the storm's writes are prepared, a second before the first, and runs until
  # a little after the last: every write lands under load.
  rm -f "$work/storm-ready"
  drive storm --name "$name" --results "$results" "$@" --log "$log" --admin "127.0.0.1:$ADMIN" \
    --scale "$s" --pid "$tpid" --rate "$STORM_RATE" --secs "$STORM_SECS" --ready "$work/storm-ready" & spid=$!; pids+=($spid)
  until [[ -f $work/storm-ready ]]; do kill -0 "$spid" 2>/dev/null || break; sleep 0.05; done
  "${wrk[@]}" -d"$((STORM_SECS + 3))s" "http://127.0.0.1:$PORT/" >"$work/wrk-storm.txt" 2>&1 & wpid=$!; pids+=($wpid)
  wait "$spid"
  wait "$wpid" || true
  drive wrk --name "$name" --results "$results" --key wrk_storm --file "$work/wrk-storm.txt"
}

run_tether() {  # run_tether SCALE
  local s=$1 m=$work/$1/m log=$work/$1/tether.log tpid
  manifests "$s" "$m"
  echo "== tether $s: $(find "$m" -name '*.yaml' | wc -l) files, $(du -sh "$m" | cut -f1)" >&2
  drive timed --name "tether-$s" --results "$results" --out "$work/$s/check.txt" -- "$bin" check --tls "$m"
  grep -E '^(error|warning)' "$work/$s/check.txt" | sort | uniq -c | sort -rn | head -5 >&2 || true
  launch "tether-$s" "$log" "127.0.0.1:$PORT" "$bin" run --manifests "$m" --listen "127.0.0.1:$PORT" \
    --listen-tls "127.0.0.1:$TLS" --admin "127.0.0.1:$ADMIN" --state-dir "$work/state"
  tpid=$lpid
  drive first --name "tether-$s" --log "$log" --results "$results"
  drive sample --pid "$tpid" --out "$work/samples-$s" & pids+=($!)
  drive mem --name "tether-$s" --pid "$tpid" --settle 3 --results "$results"
  if [[ $s != big1 ]]; then  # big1 only gives its memory at rest (per-route cost)
    changes "tether-$s" "$log" "$s" --dir "$m"
    storm "tether-$s" "$log" "$s" "$tpid" --dir "$m"
    drive mem --name "tether-$s" --pid "$tpid" --prefix end_ --results "$results"
    drive pages --name "tether-$s" --results "$results" --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --scale "$s"
  fi
  stop "$tpid"
  cp "$log" "$work/tether-$s.log"
}

run_kube() {  # run_kube SCALE: the same cluster (generated afresh) through the fake API server
  local s=$1 m=$work/$1/km kc=$work/$1/kubeconfig log=$work/$1/tether-kube.log apid tpid api i
  manifests "$s" "$m"
  # The API server binds a free port on its own loopback address and writes the kubeconfig once
  # it has loaded the manifests: the clock for tether's start starts after that.
  python3 "$HERE/scale/apiserver.py" --manifests "$m" --kubeconfig "$kc" --listen 127.0.0.20:0 \
    --log "$work/$s/apiserver.log" 2>"$work/$s/apiserver.err" & apid=$!; pids+=($apid)
  for i in $(seq 1200); do [[ -f $kc ]] && break; kill -0 $apid 2>/dev/null || break; sleep 0.1; done
  [[ -f $kc ]] || { cat "$work/$s/apiserver.err" >&2; echo "the fake API server did not start" >&2; return 1; }
  api=$(awk '$1 == "server:" {print $2}' "$kc")
  echo "== tether --kube $s: $(cat "$work/$s/apiserver.err")" >&2
  launch "tether-kube-$s" "$log" "127.0.0.1:$PORT" "$bin" run --kube --kubeconfig "$kc" --listen "127.0.0.1:$PORT" \
    --listen-tls "127.0.0.1:$TLS" --admin "127.0.0.1:$ADMIN" --state-dir "$work/state"
  tpid=$lpid
  drive first --name "tether-kube-$s" --log "$log" --results "$results"
  drive apistats --name "tether-kube-$s" --results "$results" --kube "$api" --key api_start
  drive sample --pid "$tpid" --out "$work/samples-kube-$s" & pids+=($!)
  drive mem --name "tether-kube-$s" --pid "$tpid" --settle 3 --results "$results"
  changes "tether-kube-$s" "$log" "$s" --kube "$api"
  storm "tether-kube-$s" "$log" "$s" "$tpid" --kube "$api"
  drive mem --name "tether-kube-$s" --pid "$tpid" --prefix end_ --results "$results"
  drive apistats --name "tether-kube-$s" --results "$results" --kube "$api" --key api_end
  stop "$tpid"
  stop "$apid"
  cp "$log" "$work/tether-kube-$s.log"
}

run_others() {  # run_others SCALE: haproxy and nginx on the same configuration
  local s=$1 d=$work/$1
  python3 "$HERE/scale/gen.py" haproxy "$s" "$d/haproxy.cfg" "127.0.0.1:$HAPROXY" "$POD"
  drive timed --name "haproxy-$s" --results "$results" --out "$d/haproxy-check.txt" -- haproxy -c -q -f "$d/haproxy.cfg"
  launch "haproxy-$s" "$d/haproxy.log" "127.0.0.1:$HAPROXY" haproxy -db -f "$d/haproxy.cfg"
  drive mem --name "haproxy-$s" --pid "$lpid" --settle 3 --results "$results"
  stop "$lpid"
  mkdir -p "$d/nginx"
  python3 "$HERE/scale/gen.py" nginx "$s" "$d/nginx.conf" "127.0.0.1:$NGINX" "$POD" "$d/nginx"
  drive timed --name "nginx-$s" --results "$results" --out "$d/nginx-check.txt" -- \
    nginx -t -q -p "$d/nginx" -e "$d/nginx/error.log" -c "$d/nginx.conf"
  launch "nginx-$s" "$d/nginx.log" "127.0.0.1:$NGINX" nginx -p "$d/nginx" -e "$d/nginx/error.log" -c "$d/nginx.conf" -g 'daemon off;'
  drive mem --name "nginx-$s" --pid "$lpid" --settle 3 --results "$results"
  stop "$lpid"
}

for s in "${scales[@]}"; do
  run_tether "$s"
  [[ $KUBE == 1 && $s != big1 ]] && run_kube "$s"
  [[ $COMPARE == 1 && $s != big1 ]] && run_others "$s"
done

ts=$(date +%Y%m%d-%H%M%S)
out=$HERE/results/scale-$ts.txt
mkdir -p "$HERE/results"
cp "$work/header.txt" "$out"
samples=()
for s in "${scales[@]}"; do samples+=(--sample "$s=$work/samples-$s" --sample "kube-$s=$work/samples-kube-$s"); done
echo >&2
cat "$work/header.txt"
drive report --results "$results" "${samples[@]}" --out "$out"
cp "$results" "$HERE/results/scale-$ts.jsonl"
echo "table: $out  raw figures: $HERE/results/scale-$ts.jsonl" >&2

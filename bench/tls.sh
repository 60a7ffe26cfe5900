#!/usr/bin/env bash
# TLS and HTTP/2 rows (issue 15): tether beside HAProxy 2.6 and nginx 1.22 (Debian packages), all
# terminating TLS with the same ECDSA P-256 certificate (made here with openssl) in front of the
# same three pods (nginx, conf/backends.nginx.conf.in), one proxy thread each, on loopback, in
# interleaved rounds. Every request carries the target's sticky cookie (an affinity hit).
#
#   bench/tls.sh                                  install what is missing, build, all modes (~3.5 min)
#   TETHER_BIN=/tmp/tether-before bench/tls.sh    a given binary instead of building one
#   MODES="hs ka" DURATION=10s bench/tls.sh
#
# Modes (MODES="hs ka h2 h2c", one table each in bench/results/tls-<timestamp>.txt):
#   hs    full TLS handshakes per second: wrk -c$CONNS over https with "Connection: close", so every
#         request is a new connection with a full handshake (wrk never resumes a session); rps =
#         handshakes/s, proxy us/req = proxy CPU per handshake (+ its one request)
#   ka    TLS keep-alive requests per second: wrk -c$CONNS over https (HTTP/1.1)
#   h2    HTTP/2 over TLS (ALPN h2): h2load -c$H2_CONNS -m$H2_STREAMS (64 streams over 4 connections)
#   h2c   HTTP/2 in clear text, prior knowledge (tether --h2c, HAProxy `proto h2`, nginx `listen
#         ... http2`): the same h2load load
# Proxy CPU per request is utime+stime of the proxy's process tree from /proc/PID/stat before and
# after each run, as run.sh does.
#
# Knobs (env): DURATION=5s WARMUP=1s ROUNDS=3 CONNS=64 H2_CONNS=4 H2_STREAMS=16
#              WRK_CPU=1 PROXY_CPU=0 BACKEND_CPU=0 (taskset CPU lists; "" = no pinning)
#              TARGETS="haproxy tether nginx"  TETHER_BIN=path  MODES=...
#              RESULTS_DIR=dir (the table and raw rows; default bench/results)
#
# tether: --listen-tls with --default-cert/--default-key (the clients connect to 127.0.0.1, so
# no SNI names a Secret's host and the default certificate is the one served), --h2c on its plain
# listener, an Ingress with cookie affinity (persistent). HAProxy: `bind ... ssl crt` (cert+key in
# one PEM) `alpn h2,http/1.1`, cookie insert. nginx: `listen ... ssl http2`, hash on the cookie.
# TLS settings are each proxy's defaults (TLS 1.3; the negotiated protocol, cipher and key
# exchange are printed above the tables).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-5s} WARMUP=${WARMUP:-1s} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-64}
H2_CONNS=${H2_CONNS:-4} H2_STREAMS=${H2_STREAMS:-16}
WRK_CPU=${WRK_CPU-1} PROXY_CPU=${PROXY_CPU-0} BACKEND_CPU=${BACKEND_CPU-0}
TARGETS=${TARGETS:-haproxy tether nginx}
MODES=${MODES:-hs ka h2 h2c}
for m in $MODES; do case $m in hs|ka|h2|h2c) ;; *) echo "unknown mode '$m' (hs ka h2 h2c)" >&2; exit 2 ;; esac; done

need=()
for tool in haproxy nginx wrk curl openssl h2load; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
  pkgs=("${need[@]/h2load/nghttp2-client}")
  echo "installing ${pkgs[*]} from Debian packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
bin=${TETHER_BIN:-}
if [[ -z $bin ]]; then
  (cd "$ROOT" && cargo build --release --locked -q)
  bin=$ROOT/target/release/tether
fi

B1=18281 B2=18282 B3=18283
declare -A TLS_PORT=([haproxy]=18290 [tether]=18292 [nginx]=18294)
declare -A H2C_PORT=([haproxy]=18291 [tether]=18293 [nginx]=18295)
declare -A COOKIE=([haproxy]='SRV=pod1' [nginx]='route=bench' [tether]='')
declare -A PID=()
CLK_TCK=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/tether-tls.XXXXXX)
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
pin() { if [[ -n $1 ]]; then echo "taskset -c $1"; fi; }
for p in $B1 $B2 $B3 "${TLS_PORT[@]}" "${H2C_PORT[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is in use; aborting"; exit 1; fi
done

# ---------- certificate: ECDSA P-256, self-signed ----------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"

# ---------- pods ----------
mkdir -p "$work/www" "$work/m"
head -c 16384 /dev/zero | tr '\0' x >"$work/www/16k"
sed -e "s#@STATE@#$work#g" -e "s#@B1@#$B1#g" -e "s#@B2@#$B2#g" -e "s#@B3@#$B3#g" \
  "$HERE/conf/backends.nginx.conf.in" >"$work/backends.conf"
start() {  # start NAME CPU CMD...
  local name=$1 cpu=$2; shift 2
  # shellcheck disable=SC2046
  $(pin "$cpu") "$@" >"$work/$name.log" 2>&1 &
  PID[$name]=$!; pids+=($!)
}
start pods "$BACKEND_CPU" nginx -p "$work" -e "$work/pods.err" -c "$work/backends.conf" -g 'daemon off;'

# ---------- proxies ----------
cat >"$work/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend tls
    bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $work/haproxy.pem alpn h2,http/1.1
    default_backend pods
frontend h2c
    bind 127.0.0.1:${H2C_PORT[haproxy]} proto h2
    default_backend pods
backend pods
    balance roundrobin
    cookie SRV insert indirect nocache
    server pod1 127.0.0.1:$B1 cookie pod1
    server pod2 127.0.0.1:$B2 cookie pod2
    server pod3 127.0.0.1:$B3 cookie pod3
CFG
proxy_loc='location / { proxy_pass http://pods; proxy_http_version 1.1; proxy_set_header Connection ""; add_header Set-Cookie $route_setcookie; }'
cat >"$work/nginx.conf" <<CFG
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 8192; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream pods {
        hash \$cookie_route consistent;
        server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3;
        keepalive 256; keepalive_requests 10000000; keepalive_timeout 300s;
    }
    map \$cookie_route \$route_setcookie { "" "route=\$request_id; Path=/"; default ""; }
    server {
        listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2 backlog=4096;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;   # 1.22's default lacks TLSv1.3
        $proxy_loc
    }
    server { listen 127.0.0.1:${H2C_PORT[nginx]} http2 backlog=4096; $proxy_loc }
}
CFG
cat >"$work/m/pods.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: pods, namespace: default}
spec: {ports: [{name: http, port: 80}]}
YAML
for i in 1 2 3; do
  cat >>"$work/m/pods.yaml" <<YAML
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: pods-$i, namespace: default, labels: {kubernetes.io/service-name: pods}}
addressType: IPv4
ports: [{name: http, port: 1828$i}]
endpoints: [{addresses: ["127.0.0.1"], targetRef: {kind: Pod, name: pod-$i}}]
YAML
done
cat >"$work/m/ingress.yaml" <<YAML
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
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/cookie.key"
haproxy -c -q -f "$work/haproxy.cfg"
nginx -t -q -p "$work" -e "$work/nginx.err" -c "$work/nginx.conf"
for t in $TARGETS; do
  case $t in
    haproxy) start haproxy "$PROXY_CPU" haproxy -db -f "$work/haproxy.cfg" ;;
    nginx) start nginx "$PROXY_CPU" nginx -p "$work" -e "$work/nginx.err" -c "$work/nginx.conf" -g 'daemon off;' ;;
    tether) RUST_LOG=warn start tether "$PROXY_CPU" "$bin" run --manifests "$work/m" --listen 127.0.0.1:${H2C_PORT[tether]} \
              --listen-tls 127.0.0.1:${TLS_PORT[tether]} --h2c --default-cert "$work/cert.pem" --default-key "$work/key.pem" \
              --admin 127.0.0.1:0 --workers 1 --cookie-key-file "$work/cookie.key" --state-dir "$work/state" ;;
    *) log "unknown target $t (haproxy tether nginx)"; exit 2 ;;
  esac
done
for t in $TARGETS; do
  for _ in $(seq 100); do
    curl -skf -o /dev/null --max-time 1 "https://127.0.0.1:${TLS_PORT[$t]}/" && break
    kill -0 "${PID[$t]}" 2>/dev/null || { log "$t died:"; cat "$work/$t.log" >&2; exit 1; }
    sleep 0.1
  done
done
if [[ " $TARGETS " == *" tether "* ]]; then
  COOKIE[tether]=$(curl -sk -o /dev/null -D - "https://127.0.0.1:${TLS_PORT[tether]}/" | tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}')
  [[ ${COOKIE[tether]} == route=* ]] || { log "tether gave no sticky cookie"; exit 1; }
fi

# ---------- sanity: every target and protocol answers 200 from one pod with its cookie ----------
tlsinfo=()
for t in $TARGETS; do
  ck=${COOKIE[$t]}
  h1=$(for _ in 1 2 3; do curl -sfk --max-time 2 -H "Cookie: $ck" "https://127.0.0.1:${TLS_PORT[$t]}/" || echo FAIL; echo; done | sort | uniq -c | tr -s ' \n' ' ')
  h2=$(curl -sfk --http2 --max-time 2 -H "Cookie: $ck" -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:${TLS_PORT[$t]}/" || echo FAIL)
  h2c=$(curl -sf --http2-prior-knowledge --max-time 2 -H "Cookie: $ck" -o /dev/null -w '%{http_version} %{http_code}' "http://127.0.0.1:${H2C_PORT[$t]}/" || echo FAIL)
  log "sanity $t: https http/1.1 ->$h1| https h2 -> $h2 | h2c -> $h2c"
  [[ "$h1$h2$h2c" != *FAIL* && $h2 == "2 200" && $h2c == "2 200" ]] || { log "target $t failed"; exit 1; }
  info=$(openssl s_client -connect "127.0.0.1:${TLS_PORT[$t]}" -alpn http/1.1 </dev/null 2>/dev/null |
    awk -F': *' '/^New, /{split($0, a, ", "); p=a[2]; c=a[3]; sub(/^Cipher is /, "", c)}
      /^Server Temp Key/{k=$2} /^Peer signature type/{s=$2} END{print p", "c", "k", "s}')
  tlsinfo+=("$t: $info")
done

# ---------- measurement ----------
tree() { local k; echo "$1"; for k in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do tree "$k"; done; }
cpu_ticks() { local p s=0 t; for p in $(tree "$1"); do
  t=$(awk '{sub(/^.*\) /,""); print $12+$13}' "/proc/$p/stat" 2>/dev/null || echo 0); s=$((s + ${t:-0})); done; echo "$s"; }
secs() { local d=$1; case $d in *ms) echo "0.${d%ms}";; *s) echo "${d%s}";; *m) echo $((${d%m} * 60));; *) echo "$d";; esac; }
load() {  # load MODE TARGET DURATION -> "rps requests lat_ms lat_kind errors"
  local mode=$1 t=$2 d=$3 ck=${COOKIE[$2]} out
  case $mode in
    hs|ka)
      local close=(); [[ $mode == hs ]] && close=(-H "Connection: close")
      # shellcheck disable=SC2046
      out=$($(pin "$WRK_CPU") wrk -t1 -c"$CONNS" -d"$d" -s "$HERE/conf/wrk-report.lua" -H "Cookie: $ck" \
              "${close[@]}" "https://127.0.0.1:${TLS_PORT[$t]}/" | grep '^RESULT')
      awk '{for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            printf "%s %s %.3f p99 %d\n", v["rps"], v["requests"], v["p99_us"] / 1000, v["sock_errors"] + v["non2xx"]}' <<<"$out" ;;
    h2|h2c)
      local url="https://127.0.0.1:${TLS_PORT[$t]}/"; [[ $mode == h2c ]] && url="http://127.0.0.1:${H2C_PORT[$t]}/"
      # shellcheck disable=SC2046
      out=$($(pin "$WRK_CPU") h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$(secs "$d")" -H "cookie: $ck" "$url" 2>&1)
      awk '/^finished in/{rps=$4} /^requests:/{done=$6; fail=$10; err=$12}
           /^status codes:/{s2=$3} /^time for request:/{mean=$6}
           END{ms = mean ~ /ms$/ ? mean + 0 : (mean ~ /us$/ ? mean / 1000 : mean * 1000)
               printf "%s %d %.3f mean %d\n", rps, done, ms, fail + err + (done - s2)}' <<<"$out" ;;
  esac
}
ts=$(date +%Y%m%d-%H%M%S)
raw=$work/raw.tsv
printf 'round\tmode\ttarget\trps\trequests\tlat_ms\tlat_kind\terrors\tproxy_cpu_us_per_req\tproxy_busy_pct\n' >"$raw"
log "settings: modes=$MODES targets=$TARGETS duration=$DURATION warmup=$WARMUP rounds=$ROUNDS wrk -c$CONNS h2load -c$H2_CONNS -m$H2_STREAMS cpus wrk=${WRK_CPU:-any} proxy=${PROXY_CPU:-any} pods=${BACKEND_CPU:-any}"
cpu0=$(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
for mode in $MODES; do
  for t in $TARGETS; do load "$mode" "$t" "$WARMUP" >/dev/null; done
  for r in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
      c0=$(cpu_ticks "${PID[$t]}") w0=$(date +%s.%N)
      read -r rps req lat kind errs <<<"$(load "$mode" "$t" "$DURATION")"
      c1=$(cpu_ticks "${PID[$t]}") w1=$(date +%s.%N)
      pc=$(awk -v d=$((c1 - c0)) -v n="$req" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", n ? d*1e6/hz/n : 0}')
      busy=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v w0="$w0" -v w1="$w1" 'BEGIN{printf "%.0f", d / hz / (w1 - w0) * 100}')
      log "$mode round $r/$ROUNDS $t: rps=$rps requests=$req $kind=${lat}ms errors=$errs proxy_us/req=$pc proxy_busy=${busy}%"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$mode" "$t" "$rps" "$req" "$lat" "$kind" "$errs" "$pc" "$busy" >>"$raw"
    done
  done
done
steal=$(awk -v a="$cpu0" '/^cpu /{split(a, z, " "); t = $2+$3+$4+$5+$6+$7+$8+$9 - z[2]; printf "%.2f", t ? ($9 - z[1]) * 100 / t : 0}' /proc/stat)
rss=$work/rss.tsv
for t in $TARGETS; do
  kb=0; for p in $(tree "${PID[$t]}"); do h=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0); ((h > kb)) && kb=$h; done
  printf '%s\t%s\n' "$t" "$kb" >>"$rss"
done
results=${RESULTS_DIR:-$HERE/results}
mkdir -p "$results"
out="$results/tls-$ts.txt"
{
  echo "# $(date -Is)  $(uname -r)  $(nproc) cpus  haproxy $(haproxy -v | awk 'NR==1{print $3}')  $(nginx -v 2>&1 | cut -d' ' -f3)  $(h2load --version | head -1)  $(openssl version | cut -d' ' -f1-2)"
  echo "# one proxy thread each; $ROUNDS interleaved rounds of $DURATION (+$WARMUP warm-up per mode); cpus wrk/h2load=${WRK_CPU:-any} proxy=${PROXY_CPU:-any} pods=${BACKEND_CPU:-any}; cpu steal ${steal}%"
  echo "# certificate ECDSA P-256; negotiated (protocol, cipher, key exchange, signature):"
  for i in "${tlsinfo[@]}"; do echo "#   $i"; done
  python3 - "$raw" "$rss" "$CONNS" "$H2_CONNS" "$H2_STREAMS" <<'PY'
import csv, statistics as st, sys
from collections import OrderedDict, defaultdict
raw, rssf, conns, h2c, h2m = sys.argv[1:6]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
rss = dict(l.split("\t") for l in open(rssf).read().split("\n") if l)
title = {
    "hs": f"full TLS handshakes/s (wrk -c{conns} https, Connection: close: one request per new connection); proxy us per handshake+request",
    "ka": f"TLS keep-alive requests/s (wrk -c{conns} https, HTTP/1.1)",
    "h2": f"HTTP/2 over TLS requests/s (h2load -c{h2c} -m{h2m})",
    "h2c": f"HTTP/2 clear text (prior knowledge) requests/s (h2load -c{h2c} -m{h2m})",
}
modes = list(OrderedDict.fromkeys(r["mode"] for r in rows))
for mode in modes:
    mr = [r for r in rows if r["mode"] == mode]
    by_round = defaultdict(dict)
    for r in mr:
        by_round[r["round"]][r["target"]] = float(r["rps"])
    targets = list(OrderedDict.fromkeys(r["target"] for r in mr))
    kind = mr[0]["lat_kind"]
    print(f"## {mode}: {title[mode]}")
    hdr = ["target", "rps(med)", "rps min-max", "vs haproxy", "ratio min-max", "vs nginx",
           "proxy us/req", "vs haproxy us", "per core/s", "proxy busy", f"{kind} ms", "peak RSS MB", "errors"]
    lines = []
    med_cpu = {t: st.median(float(r["proxy_cpu_us_per_req"]) for r in mr if r["target"] == t) for t in targets}
    for t in targets:
        rs = [r for r in mr if r["target"] == t]
        rps = [float(r["rps"]) for r in rs]
        def ratios(ref):
            return [by_round[r["round"]][t] / by_round[r["round"]][ref] for r in rs
                    if by_round[r["round"]].get(ref)]
        rh, rn = ratios("haproxy"), ratios("nginx")
        lines.append([
            t, f"{st.median(rps):,.0f}", f"{min(rps):,.0f}-{max(rps):,.0f}",
            f"{st.median(rh):.3f}" if rh else "NA", f"{min(rh):.3f}-{max(rh):.3f}" if rh else "NA",
            f"{st.median(rn):.3f}" if rn else "NA", f"{med_cpu[t]:.2f}",
            f"{med_cpu[t] / med_cpu['haproxy']:.2f}x" if med_cpu.get("haproxy") else "NA",
            f"{1e6 / med_cpu[t]:,.0f}" if med_cpu[t] else "NA",
            f"{st.median(float(r['proxy_busy_pct']) for r in rs):.0f}%",
            f"{st.median(float(r['lat_ms']) for r in rs):.3f}",
            f"{int(rss.get(t, 0)) / 1024:.1f}", str(sum(int(r["errors"]) for r in rs)),
        ])
    w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(hdr)]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
    for l in lines:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(l)))
    print()
print("# rps = median over rounds; vs haproxy/nginx = median of per-round ratios (same round); proxy us/req ="
      " CPU time (utime+stime) of the proxy process tree per request (per handshake in hs); per core/s ="
      " 1e6 / proxy us/req, what one fully busy proxy core would do at that cost (the judge when the client,"
      " not the proxy, is the bottleneck: see proxy busy = proxy CPU time / wall time); p99 from wrk,"
      " mean from h2load; peak RSS = VmHWM of the largest proxy process over the whole run (all modes)")
PY
} | tee "$out"
cp "$raw" "$results/tls-$ts.raw.tsv"
log "table: $out  raw rows: $results/tls-$ts.raw.tsv"

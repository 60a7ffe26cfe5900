#!/usr/bin/env python3
"""Measurements for bench/scale.sh. Every subcommand appends its figures as JSON lines
({"run", "key", "value"}) to the results file given by --results; `report` makes the table.

  serving  poll the steady route every 10 ms until a pod answers through the proxy just started
  timed    a config check: wall time, max RSS (getrusage of the child), exit status
  first    tether's first `reload applied ... compiled in X ms` log line
  mem      VmRSS and VmHWM of a process tree (nginx: master + worker), after --settle seconds
  sample   VmRSS of a PID every 50 ms to a file, until the PID exits (bounded)
  change   apply one change type REPS times by writing a file (or, with --kube URL, through the
           fake API server, apiserver.py); per change: compile+swap time from tether's log and
           the time until the change is visible from outside
  storm    RATE EndpointSlice writes (or API updates) per second for SECS seconds, lag polled
  apistats the fake API server's request counters (LISTs, watches, 410s) into figures
  wrk      wrk's RESULT line (bench/conf/wrk-report.lua) into figures
  report   the table
"""
import argparse
import http.client
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/scale
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

RELOAD = re.compile(r"reload (applied|rejected): (\d+) routes?, (\d+) endpoints?(?: \(([^)]*)\))?, compiled in ([\d.]+) ms")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def put(results, run, key, value):
    with open(results, "a") as f:
        f.write(json.dumps({"run": run, "key": key, "value": value}) + "\n")


def get(host, port, path="/", header_host=None, timeout=2.0):
    """(status, body) of one GET on a new connection; (None, error) when it fails."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("GET", path, headers={"Host": header_host} if header_host else {})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body.decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def reloads(log, offset=0):
    """(end offset, [(applied, routes, endpoints, changes, ms)]) of reload lines from offset."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset, []
    end = data.rfind(b"\n") + 1  # whole lines only
    found = [(m[1] == "applied", int(m[2]), int(m[3]), m[4] or "", float(m[5]))
             for m in RELOAD.finditer(data[:end].decode("utf-8", "replace"))]
    return offset + end, found


def diag_endpoints(admin, timeout=5.0):
    """The endpoint count of the last reload, from the first line of /diagnostics."""
    status, body = get(*hostport(admin), "/diagnostics", timeout=timeout)
    m = re.search(r": \d+ routes?, (\d+) endpoints?", body or "") if status == 200 else None
    return int(m[1]) if m else None


def proc_stat_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cmd_serving(a):
    """Polls the steady route every 10 ms until a pod answers through the proxy; the time is
    counted from --t0 (scale.sh's $EPOCHREALTIME just before it started the process)."""
    host, port = hostport(a.url)
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{a.pid}") or open(f"/proc/{a.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            sys.exit(f"{a.name} exited before serving; see {a.log}")
        status, body = get(host, port, "/", a.host, timeout=1.0)
        if status == 200 and a.expect in body:
            served = time.time() - a.t0
            put(a.results, a.name, "serve_s", served)
            print(f"{a.name}: serving after {served:.3f} s (pid {a.pid})", file=sys.stderr)
            return
        time.sleep(0.01)
    sys.exit(f"{a.name} not serving {a.host} after {a.timeout} s; see {a.log}")


def cmd_timed(a):
    """Runs a command (a config check) to its end: wall time, its max RSS, exit status."""
    import resource
    t0 = time.monotonic()
    with open(a.out, "wb") as out:
        rc = subprocess.call(a.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    put(a.results, a.name, "check", {"secs": took, "max_rss_kb": kb, "status": "ok" if rc == 0 else f"exit {rc}"})
    print(f"{a.name}: {' '.join(a.command[:2])} ... took {took:.2f} s, max RSS {kb / 1024:.0f} MB, exit {rc}",
          file=sys.stderr)


def cmd_first(a):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, found = reloads(a.log)
        if found:
            applied, routes, endpoints, _, ms = found[0]
            for k, v in (("first_ms", ms), ("routes", routes), ("endpoints", endpoints)):
                put(a.results, a.name, k, v)
            print(f"{a.name}: first table {routes} routes, {endpoints} endpoints, compiled in {ms} ms"
                  f"{'' if applied else ' (REJECTED)'}", file=sys.stderr)
            return
        time.sleep(0.05)
    sys.exit(f"no reload line in {a.log}")


def cmd_mem(a):
    time.sleep(a.settle)
    pids = tree(a.pid)
    rss = sum(status_kb(p, "VmRSS") for p in pids)
    hwm = sum(status_kb(p, "VmHWM") for p in pids)
    put(a.results, a.name, a.prefix + "rss_kb", rss)
    put(a.results, a.name, a.prefix + "hwm_kb", hwm)
    print(f"{a.name}: {a.prefix}RSS {rss / 1024:.1f} MB, VmHWM {hwm / 1024:.1f} MB ({len(pids)} processes)",
          file=sys.stderr)


def cmd_sample(a):
    deadline = time.monotonic() + a.max_secs
    with open(a.out, "a") as f:
        while time.monotonic() < deadline:
            try:
                rss = status_kb(a.pid, "VmRSS")
            except OSError:
                return
            f.write(f"{time.time():.3f} {rss}\n")
            f.flush()
            time.sleep(0.05)


def sampled_max(samples, t0, t1):
    """Largest VmRSS sampled between wall-clock times t0 and t1 (kB), or None."""
    try:
        rows = [l.split() for l in open(samples)]
    except OSError:
        return None
    vals = [int(r[1]) for r in rows if len(r) == 2 and t0 <= float(r[0]) <= t1]
    return max(vals) if vals else None


def wait_quiet(log, offset, quiet=1.0, limit=120.0):
    """Waits until no reload line has appeared for `quiet` seconds (bounded); new offset."""
    deadline = time.monotonic() + limit
    last = time.monotonic()
    while time.monotonic() < deadline:
        new, found = reloads(log, offset)
        if found:
            last = time.monotonic()
        offset = new
        if time.monotonic() - last >= quiet:
            break
        time.sleep(0.05)
    return offset


def tls_der(addr, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(hostport(addr), timeout=2.0) as s:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                return t.getpeercert(binary_form=True)
    except OSError:
        return None


class Files:
    """Changes as manifest files, written atomically (temporary file + rename)."""

    def __init__(self, root):
        self.root = root

    @staticmethod
    def prepare(text):
        return text

    def apply(self, path, text):
        """Writes `text` to `path` (relative to the manifest directory); the wall-clock time just
        before the write, from which `served` counts."""
        t = time.time()
        gen.write(os.path.join(self.root, path), text)
        return t


class Api:
    """Changes through the fake API server (apiserver.py): each object is created or replaced
    there and the answer comes once the watch event is flushed to tether."""

    def __init__(self, url):
        self.host, self.port = hostport(url.removeprefix("http://"))
        self.conn = None

    @staticmethod
    def prepare(text):
        """The manifest as JSON: the server parses that 20x faster than YAML, which keeps a
        storm's 100 updates a second on time."""
        import yaml  # only here: the file-based runs do without PyYAML
        return json.dumps(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

    def apply(self, path, text):
        """Applies the object `text` (from prepare; `path` only names it in the file layout);
        the wall-clock time the watch event was written and flushed to tether, from which
        `served` counts."""
        for attempt in (1, 2):  # one retry on a new connection: keep-alive may have lapsed
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("POST", "/__bench/apply", body=text.encode(),
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                body = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    raise
        if r.status != 200:
            sys.exit(f"the API server refused {path}: {r.status} {body[:300]!r}")
        answer = json.loads(body)
        if not answer["watchers"] or len(answer["sent"]) < answer["watchers"]:
            sys.exit(f"{path}: no watch of tether's got the event ({answer}); is tether watching?")
        return min(answer["sent"])

    def stats(self):
        status, body = get(self.host, self.port, "/__bench/stats")
        return json.loads(body) if status == 200 else None


def target(a):
    if bool(a.kube) == bool(a.dir):
        sys.exit("give --dir (manifest files) or --kube (API server URL)")
    return Api(a.kube) if a.kube else Files(a.dir)


def settle_slice(a, to, path, text, want, offset):
    """An untimed slice write (to set up or undo a timed one): waits until it is applied."""
    to.apply(path, to.prepare(text))
    deadline = time.monotonic() + a.timeout
    while diag_endpoints(a.admin) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return wait_quiet(a.log, offset)


def cmd_change(a):
    """One change type, REPS times, each a file written atomically (temporary file + rename), or
    with --kube an object applied through the API server (served then counts from the moment
    the watch event was flushed to tether):
    ingress    a new Ingress (its own file) for host new-N.scale.test, served by the steady pods;
               visible when that host answers 200 through tether
    slice-add  service 0's EndpointSlice (slices/svc-0000.yaml) with one endpoint more; visible
               when the endpoint total on the admin /diagnostics goes up by one (undone after)
    slice-del  the same with one endpoint less (the endpoint is added, untimed, first)
    secret     the TLS Secret of tls.scale.test rotated to a new certificate; visible when a TLS
               handshake with that SNI presents it"""
    per = gen.sizes(a.scale)[2]
    to = target(a)
    slice_path = os.path.join("slices", f"{gen.svc(0)}.yaml")
    offset = wait_quiet(a.log, 0)
    rows = []
    for rep in range(a.reps):
        before = diag_endpoints(a.admin)
        undo = None
        if a.kind == "ingress":
            host = f"new-{rep}.scale.test"
            path, text = f"new-{rep}.yaml", gen.new_ingress_yaml(rep)
            visible = lambda: get(*hostport(a.listen), "/", host, timeout=2.0)[0] == 200
        elif a.kind == "slice-add":
            path, text, want = slice_path, gen.slice_yaml(0, per, 1), before + 1
            visible = lambda: diag_endpoints(a.admin) == want
            undo = (gen.slice_yaml(0, per, 0), before)
        elif a.kind == "slice-del":
            offset = settle_slice(a, to, slice_path, gen.slice_yaml(0, per, 1), before + 1, offset)
            path, text, want = slice_path, gen.slice_yaml(0, per, 0), before
            visible = lambda: diag_endpoints(a.admin) == want
        elif a.kind == "secret":
            cert, key = (open(os.path.join(a.certs, f"{n}-{rep + 1}.pem")).read() for n in ("cert", "key"))
            der = ssl.PEM_cert_to_DER_cert(cert)
            path, text = "tls-secret.yaml", gen.secret_yaml(cert, key)
            visible = lambda: tls_der(a.tls, "tls.scale.test") == der
        else:
            sys.exit(f"unknown change {a.kind}")
        text = to.prepare(text)
        offset = wait_quiet(a.log, offset, quiet=0.5)
        t_sent = to.apply(path, text)
        seen = None
        while time.time() - t_sent < a.timeout:
            if visible():
                seen = time.time() - t_sent
                break
            time.sleep(0.01)
        # The reload this write triggered: the first reload line after the write.
        ms, line = None, ""
        deadline = time.monotonic() + (10 if seen is not None else 1)
        while time.monotonic() < deadline:
            _, found = reloads(a.log, offset)
            if found:
                applied, routes, endpoints, changes, ms = found[0]
                line = f"{routes} routes, {endpoints} endpoints ({changes}){'' if applied else ' REJECTED'}"
                break
            time.sleep(0.02)
        offset = wait_quiet(a.log, offset)
        put(a.results, a.name, f"window_{a.kind}_{rep}", [t_sent, time.time()])
        if undo:
            offset = settle_slice(a, to, slice_path, undo[0], undo[1], offset)
        rows.append((seen, ms))
        print(f"  {a.kind} #{rep + 1}: served after {'%.1f ms' % (seen * 1000) if seen is not None else 'NEVER'}"
              f", compiled in {ms} ms: {line}", file=sys.stderr)
    for i, k in ((0, "served_ms"), (1, "compile_ms")):
        vals = [r[i] * (1000 if i == 0 else 1) for r in rows if r[i] is not None]
        put(a.results, a.name, f"{a.kind}_{k}", {"median": statistics.median(vals) if vals else None,
                                                   "max": max(vals) if vals else None,
                                                   "n": len(vals), "of": len(rows)})


def cmd_storm(a):
    """RATE writes a second for SECS seconds: write n adds one pod to service (n-1) % SERVICES
    (a scale-up wave over 100 Deployments), so the endpoint total on /diagnostics says exactly
    which write tether has applied. With --kube the writes are API updates, and each counts
    from the moment its watch event was flushed to tether."""
    per = gen.sizes(a.scale)[2]
    to = target(a)
    services = min(a.services, gen.sizes(a.scale)[1])
    total = a.rate * a.secs
    # Every write made beforehand, so that making it does not hold up the rate.
    writes = [(os.path.join("slices", f"{gen.svc(n % services)}.yaml"),
               to.prepare(gen.slice_yaml(n % services, per, n // services + 1))) for n in range(total)]
    base = diag_endpoints(a.admin)
    if base is None:
        sys.exit("no endpoint count on /diagnostics")
    offset, _ = reloads(a.log, 0)
    if a.ready:
        # scale.sh starts wrk now, so that wrk covers the writes and not their preparation.
        open(a.ready, "w").close()
        time.sleep(1.0)
    cpu0, w0 = proc_stat_cpu(a.pid), time.time()
    written = []  # wall-clock time of each write (of its watch event with --kube)
    lag = {"max": 0.0, "polls": 0, "slow_polls": 0, "max_poll_ms": 0.0}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            t = time.monotonic()
            # A long timeout: the admin listener may not answer while a reload runs.
            e = diag_endpoints(a.admin, timeout=120.0)
            took = time.monotonic() - t
            lag["polls"] += 1
            lag["max_poll_ms"] = max(lag["max_poll_ms"], took * 1000)
            if e is not None:
                seen = max(0, e - base)  # writes applied
                n = len(written)
                # Lag: how long the oldest write not yet applied has waited.
                if seen < n:
                    lag["max"] = max(lag["max"], time.time() - written[seen])
            stop.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t0 = time.monotonic()
    for n, (path, text) in enumerate(writes):
        due = t0 + n / a.rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        written.append(to.apply(path, text))
    t_end = time.monotonic()
    cpu_writes = proc_stat_cpu(a.pid) - cpu0
    # After the storm: until the last written state is visible (bounded).
    final, end_lag = base + total, None
    while time.monotonic() - t_end < a.timeout:
        if diag_endpoints(a.admin) == final:
            end_lag = time.time() - written[-1]
            break
        time.sleep(0.01)
    stop.set()
    poller.join(5)
    cpu = proc_stat_cpu(a.pid) - cpu0
    _, found = reloads(a.log, offset)
    ms = [f[4] for f in found]
    # The storm's last visible moment bounds the lag seen by polling too.
    if end_lag is not None:
        lag["max"] = max(lag["max"], end_lag)
    figures = {
        "writes": total, "write_secs": t_end - t0, "reloads": len(found),
        "reload_ms_median": statistics.median(ms) if ms else None, "reload_ms_max": max(ms) if ms else None,
        "end_lag_ms": end_lag * 1000 if end_lag is not None else None, "max_lag_ms": lag["max"] * 1000,
        "cpu_s_writes": cpu_writes, "cpu_s": cpu, "polls": lag["polls"], "max_poll_ms": lag["max_poll_ms"],
    }
    put(a.results, a.name, "storm", figures)
    put(a.results, a.name, "window_storm", [w0, time.time()])
    print(f"  storm: {json.dumps(figures)}", file=sys.stderr)


def cmd_pages(a):
    """One request to every route of the generated configuration (one keep-alive connection;
    the endpoints do not exist, so each is a quick 502 that still makes the route's series),
    then each admin page fetched 3 times: time (median, max) and size. /metrics must stay
    bounded with every route in use."""
    ingresses = gen.sizes(a.scale)[0]
    host, port = hostport(a.listen)
    c = http.client.HTTPConnection(host, port, timeout=30)
    sent, t0 = 0, time.monotonic()
    for i in range(ingresses):
        for path in gen.paths(i):
            c.request("GET", path, headers={"Host": f"app-{i}.scale.test"})
            c.getresponse().read()
            sent += 1
    c.close()
    figures = {"requests": sent, "requests_secs": time.monotonic() - t0}
    ahost, aport = hostport(a.admin)
    for page in ("metrics", "status", "status.json", "routes"):
        times, size = [], 0
        for _ in range(3):
            t = time.monotonic()
            c = http.client.HTTPConnection(ahost, aport, timeout=60)
            c.request("GET", "/" + page)
            body = c.getresponse().read()
            c.close()
            times.append((time.monotonic() - t) * 1000)
            size = len(body)
        figures[page] = {"ms_median": statistics.median(times), "ms_max": max(times), "bytes": size}
    put(a.results, a.name, "pages", figures)
    print(f"  pages: {json.dumps(figures)}", file=sys.stderr)


def cmd_apistats(a):
    stats = Api(a.kube).stats()
    put(a.results, a.name, a.key, stats)
    if stats:
        print(f"{a.name}: API server {stats.get('lists', 0)} LISTs ({stats.get('list pages', 0)} pages),"
              f" {stats.get('watches', 0)} watches, {stats.get('gones', 0)} 410s, {stats.get('not found', 0)} 404s",
              file=sys.stderr)


def cmd_wrk(a):
    text = open(a.file).read()
    m = re.search(r"RESULT (.*)", text)
    if not m:
        put(a.results, a.name, a.key, None)
        print(f"no wrk RESULT in {a.file}:\n{text}", file=sys.stderr)
        return
    kv = dict(x.split("=") for x in m[1].split())
    fig = {k: float(v) for k, v in kv.items()}
    if a.cpu_file:
        c0, c1 = (float(x) for x in open(a.cpu_file).read().split())
        fig["cpu_s"] = c1 - c0
    put(a.results, a.name, a.key, fig)


def cmd_cpu(a):
    print(f"{proc_stat_cpu(a.pid):.2f}")


# ---------------------------------------------------------------- report


def load(results):
    d = {}
    for line in open(results):
        r = json.loads(line)
        d.setdefault(r["run"], {})[r["key"]] = r["value"]
    return d


def mb(kb):
    return "-" if kb is None else f"{kb / 1024:,.0f} MB"


def secs(s):
    return "-" if s is None else (f"{s * 1000:,.0f} ms" if s < 10 else f"{s:,.1f} s")


def msf(v):
    return "-" if v is None else (f"{v:,.1f} ms" if v < 100 else f"{v:,.0f} ms")


def table(rows, header):
    w = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(header)).rstrip()]
    out += ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    return "\n".join(out)


def cmd_report(a):
    d = load(a.results)
    samples = a.samples
    scales = [s for s in ("small", "big") if f"tether-{s}" in d or f"tether-kube-{s}" in d]
    out = []
    # Side by side: load time, check time and memory.
    rows = []
    for s in scales:
        for proxy, label in (("tether", "tether"), ("tether-kube", "tether --kube"), ("haproxy", "haproxy"),
                             ("nginx", "nginx")):
            r = d.get(f"{proxy}-{s}")
            if not r:
                continue
            chk = r.get("check") or {}
            rows.append([f"{label} {s}", secs(chk.get("secs")), mb(chk.get("max_rss_kb")),
                         chk.get("status", "-"), secs(r.get("serve_s")),
                         msf(r.get("first_ms")) if proxy.startswith("tether") else "-",
                         mb(r.get("rest_rss_kb")), mb(r.get("rest_hwm_kb"))])
    out.append(table(rows, ["config", "check time", "check max RSS", "check", "start→serving",
                            "first compile (log)", "RSS at rest", "VmHWM at rest"]))
    out.append("# check = `tether check --tls DIR` / `haproxy -c -f` / `nginx -t`: wall time and max RSS (getrusage); start→serving ="
               " process start until the steady route answers 200 from a pod (polled every 10 ms);"
               " first compile = tether's `compiled in` (read + parse + compile + swap); RSS at rest ="
               " VmRSS (nginx: master + 1 worker) a few seconds after serving")
    if any(f"tether-kube-{s}" in d for s in scales):
        out.append("# tether --kube = the same objects served by the fake API server (bench/scale/apiserver.py); its"
                   " start→serving includes the LISTs (500 objects a page) and the first compile, which has no YAML to read"
                   " (kube-rs decoded the objects while listing)")
    # tether: changes and storm, from the files and from the API.
    runs = [(s, kube) for s in scales for kube in (False, True) if f"tether-{'kube-' if kube else ''}{s}" in d]
    for s, kube in runs:
        run = f"tether-{'kube-' if kube else ''}{s}"
        r, skey = d[run], run.removeprefix("tether-")  # skey: the RSS samples' key
        out.append("")
        out.append(f"tether {'--kube ' if kube else ''}{s}: {r.get('routes', 0):,} routes,"
                   f" {r.get('endpoints', 0):,} endpoints at start")
        rows = []
        for kind, label in (("ingress", "Ingress added"), ("slice-add", "EndpointSlice +1 endpoint"),
                            ("slice-del", "EndpointSlice -1 endpoint"), ("secret", "TLS Secret rotated")):
            c, v = r.get(f"{kind}_compile_ms"), r.get(f"{kind}_served_ms")
            if not c and not v:
                continue
            n = f"{v['n']}/{v['of']}" if v else "-"
            rows.append([label, msf(c and c["median"]), msf(c and c["max"]), msf(v and v["median"]),
                         msf(v and v["max"]), n])
        windows = [v for k, v in r.items() if k.startswith("window_") and k != "window_storm"]
        peak_changes = max((sampled_max(samples[skey], *w) or 0 for w in windows), default=0) if samples.get(skey) else 0
        if rows:
            out.append(table(rows, ["change (each applied through the API)" if kube else "change (each written as a file)",
                                    "compile med", "compile max", "served med", "served max", "served n"]))
            out.append("# compile = the `compiled in` of the reload the write triggered (read + parse + compile +"
                       " swap; older builds also counted the work after the swap); served = "
                       + ("watch event written and flushed to tether by the API server" if kube else "write")
                       + " -> visible from outside (new host answers 200 / endpoint"
                       " total on the admin /diagnostics / certificate in a TLS handshake), polled every 10 ms")
        st = r.get("storm")
        lines = []
        lines.append(f"RSS at rest {mb(r.get('rest_rss_kb'))}; sampled max during the changes {mb(peak_changes or None)}"
                     f" ({(peak_changes / r['rest_rss_kb'] - 1) * 100:+.0f}% of rest)" if peak_changes and r.get("rest_rss_kb")
                     else f"RSS at rest {mb(r.get('rest_rss_kb'))}")
        if st:
            w = r.get("window_storm")
            peak = sampled_max(samples[skey], *w) if w and samples.get(skey) else None
            base = r.get("wrk_base") or {}
            wrk = r.get("wrk_storm") or {}
            failed = int(wrk.get("sock_errors", 0) + wrk.get("non2xx", 0)) if wrk else None
            proxy_cpu = None
            if base.get("requests") and wrk.get("rps") and base.get("cpu_s") is not None and st.get("end_lag_ms"):
                # wrk runs a little longer than the storm (from before the first write to after
                # the last is visible): its rate over the storm's window, not its whole count.
                per_req = base["cpu_s"] / base["requests"]
                proxy_cpu = wrk["rps"] * (st["write_secs"] + st["end_lag_ms"] / 1000) * per_req
            lines.append(
                f"storm: {st['writes']:,} EndpointSlice {'updates through the API' if kube else 'writes'} in {st['write_secs']:.1f} s -> {st['reloads']} reloads"
                f" (compile median {msf(st['reload_ms_median'])}, max {msf(st['reload_ms_max'])});"
                f" last write visible {msf(st['end_lag_ms'])} after it; max lag seen {msf(st['max_lag_ms'])}"
                f" ({st['polls']} polls of the admin /diagnostics; slowest answer {msf(st['max_poll_ms'])})")
            cpu_note = ""
            if proxy_cpu is not None:
                cpu_note = (f", of which ~{proxy_cpu:.1f} s proxying wrk's requests (at the {base['cpu_s'] / base['requests'] * 1e6:.1f} us/req"
                            f" of a storm-free {base.get('secs', 10):.0f} s run) -> ~{st['cpu_s'] - proxy_cpu:.1f} s for reloads")
            lines.append(f"storm: tether CPU {st['cpu_s']:.1f} s from the first write until the last was visible"
                         f" ({st['cpu_s_writes']:.1f} s during the writes){cpu_note}")
            if wrk:
                lines.append(f"storm: wrk {int(wrk['requests']):,} requests ({wrk['rps']:,.0f}/s, p99 {wrk['p99_us'] / 1000:.1f} ms,"
                             f" max {wrk['max_us'] / 1000:.0f} ms), failed {failed} (socket errors"
                             f" {int(wrk['sock_errors'])}, non-2xx/3xx {int(wrk['non2xx'])});"
                             f" sampled max RSS during the storm {mb(peak)}")
        if r.get("end_hwm_kb"):
            lines.append(f"at the end: RSS {mb(r.get('end_rss_kb'))}, VmHWM {mb(r['end_hwm_kb'])}")
        pages = r.get("pages")
        if pages:
            shown = ", ".join(f"/{p} {pages[p]['ms_median']:.0f} ms (max {pages[p]['ms_max']:.0f}), {pages[p]['bytes'] / 1e6:.1f} MB"
                              for p in ("metrics", "status", "status.json", "routes") if p in pages)
            lines.append(f"admin pages after one request to each of the {pages['requests']:,} routes: {shown}")
        a0, a1 = r.get("api_start"), r.get("api_end")
        if a0 and a1:
            more = {k: a1.get(k, 0) - a0.get(k, 0) for k in ("lists", "list pages", "watches", "gones", "not found")}
            lines.append(f"API server: {a0.get('lists', 0)} LISTs ({a0.get('list pages', 0)} pages) and"
                         f" {a0.get('watches', 0)} watches until the first table; after it {more['lists']} LISTs"
                         f" ({more['list pages']} pages), {more['watches']} watches, {more['gones']} 410 Gone,"
                         f" {more['not found']} 404s (CRDs not installed, retried)")
        out.extend(lines)
    # Memory per endpoint and per route: RSS = a + b*routes + c*endpoints, from the small run,
    # the big run and big1 (the big routes with one endpoint each).
    sm, bg, b1 = (d.get(f"tether-{s}", {}) for s in ("small", "big", "big1"))
    key = "rest_rss_kb"
    if all(x.get(key) and x.get("routes") for x in (sm, bg)):
        out.append("")
        dr, de = bg["routes"] - sm["routes"], bg["endpoints"] - sm["endpoints"]
        drss = bg[key] - sm[key]
        out.append(f"memory: big - small = {drss / 1024:,.0f} MB for {dr:,} routes and {de:,} endpoints more:"
                   f" {drss / de:.2f} KiB per endpoint if all of it were endpoints, {drss / dr:.2f} KiB per route if all"
                   f" of it were routes")
        if b1.get(key) and b1.get("routes") == bg["routes"]:
            c = (bg[key] - b1[key]) / (bg["endpoints"] - b1["endpoints"])
            b = (b1[key] - sm[key] - c * (b1["endpoints"] - sm["endpoints"])) / (b1["routes"] - sm["routes"])
            out.append(f"memory: with big1 (the big routes over 1 endpoint per Service, RSS {mb(b1[key])}):"
                       f" {c:.2f} KiB per endpoint, {b:.2f} KiB per route (its Service's share included)"
                       f" [linear fit RSS = a + b*routes + c*endpoints]")
    text = "\n".join(out)
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serving")
    for k in ("name", "log", "url", "host", "results"):
        s.add_argument("--" + k, required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--t0", type=float, required=True)
    s.add_argument("--expect", default="pod-")
    s.add_argument("--timeout", type=float, default=300)
    s = sub.add_parser("timed")
    for k in ("name", "results", "out"):
        s.add_argument("--" + k, required=True)
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    s = sub.add_parser("first")
    for k in ("name", "log", "results"):
        s.add_argument("--" + k, required=True)
    s = sub.add_parser("mem")
    for k in ("name", "results"):
        s.add_argument("--" + k, required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--settle", type=float, default=0)
    s.add_argument("--prefix", default="rest_")
    s = sub.add_parser("sample")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--max-secs", type=float, default=3600)
    s = sub.add_parser("change")
    for k in ("name", "results", "kind", "log", "listen", "admin", "scale"):
        s.add_argument("--" + k, required=True)
    s.add_argument("--dir", help="the manifest directory the changes are written to")
    s.add_argument("--kube", help="or: the fake API server (http://HOST:PORT) the changes go through")
    s.add_argument("--tls")
    s.add_argument("--certs")
    s.add_argument("--reps", type=int, default=5)
    s.add_argument("--timeout", type=float, default=120)
    s = sub.add_parser("storm")
    for k in ("name", "results", "log", "admin", "scale"):
        s.add_argument("--" + k, required=True)
    s.add_argument("--dir")
    s.add_argument("--kube")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--rate", type=int, default=100)
    s.add_argument("--secs", type=int, default=30)
    s.add_argument("--services", type=int, default=100)
    s.add_argument("--timeout", type=float, default=300)
    s.add_argument("--ready", help="a file created once the writes are prepared (wrk starts then)")
    s = sub.add_parser("pages")
    for k in ("name", "results", "listen", "admin", "scale"):
        s.add_argument("--" + k, required=True)
    s = sub.add_parser("apistats")
    for k in ("name", "results", "kube", "key"):
        s.add_argument("--" + k, required=True)
    s = sub.add_parser("wrk")
    for k in ("name", "results", "key", "file"):
        s.add_argument("--" + k, required=True)
    s.add_argument("--cpu-file")
    s = sub.add_parser("cpu")
    s.add_argument("--pid", type=int, required=True)
    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--sample", action="append", default=[], help="SCALE=FILE of `sample`")
    s.add_argument("--out")
    a = p.parse_args()
    if a.cmd == "report":
        a.samples = dict(x.split("=", 1) for x in a.sample)
    if a.cmd == "timed" and a.command[:1] == ["--"]:
        a.command = a.command[1:]
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()

-- POST a 1 MiB body on every request (wrk builds the request once: no per-request Lua),
-- plus the same done() reporter as wrk-report.lua.
wrk.method = "POST"
wrk.body = string.rep("u", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f requests=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d sock_errors=%d non2xx=%d\n",
    summary.requests / secs, summary.requests,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end

-- wrk script: requests as given on the command line; done() prints one JSON line
-- (requests/s, p50/p95/p99 in ms, errors: non-2xx/3xx answers and socket errors).
-- crud.lua and search.lua load it for the same report.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"rps": %.1f, "p50": %.3f, "p95": %.3f, "p99": %.3f, "errors": %d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout))
end

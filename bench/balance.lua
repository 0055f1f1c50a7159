-- balance.lua - wrk script for bench/balance.sh: authenticated GET /v1/balance
-- with the API key from $VOXD_KEY; prints p99 and the non-2xx count at the end.
wrk.method = "GET"
wrk.headers["X-API-Key"] = os.getenv("VOXD_KEY")

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("bench balance: %.0f req/s, p50 %.3f ms, p99 %.3f ms, non-2xx %d, socket errors %d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end

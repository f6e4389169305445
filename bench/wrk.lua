-- wrk script for bench/dial_api.py. Environment: BENCH_METHOD (POST|GET),
-- BENCH_APP and BENCH_KEY (dialgw credentials, optional), BENCH_TO.
-- Prints one line "RESULT {json}" with the figures at the end.
local method = os.getenv("BENCH_METHOD") or "POST"
wrk.method = method
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_APP") then
  wrk.headers["X-App-ID"] = os.getenv("BENCH_APP")
  wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY")
end
if method == "POST" then
  wrk.body = '{"to": "' .. (os.getenv("BENCH_TO") or "0521000006") ..
             '", "from": "0721234567", "timeout_sec": 30, "metadata": {"order": 17}}'
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write +
                 summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.6f, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status, errors,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end

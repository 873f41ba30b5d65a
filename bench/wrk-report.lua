-- wrk script of the benchmark.
--
-- The request: the bytes of the file named by ALP_BENCH_REQUEST when set (bench/src/wrk.rs
-- writes the cell's request there, as bench/src/headers.rs builds it, so wrk sends exactly what
-- the bench's own generator sends: header set, `connection: close`). wrk computes its request
-- once, after `init`, by calling wrk.format(), so replacing wrk.format keeps the request static
-- (no Lua call per request). With `connection: close` Envoy's response says so and wrk
-- reconnects for every request.
init = function(args)
  local file = os.getenv("ALP_BENCH_REQUEST")
  if file then
    local f = assert(io.open(file, "rb"))
    local req = f:read("*a")
    f:close()
    wrk.format = function() return req end
  end
end

-- Prints one JSON line after the run with the percentiles wrk's --latency table lacks (p99.9).
-- Latencies are in microseconds, duration too.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end

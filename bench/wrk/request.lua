-- One request, over and over: $METHOD (default GET) $URL_PATH with $TOKEN (if set) and the
-- body $BODY (if set); counts responses by status across threads.
-- Prints: RESULT rps=… p50_ms=… p99_ms=… errors=… non2xx=… requests=… codes=200:n,…
-- `errors` is wrk's own count (socket errors, timeouts, status >= 400); `non2xx` counts
-- every status outside 200–299. The first non-2xx body of each thread is printed too.
wrk.method = os.getenv("METHOD") or "GET"
wrk.path = os.getenv("URL_PATH")
if os.getenv("TOKEN") then wrk.headers["X-Vault-Token"] = os.getenv("TOKEN") end
if os.getenv("BODY") then
  wrk.body = os.getenv("BODY")
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
  non2xx = 0
  first_error = ""
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body or "", 1, 300) end
  end
end

function done(summary, latency, requests)
  local errs = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  local total, all = 0, {}
  for _, t in ipairs(threads) do
    total = total + t:get("non2xx")
    for code, n in pairs(t:get("codes")) do all[code] = (all[code] or 0) + n end
    local e = t:get("first_error")
    if e ~= "" then io.write("FIRST_ERROR " .. e .. "\n") end
  end
  local parts = {}
  for code, n in pairs(all) do table.insert(parts, code .. ":" .. n) end
  table.sort(parts)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d requests=%d codes=%s\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errs, total, summary.requests, table.concat(parts, ",")))
end

-- A hostile client: GET requests with a token nobody issued, a new random one and a new
-- path each time (the worst case for the refusal counts: every token hash and path new).
-- Prints: RESULT requests=… codes=403:n,429:n,…
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local token = string.format("s.%08x%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local path = string.format("/v1/secret/data/guess-%d", math.random(1, 1000000))
  return wrk.format("GET", path, { ["X-Vault-Token"] = token })
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    for k, v in pairs(c) do all[k] = (all[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, k .. ":" .. v) end
  table.sort(parts)
  io.write(string.format("RESULT requests=%d codes=%s\n", summary.requests, table.concat(parts, ",")))
end

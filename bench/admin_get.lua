-- wrk script: GETs admin API pages of one kind in turn (BENCH_QUERY: entity | entity_id | time |
-- week | static), with varying filter values, and the bearer token if BENCH_TOKEN is set.
local kind = os.getenv("BENCH_QUERY") or "entity"
local token = os.getenv("BENCH_TOKEN")
local start_s = tonumber(os.getenv("BENCH_START_S") or "0")
local entities = { "deal", "person", "organization", "activity", "note", "lead", "product", "deal_product" }
local n = 0

function request()
  n = n + 1
  local path
  if kind == "entity" then
    path = "/api/v1/events?limit=50&entity=" .. entities[(n % #entities) + 1]
  elseif kind == "entity_id" then
    path = "/api/v1/events?limit=50&entity=deal&entity_id=" .. tostring((n * 7919) % 50000)
  elseif kind == "time" then
    -- a one-hour window somewhere in the 30 days the log covers
    local since = start_s + ((n * 104729) % (29 * 24)) * 3600
    path = "/api/v1/events?limit=50&since=" .. since .. "&until=" .. (since + 3600)
  elseif kind == "week" then
    -- a seven-day window: many more rows match than a page shows
    local since = start_s + ((n * 104729) % (22 * 24)) * 3600
    path = "/api/v1/events?limit=50&since=" .. since .. "&until=" .. (since + 7 * 86400)
  else
    path = "/app.css"
  end
  local headers = {}
  if token then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if status ~= 200 then error("status " .. status .. ": " .. body) end
end

-- wrk script: POSTs the sample bodies in turn, each with a unique meta.id (a UUID from the counter;
-- v1 templates: a unique meta.timestamp_micro),
-- with Basic auth. BENCH_DELAY_MS > 0 paces each connection (for the half-rate latency run).
local templates = dofile(os.getenv("BENCH_TEMPLATES"))
local auth = os.getenv("BENCH_AUTH")
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
end

local n = 0
function request()
  n = n + 1
  -- meta.id: a UUID as Pipedrive sends, unique per request (counter, thread, random bits)
  local id = string.format("%08x-%04x-4%03x-8%03x-%06x%06x", n, tid or 0, math.random(0, 4095), math.random(0, 4095),
                           math.random(0, 16777215), math.random(0, 16777215))
  local body = templates[(n % #templates) + 1]:gsub("@@ID@@", id)
  -- v1 bodies: a unique timestamp_micro (what tells v1 events apart)
  body = body:gsub("@@NUM@@", string.format("%d", 1700000000000000 + (tid or 0) * 1000000000000 + n * 1000 + math.random(999)))
  return wrk.format("POST", "/webhooks/pipedrive",
    { ["Content-Type"] = "application/json", ["Authorization"] = auth }, body)
end

if pace > 0 then
  function delay() return pace end
end

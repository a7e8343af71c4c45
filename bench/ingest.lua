-- wrk script: POST documented sink bodies (about 2 KB) with distinct run ids, 10% failures,
-- spread over a few job runs. Run ids are unique per wrk thread and per round (PREFIX env).
local counter = 0
thread_id = 0  -- a global: setup() sets it per wrk thread
local threads = {}
local prefix = os.getenv("PREFIX") or "r"
local token = os.getenv("TOKEN") or "t"
local padding = string.rep("x", 1500)

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local run_id = prefix .. "-" .. thread_id .. "-" .. counter
  local job_run = "jr-" .. (counter % 3)
  local result
  if counter % 10 == 0 then
    result = '{"status": "failed", "error": "script-execution-exception", "message": "TimeoutError: locator(\'.price\') not visible after 30000ms on https://shop.example/p/' .. counter .. '", "statusCode": 500}'
  else
    result = '{"status": "completed", "result": {"title": "Product ' .. counter .. '", "description": "' .. padding .. '"}, "statusCode": 200}'
  end
  local body = '{"apiInfo": {"name": "product-details", "parameters": {"url": "https://shop.example/p/' .. counter .. '"}, "result": ' .. result .. ', "runId": "' .. run_id .. '"}, "workspaceId": "ws-bench", "project": {"id": "proj-bench", "name": "bench"}, "projectJob": {"id": "nightly"}, "projectJobRun": {"id": "' .. job_run .. '"}}'
  return wrk.format("POST", "/api/sink", {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.2f p99_ms=%.2f requests=%d errors_status=%d errors_connect=%d errors_timeout=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.timeout))
end

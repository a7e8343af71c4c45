-- wrk script: POST documented sink bodies (about 2 KB) with distinct run ids, 10% failures,
-- spread over a few job runs. Run ids are unique per wrk thread and per round (PREFIX env).
local counter = 0
thread_id = 0  -- a global: setup() sets it per wrk thread
local threads = {}
local prefix = os.getenv("PREFIX") or "r"
local token = os.getenv("TOKEN") or "t"
local padding = string.rep("x", 1800)  -- bodies of about 2 KB

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

-- Counting responses per status: each wrk thread counts its own, done() adds them up.
ok, server_errors = 0, 0
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 elseif status >= 500 then server_errors = server_errors + 1 end
end

function done(summary, latency, requests)
  local total_ok, total_5xx = 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_5xx = total_5xx + thread:get("server_errors")
  end
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d ok=%d server_errors=%d errors_status=%d errors_connect=%d errors_timeout=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, total_ok, total_5xx, summary.errors.status, summary.errors.connect, summary.errors.timeout))
end

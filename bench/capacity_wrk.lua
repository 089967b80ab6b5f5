-- wrk's request mix for bench/capacity.py: the quiet run at the defaults (15-minute runs, an hourly
-- heartbeat): the alias every run, runs/update of a device's run every 4th run, so 1 request in 5 is
-- an update. Arguments after `--`: MODEL IDS RUN_IDS_FILE (the first IDS lines are the device runs).
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

local ids, alias, sent = {}, nil, 0
function init(args)
  local model, wanted, path = args[1], tonumber(args[2]), args[3]
  for line in io.lines(path) do
    if #ids >= wanted then break end
    ids[#ids + 1] = line
  end
  math.randomseed(tid * 7919 + os.time())
  alias = wrk.format("GET", "/api/2.0/mlflow/registered-models/alias?name=" .. model .. "&alias=production")
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  sent = sent + 1
  if sent % 5 ~= 0 then return alias end
  local body = string.format('{"run_id": "%s", "status": "FINISHED", "end_time": %d}',
    ids[math.random(#ids)], os.time() * 1000)
  return wrk.format("POST", "/api/2.0/mlflow/runs/update", nil, body)
end

-- One JSON line for bench/capacity_wrk.py (status: answers that were not 2xx/3xx).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end

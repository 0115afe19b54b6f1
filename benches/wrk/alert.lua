-- Alertmanager deliveries for wrk, one alert each.
-- Usage: wrk ... -s alert.lua URL -- TOKEN SERVICES MODE
--   SERVICES: one service, or several separated by commas; new alerts
--             go to each in turn
--   MODE new:    every delivery carries an alert never seen before
--   MODE repeat: every delivery is the same alert for the first service
--                (the dedup path)
-- Deliveries go to /webhooks/alertmanager with a bearer token.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local n = 0
local token, mode
local services = {}
function init(args)
  token = args[1] or "bench-token"
  for s in string.gmatch(args[2] or "svc-0", "[^,]+") do
    table.insert(services, s)
  end
  mode = args[3] or "new"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
end

local function body(service, instance)
  return string.format(
    '{"version":"4","status":"firing","receiver":"rollbot","groupKey":"{}:{service=\\"%s\\"}",' ..
    '"groupLabels":{"service":"%s"},"commonLabels":{},"commonAnnotations":{},' ..
    '"externalURL":"http://alertmanager.example","truncatedAlerts":0,"alerts":[{"status":"firing",' ..
    '"labels":{"alertname":"Storm","service":"%s","instance":"%s"},' ..
    '"annotations":{"summary":"storm"},"startsAt":"2026-11-28T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",' ..
    '"generatorURL":"http://prometheus.example/graph"}]}', service, service, service, instance)
end

local fixed
function request()
  if mode == "repeat" then
    if not fixed then
      fixed = wrk.format(nil, "/webhooks/alertmanager", nil, body(services[1], "repeat"))
    end
    return fixed
  end
  n = n + 1
  local service = services[(n % #services) + 1]
  return wrk.format(nil, "/webhooks/alertmanager", nil, body(service, string.format("t%d-%d", id, n)))
end

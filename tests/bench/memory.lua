-- wrk script for tests/bench/memory.sh: every request is a distinct ~10 KB Python-style
-- error envelope (fresh event id) over ISSUES issues, and every answer is counted by status,
-- so the script can compare acknowledged (200) events with what was stored.
--
--   KEY=<public key> PROJECT=<id> ISSUES=1000 wrk -s tests/bench/memory.lua http://127.0.0.1:PORT
--
-- Built once per thread at start (the bodies are strings with the id spliced in per
-- request), so the generator spends its CPU on sending, not on building JSON.

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
  table.insert(threads, thread)
end

local key = os.getenv("KEY") or "missing"
local project = os.getenv("PROJECT") or "1"
local issues = tonumber(os.getenv("ISSUES") or "1000")

local parts = {}
local counter = 0
-- Globals, so that done() can read them from each thread with thread:get.
ok, limited, other = 0, 0, 0
local path, headers

local function frames(issue, variant)
  local out = {}
  for i = 0, 11 do
    local in_app = i >= 7
    local module
    if in_app then module = "shop.views.checkout" .. issue else module = "django.core.handlers.h" .. i end
    local file = module:gsub("%.", "_")
    out[#out + 1] = string.format(
      '{"filename":"%s/%s.py","abs_path":"/srv/app/%s.py","module":"%s","function":"handle_step_%d_%d",'
      .. '"lineno":%d,"context_line":"    result = process_order(order_id, step=%d, issue=%d)",'
      .. '"pre_context":["    order = Order.objects.get(pk=order_id)","    if not order.is_paid:"],'
      .. '"post_context":["    return result"],"in_app":%s,'
      .. '"vars":{"order_id":"\'%d\'","step":"%d","self":"<CheckoutView object at 0x7f3a2c1e5d90>"}}',
      in_app and "shop/views" or "django/core/handlers", file, module:gsub("%.", "/"), module,
      i, in_app and issue or 0, 40 + i + variant % 3, i, issue, tostring(in_app), 1000 + variant, i)
  end
  return table.concat(out, ",")
end

local function breadcrumbs()
  local out = {}
  for i = 0, 9 do
    local http = i % 3 == 0
    out[#out + 1] = string.format(
      '{"timestamp":%d,"type":"%s","category":"%s","message":"SELECT * FROM orders WHERE id = %d AND status = \'open\'","level":"info","data":{"duration_ms":%d}}',
      1763800000 + i, http and "http" or "default", http and "httplib" or "query", 1000 + i, i * 3)
  end
  return table.concat(out, ",")
end

-- Three pieces around the two places the event id goes (envelope header, event).
local function envelope(issue)
  local variant = issue * 7 % 1000
  local tiers = { "free", "pro", "enterprise" }
  local event_head = '{"event_id":"'
  local event_tail = string.format(
    '","timestamp":%d,"platform":"python","level":"error","logger":"shop.checkout","server_name":"web-%d",'
    .. '"release":"shop@1.%d.0","environment":"%s","transaction":"/checkout/%d/",'
    .. '"exception":{"values":[{"type":"CheckoutError%d","value":"order %d could not be charged: card declined (attempt %d)",'
    .. '"module":"shop.errors","mechanism":{"type":"django","handled":false},"stacktrace":{"frames":[%s]}}]},'
    .. '"breadcrumbs":{"values":[%s]},"tags":{"customer_tier":"%s","region":"eu-west-1"},'
    .. '"user":{"id":"%d","email":"user%d@example.com","ip_address":"10.1.2.3"},'
    .. '"request":{"url":"https://shop.example.com/checkout/%d/","method":"POST","headers":{"User-Agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","Accept":"text/html","Host":"shop.example.com"},"env":{"REMOTE_ADDR":"10.1.2.3","SERVER_NAME":"shop"}},'
    .. '"contexts":{"runtime":{"name":"CPython","version":"3.12.1"},"os":{"name":"Linux","version":"6.1"},"trace":{"trace_id":"%032x","span_id":"b0e6f15b45c36b12"}},'
    .. '"sdk":{"name":"sentry.python.django","version":"2.75.0"},"modules":{"django":"5.1","sentry-sdk":"2.75.0","requests":"2.32.3"},'
    .. '"extra":{"cart_items":%d,"coupon":null,"padding":"%s"}}',
    os.time(), variant % 8, variant % 5, variant % 4 == 0 and "staging" or "production", issue,
    issue, 1000 + variant, variant % 7, frames(issue, variant), breadcrumbs(), tiers[variant % 3 + 1],
    variant % 500, variant % 500, issue, variant * 7919 + 1, variant % 9, string.rep("x", 1400))
  local length = #event_head + 32 + #event_tail
  return {
    '{"event_id":"',
    '","sdk":{"name":"sentry.python","version":"2.75.0"}}\n{"type":"event","length":' .. length .. '}\n' .. event_head,
    event_tail .. "\n",
  }
end

function init(args)
  for i = 1, issues do parts[i] = envelope(i - 1) end
  path = "/api/" .. project .. "/envelope/"
  headers = {
    ["Content-Type"] = "application/x-sentry-envelope",
    ["X-Sentry-Auth"] = "Sentry sentry_version=7, sentry_key=" .. key .. ", sentry_client=wrk/1",
  }
  math.randomseed(os.time() + tid * 7919)
  if tid == 1 then
    local p = parts[1]
    io.write(string.format("envelope: %d bytes\n", #p[1] + #p[2] + #p[3] + 64))
  end
end

function request()
  counter = counter + 1
  -- Unique across threads and runs: thread, a random run salt, the request's number.
  local id = string.format("%04x%012x%016x", tid, math.random(0, 2 ^ 40), counter)
  local p = parts[counter % issues + 1]
  return wrk.format("POST", path, headers, p[1] .. id .. p[2] .. id .. p[3])
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 429 then limited = limited + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local a, l, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok")
    l = l + t:get("limited")
    o = o + t:get("other")
  end
  io.write(string.format("STATUS_200 %d\nSTATUS_429 %d\nSTATUS_OTHER %d\n", a, l, o))
  io.write(string.format("SOCKET_ERRORS %d\n", summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
  io.write(string.format("TIMEOUTS %d\n", summary.errors.timeout))
  io.write(string.format("LATENCY_P50_MS %.1f\nLATENCY_P99_MS %.1f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end

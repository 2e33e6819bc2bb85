-- wrk script: POST Moustique-encoded forms to /POST.
--
--   wrk -t2 -c50 -d10s --latency -s bench/http/post.lua http://127.0.0.1:33334
--   wrk ... -s bench/http/post.lua http://HOST:PORT -- topics=300
--   POST_DELAY_MS=2 wrk -t1 -c4 ... -s bench/http/post.lua http://HOST:PORT
--
-- Each request publishes one value to /bench/sensor/N (N cycles over
-- `topics` topics, default 300), with a sensor-like message ("21.7") and
-- one of 16 poster names, every value encoded the Moustique way (Base64,
-- then ROT13, then percent-encoded). The request strings are built once
-- per thread in init(), so wrk spends its time sending, not encoding.
--
-- POST_DELAY_MS (environment; > 0) makes every connection wait that long
-- between requests: run.sh uses it for a rate-limited background load
-- under the PICKUP benchmark (rate <= connections * 1000 / delay). It is an
-- environment variable, not a script argument, because wrk decides whether
-- the script has a delay() when it loads it, before init() sees arguments,
-- and a delay() returning 0 would still cost a timer per request.

local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(script_dir .. "common.lua")

local counter = 0
function setup(thread)
   thread:set("thread_id", counter)
   counter = counter + 1
end

local requests = {}
local n = 0
local i = 0
local delay_ms = tonumber(os.getenv("POST_DELAY_MS") or "0") or 0

function init(args)
   local opts = common.parse_args(args, { topics = "300" })
   local topics = tonumber(opts.topics)
   local tid = thread_id or 0
   -- A few thousand distinct bodies per thread: every topic several times
   -- with different values, starting at a different offset per thread.
   -- Many topics (bench/store uses topics=100000) get each topic once per
   -- round instead, so init() stays small and quick.
   local count = math.max(topics, math.min(topics * 7, 50000))
   for k = 0, count - 1 do
      local t = (k + tid * 97) % topics
      local value = string.format("%.1f", 15 + ((k * 37 + tid * 11) % 200) / 10)
      local from = "sensor-node-" .. ((k + tid) % 16)
      local body = "topic=" .. common.enc("/bench/sensor/" .. t)
         .. "&message=" .. common.enc(value)
         .. "&from=" .. common.enc(from)
      requests[k + 1] = wrk.format("POST", "/POST", common.headers, body)
   end
   n = count
   i = tid % n
end

function request()
   i = i % n + 1
   return requests[i]
end

if delay_ms > 0 then
   function delay()
      return delay_ms
   end
end

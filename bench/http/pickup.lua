-- wrk script: POST client=<encoded name> to /PICKUP.
--
--   wrk -t2 -c50 -d10s --latency -s bench/http/pickup.lua http://127.0.0.1:33334 -- names=25
--
-- Script arguments (after --, all optional):
--   names=N     client names per wrk thread; give connections / threads so
--               every connection has its own name (default 25 = -t2 -c50)
--   filter=F    the filter each name subscribes to (default /bench/#, what
--               post.lua publishes to)
--   prefix=P    name prefix (default "pickup"; run.sh makes it unique per run)
--
-- wrk's Lua API does not say which connection a request() is for, and its
-- setup() cannot send HTTP requests, so registration happens in-band:
-- wrk calls request() once per connection as it connects, so the first N
-- requests of a thread are SUBSCRIBEs, one per name (= one per connection);
-- every later request is a PICKUP, cycling through the thread's N names.
-- As each connection asks for its next request when its previous response
-- arrives, the names in flight at any moment are (almost always) distinct,
-- i.e. one name per connection. Names are "<prefix>-<thread>-<k>", so
-- threads never share a name. The first few PICKUPs may race their name's
-- SUBSCRIBE on another connection and get the (200) resubscribe answer;
-- that is N requests out of hundreds of thousands.
--
-- Without a publisher every PICKUP returns the encoded empty object "{}"
-- (the empty-queue case). run.sh also runs it under a rate-limited
-- background post.lua load so pickups return messages; the average
-- response size (wrk's "MB read" / requests) shows how many they carried.

local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(script_dir .. "common.lua")

local counter = 0
function setup(thread)
   thread:set("thread_id", counter)
   counter = counter + 1
end

local subscribes = {}
local pickups = {}
local n = 0
local sent = 0
local i = 0
-- wrk 4.x calls request() once on thread 0's Lua state right after its
-- init(), to check the script, and throws the answer away: without this,
-- thread 0's first SUBSCRIBE would be lost and one name would never be
-- registered (every PICKUP for it answered "resubscribe").
local skip = 0

function init(args)
   local opts = common.parse_args(args, { names = "25", filter = "/bench/#", prefix = "pickup" })
   n = tonumber(opts.names)
   local tid = thread_id or 0
   if tid == 0 then skip = 1 end
   for k = 1, n do
      local name = opts.prefix .. "-" .. tid .. "-" .. k
      subscribes[k] = wrk.format("POST", "/SUBSCRIBE", common.headers,
         "topic=" .. common.enc(opts.filter) .. "&client=" .. common.enc(name))
      pickups[k] = wrk.format("POST", "/PICKUP", common.headers,
         "client=" .. common.enc(name))
   end
end

function request()
   if skip > 0 then
      skip = skip - 1
      return subscribes[1]
   end
   if sent < n then
      sent = sent + 1
      return subscribes[sent]
   end
   i = i % n + 1
   return pickups[i]
end

-- PICKUP_STATS=1 (environment) adds a response() that classifies every
-- answer by status and size and prints the counts at the end: how many
-- pickups were empty ("{}"), carried messages, or asked to resubscribe.
-- It costs wrk some CPU (wrk then buffers every body), so the measured
-- runs leave it off and run.sh does a separate short check run with it.
if os.getenv("PICKUP_STATS") == "1" then
   local threads = {}
   local setup_plain = setup
   function setup(thread)
      setup_plain(thread)
      threads[#threads + 1] = thread
   end

   local empty, full, resub, other, body_bytes = 0, 0, 0, 0, 0
   -- "{}" encoded: Base64 "e30=", ROT13 "r30=".
   function response(status, headers, body)
      if status ~= 200 then
         other = other + 1
      elseif sent >= n then
         if body == "r30=" then
            empty = empty + 1
         elseif #body > 0 then
            -- "/server/action/resubscribe" as the first key, encoded.
            if body:sub(1, 24) == common.rot13(common.base64('{"/server/action/resubsc'):sub(1, 24)) then
               resub = resub + 1
            else
               full = full + 1
               body_bytes = body_bytes + #body
            end
         end
      end
      stats_empty, stats_full, stats_resub, stats_other, stats_bytes = empty, full, resub, other, body_bytes
   end

   function done(summary, latency, requests)
      local e, f, r, o, b = 0, 0, 0, 0, 0
      for _, t in ipairs(threads) do
         e = e + (t:get("stats_empty") or 0)
         f = f + (t:get("stats_full") or 0)
         r = r + (t:get("stats_resub") or 0)
         o = o + (t:get("stats_other") or 0)
         b = b + (t:get("stats_bytes") or 0)
      end
      io.write(string.format(
         "pickup stats: empty %d, with messages %d (avg encoded body %.0f bytes), resubscribe %d, non-200 %d\n",
         e, f, f > 0 and b / f or 0, r, o))
   end
end

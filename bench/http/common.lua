-- Shared helpers for the tinymq HTTP benchmarks (loaded by post.lua and
-- pickup.lua with dofile; wrk runs each script in its own Lua state per
-- thread, so this file is read once per thread).

local M = {}

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard Base64 with padding, written with arithmetic only (wrk embeds
-- LuaJIT / Lua 5.1, which has no bit operators in the language).
function M.base64(s)
   local out = {}
   for i = 1, #s, 3 do
      local a, b, c = s:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(n / 262144) % 64
      local c2 = math.floor(n / 4096) % 64
      local c3 = math.floor(n / 64) % 64
      local c4 = n % 64
      out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1)
      out[#out + 1] = alphabet:sub(c2 + 1, c2 + 1)
      out[#out + 1] = b and alphabet:sub(c3 + 1, c3 + 1) or "="
      out[#out + 1] = c and alphabet:sub(c4 + 1, c4 + 1) or "="
   end
   return table.concat(out)
end

-- ROT13 of the ASCII letters; everything else stays.
function M.rot13(s)
   return (s:gsub("%a", function(ch)
      local base = ch:match("%l") and 97 or 65
      return string.char((ch:byte() - base + 13) % 26 + base)
   end))
end

-- Percent-encoding for an application/x-www-form-urlencoded value.
function M.urlencode(s)
   return (s:gsub("[^%w%-%._~]", function(ch)
      return string.format("%%%02X", ch:byte())
   end))
end

-- The Moustique parameter encoding: Base64 of the UTF-8 text, then ROT13
-- of the Base64 text; then percent-encoded for the form body.
function M.enc(text)
   return M.urlencode(M.rot13(M.base64(text)))
end

-- Parses wrk's script arguments ("key=value" words) into a table.
function M.parse_args(args, defaults)
   local opts = {}
   for k, v in pairs(defaults) do opts[k] = v end
   for _, a in ipairs(args or {}) do
      local k, v = a:match("^([%w_]+)=(.*)$")
      if k then opts[k] = v end
   end
   return opts
end

M.headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

return M

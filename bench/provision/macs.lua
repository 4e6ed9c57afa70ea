-- wrk script: each request asks for the iPXE script of another of the
-- NODES nodes (MACs 52-54-00-XX-XX-XX counting from 1), as iPXE writes them.
local n = tonumber(os.getenv("NODES") or "10000")
local i = 0
request = function()
  i = i % n + 1
  return wrk.format("GET", string.format("/ipxe/52-54-00-%02x-%02x-%02x", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256))
end

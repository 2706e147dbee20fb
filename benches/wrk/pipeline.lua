-- HTTP/1.1 pipelining for wrk: each write carries DEPTH GET requests back to back.
--
-- The standard wrk pipeline.lua approach: build the concatenated requests once in `init` and
-- return the same string from `request`. wrk counts responses, so its requests/s is the number
-- of pipelined requests answered, not the number of writes.
--
-- Parameters (script args after `--` win over the environment):
--   wrk ... -s benches/wrk/pipeline.lua http://127.0.0.1:8080 -- [DEPTH] [PATH]
--   DEPTH=16 PIPELINE_PATH=/ wrk ... -s benches/wrk/pipeline.lua http://127.0.0.1:8080
-- Defaults: DEPTH 16, PATH "/".

local req

init = function(args)
   local depth = tonumber(args[1] or os.getenv("DEPTH") or "16")
   local path = args[2] or os.getenv("PIPELINE_PATH") or "/"
   if depth == nil or depth < 1 then
      error("pipeline.lua: DEPTH must be a positive integer")
   end
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format("GET", path)
   end
   req = table.concat(r)
end

request = function()
   return req
end

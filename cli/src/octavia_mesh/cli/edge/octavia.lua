-- Octavia Mesh REST edge: the glue Envoy's gRPC-JSON transcoder needs to speak Octavia's v2 REST.
--
-- Request: strip Octavia's optional ".json" suffix; move the whole query string into the single
-- `query` parameter every edge RPC declares (the API service applies Octavia's filter, sort and
-- pagination rules to it); pass the REST path on as x-octavia-path for pagination links (and, with the REST
-- method in x-octavia-method, for the access logs).
-- Response: take the REST status from the service's x-http-code, drop gRPC headers, and turn a
-- gRPC error into Octavia's fault body {"faultcode", "faultstring", "debuginfo"} (a 401 into
-- keystonemiddleware's {"error": {...}}, as Octavia's clients get it).

local function percent_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function json_string_after(body, key)
  local s, e = body:find('"' .. key .. '"%s*:%s*"')
  if not s then return nil end
  local i, n = e + 1, #body
  while i <= n do
    local c = body:sub(i, i)
    if c == "\\" then i = i + 2 elseif c == '"' then return body:sub(e, i) else i = i + 1 end
  end
  return nil
end

local ALLOWED = {GET = true, HEAD = true, POST = true, PUT = true, DELETE = true, OPTIONS = true}

-- Request limits (docs/architecture.md, "Request limits"; the Python side renders the same numbers into the
-- buffer filter). Octavia's oslo.middleware answers 413 above max_request_body_size (114688 bytes).
local MAX_BODY_BYTES = 114688
local MAX_PATH_BYTES = 1024
local MAX_QUERY_BYTES = 32768

local TITLES = {["400"] = "Bad Request", ["413"] = "Request Entity Too Large"}

-- The secret store (/v1, /key-manager) answers in Barbican's shape, which Lua writes itself (Envoy keeps the
-- body of a Lua reply on those paths). Elsewhere the body is the bare message, and Envoy's local_reply_config
-- wraps it in Octavia's fault. Messages are constants without quotes or backslashes.
local function fault(handle, status, message, path)
  if path:find("^/v1") or path:find("^/key%-manager") then
    handle:respond({[":status"] = status, ["content-type"] = "application/json"},
                   '{"code": ' .. status .. ', "title": "' .. TITLES[status] .. '", "description": "' ..
                   message .. '"}')
  else
    handle:respond({[":status"] = status, ["content-type"] = "text/plain"}, message)
  end
end

local function reply(handle, status, body)
  handle:respond({[":status"] = status, ["content-type"] = "application/json"}, body)
end

function envoy_on_request(handle)
  local h = handle:headers()
  local method = h:get(":method")
  if not ALLOWED[method] then
    reply(handle, "405", '{"code": 405, "title": "Method Not Allowed", "description": ""}')
    return
  end
  -- Octavia only reads JSON bodies: anything else is 415, as its API answers.
  local length = tonumber(h:get("content-length") or "0") or 0
  if length > MAX_BODY_BYTES then
    -- Answered before a byte of the body is read (a chunked body is cut off by the buffer filter instead).
    fault(handle, "413", "Request is too large. Larger than max_request_body_size (" .. MAX_BODY_BYTES .. ").",
          h:get(":path"))
    return
  end
  if (method == "POST" or method == "PUT") and length > 0 then
    local ct = h:get("content-type") or ""
    if not ct:lower():find("^application/json") then
      local shown = ct:gsub('[%c"\\]', "")
      reply(handle, "415", '{"faultcode": "Client", "faultstring": "Unknown mimetype: ' .. shown ..
                           '", "debuginfo": null}')
      return
    end
  end
  local raw = h:get(":path")
  local path, query = raw:match("^([^?]*)%??(.*)$")
  -- No id or path is this long; the limits keep the gRPC metadata the API receives small (an overlong
  -- path once reached it three times over and came back as a 429 listing internal header names).
  if #path > MAX_PATH_BYTES then
    fault(handle, "400", "Request path is longer than " .. MAX_PATH_BYTES .. " bytes.", path)
    return
  end
  if #query > MAX_QUERY_BYTES then
    fault(handle, "400", "Request query string is longer than " .. MAX_QUERY_BYTES .. " bytes.", path)
    return
  end
  local stripped = path:match("^(.+)%.json$")
  if stripped then path = stripped end
  h:replace("x-octavia-path", path)
  -- The transcoder makes every request a POST: the REST method goes on for the access logs (Envoy's and the API's).
  h:replace("x-octavia-method", method)
  if query ~= "" then
    h:replace(":path", path .. "?query=" .. percent_encode(query))
  else
    h:replace(":path", path)
  end
end

function envoy_on_response(handle)
  local h = handle:headers()
  h:remove("grpc-status")
  h:remove("grpc-message")
  h:remove("grpc-accept-encoding")
  h:remove("grpc-encoding")
  local code = h:get("x-http-code")
  if code then
    h:remove("x-http-code")
    h:replace(":status", code)
  end
  local status = tonumber(h:get(":status")) or 200
  if status == 204 then
    h:remove("content-type")
    handle:body():setBytes("")
    return
  end
  local ct = h:get("content-type") or ""
  if status >= 400 and ct:sub(1, 16) == "application/json" then
    local body = handle:body()
    local raw = body:getBytes(0, body:length())
    if raw:find('"faultcode"', 1, true) or raw:find('"title"', 1, true) then return end
    if status == 401 then
      -- Refused by the authenticator (keystone mode: WWW-Authenticate names Keystone): keystonemiddleware's body.
      body:setBytes('{"error": {"code": 401, "title": "Unauthorized", "message": ' ..
                    '"The request you have made requires authentication."}}')
      return
    end
    local msg = json_string_after(raw, "message") or '""'
    body:setBytes('{"faultcode": "' .. (status >= 500 and "Server" or "Client") ..
                  '", "faultstring": ' .. msg .. ', "debuginfo": null}')
  end
end

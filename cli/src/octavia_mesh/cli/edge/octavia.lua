-- Octavia Mesh REST edge: the glue Envoy's gRPC-JSON transcoder needs to speak Octavia's v2 REST.
--
-- Request: strip Octavia's optional ".json" suffix; move the whole query string into the single
-- `query` parameter every edge RPC declares (the API service applies Octavia's filter, sort and
-- pagination rules to it); pass the REST path on as x-octavia-path for pagination links.
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
  local stripped = path:match("^(.+)%.json$")
  if stripped then path = stripped end
  h:replace("x-octavia-path", path)
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

-- wrk script: a CRUD mix over generated data (PATIENTS patients named pat-0...; BASE_PATH
-- the server's FHIR base path).
-- Per 20 requests of a connection's thread: 10 reads of a patient, 5 creates of an
-- Observation (PUT at a new id), 4 updates of one created before, 1 delete of one.
-- The report is stats.lua's.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n, made = 0, 0
local patients = tonumber(os.getenv("PATIENTS") or "100")
local prefix = os.getenv("BASE_PATH") or "/fhir"
local body = [[{"resourceType":"Observation","id":"%s","status":"final",
"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Пульс"},
"subject":{"reference":"Patient/pat-%d"},"effectiveDateTime":"2025-01-02T10:00:00+03:00",
"valueQuantity":{"value":%d,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}]]

local function headers()
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  h["Content-Type"] = "application/fhir+json"
  h["Prefer"] = "return=minimal"
  return h
end

local function observation(id)
  return string.format(body, id, math.random(0, patients - 1), math.random(50, 120))
end

function request()
  n = n + 1
  local k = n % 20
  if k < 10 then
    return wrk.format("GET", prefix .. "/Patient/pat-" .. math.random(0, patients - 1), nil, nil)
  elseif k < 15 or made == 0 then
    made = made + 1
    local id = "crud-" .. tid .. "-" .. made
    return wrk.format("PUT", prefix .. "/Observation/" .. id, headers(), observation(id))
  elseif k < 19 then
    local id = "crud-" .. tid .. "-" .. math.random(1, made)
    return wrk.format("PUT", prefix .. "/Observation/" .. id, headers(), observation(id))
  else
    return wrk.format("DELETE", prefix .. "/Observation/crud-" .. tid .. "-" .. math.random(1, made), nil, nil)
  end
end

dofile(os.getenv("BENCH_DIR") .. "/stats.lua")

-- A clinician's requests (bench/reach.sh): args = token, FHIR base. Cycles through a read
-- of a patient in care, a search of their observations and a read of another record.
local count, token, paths = 0, "", {}

function init(args)
  token = args[1]
  local base = args[2]
  paths = { base .. "/Patient/pat-0", base .. "/Observation?subject=Patient/pat-0&_count=10", base .. "/Patient/pat-7" }
end

function request()
  count = count + 1
  return wrk.format("GET", paths[(count % #paths) + 1], { Authorization = "Bearer " .. token })
end

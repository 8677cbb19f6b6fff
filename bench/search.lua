-- wrk script: a clinician search mix over generated data (PATIENTS patients named
-- pat-0...; BASE_PATH the server's FHIR base path): each request one of the queries below, for a random patient where the query
-- names one. The report is stats.lua's.
local patients = tonumber(os.getenv("PATIENTS") or "100")
local prefix = os.getenv("BASE_PATH") or "/fhir"
local queries = {
  "/Patient?family=%%D0%%98%%D0%%B2%%D0%%B0%%D0%%BD%%D0%%BE%%D0%%B2&_count=20", -- family=Иванов (prefix)
  "/Patient?gender=female&birthdate=ge1980-01-01&birthdate=lt1990-01-01&_count=20",
  "/Observation?subject=Patient/pat-%d&code=http://loinc.org%%7C8867-4",
  "/Observation?subject=Patient/pat-%d&date=ge2023-01-01&_sort=-date&_count=20",
  "/Condition?subject=Patient/pat-%d",
  "/Condition?code=http://hl7.org/fhir/sid/icd-10%%7CI10&_count=20",
  "/Encounter?subject=Patient/pat-%d&date=ge2020-01-01&_count=20",
  "/MedicationRequest?subject=Patient/pat-%d&status=active",
  "/Immunization?patient=Patient/pat-%d",
  "/Observation?code=http://loinc.org%%7C8480-6&value-quantity=gt140&_count=20",
}

function request()
  local q = queries[math.random(1, #queries)]
  return wrk.format("GET", prefix .. string.format(q, math.random(0, patients - 1)), nil, nil)
end

dofile(os.getenv("BENCH_DIR") .. "/stats.lua")

#!/usr/bin/env python3
"""Clinician-style search latencies against a running Medkarta loaded with `medkarta generate`
data. Prints one row per query: matches (total), page size returned, p50 / p95 / max in ms
over sequential requests (one client, so the figures are latencies, not throughput).

Usage: bench/search.py BASE_URL REPETITIONS ACCESS_TOKEN
"""
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request

base = sys.argv[1].rstrip("/")
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
token = sys.argv[3] if len(sys.argv) > 3 else ""


def get(path):
    path = urllib.parse.quote(path, safe="/?=&:,_-.")
    headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {token}"}
    req = urllib.request.Request(f"{base}/{path}", headers=headers)
    with urllib.request.urlopen(req) as r:
        return json.load(r)


# Pick real values from the data so every query finds something.
pat = get("Patient?_count=1&_sort=_id&_id=pat-7")["entry"][0]["resource"]
family = pat["name"][0]["family"]
snils = next(i["value"] for i in pat["identifier"] if i["system"].endswith("snils"))
birth = pat["birthDate"]
pid = pat["id"]

QUERIES = [
    ("patient by family name (prefix, Cyrillic)", f"Patient?family={family[:5]}"),
    ("patient by SNILS", f"Patient?identifier=http://medkarta.ru/identifier/snils|{snils}"),
    ("patient by name + birthdate", f"Patient?name={family}&birthdate={birth}"),
    ("patients born in 1950s, sorted by name, 20/page", "Patient?birthdate=ge1950-01-01&birthdate=lt1960-01-01&_sort=family,given&_count=20"),
    ("a patient's observations by LOINC code", f"Observation?subject=Patient/{pid}&code=http://loinc.org|8867-4"),
    ("a patient's observations in a date range, newest first", f"Observation?subject=Patient/{pid}&date=ge2023-01-01&date=lt2025-01-01&_sort=-date"),
    ("a patient's lab results, with reports included", f"Observation?subject=Patient/{pid}&category=laboratory&_revinclude=DiagnosticReport:result"),
    ("conditions by ICD-10 code (E11, all patients)", "Condition?code=http://hl7.org/fhir/sid/icd-10|E11&_count=50"),
    ("count conditions by ICD-10 I10", "Condition?code=http://hl7.org/fhir/sid/icd-10|I10&_summary=count"),
    ("encounters of an organisation in a month", "Encounter?service-provider=Organization/org-0&date=2024-03&_count=50"),
    ("encounters with patient included", "Encounter?service-provider=Organization/org-1&date=2025-02&_include=Encounter:subject&_count=50"),
    ("chained: observations of patients named X", f"Observation?subject:Patient.family={family}&code=http://loinc.org|8867-4"),
    ("reverse chain: patients with E11 condition", "Patient?_has:Condition:subject:code=http://hl7.org/fhir/sid/icd-10|E11&_count=50"),
    ("composite: systolic BP > 160", "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt160&_count=50"),
    ("full text: 'гипертензия'", "Condition?_content=гипертензия&_count=50"),
    ("compartment: everything Observation for a patient", f"Patient/{pid}/Observation?_count=100"),
    ("count all observations", "Observation?_summary=count"),
]

rows = []
for name, q in QUERIES:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        b = get(q)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    rows.append((name, b.get("total", "-"), len(b.get("entry", [])), statistics.median(times), p95, times[-1]))

w = max(len(r[0]) for r in rows)
print(f"{'query':<{w}} | {'total':>8} | {'entries':>7} | {'p50 ms':>7} | {'p95 ms':>7} | {'max ms':>7}")
print("-" * (w + 52))
for r in rows:
    print(f"{r[0]:<{w}} | {r[1]:>8} | {r[2]:>7} | {r[3]:>7.1f} | {r[4]:>7.1f} | {r[5]:>7.1f}")

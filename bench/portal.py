#!/usr/bin/env python3
"""Portal page times for a patient with a large record: loads PATIENT's record of about
2,000 resources (laboratory results over years, vitals, visits, diagnoses, prescriptions,
vaccinations, reports) through the FHIR API, signs in to the portal as that patient and
times the summary, results, health (charts of 370 vitals and the glucose results) and
inbox pages (p50/p95/max over N requests after a warm-up).

  bench/portal.py FHIR-BASE TOKEN USER PASSWORD [N]"""
import json, statistics, sys, time, urllib.request, importlib.util, os

base, token, user, password = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 200
root = base[: -len("/fhir")]
here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("ps", os.path.join(here, "..", "scripts", "portal-signin.py"))
ps = importlib.util.module_from_spec(spec); spec.loader.exec_module(ps)

PID = "p-bench"
LOINC = "http://loinc.org"
TESTS = [("2345-7", "Глюкоза", "ммоль/л", 3.9, 6.1), ("718-7", "Гемоглобин", "г/л", 120, 140),
         ("2093-3", "Холестерин общий", "ммоль/л", 3.0, 5.2), ("6690-2", "Лейкоциты", "10*9/л", 4.0, 9.0),
         ("4548-4", "Гликированный гемоглобин", "%", 4.0, 6.0), ("2160-0", "Креатинин", "мкмоль/л", 53, 97)]

def ref(t, i): return {"reference": f"{t}/{i}"}

def record():
    out = [{"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1960-03-01",
            "name": [{"use": "official", "family": "Нагрузочная", "given": ["Анна", "Ивановна"]}]}]
    for v in range(185):
        day = f"{2010 + v // 12}-{v % 12 + 1:02d}-15"
        enc = f"e-{v}"
        out.append({"resourceType": "Encounter", "id": enc, "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": ref("Patient", PID), "period": {"start": f"{day}T09:00:00+03:00", "end": f"{day}T09:20:00+03:00"}})
        for k, (code, name, unit, lo, hi) in enumerate(TESTS):
            value = round(lo + (hi - lo) * ((v * 7 + k * 3) % 13) / 10, 1)
            out.append({"resourceType": "Observation", "id": f"o-{v}-{k}", "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                        "code": {"coding": [{"system": LOINC, "code": code}], "text": name},
                        "subject": ref("Patient", PID), "encounter": ref("Encounter", enc),
                        "effectiveDateTime": f"{day}T09:10:00+03:00",
                        "valueQuantity": {"value": value, "unit": unit},
                        "referenceRange": [{"low": {"value": lo}, "high": {"value": hi}}]})
        for k, (code, name) in enumerate([("8867-4", "Пульс"), ("29463-7", "Масса тела")]):
            out.append({"resourceType": "Observation", "id": f"v-{v}-{k}", "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                        "code": {"coding": [{"system": LOINC, "code": code}], "text": name},
                        "subject": ref("Patient", PID), "effectiveDateTime": f"{day}T09:05:00+03:00",
                        "valueQuantity": {"value": 70 + v % 9, "unit": "1/min" if k == 0 else "кг"}})
        out.append({"resourceType": "DiagnosticReport", "id": f"r-{v}", "status": "final",
                    "code": {"text": "Биохимический анализ крови"}, "subject": ref("Patient", PID),
                    "effectiveDateTime": f"{day}T09:10:00+03:00", "conclusion": "Без особенностей",
                    "result": [ref("Observation", f"o-{v}-{k}") for k in range(len(TESTS))]})
    for c in range(60):
        out.append({"resourceType": "Condition", "id": f"c-{c}", "subject": ref("Patient", PID),
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                              "code": "problem-list-item" if c < 6 else "encounter-diagnosis"}]}],
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "code": {"text": f"Диагноз {c}"}, "encounter": ref("Encounter", f"e-{c}"), "onsetDateTime": "2012-01-01"})
    for m in range(60):
        out.append({"resourceType": "MedicationRequest", "id": f"m-{m}", "status": "active" if m < 5 else "completed",
                    "intent": "order", "subject": ref("Patient", PID), "authoredOn": f"{2010 + m // 6}-01-10",
                    "medicationCodeableConcept": {"text": f"Препарат {m}"}, "reasonReference": [ref("Condition", f"c-{m % 6}")],
                    "dosageInstruction": [{"text": "По 1 таблетке утром"}]})
    for i in range(30):
        out.append({"resourceType": "Immunization", "id": f"i-{i}", "status": "completed", "patient": ref("Patient", PID),
                    "vaccineCode": {"text": "Грипп"}, "occurrenceDateTime": f"{1995 + i}-10-01"})
    return out

def post(bundle):
    req = urllib.request.Request(base, json.dumps(bundle).encode(), {"Content-Type": "application/fhir+json",
                                                                      "Authorization": "Bearer " + token, "Prefer": "return=minimal"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200

resources = record()
for i in range(0, len(resources), 500):
    post({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources[i:i + 500]]})
print(f"== loaded {len(resources)} resources of Patient/{PID}")
call, _, _ = ps.session(root, user, password)
for page in ["summary", "results", "health", "inbox"]:
    path = "/portal/inbox" if page == "inbox" else f"/portal/r/{PID}/{page}"
    for _ in range(10):
        assert call(path)[0] == 200
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _, body = call(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200
    times.sort()
    print(f"== {page}: {len(body)} bytes, p50 {statistics.median(times):.1f} ms, "
          f"p95 {times[int(len(times) * 0.95) - 1]:.1f} ms, max {times[-1]:.1f} ms ({n} requests)")

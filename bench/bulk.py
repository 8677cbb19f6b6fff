#!/usr/bin/env python3
"""HTTP figures for bulk work against a running Medkarta loaded with generated data:
Patient/$everything latency, the accurate _total of all observations, and $export
throughput (kick-off to manifest, then downloading every file).
Usage: bench/bulk.py BASE_URL ACCESS_TOKEN [repetitions]"""
import json
import statistics
import sys
import time
import urllib.request

base, token = sys.argv[1].rstrip("/"), sys.argv[2]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 20


def call(path, headers=None, method="GET"):
    h = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json", **(headers or {})}
    req = urllib.request.Request(path if path.startswith("http") else f"{base}/{path}", headers=h, method=method)
    with urllib.request.urlopen(req) as r:
        return r.status, r.headers, r.read()


def timed(path):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        _, _, body = call(path)
        out.append((time.perf_counter() - t) * 1000)
    return out, body


def row(name, ms, extra=""):
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"| {name} | {statistics.median(ms):.1f} | {p95:.1f} | {extra} |")


print("| request | p50 ms | p95 ms | |")
print("| --- | --- | --- | --- |")
ms, body = timed("Patient/pat-7/$everything?_count=1000")
row("Patient/pat-7/$everything", ms, f"{len(json.loads(body).get('entry', []))} resources")
ms, body = timed("Observation?_summary=count")
row("Observation?_summary=count", ms, f"total {json.loads(body)['total']}")

t = time.perf_counter()
_, headers, _ = call("$export", {"Prefer": "respond-async"})
status = headers.get("Content-Location")
while True:
    code, _, body = call(status)
    if code == 200:
        break
    time.sleep(0.2)
manifest = json.loads(body)
written = time.perf_counter() - t
count = sum(o["count"] for o in manifest["output"])
size = 0
for o in manifest["output"]:
    size += len(call(o["url"])[2])
total = time.perf_counter() - t
print(f"| $export (system) | {written * 1000:.0f} to manifest | {total * 1000:.0f} with downloads | "
      f"{count} resources, {size / 1e6:.1f} MB, {count / total:.0f} resources/s |")

#!/usr/bin/env python3
"""Ingest benchmark: `medkarta import` of real and generated data into SQLite and
PostgreSQL, beside the raw-insert limit of each database for the same resources, in one
run. Each import goes into a fresh store; the figure is the median of --runs runs (the
machine is shared: the ratio to the raw limit, taken in the same run, is the figure to
compare across days). Also the import's peak resident memory.

Run it through bench/ingest.sh, which builds and finds the data.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawlimit  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--medkarta", required=True, help="the medkarta release binary")
p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
p.add_argument("--runs", type=int, default=3)
p.add_argument("sources", nargs="+", help="NAME=DIR: a directory of bundles or NDJSON files")
args = p.parse_args()


def say(msg):
    print(f"-- {msg}", flush=True)


def resources(path):
    """(type, id, JSON line) of every resource in a directory of bundles or NDJSON."""
    out = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        with open(full, encoding="utf-8") as f:
            if name.endswith(".ndjson"):
                items = [json.loads(x) for x in f if x.strip()]
            elif name.endswith(".json"):
                doc = json.load(f)
                items = [e["resource"] for e in doc.get("entry", []) if "resource" in e] \
                    if doc.get("resourceType") == "Bundle" else [doc]
            else:
                continue
        for r in items:
            out.append((r["resourceType"], r.get("id") or str(len(out)), json.dumps(r, ensure_ascii=False)))
    # a bundle may repeat a resource (Synthea repeats practitioners): the limit inserts each once
    return list({(t, i): (t, i, b) for t, i, b in out}.values())


def import_once(store_args, path):
    """Resources per second of one `medkarta import`, and its peak resident memory (MB)."""
    proc = subprocess.Popen([args.medkarta, "import", *store_args, path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    line = next((x for x in err.splitlines() if x.startswith("Imported")), None)
    if os.waitstatus_to_exitcode(status) != 0 or line is None:
        raise RuntimeError(f"import failed: {err[-2000:]}")
    return float(line.split("(")[-1].split()[0]), usage.ru_maxrss / 1024


def import_runs(backend, path):
    """Median rate of --runs imports into fresh stores, every run's rate, the largest peak RSS."""
    rates, peak = [], 0.0
    for _ in range(args.runs):
        d = tempfile.mkdtemp()
        store = ["--data", d]
        if backend == "PostgreSQL":
            store = ["--database", rawlimit.pg_db(args.pg, "medkarta_bench_ingest"), "--data", d]
        rate, rss = import_once(store, path)
        rates.append(rate)
        peak = max(peak, rss)
        subprocess.run(["rm", "-rf", d], check=True)
    rawlimit.drop_db(args.pg, "medkarta_bench_ingest")
    return statistics.median(rates), rates, peak


rows = []
for source in args.sources:
    name, path = source.split("=", 1)
    rs = resources(path)
    say(f"{name}: {len(rs)} resources in {path}")
    raw = {"SQLite": statistics.median(rawlimit.raw_sqlite(rs) for _ in range(args.runs)),
           "PostgreSQL": statistics.median(rawlimit.raw_postgres(args.pg, rs) for _ in range(args.runs))}
    for backend in ("SQLite", "PostgreSQL"):
        say(f"{name}: medkarta import into {backend}, {args.runs} runs")
        median, all_rates, peak = import_runs(backend, path)
        rows.append((name, len(rs), backend, median, all_rates, raw[backend], peak))

print()
print(f"{args.runs} runs each; {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
print()
print("| data | resources | backend | `medkarta import` (resources/s, median) | runs | raw insert limit | raw / import | peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for name, n, backend, median, all_rates, limit, peak in rows:
    runs = " · ".join(f"{r:,.0f}" for r in all_rates)
    print(f"| {name} | {n:,} | {backend} | {median:,.0f} | {runs} | {limit:,.0f} | {limit / median:.1f}x | {peak:.0f} MB |")

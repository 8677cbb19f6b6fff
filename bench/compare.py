#!/usr/bin/env python3
"""The side-by-side benchmark: Medkarta on SQLite and on PostgreSQL, helios-hfs (a Rust
FHIR server) on SQLite, and the raw-insert limit of each database, on the same generated
data, on this machine, in one run. Prints one Markdown table (and the ratios).

Run it through bench/compare.sh, which builds, installs the peers and generates the data.
Every figure is measured here and now; the machine is shared and noisy, so compare the
ratios rather than the absolute numbers.
"""
import argparse
import concurrent.futures
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawlimit  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--medkarta", required=True, help="the medkarta release binary")
p.add_argument("--hfs", default="", help="the helios-hfs binary (hfs); empty: leave the peer out")
p.add_argument("--hfs-data", default="", help="directory with search-parameters-r4.json for hfs")
p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
p.add_argument("--bundles", required=True, help="generated transaction bundles (medkarta generate)")
p.add_argument("--ndjson", required=True, help="the same data as NDJSON (medkarta generate --format ndjson)")
p.add_argument("--patients", type=int, required=True)
p.add_argument("--secs", type=int, default=10, help="seconds per load level")
p.add_argument("--levels", default="1,8,32", help="concurrency levels of the mixes")
p.add_argument("--reps", type=int, default=20, help="repetitions of single-request latencies")
args = p.parse_args()
levels = [int(x) for x in args.levels.split(",")]
here = os.path.dirname(os.path.abspath(__file__))


def say(msg):
    print(f"-- {msg}", flush=True)


def http(url, method="GET", body=None, headers=None, timeout=600):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Medkarta:
    """Our server: a fresh store, an OAuth client for the benchmark, tokens on demand."""

    def __init__(self, name, store_args):
        self.name, self.store_args = name, store_args

    def start(self):
        out = subprocess.run([args.medkarta, "admin", *self.store_args, "client", "add", f"benchmark {self.name}",
                              "--scope", "system/*.cruds"], check=True, capture_output=True, text=True).stdout
        creds = json.loads(out)
        self.client = (creds["client_id"], creds["client_secret"])
        self.log = tempfile.NamedTemporaryFile("w+", delete=False)
        self.proc = subprocess.Popen([args.medkarta, "serve", "--listen", "127.0.0.1:0", *self.store_args],
                                     stdout=self.log, stderr=subprocess.DEVNULL)
        for _ in range(100):
            self.log.seek(0)
            text = self.log.read()
            if "listening" in text:
                break
            time.sleep(0.1)
        self.base = next(w for w in text.split() if w.startswith("http://")).rstrip("/")
        self.path = "/fhir"

    def headers(self):
        body = (f"grant_type=client_credentials&client_id={self.client[0]}&client_secret="
                f"{urllib.request.quote(self.client[1])}").encode()
        _, _, out = http(self.base.removesuffix("/fhir") + "/oauth/token", "POST", body,
                         {"Content-Type": "application/x-www-form-urlencoded"})
        return {"Authorization": "Bearer " + json.loads(out)["access_token"]}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


class Helios:
    """helios-hfs with its SQLite store, as its README runs it (no authentication)."""
    name = "helios-hfs (SQLite)"

    def __init__(self, data):
        self.data = data

    def start(self):
        port = free_port()
        self.dir = tempfile.mkdtemp()
        env = {**os.environ, "HFS_UI_ENABLED": "false", "HFS_LOG_LEVEL": "warn", "HFS_REQUEST_TIMEOUT": "600",
               "HFS_BASE_URL": f"http://127.0.0.1:{port}"}
        self.proc = subprocess.Popen([args.hfs, "--port", str(port), "--database-url", f"{self.dir}/fhir.db",
                                      "--data-dir", self.data], env=env, cwd=self.dir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base, self.path = f"http://127.0.0.1:{port}", ""
        for _ in range(600):
            try:
                if http(self.base + "/metadata", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("helios-hfs did not start")

    def headers(self):
        return {}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def ingest(server):
    """POST every transaction bundle (the first, with the organisations, alone), two at a
    time: resources per second, and how many bundles failed."""
    files = sorted(os.listdir(args.bundles))
    h = {**server.headers(), "Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    count, failed = 0, 0

    def post(name):
        with open(os.path.join(args.bundles, name), "rb") as f:
            body = f.read()
        status, _, _ = http(f"{server.base}{server.path}", "POST", body, h)
        return status, len(json.loads(body)["entry"])

    t = time.perf_counter()
    status, n = post(files[0])
    count, failed = count + n, failed + (status != 200)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for status, n in pool.map(post, files[1:]):
            count, failed = count + n, failed + (status != 200)
    return count / (time.perf_counter() - t), failed


def wrk(server, script, conns, path=None):
    auth = server.headers().get("Authorization")
    cmd = ["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{args.secs}s", "--timeout", "10s"]
    if auth:
        cmd += ["-H", f"Authorization: {auth}"]
    cmd += ["-s", os.path.join(here, script)]
    env = {**os.environ, "PATIENTS": str(args.patients), "BASE_PATH": server.path, "BENCH_DIR": here}
    out = subprocess.run(cmd + [server.base + (path or "/")], capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def latency(server, path):
    """p50 ms of sequential GETs of `path`, and the last response."""
    h = {**server.headers(), "Accept": "application/fhir+json"}
    times, last = [], None
    for _ in range(args.reps):
        t = time.perf_counter()
        status, _, body = http(f"{server.base}{server.path}/{path}", headers=h)
        times.append((time.perf_counter() - t) * 1000)
        last = (status, body)
    return statistics.median(times), last


def export(server):
    """Resources per second of a system $export, kick-off to the last file downloaded."""
    h = {**server.headers(), "Accept": "application/fhir+json", "Prefer": "respond-async"}
    t = time.perf_counter()
    status, headers, _ = http(f"{server.base}{server.path}/$export", headers=h)
    if status != 202:
        return None
    where = headers.get("Content-Location")
    while True:
        status, _, body = http(where, headers=h)
        if status == 200:
            break
        if status != 202 or time.perf_counter() - t > 600:
            return None
        time.sleep(0.2)
    manifest = json.loads(body)
    for o in manifest.get("output", []):
        http(o["url"], headers={**h, "Accept": "application/fhir+ndjson"})
    return sum(o.get("count", 0) for o in manifest.get("output", [])) / (time.perf_counter() - t)


def measure(server):
    r = {}
    say(f"{server.name}: ingest (transaction bundles over HTTP)")
    r["ingest"], failed = ingest(server)
    r["ingest_failed"] = failed
    say(f"{server.name}: read by id, CRUD and search mixes")
    r["read"] = wrk(server, "stats.lua", 8, f"{server.path}/Patient/pat-7")
    for c in levels:
        r[f"crud{c}"] = wrk(server, "crud.lua", c)
        r[f"search{c}"] = wrk(server, "search.lua", c)
    say(f"{server.name}: $everything, _total, $export")
    ms, (status, body) = latency(server, f"Patient/{largest}/$everything?_count=1000")
    r["everything"] = (ms, len(json.loads(body).get("entry", [])) if status == 200 else None)
    ms, (status, body) = latency(server, "Observation?_summary=count")
    total = json.loads(body).get("total") if status == 200 else None
    r["total"] = (ms, total)
    r["export"] = export(server)
    r["rss"] = peak_rss_mb(server.proc.pid)
    return r


def import_cli(store_args):
    """`medkarta import` of the NDJSON into a fresh store: resources per second."""
    out = subprocess.run([args.medkarta, "import", *store_args, args.ndjson], capture_output=True, text=True)
    line = next(x for x in out.stderr.splitlines() if x.startswith("Imported"))
    return float(line.split("(")[1].split()[0])


def ndjson_rows():
    for name in sorted(os.listdir(args.ndjson)):
        with open(os.path.join(args.ndjson, name), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    yield r["resourceType"], r["id"], line.strip()


def pg_db(name):
    return rawlimit.pg_db(args.pg, name)


# --- run --------------------------------------------------------------------------------
results, raw, cli = {}, {}, {}
resources = sum(1 for _ in ndjson_rows())
refs = {}
for _, _, line in ndjson_rows():
    for pid in set(re.findall(r'"reference":"Patient/([^"]+)"', line)):
        refs[pid] = refs.get(pid, 0) + 1
largest = max(refs, key=refs.get)  # the patient with the largest record, for $everything
say(f"data: {args.patients} patients, {resources} resources; largest record: Patient/{largest}")

say("raw-insert limits")
rows = list(ndjson_rows())
raw["SQLite"] = rawlimit.raw_sqlite(rows)
raw["PostgreSQL"] = rawlimit.raw_postgres(args.pg, rows)

say("medkarta import (CLI)")
cli["SQLite"] = import_cli(["--data", tempfile.mkdtemp()])
cli["PostgreSQL"] = import_cli(["--database", pg_db("medkarta_bench_cli"), "--data", tempfile.mkdtemp()])

systems = [Medkarta("Medkarta (SQLite)", ["--data", tempfile.mkdtemp()]),
           Medkarta("Medkarta (PostgreSQL)", ["--database", pg_db("medkarta_bench_http"), "--data", tempfile.mkdtemp()])]
if args.hfs:
    systems.append(Helios(args.hfs_data))
for s in systems:
    s.start()
    try:
        results[s.name] = measure(s)
    finally:
        s.stop()
for name in ("medkarta_bench_cli", "medkarta_bench_http"):
    rawlimit.drop_db(args.pg, name)

# --- the table --------------------------------------------------------------------------
names = list(results)


def cell(v, fmt="{:,.0f}"):
    return "n/a" if v is None else fmt.format(v)


def mix(r, key):
    m = r[key]
    err = f", {m['errors']} errors" if m["errors"] else ""
    return f"{m['rps']:,.0f}/s · {m['p50']:.1f} / {m['p95']:.1f} / {m['p99']:.1f} ms{err}"


rows = [("ingest, transaction bundles over HTTP (resources/s)",
         [cell(results[n]["ingest"]) + (f" ({results[n]['ingest_failed']} bundles failed)"
                                        if results[n]["ingest_failed"] else "") for n in names])]
rows.append(("ingest, `medkarta import` NDJSON (resources/s)",
             [cell(cli.get(n.split("(")[1].rstrip(")"))) if n.startswith("Medkarta") else "—" for n in names]))
rows.append(("raw insert limit of the database (resources/s)",
             [cell(raw.get(n.split("(")[1].rstrip(")"))) for n in names]))
rows.append(("read by id, 8 connections (req/s · p50 / p95 / p99)", [mix(results[n], "read") for n in names]))
for c in levels:
    rows.append((f"CRUD mix, {c} connections", [mix(results[n], f"crud{c}") for n in names]))
for c in levels:
    rows.append((f"search mix, {c} connections", [mix(results[n], f"search{c}") for n in names]))
rows.append(("Patient/$everything of the largest record, p50 ms (resources)",
             [f"{results[n]['everything'][0]:.1f} ({cell(results[n]['everything'][1])})" for n in names]))
rows.append(("_total of all Observations p50 ms (total)",
             [f"{results[n]['total'][0]:.1f} ({cell(results[n]['total'][1])})" for n in names]))
rows.append(("$export, kick-off to last file (resources/s)", [cell(results[n]["export"]) for n in names]))
rows.append(("server peak resident memory (MB)", [cell(results[n]["rss"]) for n in names]))

print()
print(f"{args.patients} patients, {resources} resources; {args.secs} s per load level; "
      f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
print()
print("| | " + " | ".join(names) + " |")
print("|---" * (len(names) + 1) + "|")
for label, cells in rows:
    print(f"| {label} | " + " | ".join(cells) + " |")

print()
print("Ratios:")
ours = results.get("Medkarta (SQLite)")
for backend in ("SQLite", "PostgreSQL"):
    limit = raw.get(backend)
    mine = cli.get(backend)
    if limit and mine:
        print(f"- {backend}: raw insert limit / `medkarta import` = {limit / mine:.1f}x")
peer = results.get(Helios.name)
if ours and peer:
    def ratio(a, b):
        return "n/a" if not a or not b else f"{a / b:.1f}x"
    print(f"- Medkarta (SQLite) / helios-hfs, ingest over HTTP: {ratio(ours['ingest'], peer['ingest'])}")
    for c in levels:
        print(f"- Medkarta (SQLite) / helios-hfs, CRUD mix at {c}: "
              f"{ratio(ours[f'crud{c}']['rps'], peer[f'crud{c}']['rps'])}; search mix at {c}: "
              f"{ratio(ours[f'search{c}']['rps'], peer[f'search{c}']['rps'])}")

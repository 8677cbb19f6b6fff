#!/usr/bin/env python3
"""Booking at the scale of a city: loads 1,000 practitioners with a schedule each (ten
specialties) and their slots over four weeks — 20 working days x 25 visits = 500,000
Slots — and 10,000 patients, through transaction bundles; then times

- `Appointment/$find` for a specialty and a week (as the registry: every slot; p50/p95),
- bookings of distinct slots per second by `$book` at 1, 8 and 32 connections,
- 200 attempts at one slot at once: exactly one wins; the latency of the answers.

  bench/booking.py FHIR-BASE CLIENT-ID CLIENT-SECRET [FIND-REQUESTS]"""
import datetime, http.client, json, statistics, sys, threading, time, urllib.parse

base, client_id, client_secret = sys.argv[1:4]
n_find = int(sys.argv[4]) if len(sys.argv) > 4 else 200
url = urllib.parse.urlparse(base)
token, token_at = "", 0.0


def fresh_token():
    """A token of the benchmark's client (they last five minutes: renewed every four)."""
    global token, token_at
    if time.time() - token_at > 240:
        c = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                       "client_secret": client_secret})
        c.request("POST", "/oauth/token", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
        token, token_at = json.loads(c.getresponse().read())["access_token"], time.time()
    return token
PRACTITIONERS, DAYS, PER_DAY, PATIENTS = 1000, 20, 25, 10000
SCT = "http://snomed.info/sct"
SPECIALTIES = ["419192003", "394537008", "394579002", "394583002", "394591006",
               "394587001", "394609007", "394585009", "394582007", "394589003"]
ONLINE = {"system": "https://medkarta.org/fhir/CodeSystem/booking", "code": "online"}


def conn():
    return http.client.HTTPConnection(url.hostname, url.port, timeout=120)


def request(c, method, path, body=None):
    headers = {"Authorization": f"Bearer {fresh_token()}", "Accept": "application/fhir+json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/fhir+json"
    c.request(method, f"{url.path}/{path}", body=data, headers=headers)
    r = c.getresponse()
    payload = r.read()
    return r.status, payload


def bundle(c, resources):
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]
    status, body = request(c, "POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if status != 200:
        raise SystemExit(f"loading failed: {status} {body[:300]}")


# the working days from tomorrow on (Monday to Friday), 08:00 Moscow (05:00Z), 15 minutes each
def days():
    d, out = datetime.date.today() + datetime.timedelta(days=1), []
    while len(out) < DAYS:
        if d.weekday() < 5:
            out.append(d)
        d += datetime.timedelta(days=1)
    return out


def load():
    c = conn()
    t0 = time.time()
    bundle(c, [{"resourceType": "Organization", "id": "org-b", "name": "Городская поликлиника"},
               {"resourceType": "Location", "id": "loc-b", "name": "Корпус 1", "managingOrganization": {"reference": "Organization/org-b"}}])
    for start in range(0, PATIENTS, 1000):
        bundle(c, [{"resourceType": "Patient", "id": f"bp-{i}"} for i in range(start, start + 1000)])
    work = days()
    batch = []
    for p in range(PRACTITIONERS):
        spec = [{"coding": [{"system": SCT, "code": SPECIALTIES[p % len(SPECIALTIES)]}]}]
        batch += [{"resourceType": "Practitioner", "id": f"bpr-{p}"},
                  {"resourceType": "Schedule", "id": f"bs-{p}", "active": True, "specialty": spec,
                   "actor": [{"reference": f"Practitioner/bpr-{p}"}, {"reference": "Location/loc-b"}]}]
        for d in work:
            for k in range(PER_DAY):
                s = datetime.datetime.combine(d, datetime.time(5, 0)) + datetime.timedelta(minutes=15 * k)
                e = s + datetime.timedelta(minutes=15)
                batch.append({"resourceType": "Slot", "id": f"bs-{p}-{s:%Y%m%d%H%M}", "meta": {"tag": [ONLINE]},
                              "schedule": {"reference": f"Schedule/bs-{p}"}, "status": "free", "specialty": spec,
                              "start": f"{s:%Y-%m-%dT%H:%M:%S}Z", "end": f"{e:%Y-%m-%dT%H:%M:%S}Z"})
                if len(batch) >= 1000:
                    bundle(c, batch)
                    batch = []
        if p % 100 == 99:
            print(f"  loaded {p + 1} schedules ({(p + 1) * DAYS * PER_DAY} slots) in {time.time() - t0:.0f} s", flush=True)
    if batch:
        bundle(c, batch)
    print(f"loaded {PRACTITIONERS * DAYS * PER_DAY} slots, {PRACTITIONERS} schedules, {PATIENTS} patients in {time.time() - t0:.0f} s")
    return work


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def find(work):
    c = conn()
    times = []
    for i in range(n_find + 20):
        week = work[(i * 5) % (len(work) - 5)]
        spec = SPECIALTIES[i % len(SPECIALTIES)]
        q = urllib.parse.urlencode({"start": week.isoformat(), "end": (week + datetime.timedelta(days=7)).isoformat(),
                                    "specialty": f"{SCT}|{spec}", "_count": 50})
        t = time.perf_counter()
        status, body = request(c, "GET", f"Appointment/$find?{q}")
        dt = (time.perf_counter() - t) * 1000
        if status != 200 or len(json.loads(body)["entry"]) != 50:
            raise SystemExit(f"$find failed: {status} {body[:300]}")
        if i >= 20:
            times.append(dt)
    print(f"$find (a specialty, a week, 50 proposals) over {len(times)}: p50 {statistics.median(times):.1f} ms, "
          f"p95 {pct(times, 0.95):.1f} ms, max {max(times):.1f} ms")


def params(slot, patient):
    return {"resourceType": "Parameters", "parameter": [
        {"name": "slot", "valueReference": {"reference": f"Slot/{slot}"}},
        {"name": "patient-reference", "valueReference": {"reference": f"Patient/{patient}"}}]}


def bookings(work, connections, per_connection, offset):
    # each booking a distinct slot and a distinct patient (one future visit per specialty)
    jobs = []
    for k in range(connections * per_connection):
        n = offset + k
        p, slot_of_day = n % PRACTITIONERS, (n // PRACTITIONERS) % PER_DAY
        d = work[10 + (n // (PRACTITIONERS * PER_DAY))]
        s = datetime.datetime.combine(d, datetime.time(5, 0)) + datetime.timedelta(minutes=15 * slot_of_day)
        jobs.append((f"bs-{p}-{s:%Y%m%d%H%M}", f"bp-{n % PATIENTS}"))
    codes, lat = [], []
    lock = threading.Lock()

    def worker(mine):
        c = conn()
        for slot, patient in mine:
            t = time.perf_counter()
            status, _ = request(c, "POST", "Appointment/$book", params(slot, patient))
            with lock:
                codes.append(status)
                lat.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=worker, args=(jobs[i::connections],)) for i in range(connections)]
    t0 = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    ok = codes.count(201)
    print(f"$book of distinct slots, {connections} connection(s): {ok / wall:.0f}/s ({ok}/{len(codes)} booked), "
          f"p50 {statistics.median(lat):.1f} ms, p95 {pct(lat, 0.95):.1f} ms")
    if ok != len(codes):
        raise SystemExit(f"bookings refused: {sorted(set(codes))}")
    return offset + len(jobs)


def contended(work):
    d = work[-1]
    slot = f"bs-7-{datetime.datetime.combine(d, datetime.time(5, 0)):%Y%m%d%H%M}"
    barrier = threading.Barrier(50)
    codes, lat, lock = [], [], threading.Lock()

    def worker(w):
        c = conn()
        request(c, "GET", "metadata")
        barrier.wait()
        for k in range(4):
            t = time.perf_counter()
            status, _ = request(c, "POST", "Appointment/$book", params(slot, f"bp-{9000 + w * 4 + k}"))
            with lock:
                codes.append(status)
                lat.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(50)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(f"one slot, 200 attempts from 50 connections: {codes.count(201)} booked, {codes.count(409)} refused (409); "
          f"p50 {statistics.median(lat):.1f} ms, p95 {pct(lat, 0.95):.1f} ms")
    if codes.count(201) != 1 or codes.count(409) != 199:
        raise SystemExit(f"contended booking: {sorted(set(codes))}")


work = load()
find(work)
offset = 0
for connections in (1, 8, 32):
    offset = bookings(work, connections, 200 if connections == 1 else 50, offset)
contended(work)

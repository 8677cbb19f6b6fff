"""The front door under abuse: an honest client's latency while others flood the sign-in
page and send large unauthenticated bodies.

Phases of SECONDS each: the honest client alone (GET /fhir/metadata and a small search
with a valid token, one after another), then the same while an attacking process (this
script with --attack, so that its threads do not share the honest client's interpreter)
runs FLOOD threads posting sign-in forms (a real account and unknown names, wrong
passwords; CLIENT_ID is a public client with redirect https://app.example/cb) and BODIES
threads posting 15 MB bodies without a token. Prints, per phase, the honest client's
p50 / p99 / max latency, and what the attackers got back (status counts).

Usage: python3 bench/abuse.py BASE TOKEN CLIENT_ID [SECONDS] [FLOOD] [BODIES]
"""

import http.client
import re
import subprocess
import sys
import threading
import time
import urllib.parse

attack = "--attack" in sys.argv
args = [a for a in sys.argv[1:] if a != "--attack"]
base, token, client_id = args[0], args[1], args[2]
secs = float(args[3]) if len(args) > 3 else 10
flood = int(args[4]) if len(args) > 4 else 100
bodies = int(args[5]) if len(args) > 5 else 4
url = urllib.parse.urlsplit(base)
host, port = url.hostname, url.port
root = base.rsplit("/fhir", 1)[0]


def conn():
    return http.client.HTTPConnection(host, port, timeout=60)


def honest(stop, out):
    c = conn()
    paths = ["/fhir/metadata", "/fhir/Patient?_count=1"]
    i = 0
    while not stop.is_set():
        path = paths[i % 2]
        i += 1
        t = time.perf_counter()
        try:
            c.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
            r = c.getresponse()
            r.read()
            out.append((time.perf_counter() - t) * 1000)
        except Exception:
            out.append(60_000.0)
            c = conn()


def sign_in_form():
    """A CSRF cookie and the hidden fields of a fresh sign-in page."""
    c = conn()
    q = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": "https://app.example/cb",
        "scope": "patient/*.rs", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    })
    c.request("GET", f"/oauth/authorize?{q}")
    r = c.getresponse()
    html = r.read().decode()
    cookie = r.getheader("set-cookie").split(";")[0]
    field = lambda n: re.search(f'name="{n}" value="([^"]*)"', html).group(1).replace("&amp;", "&")
    return cookie, field("csrf"), field("request")


def flooder(n, stop, statuses, lock):
    cookie, csrf, request = sign_in_form()
    c = conn()
    i = 0
    while not stop.is_set():
        user = "demo-doctor" if i % 2 == 0 else f"nobody-{n}-{i}"
        i += 1
        body = urllib.parse.urlencode({"csrf": csrf, "request": request, "step": "login", "lang": "en",
                                       "username": user, "password": "a wrong guess here", "otp": ""})
        try:
            c.request("POST", "/oauth/authorize", body=body,
                      headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            r = c.getresponse()
            r.read()
            s = r.status
        except Exception:
            s = "error"
            c = conn()
        with lock:
            statuses[s] = statuses.get(s, 0) + 1


def big_bodies(stop, statuses, lock):
    body = b'{"resourceType":"Patient","a":"' + b"x" * (15_000_000) + b'"}'
    while not stop.is_set():
        c = conn()
        try:
            c.request("POST", "/fhir/Patient", body=body, headers={"Content-Type": "application/fhir+json"})
            r = c.getresponse()
            r.read()
            s = r.status
        except Exception:
            s = "refused before the body was sent"
        c.close()
        with lock:
            statuses[s] = statuses.get(s, 0) + 1


def report(name, lat, got):
    lat = sorted(lat)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"{name}: honest client {len(lat)} requests, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
          f"max {lat[-1]:.1f} ms; attackers got: {got}", flush=True)


if attack:
    # until killed; the counts go to stdout when the parent stops us (SIGTERM)
    import signal
    stop, statuses, lock = threading.Event(), {}, threading.Lock()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=flooder, args=(n, stop, statuses, lock)) for n in range(flood)]
    threads += [threading.Thread(target=big_bodies, args=(stop, statuses, lock)) for _ in range(bodies)]
    for t in threads:
        t.daemon = True
        t.start()
    while not stop.is_set():
        time.sleep(0.1)
    print(dict(sorted(statuses.items(), key=str)), flush=True)
    sys.exit(0)

for phase in ["alone", "under attack"]:
    stop = threading.Event()
    lat = []
    attacker = None
    if phase == "under attack":
        attacker = subprocess.Popen([sys.executable, __file__, *args, "--attack"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # let the flood start
    t = threading.Thread(target=honest, args=(stop, lat))
    t.start()
    time.sleep(secs)
    stop.set()
    t.join()
    got = "-"
    if attacker:
        attacker.terminate()
        got = attacker.communicate(timeout=120)[0].strip()
    report(phase, lat, got)

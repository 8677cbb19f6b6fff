"""A standalone SMART App Launch with the Python `fhirclient` library against a running
Medkarta: the library finds the OAuth endpoints in the CapabilityStatement and builds the
authorization URL (with PKCE); this script plays the person at the browser (signs in,
sets up the authenticator app, allows access); the library exchanges the code and reads
the patient in context. Usage: smart_launch.py BASE_URL CLIENT_ID USERNAME PASSWORD"""
import base64
import hashlib
import hmac
import html
import re
import struct
import sys
import time
import urllib.parse

import requests
from fhirclient import client
from fhirclient.models.patient import Patient

base, client_id, username, password = sys.argv[1:5]
redirect_uri = "https://app.example/callback"
smart = client.FHIRClient(settings={
    "app_id": client_id, "api_base": base, "redirect_uri": redirect_uri,
    "scope": "launch/patient patient/*.rs openid fhirUser offline_access",
})
url = smart.authorize_url
assert url and "code_challenge=" in url, url


def field(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, page)
    assert m, f"no {name} in {page[:2000]}"
    return html.unescape(m.group(1))


def totp(secret_b32, step):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


browser = requests.Session()
page = browser.get(url, headers={"Accept-Language": "en"}).text
csrf, request = field(page, "csrf"), field(page, "request")
form = {"csrf": csrf, "request": request, "lang": "en"}
authorize = urllib.parse.urljoin(url, "authorize")
page = browser.post(authorize, data={**form, "step": "login", "username": username, "password": password, "otp": ""}).text
secret = re.search(r"<code>([A-Z2-7]+)</code>", page).group(1)
ticket = field(page, "ticket")
page = browser.post(authorize, data={**form, "step": "enrol", "ticket": ticket, "otp": totp(secret, int(time.time()) // 30)}).text
assert "Allow access" in page, page[:2000]
r = browser.post(authorize, data={**form, "step": "consent", "ticket": ticket, "decision": "allow", "role": "0"},
                 allow_redirects=False)
assert r.status_code == 302, r.text
callback = r.headers["Location"]
assert callback.startswith(redirect_uri), callback

smart.handle_callback(callback)
assert smart.ready, "no access token"
assert smart.patient_id == "p-launch", smart.patient_id
patient = Patient.read(smart.patient_id, smart.server)
assert patient.name[0].family == "Запускова", patient.as_json()
print("fhirclient SMART launch: OK")

#!/usr/bin/env python3
"""Sign in to the Medkarta portal as a browser does (password, then the authenticator set up
on the first sign-in, or a TOTP code from a known secret) and fetch pages with the session.

  scripts/portal-signin.py http://127.0.0.1:8080 demo-patient PASSWORD [PAGE...]

Prints each page's status and time, and the TOTP secret (keep it for later sign-ins:
--secret BASE32). Used by bench/portal.sh and for trying the demo by hand."""
import base64, hashlib, hmac, html, re, struct, sys, time, urllib.parse, urllib.request, http.cookiejar

def totp(secret_b32, t=None):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((t or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None

def field(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, page)
    return html.unescape(m.group(1)) if m else ""

def session(root, user, password, secret=None):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    def call(path, data=None):
        url = path if path.startswith("http") else root + path
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            r = opener.open(url, body)
            return r.status, r.headers, r.read().decode(errors="surrogateescape")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode(errors="surrogateescape")
    status, h, _ = call("/portal/login")
    _, _, page = call(h["Location"])
    csrf, request = field(page, "csrf"), field(page, "request")
    base = {"csrf": csrf, "request": request}
    _, _, page = call("/oauth/authorize", {**base, "step": "login", "username": user, "password": password,
                                           "otp": totp(secret) if secret else ""})
    ticket = field(page, "ticket")
    if not secret:
        secret = re.search(r"<code>([A-Z2-7]+)</code>", page).group(1)
        _, _, page = call("/oauth/authorize", {**base, "step": "enrol", "ticket": ticket, "otp": totp(secret)})
    status, h, page = call("/oauth/authorize", {**base, "step": "consent", "ticket": ticket, "decision": "allow", "role": "0"})
    assert status == 302, page
    status, h, _ = call(h["Location"])
    assert status == 303, status
    return call, secret, h["Location"]

if __name__ == "__main__":
    args = sys.argv[1:]
    secret = None
    if "--secret" in args:
        i = args.index("--secret"); secret = args[i + 1]; del args[i:i + 2]
    root, user, password, pages = args[0], args[1], args[2], args[3:]
    call, secret, start = session(root, user, password, secret)
    print("secret", secret, "start", start)
    for p in pages or [start]:
        t0 = time.perf_counter()
        status, _, body = call(p)
        print(status, "%.1f ms" % ((time.perf_counter() - t0) * 1000), p, len(body))

#!/usr/bin/env python3
"""The portal in a real browser: Playwright (the Python package, its driver only) drives
Debian's Chromium (/usr/bin/chromium; no browser is downloaded). Signs in with a TOTP code
computed here from the secret the enrolment page shows as text, opens every page of the
record from its menu, searches, switches the language, takes phone-sized screenshots,
downloads the whole record and a document as PDF and reads them with pdftotext, and signs
out. Fails on any console error (a Content-Security-Policy violation is one).

  portal_browser.py ROOT USER PASSWORD PATIENT-NAME SCREENSHOT-DIR

PORTAL_SEARCH / PORTAL_FOUND (a word form to search for, and a text it must find; by
default the test's diabetes) and PORTAL_FLAGGED=0 (no out-of-range result to expect) let
it run against the demo data, to refresh docs/screenshots. PORTAL_RESULT is a text the
record's PDF must hold besides the name; PORTAL_DOCUMENT a text of the first document
("" when the record has none); PORTAL_TRACK=0 enters no measurement; PORTAL_UPLOAD=0
adds no document; PORTAL_BOOK is the specialty to book a visit with ("" books none)."""
import base64, hashlib, hmac, os, struct, subprocess, sys, tempfile, time, urllib.error, urllib.request, zlib

from playwright.sync_api import sync_playwright

root, user, password, name, shots = sys.argv[1:6]
CHROMIUM = os.environ.get("MEDKARTA_CHROMIUM", "/usr/bin/chromium")
SEARCH = os.environ.get("PORTAL_SEARCH", "диабетом")
FOUND = os.environ.get("PORTAL_FOUND", "Сахарный диабет")
FLAGGED = os.environ.get("PORTAL_FLAGGED", "1") != "0"
RESULT = os.environ.get("PORTAL_RESULT", "7.4 ммоль/л")
DOCUMENT = os.environ.get("PORTAL_DOCUMENT", "Жалобы на головную боль")
TRACK = os.environ.get("PORTAL_TRACK", "1") != "0"
UPLOAD = os.environ.get("PORTAL_UPLOAD", "1") != "0"
BOOK = os.environ.get("PORTAL_BOOK", "Терапевт")
# a clinician outside the patient's care (their API token, a word of their organisation's
# name to find it, its reference, a record of the patient to read): granted access in the
# portal, then revoked
GRANTEE = os.environ.get("PORTAL_GRANTEE_TOKEN", "")
GRANTEE_FIND = os.environ.get("PORTAL_GRANTEE_FIND", "")
GRANTEE_ORG = os.environ.get("PORTAL_GRANTEE_ORG", "")
GRANTEE_READ = os.environ.get("PORTAL_GRANTEE_READ", "")


def api_status(path):
    req = urllib.request.Request(root + "/fhir/" + path, headers={"Authorization": "Bearer " + GRANTEE})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def totp(secret, at=None):
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int((at or time.time()) // 30)), hashlib.sha1).digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def download_text(page, click):
    """Click what downloads a PDF, and the PDF's text (pdftotext)."""
    with page.expect_download() as d:
        click()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "download.pdf")
        d.value.save_as(path)
        with open(path, "rb") as f:
            check(f.read(5) == b"%PDF-", "the download is a PDF")
        return subprocess.run(["pdftotext", path, "-"], check=True, capture_output=True, text=True).stdout


def png(width, height):
    """A real PNG image (an RGB gradient), as a scanner would save it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
                   for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(root + "/")
    check(page.url.endswith("/portal/"), "the root opens the portal: " + page.url)
    check(page.locator("html").get_attribute("lang") == "ru", "Russian by default")
    page.get_by_role("link", name="Войти").click()
    # the server's own sign-in pages
    page.get_by_label("Имя пользователя").fill(user)
    page.get_by_label("Пароль").fill(password)
    page.get_by_role("button", name="Войти").click()
    check("<svg" in page.content(), "the enrolment page shows a QR code")
    secret = page.locator("code").first.inner_text().strip()
    page.get_by_label("Код из приложения").fill(totp(secret))
    page.get_by_role("button", name="Подтвердить").click()
    check(page.locator("code").count() >= 5, "recovery codes are shown")
    page.locator("button[name=decision][value=allow]").click()
    page.wait_for_url("**/portal/r/*/summary")
    check(page.get_by_role("heading", level=1).inner_text() == name, "the summary names the patient")
    check(page.get_by_text("Хронические заболевания").count() == 1, "the summary's sections")
    page.screenshot(path=os.path.join(shots, "portal-summary.png"), full_page=True)
    text = download_text(page, lambda: page.get_by_role("link", name="Скачать всю медицинскую карту (PDF)").click())
    check(name in text and RESULT in text, "the record's PDF holds the name and a result: " + text[:500])

    # every page from the menu, keyboard reachable (each link gets focus)
    for label, heading in [("Показатели здоровья", "Показатели здоровья"), ("Посещения", "Посещения"), ("Анализы и исследования", "Анализы и исследования"),
                           ("Прививки", "Прививки"), ("Рецепты", "Рецепты и назначения"),
                           ("Документы", "Документы"), ("Поиск по карте", "Поиск по медицинской карте")]:
        link = page.locator("nav.record").get_by_role("link", name=label, exact=True)
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_load_state()
        check(page.get_by_role("heading", level=1).inner_text() == heading, f"{label} opens: {page.url}")
        check(page.locator("nav.record [aria-current=page]").inner_text() == label, f"{label} is marked current")
        if label == "Анализы и исследования":
            page.screenshot(path=os.path.join(shots, "portal-results.png"), full_page=True)
            check(not FLAGGED or page.locator("td.out").count() >= 1, "an out-of-range result is flagged")

    # health tracking: an out-of-range blood pressure of one's own, on the chart and as
    # an alert in the inbox
    if TRACK:
        page.locator("nav.record").get_by_role("link", name="Показатели здоровья", exact=True).click()
        bp = page.locator("section#bp")
        before = int(bp.locator("svg").get_attribute("data-points") or 0) if bp.locator("svg").count() else 0
        bp.get_by_label("Верхнее (систолическое)").fill("170")
        bp.get_by_label("Нижнее (диастолическое)").fill("105")
        bp.get_by_role("button", name="Добавить измерение").click()
        page.wait_for_load_state()
        check(page.get_by_text("Измерение сохранено.").count() == 1, "the measurement is saved")
        bp = page.locator("section#bp")
        check(bp.locator("svg").get_attribute("data-points") == str(before + 1), "the chart has one more point")
        check(bp.locator("circle.s0").count() == before + 1, "one systolic dot per value")
        check(page.get_by_text("Показатель вне нормы").count() >= 1, "the alert is on the record")
        page.screenshot(path=os.path.join(shots, "portal-health.png"), full_page=True)
        page.locator("header.top a.inbox").click()
        check(page.get_by_text("Измеренное вами значение вне нормы").count() >= 1, "the alert is in the inbox")
        page.screenshot(path=os.path.join(shots, "portal-inbox.png"), full_page=True)

    # who may see my record: a clinic outside care is granted access (its API read
    # succeeds), then revoked (403)
    if GRANTEE:
        check(api_status(GRANTEE_READ) == 403, "outside care: refused")
        page.locator("nav.record").get_by_role("link", name="Кто видит карту", exact=True).click()
        page.get_by_label("Врач или организация").fill(GRANTEE_FIND)
        page.get_by_role("button", name="Найти").click()
        grant = page.locator("form", has=page.locator("input[name=actor][value='%s']" % GRANTEE_ORG))
        grant.get_by_role("button", name="Сохранить").click()
        check(page.get_by_text("Сохранено.").count() == 1, "the grant is saved")
        check(api_status(GRANTEE_READ) == 200, "granted: the clinician's API read succeeds")
        page.get_by_role("button", name="Отозвать").first.click()
        check(page.get_by_text("Отозвано.").count() == 1, "revoked")
        check(api_status(GRANTEE_READ) == 403, "revoked: refused again")
        page.locator("nav.record").get_by_role("link", name="Кто смотрел карту", exact=True).click()
        check(page.get_by_text("отказано").count() >= 1, "the refused attempts are in the log")

    # a document's page (the menu left us on the search page: back to the documents)
    if DOCUMENT:
        page.locator("nav.record").get_by_role("link", name="Документы", exact=True).click()
        page.locator("main table a").first.click()
        check(page.get_by_text(DOCUMENT).count() >= 1, "the document's page shows its text")
        text = download_text(page, lambda: page.get_by_role("link", name="Скачать документ (PDF)").click())
        check(DOCUMENT in text and name in text, "the document's PDF holds its text: " + text[:500])
        page.locator("nav.record").get_by_role("link", name="Поиск по карте", exact=True).click()

    # add a scan to the record: its page shows the image, which the browser decodes
    if UPLOAD:
        page.locator("nav.record").get_by_role("link", name="Документы", exact=True).click()
        page.get_by_label("Что это за документ").fill("Снимок из другой клиники")
        page.get_by_label("Файл").set_input_files(
            files=[{"name": "снимок.png", "mimeType": "image/png", "buffer": png(64, 48)}])
        page.get_by_role("button", name="Добавить в карту").click()
        check(page.get_by_role("heading", name="Снимок из другой клиники").count() == 1, "the new document's page")
        image = page.locator("figure.file img")
        image.wait_for()
        check(page.evaluate("(i) => i.complete && i.naturalWidth", image.element_handle()) == 64,
              "the uploaded image is shown")
        page.screenshot(path=os.path.join(shots, "portal-upload.png"), full_page=True)
        page.locator("nav.record").get_by_role("link", name="Документы", exact=True).click()
        check(page.get_by_text("Снимок из другой клиники").count() >= 1, "listed with the documents")
        page.locator("nav.record").get_by_role("link", name="Поиск по карте", exact=True).click()

    # book a visit: a specialty, the first day with free times, the first time
    if BOOK:
        page.locator("nav.record").get_by_role("link", name="Запись к врачу", exact=True).click()
        check(page.get_by_text("Мои записи").count() == 1, "the appointments page")
        page.get_by_label("Специальность").select_option(label=BOOK)
        times = page.locator("ul.slots button")
        for _ in range(7):
            page.get_by_role("button", name="Найти время").click()
            if times.count() > 0:
                break
            day = page.get_by_label("День")
            day.fill(time.strftime("%Y-%m-%d", time.gmtime(time.mktime(time.strptime(day.input_value(), "%Y-%m-%d")) + 86400 + 43200)))
        check(times.count() > 0, "free times within a week")
        page.screenshot(path=os.path.join(shots, "portal-booking.png"), full_page=True)
        first = times.first.inner_text()
        times.first.click()
        check(page.get_by_text("запись сохранена").count() == 1, "booked")
        check(page.locator("table").get_by_text(first).count() >= 1, "the visit is listed at " + first)
        page.locator("nav.record").get_by_role("link", name="Поиск по карте", exact=True).click()

    # search in word forms, then a filter by kind
    page.get_by_label("Слова").fill(SEARCH)
    page.get_by_role("button", name="Найти").click()
    check(page.get_by_text(FOUND).count() >= 1, "the search finds the diagnosis by another word form")
    page.screenshot(path=os.path.join(shots, "portal-search.png"), full_page=True)
    page.get_by_label("Вид записи").select_option("Immunization")
    page.get_by_role("button", name="Найти").click()
    check(page.get_by_text(FOUND).count() == 0, "the kind filter leaves out diagnoses")

    # the language switch, remembered on the next page
    page.get_by_role("link", name="English").click()
    check(page.locator("html").get_attribute("lang") == "en", "English after the switch")
    page.locator("nav.record").get_by_role("link", name="Summary").click()
    check(page.get_by_text("Chronic conditions").count() == 1, "English is remembered")
    page.get_by_role("link", name="Русский").click()

    # a phone: the page fits the screen's width (tables scroll inside their box)
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.context.add_cookies(page.context.cookies())
    phone.goto(page.url)
    check(phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "no sideways scrolling on a phone")
    phone.screenshot(path=os.path.join(shots, "portal-phone.png"), full_page=True)
    phone.goto(root + "/portal/r/" + page.url.split("/portal/r/")[1].split("/")[0] + "/results")
    check(phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "results fit a phone")

    # sign out
    page.get_by_role("button", name="Выйти").click()
    check(page.get_by_text("Вы вышли из кабинета.").count() == 1, "signed out")
    page.goto(root + "/portal/r/x/summary")
    check(page.url.endswith("/portal/"), "a record page after sign-out goes to the sign-in")
    check(not errors, "console errors: %s" % errors)
    browser.close()
print("portal browser: OK")

//! The patient portal over HTTP, as a browser uses it: the sign-in through the server's
//! own code flow (password, first-time authenticator set-up, a TOTP code computed here),
//! the session cookie, every record page, escaping, CSRF, sign-out, the language switch,
//! and that one person's pages never show another's record. On both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{Backend, Server};
use serde_json::{Value, json};
use store_tests::PgDatabase;

/// A browser: cookies by name, no automatic redirects.
struct Browser {
    root: String,
    agent: ureq::Agent,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    headers: HashMap<String, String>,
    body: String,
    bytes: Vec<u8>,
}

impl Browser {
    fn new(root: &str) -> Browser {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        Browser { root: root.to_string(), agent, cookies: HashMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn take(&mut self, mut r: ureq::http::Response<ureq::Body>) -> Page {
        let mut set_cookies = Vec::new();
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap().to_string();
            let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
            if v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
            set_cookies.push(v);
        }
        let headers =
            r.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        let bytes = r.body_mut().with_config().limit(50 << 20).read_to_vec().unwrap_or_default();
        Page {
            status: r.status().as_u16(),
            location,
            set_cookies,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.root) }
    }

    fn get(&mut self, path: &str) -> Page {
        let r = self.agent.get(&self.url(path)).header("Cookie", &self.cookie_header()).call().unwrap();
        self.take(r)
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let r = self
            .agent
            .post(&self.url(path))
            .header("Cookie", &self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body.as_str())
            .unwrap();
        self.take(r)
    }

    /// Post a document form as a browser does (`multipart/form-data`).
    fn upload(&mut self, path: &str, fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> Page {
        let boundary = "----medkartaTestBoundary7MA4YWxk";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        let (name, kind, bytes) = file;
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .agent
            .post(&self.url(path))
            .header("Cookie", &self.cookie_header())
            .header("Content-Type", &format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .unwrap();
        self.take(r)
    }

    /// Follow redirects from a page to the first that is not one.
    fn follow(&mut self, mut page: Page) -> Page {
        for _ in 0..10 {
            match page.location.clone() {
                Some(to) if (300..400).contains(&page.status) => page = self.get(&to),
                _ => return page,
            }
        }
        panic!("too many redirects");
    }

    /// Sign in through the portal: the code flow, the authenticator set up on the first
    /// sign-in (its secret read from the page, as a person types it into their app).
    fn sign_in(&mut self, username: &str, password: &str, secrets: &mut HashMap<String, Vec<u8>>) -> Page {
        let start = self.get("/portal/login");
        assert_eq!(start.status, 303);
        let to = start.location.clone().unwrap();
        assert!(to.starts_with("/oauth/authorize?") && to.contains("code_challenge_method=S256"), "{to}");
        assert!(self.cookies.contains_key("mk_login"));
        let page = self.get(&to);
        assert_eq!(page.status, 200, "{}", page.body);
        let (csrf, request) = (field(&page.body, "csrf"), field(&page.body, "request"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let otp = secrets.get(username).map(|s| auth::totp::code(s, now / 30)).unwrap_or_default();
        let page = self.post(
            "/oauth/authorize",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("step", "login"),
                ("username", username),
                ("password", password),
                ("otp", &otp),
            ],
        );
        let mut ticket = field(&page.body, "ticket");
        if !secrets.contains_key(username) {
            assert!(page.body.contains("<code>"), "{}: {}", page.status, page.body);
            let secret = page.body.split("<code>").nth(1).unwrap().split("</code>").next().unwrap().to_string();
            let secret = auth::totp::from_base32(&secret).unwrap();
            let code = auth::totp::code(&secret, now / 30);
            secrets.insert(username.to_string(), secret);
            let page = self.post(
                "/oauth/authorize",
                &[("csrf", &csrf), ("request", &request), ("step", "enrol"), ("ticket", &ticket), ("otp", &code)],
            );
            assert!(page.body.contains("name=\"decision\""), "{}", page.body);
            ticket = field(&page.body, "ticket");
        }
        let page = self.post(
            "/oauth/authorize",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("step", "consent"),
                ("ticket", &ticket),
                ("decision", "allow"),
                ("role", "0"),
            ],
        );
        assert_eq!(page.status, 302, "{}", page.body);
        let back = page.location.clone().unwrap();
        assert!(back.starts_with(&format!("{}/portal/callback?code=", self.root)), "{back}");
        self.get(&back)
    }
}

fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let raw = html.split(&marker).nth(1).map(|s| s.split('"').next().unwrap().to_string()).unwrap_or_default();
    common::unescape(&raw)
}

fn lab(id: &str, patient: &str, value: f64, when: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}], "text": "Глюкоза"},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "ммоль/л", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        "referenceRange": [{"low": {"value": 3.9, "unit": "ммоль/л"}, "high": {"value": 6.1, "unit": "ммоль/л"}}]
    })
}

/// The text of a PDF, as `pdftotext` (poppler-utils, installed by scripts/test.sh) reads it.
fn pdftotext(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF: {}", String::from_utf8_lossy(&pdf[..pdf.len().min(300)]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext must be installed (poppler-utils; scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A document of a patient: its text (or bytes of `kind`) inline.
fn document(id: &str, patient: &str, kind: &str, data: &[u8], title: &str) -> Value {
    use base64::Engine as _;
    json!({
        "resourceType": "DocumentReference", "id": id, "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}], "text": title},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": "2026-03-02T10:00:00+03:00",
        "author": [{"reference": "Practitioner/pr-1", "display": "Петров Пётр Петрович"}],
        "content": [{"attachment": {"contentType": kind, "data": base64::engine::general_purpose::STANDARD.encode(data)}}]
    })
}

/// A PDF stored as a document (served back byte for byte).
const STORED_PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// Store a resource (the test's data; it must be accepted).
fn put(s: &Server, r: &Value) {
    let path = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
    let resp = s.put(&path, r);
    assert!(resp.status < 300, "{path}: {}", resp.text);
}

/// The test's record: two patients (one with a diagnosis whose text holds markup, a
/// result out of range and an earlier one), their accounts and a doctor at the first
/// one's clinic. Returns the accounts' password.
fn seed(s: &Server) -> &'static str {
    let clinic = json!({"resourceType": "Organization", "id": "org-a", "name": "Поликлиника №1"});
    put(s, &clinic);
    put(s, &json!({"resourceType": "Organization", "id": "org-b", "name": "Другая клиника"}));
    put(s, &json!({"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Петров", "given": ["Пётр"]}]}));
    put(
        s,
        &json!({
            "resourceType": "Patient", "id": "p-anna", "gender": "female", "birthDate": "1980-04-12",
            "name": [{"use": "official", "family": "Смирнова", "given": ["Анна", "Петровна"]}],
            "identifier": [{"system": "http://medkarta.ru/identifier/snils", "value": "112-233-445 95"}],
            "managingOrganization": {"reference": "Organization/org-a"},
            "generalPractitioner": [{"reference": "Practitioner/pr-1"}]
        }),
    );
    put(
        s,
        &json!({
            "resourceType": "Patient", "id": "p-boris", "gender": "male",
            "name": [{"family": "Борисов", "given": ["Борис"]}],
            "managingOrganization": {"reference": "Organization/org-b"}
        }),
    );
    put(s, &lab("o-1", "p-anna", 5.2, "2025-01-10T09:00:00+03:00"));
    put(s, &lab("o-2", "p-anna", 7.4, "2026-03-02T09:00:00+03:00"));
    put(s, &lab("o-boris", "p-boris", 4.4, "2026-03-02T09:00:00+03:00"));
    put(
        s,
        &json!({
            "resourceType": "Condition", "id": "c-1",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11", "display": "Type 2 diabetes"}],
                     "text": "Сахарный диабет 2 типа </td></table><h1>взлом</h1> \"><img src=x>"},
            "subject": {"reference": "Patient/p-anna"}, "onsetDateTime": "2020-05-01"
        }),
    );
    put(
        s,
        &json!({
            "resourceType": "Condition", "id": "c-boris",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"text": "Тайный диагноз Бориса"}, "subject": {"reference": "Patient/p-boris"}
        }),
    );
    let protocol =
        "Жалобы на головную боль по утрам.\nАД 150/95 мм рт. ст., ЧСС 78.\nДиагноз: гипертоническая болезнь.";
    put(
        s,
        &document("doc-1", "p-anna", "text/plain; charset=utf-8", protocol.as_bytes(), "Протокол осмотра терапевта"),
    );
    let mut discharge = document("doc-2", "p-anna", "application/pdf", STORED_PDF, "Выписка из стационара");
    discharge["date"] = json!("2025-11-20T12:00:00+03:00");
    put(s, &discharge);
    put(s, &document("doc-boris", "p-boris", "text/plain", "Тайный протокол Бориса".as_bytes(), "Протокол"));
    let password = "длинный пароль для портала";
    for (user, pid) in [("anna", "p-anna"), ("boris", "p-boris"), ("anna-limited", "p-anna")] {
        let (ok, _, err) = s.admin(
            &[
                "user",
                "add",
                "--username",
                user,
                "--role",
                "patient",
                "--patient",
                &format!("Patient/{pid}"),
                "--password-stdin",
            ]
            .into_iter()
            .chain(user.ends_with("-limited").then_some("--limited"))
            .collect::<Vec<_>>(),
            Some(&format!("{password}\n")),
        );
        assert!(ok, "{err}");
    }
    let (ok, _, err) = s.admin(
        &[
            "user",
            "add",
            "--username",
            "gp-petrov",
            "--role",
            "doctor",
            "--organization",
            "Organization/org-a",
            "--practitioner",
            "Practitioner/pr-1",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = s.admin(
        &[
            "user",
            "add",
            "--username",
            "doc",
            "--role",
            "doctor",
            "--organization",
            "Organization/org-a",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(ok, "{err}");
    password
}

fn scenario(s: &Server) {
    let password = seed(s);
    let root = s.root();
    let mut secrets = HashMap::new();
    let mut b = Browser::new(&root);
    // the root goes to the portal, which offers to sign in, in Russian
    let page = b.get("/");
    assert_eq!((page.status, page.location.as_deref()), (303, Some("/portal/")));
    let page = b.get("/portal/");
    assert!(page.body.contains("<html lang=\"ru\"") && page.body.contains("Войти"), "{}", page.body);
    let csp = &page.headers["content-security-policy"];
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    // pages of a record need a session
    let page = b.get("/portal/r/p-anna/summary");
    assert_eq!(page.status, 303);
    assert!(!page.body.contains("Смирнова"));

    // a session cookie planted before the sign-in is not the one after it (fixation)
    b.cookies.insert("mk_session".into(), "planted-by-someone-else".into());
    let done = b.sign_in("anna", password, &mut secrets);
    assert_eq!(done.status, 303);
    let set = done.set_cookies.iter().find(|c| c.starts_with("mk_session=")).unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/portal"), "{set}");
    assert_ne!(b.cookies["mk_session"], "planted-by-someone-else");
    assert!(!set.to_lowercase().contains("bearer") && !set.contains("eyJ"), "the browser never holds a token: {set}");
    let summary = b.follow(done);
    assert_eq!(summary.status, 200, "{}", summary.body);
    let body = &summary.body;
    assert!(
        body.contains("Смирнова Анна Петровна") && body.contains("12.04.1980") && body.contains("112-233-445 95"),
        "{body}"
    );
    assert!(body.contains("Поликлиника №1") && body.contains("Хронические заболевания"), "{body}");
    assert!(body.contains("7.4 ммоль/л") && body.contains("выше нормы") && body.contains("3.9–6.1"), "{body}");
    // what the record holds is text, never markup (the write path refuses scripts and
    // event handlers; the pages' unit tests render those too)
    assert!(!body.contains("<h1>взлом") && !body.contains("<img src=x"), "{body}");
    assert!(
        body.contains("&#60;/td&#62;&#60;/table&#62;&#60;h1&#62;взлом")
            && body.contains("&#34;&#62;&#60;img src=x&#62;"),
        "{body}"
    );
    assert!(!body.contains("Борис"), "another patient's record: {body}");

    // every page of the record opens
    for page in ["visits", "results", "vaccinations", "prescriptions", "documents", "search"] {
        let p = b.get(&format!("/portal/r/p-anna/{page}"));
        assert_eq!(p.status, 200, "{page}: {}", p.body);
        assert!(p.body.contains("aria-current=\"page\"") && !p.body.contains("Борис"), "{page}: {}", p.body);
    }
    // documents: each has a page with its text, and a PDF of it
    let docs = b.get("/portal/r/p-anna/documents");
    assert!(docs.body.contains("href=\"/portal/r/p-anna/documents/doc-1\""), "{}", docs.body);
    let page = b.get("/portal/r/p-anna/documents/doc-1");
    assert!(page.status == 200 && page.body.contains("Жалобы на головную боль по утрам."), "{}", page.body);
    assert!(page.body.contains("Петров Пётр Петрович") && page.body.contains("/portal/r/p-anna/documents/doc-1.pdf"));
    let pdf = b.get("/portal/r/p-anna/documents/doc-1.pdf");
    assert_eq!((pdf.status, pdf.headers["content-type"].as_str()), (200, "application/pdf"));
    assert!(pdf.headers["content-disposition"].starts_with("attachment"), "{:?}", pdf.headers);
    let text = pdftotext(&pdf.bytes);
    assert!(text.contains("Смирнова Анна Петровна") && text.contains("АД 150/95 мм рт. ст., ЧСС 78."), "{text}");
    assert!(text.contains("Протокол осмотра терапевта"), "{text}");
    // a stored PDF comes back as it was stored
    assert_eq!(b.get("/portal/r/p-anna/documents/doc-2.pdf").bytes, STORED_PDF);
    // the whole record as one PDF
    let whole = b.get("/portal/r/p-anna/record.pdf");
    assert_eq!(whole.status, 200);
    let text = pdftotext(&whole.bytes);
    for expected in ["Смирнова Анна Петровна", "112-233-445 95", "Сахарный диабет 2 типа", "7.4 ммоль/л", "Глюкоза"]
    {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(!text.contains("Борис") && !text.contains("Тайный"), "{text}");
    assert!(b.get("/portal/r/p-anna/summary").body.contains("/portal/r/p-anna/record.pdf"));
    // another patient's document: not by this record's path, not by theirs
    for path in [
        "/portal/r/p-anna/documents/doc-boris",
        "/portal/r/p-anna/documents/doc-boris.pdf",
        "/portal/r/p-boris/documents/doc-boris.pdf",
        "/portal/r/p-boris/record.pdf",
        "/portal/r/p-anna/documents/..%2Fdoc-boris.pdf",
    ] {
        let p = b.get(path);
        assert_eq!(p.status, 404, "{path}: {}", p.body);
        assert!(!p.body.contains("Тайный") && !p.body.contains("Борис") && !p.bytes.starts_with(b"%PDF"), "{path}");
    }

    // results: the newest value with the earlier one beside it
    let results = b.get("/portal/r/p-anna/results");
    assert!(
        results.body.contains("7.4 ммоль/л") && results.body.contains("5.2 ммоль/л (10.01.2025 09:00)"),
        "{}",
        results.body
    );
    // search over the record in word forms, filtered by kind and date
    let found = b.get("/portal/r/p-anna/search?q=%D0%B4%D0%B8%D0%B0%D0%B1%D0%B5%D1%82%D0%BE%D0%BC&type=&from=&to=");
    assert!(found.body.contains("Сахарный диабет"), "{}", found.body);
    let none = b.get(
        "/portal/r/p-anna/search?q=%D0%B3%D0%BB%D1%8E%D0%BA%D0%BE%D0%B7%D0%B0&type=Observation&from=2026-01-01&to=",
    );
    assert!(!none.body.contains("10.01.2025") && none.body.contains("02.03.2026"), "{}", none.body);

    // another patient's record: no page, nothing of it shown
    for page in ["summary", "results", "search?q=Тайный"] {
        let p = b.get(&format!("/portal/r/p-boris/{page}"));
        assert_eq!(p.status, 404, "{page}: {}", p.body);
        assert!(!p.body.contains("Борис") && !p.body.contains("4.4"), "{}", p.body);
    }

    // the language switch is remembered
    let p = b.get("/portal/lang/en?back=/portal/r/p-anna/summary");
    assert_eq!(p.location.as_deref(), Some("/portal/r/p-anna/summary"));
    let p = b.get("/portal/r/p-anna/summary");
    assert!(
        p.body.contains("<html lang=\"en\"")
            && p.body.contains("Chronic conditions")
            && p.body.contains("Type 2 diabetes")
    );
    // a place to come back to is a portal path only
    let p = b.get("/portal/lang/ru?back=https://evil.example/");
    assert_eq!(p.location.as_deref(), Some("/portal/"));

    // sign-out needs the form's CSRF token
    let csrf = field(&b.get("/portal/r/p-anna/summary").body, "csrf");
    assert!(!csrf.is_empty());
    let p = b.post("/portal/logout", &[("csrf", "forged")]);
    assert_eq!(p.status, 403);
    assert_eq!(b.get("/portal/r/p-anna/summary").status, 200, "a refused sign-out changes nothing");
    let stolen = b.cookies["mk_session"].clone();
    let p = b.post("/portal/logout", &[("csrf", &csrf)]);
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/portal/?ended=signout")));
    let p = b.get("/portal/r/p-anna/summary");
    assert_eq!(p.status, 303);
    // the old cookie is dead on the server, not only forgotten by the browser
    b.cookies.insert("mk_session".into(), stolen);
    let p = b.get("/portal/r/p-anna/summary");
    assert_eq!(p.status, 303);
    assert!(!p.body.contains("Смирнова"));

    // the second patient, in the same browser: their own record, never the first one's
    let done = b.sign_in("boris", password, &mut secrets);
    let p = b.follow(done);
    assert!(p.body.contains("Борисов Борис") && p.body.contains("Тайный диагноз Бориса"), "{}", p.body);
    assert!(!p.body.contains("Смирнова"));
    assert_eq!(b.get("/portal/r/p-anna/summary").status, 404);

    // limited rights: the summary, no downloads
    let mut l = Browser::new(&root);
    let done = l.sign_in("anna-limited", password, &mut secrets);
    let p = l.follow(done);
    assert!(p.status == 200 && !p.body.contains("record.pdf"), "{}", p.body);
    for path in ["/portal/r/p-anna/record.pdf", "/portal/r/p-anna/documents/doc-1.pdf"] {
        let p = l.get(path);
        assert_eq!(p.status, 403, "{path}: {}", p.body);
        assert!(!p.bytes.starts_with(b"%PDF") && p.body.contains("ограниченными правами"), "{path}: {}", p.body);
    }

    // a doctor finds patients; a patient in care opens, one outside care needs consent
    let mut d = Browser::new(&root);
    let done = d.sign_in("doc", password, &mut secrets);
    let p = d.follow(done);
    assert!(p.body.contains("name=\"identifier\""), "{}", p.body);
    let p = d.get("/portal/patients?name=%D0%A1%D0%BC%D0%B8%D1%80%D0%BD%D0%BE%D0%B2%D0%B0&birthdate=&identifier=");
    assert!(p.body.contains("href=\"/portal/r/p-anna/summary\""), "{}", p.body);
    let p = d.get("/portal/r/p-anna/results");
    assert!(p.status == 200 && p.body.contains("7.4"), "{}", p.body);
    let p = d.get("/portal/r/p-boris/summary");
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("согласие") && !p.body.contains("Тайный"), "{}", p.body);
    for path in
        ["/portal/r/p-boris/record.pdf", "/portal/r/p-boris/documents/doc-boris.pdf", "/portal/r/p-boris/health"]
    {
        let p = d.get(path);
        assert_eq!(p.status, 403, "{path}: {}", p.body);
        assert!(!p.bytes.starts_with(b"%PDF") && !p.body.contains("Тайный"), "{path}");
        assert!(p.body.contains("/portal/r/p-boris/request-access"), "{path}: the way to ask for access");
    }

    // a registrar: the demographics and appointments, nothing clinical
    let (ok, _, err) = s.admin(
        &[
            "user",
            "add",
            "--username",
            "registrar",
            "--role",
            "registrar",
            "--organization",
            "Organization/org-a",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(ok, "{err}");
    let mut r = Browser::new(&root);
    let done = r.sign_in("registrar", password, &mut secrets);
    r.follow(done);
    let p = r.get("/portal/r/p-anna/summary");
    assert!(
        p.status == 200 && p.body.contains("Смирнова Анна Петровна") && p.body.contains("112-233-445 95"),
        "{}",
        p.body
    );
    assert!(!p.body.contains("Сахарный диабет") && !p.body.contains("7.4"), "nothing clinical: {}", p.body);
    assert!(!p.body.contains("/portal/r/p-anna/results"), "no clinical pages in the menu");
    assert_eq!(r.get("/portal/r/p-anna/results").status, 403);

    // every page's reads were the caller's own, in the audit log the patient reads
    let anna = s.user_token("anna-api", "patient", &["--patient", "Patient/p-anna"]);
    let log = s.req_as(Some(&anna), "GET", "AuditEvent?_count=200", &[], None).json();
    let portal_reads = log["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["agent"].to_string().contains("medkarta-portal"))
        .count();
    assert!(portal_reads >= 5, "{log}");
}

/// A local SMTP receiver (Python `aiosmtpd`, messages kept in a maildir) and a stand-in SMS
/// gateway that refuses its first request; killed when dropped.
struct Receivers {
    children: Vec<std::process::Child>,
    smtp_port: u16,
    sms_port: u16,
    maildir: tempfile::TempDir,
    sms_log: std::path::PathBuf,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Receivers {
    fn start() -> Receivers {
        use std::io::BufRead;
        let smtp_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = tempfile::tempdir().unwrap();
        let smtp = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{smtp_port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test.sh installs it)");
        let sms_log = maildir.path().join("sms.jsonl");
        let mut sms = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sms_gateway.py"))
            .arg(&sms_log)
            .arg("1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(sms.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let sms_port = line.trim().parse().unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Receivers { children: vec![smtp, sms], smtp_port, sms_port, maildir, sms_log }
    }

    fn mails(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail").join("new");
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
            .unwrap_or_default()
    }

    fn sms(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.sms_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A message to a patient: in their inbox at once, and told by e-mail and SMS (retried
/// when the gateway refuses, never twice, naming no health data); read in the portal;
/// what a patient may and may not do with messages.
fn messages(backend: Backend) {
    let r = Receivers::start();
    let smtp = format!("smtp://127.0.0.1:{}", r.smtp_port);
    let sms = format!("http://127.0.0.1:{}/send", r.sms_port);
    let s = Server::start(
        backend,
        &[
            "--rate-limit-account",
            "100",
            "--smtp-url",
            &smtp,
            "--smtp-from",
            "noreply@medkarta.test",
            "--sms-webhook-url",
            &sms,
            "--sms-webhook-auth",
            "Bearer s3cret-gateway-key",
            "--job-retry-seconds",
            "1",
        ],
    );
    let password = seed(&s);
    let mut anna = s.get("Patient/p-anna").json();
    anna["telecom"] = json!([{"system": "email", "value": "anna@example.ru"},
                              {"system": "phone", "value": "+7 (912) 345-67-89", "use": "mobile"}]);
    put(&s, &anna);
    let alert = json!({
        "resourceType": "Communication", "status": "completed", "priority": "urgent",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "alert"}]}],
        "subject": {"reference": "Patient/p-anna"}, "recipient": [{"reference": "Patient/p-anna"}],
        "sender": {"reference": "Organization/org-a"}, "sent": "2026-03-02T10:00:00+03:00",
        "payload": [{"contentString": "Гемоглобин 95 г/л — ниже нормы. Запишитесь к врачу."}]
    });
    let created = s.post("Communication", &alert);
    assert_eq!(created.status, 201, "{}", created.text);
    let message_id = created.json()["id"].as_str().unwrap().to_string();

    // told by e-mail and by SMS (the gateway refused once: tried again)
    wait_for("an e-mail", || r.mails().len() == 1);
    wait_for("an accepted SMS", || r.sms().iter().any(|m| m["refused"] == false));
    let mail = &r.mails()[0];
    assert!(mail.contains("To: <anna@example.ru>") && mail.contains("From: =?UTF-8?B?"), "{mail}");
    let body64: String = mail.split("\n\n").nth(1).unwrap_or("").split_whitespace().collect();
    use base64::Engine as _;
    let body = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body64).unwrap()).unwrap();
    assert!(body.contains("/portal/inbox") && body.contains("важное уведомление"), "{body}");
    assert!(!mail.contains("Гемоглобин") && !body.contains("Гемоглобин"), "no health data by e-mail: {body}");
    let texts = r.sms();
    assert_eq!(texts.len(), 2, "one refused, one accepted: {texts:?}");
    for t in &texts {
        assert_eq!(t["authorization"], "Bearer s3cret-gateway-key");
        let sent: Value = serde_json::from_str(t["body"].as_str().unwrap()).unwrap();
        assert_eq!(sent["to"], "+79123456789");
        assert!(sent["text"].as_str().unwrap().contains("/portal/inbox"), "{sent}");
        assert!(!sent.to_string().contains("Гемоглобин"), "no health data by SMS: {sent}");
    }
    // delivered once per channel: nothing more comes
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!((r.mails().len(), r.sms().len()), (1, 2), "each channel told once");

    // the inbox: unread in every page's header, read by a form with the CSRF token
    let mut secrets = HashMap::new();
    let mut b = Browser::new(&s.root());
    let done = b.sign_in("anna", password, &mut secrets);
    let summary = b.follow(done);
    assert!(summary.body.contains("href=\"/portal/inbox\">Сообщения <span class=\"count\""), "{}", summary.body);
    let inbox = b.get("/portal/inbox");
    assert!(inbox.body.contains("Гемоглобин 95 г/л — ниже нормы.") && inbox.body.contains("новое"), "{}", inbox.body);
    assert!(inbox.body.contains("Поликлиника №1") && inbox.body.contains("Важное уведомление"), "{}", inbox.body);
    let read = format!("/portal/inbox/{message_id}/read");
    assert_eq!(b.post(&read, &[("csrf", "forged")]).status, 403);
    assert!(b.get("/portal/inbox").body.contains("новое"), "a forged form changes nothing");
    let csrf = field(&inbox.body, "csrf");
    let p = b.post(&read, &[("csrf", &csrf)]);
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/portal/inbox")));
    let inbox = b.get("/portal/inbox");
    assert!(!inbox.body.contains("новое") && !inbox.body.contains("class=\"count\""), "{}", inbox.body);
    let stored = s.get(&format!("Communication/{message_id}")).json();
    assert!(stored["received"].is_string(), "{stored}");

    // what a patient may not do with messages
    let token = s.user_token("anna-api", "patient", &["--patient", "Patient/p-anna"]);
    let patch = |id: &str, ops: Value| {
        s.req_as(
            Some(&token),
            "PATCH",
            &format!("Communication/{id}"),
            &[("Content-Type", "application/json-patch+json")],
            Some(&ops.to_string()),
        )
    };
    let changed =
        patch(&message_id, json!([{"op": "replace", "path": "/payload/0/contentString", "value": "всё хорошо"}]));
    assert_eq!(changed.status, 403, "{}", changed.text);
    assert!(changed.text.contains("marked as read"), "{}", changed.text);
    let to_doctor = json!({
        "resourceType": "Communication", "status": "completed",
        "subject": {"reference": "Patient/p-anna"}, "recipient": [{"reference": "Practitioner/pr-1"}],
        "payload": [{"contentString": "Результаты анализа у вас"}]
    });
    let theirs = s.post("Communication", &to_doctor);
    let theirs = theirs.json()["id"].as_str().unwrap().to_string();
    let marked = patch(&theirs, json!([{"op": "add", "path": "/received", "value": "2026-03-03T10:00:00Z"}]));
    assert_eq!(marked.status, 403, "only the recipient marks a message read: {}", marked.text);
    let deleted = s.req_as(Some(&token), "DELETE", &format!("Communication/{message_id}"), &[], None);
    assert_eq!(deleted.status, 403, "a patient deletes no message: {}", deleted.text);
    let mut spam = to_doctor.clone();
    spam["recipient"] = json!([{"reference": "Patient/p-boris"}]);
    let sent = s.req_as(
        Some(&token),
        "POST",
        "Communication",
        &[("Content-Type", "application/fhir+json")],
        Some(&spam.to_string()),
    );
    assert_eq!(sent.status, 403, "a patient cannot message another patient: {}", sent.text);
    // nor by a transaction entry, nor a conditional create: the rule holds for every write
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": spam, "request": {"method": "POST", "url": "Communication"}}]});
    let r = s.req_as(Some(&token), "POST", "", &[("Content-Type", "application/fhir+json")], Some(&bundle.to_string()));
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s.req_as(
        Some(&token),
        "POST",
        "Communication",
        &[("Content-Type", "application/fhir+json"), ("If-None-Exist", "recipient=Patient/p-boris")],
        Some(&spam.to_string()),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(s.get("Communication?recipient=Patient/p-boris").json()["total"], 0, "nothing stored");
    // another patient's portal cannot mark it read either
    let mut boris = Browser::new(&s.root());
    let done = boris.sign_in("boris", password, &mut secrets);
    let page = boris.follow(done);
    let csrf = field(&page.body, "csrf");
    let p = boris.post(&read, &[("csrf", &csrf)]);
    assert_eq!(p.status, 404, "{}", p.body);
    assert!(!boris.get("/portal/inbox").body.contains("Гемоглобин"));
}

#[test]
fn messages_on_sqlite() {
    messages(Backend::Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn messages_on_postgres() {
    messages(Backend::Postgres(PgDatabase::create()));
}

/// Health tracking: charts of one's values, one's own measurements checked and stored,
/// an out-of-range value raising a Flag and messages to the patient and the GP, the GP
/// acknowledging it; what a patient may not write.
fn health(backend: Backend) {
    let s = Server::start(backend, &["--rate-limit-account", "100"]);
    let password = seed(&s);
    // the GP set a personal limit for Anna's systolic pressure: 130
    let goal = json!({
        "resourceType": "Goal", "lifecycleStatus": "active",
        "description": {"text": "Систолическое давление не выше 130"},
        "subject": {"reference": "Patient/p-anna"},
        "target": [{"measure": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "detailRange": {"low": {"value": 100, "unit": "мм рт. ст."}, "high": {"value": 130, "unit": "мм рт. ст."}}}]
    });
    assert_eq!(s.post("Goal", &goal).status, 201);
    let mut secrets = HashMap::new();
    let mut b = Browser::new(&s.root());
    let done = b.sign_in("anna", password, &mut secrets);
    b.follow(done);
    let page = b.get("/portal/r/p-anna/health");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Измерений пока нет.") && page.body.contains("<option value=\"2345-7\""),
        "{}",
        page.body
    );
    // any laboratory value: the chart of the glucose results, with the range drawn
    let glucose = b.get("/portal/r/p-anna/health?test=2345-7");
    assert!(glucose.body.contains("data-points=\"2\"") && glucose.body.contains("Норма 3.9–6.1"), "{}", glucose.body);
    let csrf = field(&page.body, "csrf");
    let add = |b: &mut Browser, v1: &str, v2: &str, csrf: &str| {
        b.post(
            "/portal/r/p-anna/health",
            &[("csrf", csrf), ("measure", "bp"), ("v1", v1), ("v2", v2), ("at", "2026-03-03T08:00")],
        )
    };
    // checked before anything is stored
    let count = || s.get("Observation?patient=p-anna&_summary=count").json()["total"].as_u64().unwrap();
    let before = count();
    let bad = add(&mut b, "80", "120", &csrf);
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Верхнее давление должно быть больше нижнего"), "{}", bad.body);
    assert_eq!(add(&mut b, "1200", "80", &csrf).status, 422);
    assert_eq!(add(&mut b, "120", "80", "forged").status, 403);
    assert_eq!(count(), before, "nothing stored");
    // within limits: stored, marked patient-reported, no alert
    let ok = add(&mut b, "125", "80", &csrf);
    assert_eq!(ok.status, 303, "{}", ok.body);
    let mine = s.get("Observation?patient=p-anna&code=85354-9").json();
    let stored = &mine["entry"][0]["resource"];
    assert_eq!(stored["performer"][0]["reference"], "Patient/p-anna");
    assert!(stored["meta"]["tag"].to_string().contains("patient-reported"), "{stored}");
    assert_eq!(s.get("Flag?patient=p-anna").json()["total"], 0);
    // above the personal limit (130), though within the usual range: an alert
    assert_eq!(add(&mut b, "135", "85", &csrf).status, 303);
    let page = b.get("/portal/r/p-anna/health");
    let pressure = page.body.split("id=\"bp\"").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(pressure.contains("data-points=\"2\""), "two values on the pressure chart: {pressure}");
    assert_eq!(pressure.matches("<circle class=\"p s0\"").count(), 2, "two systolic dots");
    assert_eq!(pressure.matches("<circle class=\"p s1\"").count(), 2, "two diastolic dots");
    let glucose = page.body.split("id=\"glucose\"").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(glucose.contains("data-points=\"2\""), "the laboratory's glucose on the glucose chart: {glucose}");
    assert!(page.body.contains("Личная норма 100–130") && page.body.contains("выше личной нормы"), "{}", page.body);
    let inbox = b.get("/portal/inbox");
    assert!(inbox.body.contains("Измеренное вами значение вне нормы"), "{}", inbox.body);
    let summary = b.get("/portal/r/p-anna/summary");
    assert!(summary.body.contains("Предупреждения") && summary.body.contains("выше личной нормы"), "{}", summary.body);
    // the GP is told too, and sees the alert over the API
    let gp = s.user_token(
        "gp-api",
        "doctor",
        &["--organization", "Organization/org-a", "--practitioner", "Practitioner/pr-1"],
    );
    let told = s.req_as(Some(&gp), "GET", "Communication?recipient=Practitioner/pr-1", &[], None).json();
    assert_eq!(told["total"], 1, "{told}");
    assert!(told.to_string().contains("Пациент сообщил значение вне нормы"), "{told}");
    let flags = s.req_as(Some(&gp), "GET", "Flag?patient=p-anna", &[], None).json();
    assert_eq!(
        (flags["total"].as_u64(), &flags["entry"][0]["resource"]["status"]),
        (Some(1), &json!("active")),
        "{flags}"
    );
    let flag_id = flags["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    // a patient cannot acknowledge it, nor enter values into another record
    let ack = format!("/portal/r/p-anna/flags/{flag_id}/ack");
    assert_eq!(b.post(&ack, &[("csrf", &csrf)]).status, 403);
    let other = b.post("/portal/r/p-boris/health", &[("csrf", &csrf), ("measure", "pulse"), ("v1", "70")]);
    assert_eq!(other.status, 403);
    // what a patient may not write over the API
    let token = s.user_token("anna-api", "patient", &["--patient", "Patient/p-anna"]);
    let post = |body: &Value| {
        s.req_as(
            Some(&token),
            "POST",
            "Observation",
            &[("Content-Type", "application/fhir+json")],
            Some(&body.to_string()),
        )
        .status
    };
    let mut fake = lab("fake", "p-anna", 5.0, "2026-03-03T09:00:00+03:00");
    fake.as_object_mut().unwrap().remove("id");
    assert_eq!(post(&fake), 403, "a laboratory result is not the patient's to write");
    let mut theirs = stored.clone();
    theirs.as_object_mut().unwrap().remove("id");
    theirs["subject"]["reference"] = json!("Patient/p-boris");
    assert_eq!(post(&theirs), 403, "into another record");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": fake, "request": {"method": "POST", "url": "Observation"}}]});
    let r = s.req_as(Some(&token), "POST", "", &[("Content-Type", "application/fhir+json")], Some(&bundle.to_string()));
    assert_eq!(r.status, 403, "a laboratory result by a transaction entry: {}", r.text);
    let o2 = s.get("Observation/o-2").json();
    let mut changed = o2.clone();
    changed["valueQuantity"]["value"] = json!(5.0);
    let put = s.req_as(
        Some(&token),
        "PUT",
        "Observation/o-2",
        &[("Content-Type", "application/fhir+json")],
        Some(&changed.to_string()),
    );
    assert_eq!(put.status, 403, "a result is not changed by the patient: {}", put.text);
    assert_eq!(s.req_as(Some(&token), "DELETE", "Observation/o-2", &[], None).status, 403);
    // the GP acknowledges the alert in the portal
    let mut g = Browser::new(&s.root());
    let done = g.sign_in("gp-petrov", password, &mut secrets);
    g.follow(done);
    let page = g.get("/portal/r/p-anna/health");
    assert!(page.body.contains(&ack), "{}", page.body);
    let csrf = field(&page.body, "csrf");
    let p = g.post(&ack, &[("csrf", &csrf)]);
    assert_eq!(p.status, 303, "{}", p.body);
    let flag = s.get(&format!("Flag/{flag_id}")).json();
    assert_eq!(flag["status"], "inactive", "{flag}");
    assert!(flag["period"]["end"].is_string());
}

#[test]
fn health_on_sqlite() {
    health(Backend::Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn health_on_postgres() {
    health(Backend::Postgres(PgDatabase::create()));
}

/// Who looked at my record and who may see it: a clinician outside care asks for access,
/// the patient allows it (the clinician's API reads succeed) and revokes it (403 again),
/// grants from the directory search, sees refused attempts in the log and flags one;
/// another patient changes nothing of it; break-the-glass from the portal.
fn sharing(backend: Backend) {
    let s = Server::start(backend, &["--rate-limit-account", "100"]);
    let password = seed(&s);
    let api = s.user_token("doc-api", "doctor", &["--organization", "Organization/org-a"]);
    let read = || s.req_as(Some(&api), "GET", "Condition/c-boris", &[], None).status;
    assert_eq!(read(), 403, "Boris is not in org-a's care");
    let mut secrets = HashMap::new();
    let mut d = Browser::new(&s.root());
    let done = d.sign_in("doc", password, &mut secrets);
    d.follow(done);
    // outside care: the page offers to ask the patient, or to break the glass
    let closed = d.get("/portal/r/p-boris/summary");
    assert_eq!(closed.status, 403);
    assert!(
        closed.body.contains("/portal/r/p-boris/request-access")
            && closed.body.contains("/portal/r/p-boris/break-glass")
    );
    assert!(!closed.body.contains("Тайный"), "{}", closed.body);
    let csrf = field(&closed.body, "csrf");
    assert_eq!(d.post("/portal/r/p-boris/request-access", &[("csrf", "forged")]).status, 403);
    let asked = d.post("/portal/r/p-boris/request-access", &[("csrf", &csrf)]);
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(read(), 403, "a request opens nothing");

    // the patient answers in the portal
    let mut b = Browser::new(&s.root());
    let done = b.sign_in("boris", password, &mut secrets);
    b.follow(done);
    let page = b.get("/portal/r/p-boris/sharing");
    assert!(page.body.contains("Поликлиника №1") && page.body.contains("Разрешить"), "{}", page.body);
    let told = b.get("/portal/inbox");
    assert!(told.body.contains("Поликлиника №1 запрашивает доступ к вашей медицинской карте"), "{}", told.body);
    let consent_path =
        page.body.split("action=\"/portal/r/p-boris/sharing/").nth(1).unwrap().split('"').next().unwrap();
    let consent_path = format!("/portal/r/p-boris/sharing/{consent_path}");
    let csrf_b = field(&page.body, "csrf");
    // another patient cannot answer it, through their own record's path either
    let mut a = Browser::new(&s.root());
    let done = a.sign_in("anna", password, &mut secrets);
    a.follow(done);
    let csrf_a = field(&a.get("/portal/r/p-anna/sharing").body, "csrf");
    assert_eq!(a.post(&consent_path, &[("csrf", &csrf_a), ("decision", "allow")]).status, 404);
    let sideways = consent_path.replace("p-boris", "p-anna");
    assert_eq!(a.post(&sideways, &[("csrf", &csrf_a), ("decision", "allow")]).status, 422);
    assert_eq!(read(), 403, "nothing changed");
    assert_eq!(b.post(&consent_path, &[("csrf", "forged"), ("decision", "allow")]).status, 403);
    let allowed = b.post(&consent_path, &[("csrf", &csrf_b), ("decision", "allow")]);
    assert_eq!(allowed.status, 303, "{}", allowed.body);
    assert_eq!(read(), 200, "allowed: the doctor's API read succeeds");
    let page = b.get("/portal/r/p-boris/sharing");
    assert!(page.body.contains("Отозвать"), "{}", page.body);
    assert_eq!(b.post(&consent_path, &[("csrf", &csrf_b), ("decision", "revoke")]).status, 303);
    assert_eq!(read(), 403, "revoked: refused again");
    // a grant from the directory search, until a date, then revoked
    let found =
        b.get("/portal/r/p-boris/sharing?find=%D0%9F%D0%BE%D0%BB%D0%B8%D0%BA%D0%BB%D0%B8%D0%BD%D0%B8%D0%BA%D0%B0");
    assert!(found.body.contains("value=\"Organization/org-a\""), "{}", found.body);
    let granted = b.post(
        "/portal/r/p-boris/sharing",
        &[
            ("csrf", &csrf_b),
            ("actor", "Organization/org-a"),
            ("kind", "permit"),
            ("scope", "record"),
            ("until", "2099-12-31"),
        ],
    );
    assert_eq!(granted.status, 303, "{}", granted.body);
    assert_eq!(read(), 200);
    let bad =
        b.post("/portal/r/p-boris/sharing", &[("csrf", &csrf_b), ("actor", "Patient/p-anna"), ("kind", "permit")]);
    assert_eq!(bad.status, 422, "only clinicians and organisations are granted access");
    let consents = || s.get("Consent?patient=p-boris&_summary=count").json()["total"].as_u64().unwrap();
    let before = consents();
    let bad = b.post(
        "/portal/r/p-boris/sharing",
        &[("csrf", &csrf_b), ("actor", "Organization/org-a"), ("kind", "permit"), ("until", "31.12.2099")],
    );
    assert_eq!(bad.status, 422, "an end that is not a date");
    assert_eq!(consents(), before, "nothing stored by a refused form");
    let page = b.get("/portal/r/p-boris/sharing");
    let grant_path = page.body.split("action=\"/portal/r/p-boris/sharing/").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(
        b.post(&format!("/portal/r/p-boris/sharing/{grant_path}"), &[("csrf", &csrf_b), ("decision", "revoke")]).status,
        303
    );
    assert_eq!(read(), 403);
    // anna's pages of someone else's control: none
    assert_eq!(a.get("/portal/r/p-boris/access").status, 404);
    assert_eq!(a.get("/portal/r/p-boris/sharing").status, 404);

    // who looked: the clinic's reads and its refused attempts, flagged by the patient
    let log = b.get("/portal/r/p-boris/access");
    assert!(
        log.body.contains("doc-api") && log.body.contains("отказано") && log.body.contains("доступ разрешён"),
        "{}",
        log.body
    );
    assert!(log.body.contains("Поликлиника №1"), "the organisation is named: {}", log.body);
    let flag = log.body.split("action=\"/portal/r/p-boris/access/").nth(1).unwrap().split('"').next().unwrap();
    let flagged = b.post(&format!("/portal/r/p-boris/access/{flag}"), &[("csrf", &csrf_b)]);
    assert_eq!((flagged.status, flagged.location.as_deref()), (303, Some("/portal/r/p-boris/access?flagged=1")));
    let (ok, out, err) = s.command("audit", &["alerts"]);
    assert!(ok && out.contains("flagged"), "{out} {err}");

    // break-the-glass from the portal: a reason, the record opens, the patient is told
    assert_eq!(d.post("/portal/r/p-boris/break-glass", &[("csrf", &csrf), ("reason", "x")]).status, 422);
    let opened = d.post("/portal/r/p-boris/break-glass", &[("csrf", &csrf), ("reason", "Пациент без сознания, ДТП")]);
    assert_eq!(
        (opened.status, opened.location.as_deref()),
        (303, Some("/portal/r/p-boris/summary")),
        "{}",
        opened.body
    );
    assert!(d.get("/portal/r/p-boris/summary").body.contains("Тайный диагноз Бориса"));
    let inbox = b.get("/portal/inbox");
    assert!(inbox.body.contains("Экстренный доступ"), "{}", inbox.body);
    let page = b.get("/portal/r/p-boris/sharing");
    assert!(page.body.contains("Пациент без сознания, ДТП"), "{}", page.body);
}

#[test]
fn sharing_on_sqlite() {
    sharing(Backend::Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn sharing_on_postgres() {
    sharing(Backend::Postgres(PgDatabase::create()));
}

/// The portal in Chromium, driven by Playwright (`tests/python/portal_browser.py`);
/// screenshots go to `MEDKARTA_SCREENSHOTS` (docs/screenshots when refreshed by hand).
#[test]
fn portal_in_a_real_browser() {
    let s = Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &[]);
    let password = seed(&s);
    seed_schedule(&s);
    let shots = tempfile::tempdir().unwrap();
    let dir = std::env::var("MEDKARTA_SCREENSHOTS").unwrap_or_else(|_| shots.path().display().to_string());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/portal_browser.py");
    let grantee = s.user_token("docb-api", "doctor", &["--organization", "Organization/org-b"]);
    let out = std::process::Command::new("python3")
        .args([script, &s.root(), "anna", password, "Смирнова Анна Петровна", &dir])
        .env("PORTAL_GRANTEE_TOKEN", &grantee)
        .env("PORTAL_GRANTEE_FIND", "Другая")
        .env("PORTAL_GRANTEE_ORG", "Organization/org-b")
        .env("PORTAL_GRANTEE_READ", "Condition/c-1")
        .output()
        .expect("python3 must be installed");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("portal browser: OK"),
        "the browser test failed (scripts/test.sh installs Chromium and Playwright)\n{stdout}\n{stderr}"
    );
    // the alert the browser's blood pressure raised reached the GP too
    let gp = s.user_token(
        "gp-api",
        "doctor",
        &["--organization", "Organization/org-a", "--practitioner", "Practitioner/pr-1"],
    );
    let told = s.req_as(Some(&gp), "GET", "Communication?recipient=Practitioner/pr-1", &[], None).json();
    assert!(told.to_string().contains("170"), "the GP's message names the value: {told}");
    for shot in ["portal-summary.png", "portal-results.png", "portal-phone.png", "portal-health.png"] {
        let size = std::fs::metadata(std::path::Path::new(&dir).join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}

/// A session unused for the idle time ends on the server: the next page sends the browser
/// to the start page saying why, and the cookie it held opens nothing any more.
#[test]
fn an_idle_session_ends() {
    let s = Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &["--portal-idle-minutes", "1"]);
    let password = seed(&s);
    let mut b = Browser::new(&s.root());
    let done = b.sign_in("anna", password, &mut HashMap::new());
    assert_eq!(b.follow(done).status, 200);
    let cookie = b.cookies["mk_session"].clone();
    std::thread::sleep(std::time::Duration::from_secs(62));
    let p = b.get("/portal/r/p-anna/summary");
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/portal/?ended=idle")));
    assert!(
        p.set_cookies.iter().any(|c| c.starts_with("mk_session=") && c.contains("Max-Age=0")),
        "{:?}",
        p.set_cookies
    );
    assert!(
        b.get("/portal/?ended=idle").body.contains("вы долго не пользовались кабинетом"),
        "the start page says why"
    );
    b.cookies.insert("mk_session".into(), cookie);
    let p = b.get("/portal/r/p-anna/summary");
    assert_eq!(p.status, 303, "the old cookie is dead");
    assert!(!p.body.contains("Смирнова"));
}

#[test]
fn portal_on_sqlite() {
    scenario(&Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &["--rate-limit-account", "100"]));
}

#[test]
fn portal_on_postgres() {
    scenario(&Server::start(Backend::Postgres(PgDatabase::create()), &["--rate-limit-account", "100"]));
}

/// The number of documents in a record.
fn documents_of(s: &Server, pid: &str) -> u64 {
    s.get(&format!("DocumentReference?patient={pid}&_summary=count")).json()["total"].as_u64().unwrap()
}

/// Every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
    }
    out
}

/// Documents a person adds from the documents page: the file becomes a DocumentReference
/// and its Binary in the record, the Binary's content in the blob store sealed with the
/// patient's key (not in the resource table, not readable on disk), the type known by the
/// content; the clinician in care reads it over the API, other patients never. Refused and
/// storing nothing: a post without the CSRF token, a page disguised as an image, an empty
/// file, one over the limit, another person's record, a limited account.
fn uploads(backend: Backend) {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let s = Server::start(backend, &["--rate-limit-account", "100", "--upload-max-mb", "1"]);
    let password = seed(&s);
    let mut secrets = HashMap::new();
    let mut a = Browser::new(&s.root());
    let done = a.sign_in("anna", password, &mut secrets);
    a.follow(done);
    let page = a.get("/portal/r/p-anna/documents");
    assert!(page.body.contains("enctype=\"multipart/form-data\"") && page.body.contains("1 МБ"), "{}", page.body);
    let csrf = field(&page.body, "csrf");
    let before = documents_of(&s, "p-anna");

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice("метка-снимка-4417".as_bytes());
    png.extend(std::iter::repeat_n(7u8, 5000));
    let form = |title| [("csrf", csrf.as_str()), ("title", title), ("date", "2026-11-30")];
    let added =
        a.upload("/portal/r/p-anna/documents", &form("Снимок руки"), ("C:\\scans\\рука.png", "image/png", &png));
    assert_eq!(added.status, 303, "{}", added.body);
    let doc_path = added.location.clone().unwrap();
    assert!(doc_path.starts_with("/portal/r/p-anna/documents/"), "{doc_path}");
    let doc = a.get(&doc_path);
    assert_eq!(doc.status, 200);
    assert!(doc.body.contains("Снимок руки") && doc.body.contains("рука.png"), "{}", doc.body);
    assert!(doc.body.contains(&format!("<img src=\"{doc_path}/files/1\"")), "{}", doc.body);
    let file = a.get(&format!("{doc_path}/files/1"));
    assert_eq!(file.status, 200);
    assert_eq!(file.bytes, png, "the file as it was added");
    assert_eq!(file.headers["content-type"], "image/png");
    assert!(file.headers["content-security-policy"].contains("sandbox"));
    assert!(a.get("/portal/r/p-anna/documents").body.contains("Снимок руки"));

    // over the API: the clinician in care reads the document and its file
    let api = s.user_token("gp-api", "doctor", &["--organization", "Organization/org-a"]);
    let doc_id = doc_path.rsplit('/').next().unwrap();
    let d = s.req_as(Some(&api), "GET", &format!("DocumentReference/{doc_id}"), &[], None).json();
    assert_eq!(d["author"][0]["reference"], "Patient/p-anna");
    assert_eq!(d["category"][0]["coding"][0]["code"], "upload");
    let attachment = &d["content"][0]["attachment"];
    assert_eq!(
        (attachment["contentType"].as_str(), attachment["size"].as_u64()),
        (Some("image/png"), Some(png.len() as u64))
    );
    assert_eq!(attachment["creation"], "2026-11-30");
    let binary = attachment["url"].as_str().unwrap().to_string();
    let bin = s.req_as(Some(&api), "GET", &binary, &[], None);
    assert_eq!(bin.status, 200);
    let bin = bin.json();
    assert_eq!(bin["data"].as_str(), Some(b64(&png).as_str()));
    assert_eq!(bin["securityContext"]["reference"], format!("DocumentReference/{doc_id}"));
    // outside the resource table, sealed: the content is nowhere on disk or in the database as it was
    if s.is_postgres() {
        assert_eq!(s.sql_text("SELECT count(*)::text FROM medkarta_blob"), "1");
        assert_eq!(
            s.sql_text(
                "SELECT count(*)::text FROM medkarta_blob WHERE position(convert_to('метка-снимка-4417', 'UTF8') in data) > 0"
            ),
            "0"
        );
    } else {
        let data = std::path::PathBuf::from(&s.store_args()[1]);
        let blobs = files_under(&data.join("blobs"));
        assert_eq!(blobs.len(), 1, "{blobs:?}");
        let marker = "метка-снимка-4417".as_bytes();
        for f in files_under(&data) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(!bytes.windows(marker.len()).any(|w| w == marker), "{} holds the file as it was", f.display());
        }
    }

    // a PDF: its document's PDF is the file itself
    let added =
        a.upload("/portal/r/p-anna/documents", &form("Выписка"), ("vypiska.pdf", "application/pdf", STORED_PDF));
    assert_eq!(added.status, 303, "{}", added.body);
    let pdf = a.get(&format!("{}.pdf", added.location.unwrap()));
    assert_eq!((pdf.status, pdf.bytes.as_slice()), (200, STORED_PDF));
    assert_eq!(documents_of(&s, "p-anna"), before + 2);

    // refused, and nothing stored
    let html = b"<html><script>alert(1)</script></html>";
    for (fields, file, status, says) in [
        (vec![("csrf", "forged"), ("title", "x")], ("a.png", "image/png", &png[..]), 403, "Форма устарела"),
        (form("Страница").to_vec(), ("a.png", "image/png", &html[..]), 415, "PDF, JPEG или PNG"),
        (form("Пусто").to_vec(), ("a.png", "image/png", &b""[..]), 422, "Файл не выбран"),
        (form("").to_vec(), ("a.png", "image/png", &png[..]), 422, "Укажите"),
    ] {
        let r = a.upload("/portal/r/p-anna/documents", &fields, file);
        assert_eq!(r.status, status, "{}", r.body);
        assert!(r.body.contains(says), "{}", r.body);
    }
    let mut big = b"%PDF-1.7\n".to_vec();
    big.resize((1 << 20) + 1, b' ');
    let r = a.upload("/portal/r/p-anna/documents", &form("Большой"), ("big.pdf", "application/pdf", &big));
    assert_eq!(r.status, 413, "{}", r.body);
    let r = a.upload("/portal/r/p-boris/documents", &form("Чужое"), ("a.png", "image/png", &png));
    assert_ne!(r.status, 303, "{}", r.body);
    assert_eq!(documents_of(&s, "p-anna"), before + 2);
    assert_eq!(documents_of(&s, "p-boris"), 1);

    // another patient never reads it, through the portal or the API
    let mut b = Browser::new(&s.root());
    let done = b.sign_in("boris", password, &mut secrets);
    b.follow(done);
    assert_ne!(b.get(&format!("{doc_path}/files/1")).status, 200);
    assert_ne!(b.get(&doc_path).status, 200);
    let boris = s.user_token("boris-api", "patient", &["--patient", "Patient/p-boris"]);
    assert_ne!(s.req_as(Some(&boris), "GET", &binary, &[], None).status, 200);

    // limited rights: no form, no upload, no file
    let mut l = Browser::new(&s.root());
    let done = l.sign_in("anna-limited", password, &mut secrets);
    l.follow(done);
    let page = l.get("/portal/r/p-anna/documents");
    assert!(!page.body.contains("multipart/form-data"));
    let csrf = field(&page.body, "csrf");
    let r = l.upload("/portal/r/p-anna/documents", &[("csrf", &csrf), ("title", "x")], ("a.png", "image/png", &png));
    assert_eq!(r.status, 403);
    assert_eq!(l.get(&format!("{doc_path}/files/1")).status, 403);
    assert_eq!(documents_of(&s, "p-anna"), before + 2);
}

#[test]
fn uploads_on_sqlite() {
    uploads(Backend::Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn uploads_on_postgres() {
    uploads(Backend::Postgres(PgDatabase::create()));
}

/// Dr Petrov of org-a takes appointments every day 08:00–10:00 in Minsk (30 minutes, online);
/// returns when the slots are there.
fn seed_schedule(s: &Server) {
    let period: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| json!({"url": "day", "valueCode": d}))
        .chain([
            json!({"url": "start", "valueTime": "08:00:00"}),
            json!({"url": "end", "valueTime": "10:00:00"}),
            json!({"url": "minutes", "valuePositiveInt": 30}),
        ])
        .collect();
    put(
        s,
        &json!({"resourceType": "Location", "id": "loc-a", "name": "Корпус 1", "managingOrganization": {"reference": "Organization/org-a"}}),
    );
    put(
        s,
        &json!({"resourceType": "Schedule", "id": "sch-petrov", "active": true,
        "extension": [{"url": "https://medkarta.org/fhir/StructureDefinition/schedule-timezone", "valueCode": "Europe/Minsk"},
                      {"url": "https://medkarta.org/fhir/StructureDefinition/working-pattern", "extension": period}],
        "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "419772000", "display": "Терапевт"}]}],
        "actor": [{"reference": "Practitioner/pr-1"}, {"reference": "Location/loc-a"}]}),
    );
    let total = |q: &str| s.get(&format!("{q}&_summary=count")).json()["total"].as_u64().unwrap();
    for _ in 0..300 {
        if total("Slot?schedule=Schedule/sch-petrov") >= 27 * 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Booking in the portal: a patient finds tomorrow's free times of a specialty (in the
/// place's time), books one with a button, cannot take it twice, moves it to another time
/// (the old one freed), cancels; a forged form changes nothing; another patient cannot book
/// into the record; the doctor sees the day's list.
fn booking(backend: Backend) {
    let s = Server::start(backend, &["--rate-limit-account", "100"]);
    let password = seed(&s);
    seed_schedule(&s);
    let total = |q: &str| s.get(&format!("{q}&_summary=count")).json()["total"].as_u64().unwrap();
    let mut secrets = HashMap::new();
    let mut a = Browser::new(&s.root());
    let done = a.sign_in("anna", password, &mut secrets);
    a.follow(done);
    let page = a.get("/portal/r/p-anna/appointments");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Терапевт") && page.body.contains("Записей нет"), "{}", page.body);
    let day = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date().tomorrow().unwrap();
    let find = format!("/portal/r/p-anna/appointments?specialty=http%3A%2F%2Fsnomed.info%2Fsct%7C419772000&day={day}");
    let page = a.get(&find);
    assert!(page.body.contains(">08:00</button>") && page.body.contains(">09:30</button>"), "{}", page.body);
    assert!(page.body.contains("Петров Пётр, Корпус 1"), "{}", page.body);
    let csrf = field(&page.body, "csrf");
    let first = field(page.body.split("<ul class=\"slots\">").nth(1).unwrap(), "slot");
    let r = a.post("/portal/r/p-anna/appointments", &[("csrf", "forged"), ("slot", &first)]);
    assert_eq!(r.status, 403);
    assert_eq!(total("Appointment?patient=p-anna"), 0);
    let r = a.post("/portal/r/p-anna/appointments", &[("csrf", &csrf), ("slot", &first)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let page = a.follow(r);
    assert!(
        page.body.contains("запись сохранена")
            && page.body.contains(&format!(
                "{}.{}.{} 08:00",
                &day.to_string()[8..10],
                &day.to_string()[5..7],
                &day.to_string()[..4]
            )),
        "{}",
        page.body
    );
    assert_eq!(s.get(&format!("Slot/{first}")).json()["status"], "busy");
    let again = a.post("/portal/r/p-anna/appointments", &[("csrf", &csrf), ("slot", &first)]);
    assert_eq!(again.status, 409);
    assert!(again.body.contains("уже заняли"), "{}", again.body);
    // move it: the new time taken, the old one freed, in one change
    let id = page.body.split("/appointments?move=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let moving = a.get(&format!("{find}&move={id}"));
    assert!(moving.body.contains("Выберите новое время"));
    let later = field(moving.body.split(">08:30</button>").next().unwrap().rsplit("<form").next().unwrap(), "slot");
    let r = a.post("/portal/r/p-anna/appointments", &[("csrf", &csrf), ("slot", &later), ("move", &id)]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(s.get(&format!("Slot/{first}")).json()["status"], "free");
    assert_eq!(s.get(&format!("Slot/{later}")).json()["status"], "busy");
    assert_eq!(total("Appointment?patient=p-anna&status=booked"), 1);
    // the waiting list: Anna asks for an earlier time; Boris's 08:00 is cancelled and
    // offered to her; she confirms, giving up her 08:30
    let booked = s.post(
        "Appointment/$book",
        &json!({"resourceType": "Parameters", "parameter": [
        {"name": "slot", "valueReference": {"reference": format!("Slot/{first}")}},
        {"name": "patient-reference", "valueReference": {"reference": "Patient/p-boris"}}]}),
    );
    assert_eq!(booked.status, 201, "{}", booked.text);
    let boris_visit = booked.json()["id"].as_str().unwrap().to_string();
    let moving = a.get(&format!("{find}&move={id}"));
    let r = a.post(
        "/portal/r/p-anna/appointments/wait",
        &[("csrf", &csrf), ("specialty", "http://snomed.info/sct|419772000"), ("day", &day.to_string()), ("move", &id)],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(a.follow(r).body.contains("Лист ожидания"), "{}", moving.body);
    let cancel = json!([{"op": "replace", "path": "/status", "value": "cancelled"},
                        {"op": "add", "path": "/cancelationReason", "value": {"text": "Пациент отменил"}}]);
    let r = s.req(
        "PATCH",
        &format!("Appointment/{boris_visit}"),
        &[("Content-Type", "application/json-patch+json")],
        Some(&cancel.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let page = a.get("/portal/r/p-anna/appointments");
    assert!(page.body.contains("предложено: подтвердите"), "{}", page.body);
    let offer = page
        .body
        .split("/appointments/")
        .filter_map(|p| {
            p.strip_suffix("/confirm\" class=\"inline\">").or_else(|| p.split_once("/confirm\"").map(|(x, _)| x))
        })
        .next()
        .unwrap()
        .to_string();
    let r = a.post(&format!("/portal/r/p-anna/appointments/{offer}/confirm"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(s.get(&format!("Appointment/{id}")).json()["status"], "cancelled", "the later visit given up");
    assert_eq!(s.get(&format!("Slot/{first}")).json()["status"], "busy");
    assert_eq!(s.get(&format!("Slot/{later}")).json()["status"], "free");
    let id = offer;
    // the doctor's day list
    let mut d = Browser::new(&s.root());
    let done = d.sign_in("gp-petrov", password, &mut secrets);
    d.follow(done);
    let list = d.get(&format!("/portal/day?day={day}"));
    assert!(list.body.contains("08:00") && list.body.contains("Смирнова"), "{}", list.body);
    // another patient cannot book into Anna's record
    let mut b = Browser::new(&s.root());
    let done = b.sign_in("boris", password, &mut secrets);
    let home = b.follow(done);
    let bcsrf = field(&home.body, "csrf");
    let r = b.post("/portal/r/p-anna/appointments", &[("csrf", &bcsrf), ("slot", &first)]);
    assert_ne!(r.status, 303);
    let theirs = b.get("/portal/r/p-anna/appointments");
    assert_ne!(theirs.status, 200);
    assert!(!theirs.body.contains("Петров") && !theirs.body.contains("08:00"), "{}", theirs.body);
    assert_ne!(b.post(&format!("/portal/r/p-anna/appointments/{id}/cancel"), &[("csrf", &bcsrf)]).status, 303);
    assert_eq!(b.get("/portal/day").status, 403, "the day list is for staff");
    assert_eq!(total("Appointment?patient=p-anna&status=booked"), 1);
    // cancel
    let r = a.post(&format!("/portal/r/p-anna/appointments/{id}/cancel"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(s.get(&format!("Appointment/{id}")).json()["status"], "cancelled");
    assert_eq!(s.get(&format!("Slot/{first}")).json()["status"], "free");
}

#[test]
fn booking_on_sqlite() {
    booking(Backend::Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn booking_on_postgres() {
    booking(Backend::Postgres(PgDatabase::create()));
}

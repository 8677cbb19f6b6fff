//! The front door (issue 23), over HTTP: a request is authenticated from its headers
//! before anything of its body is read or parsed — without a valid token the answer is a
//! 401 whatever the body, and it comes before the body has even been sent; a client
//! revokes and introspects only the tokens issued to it; a first sign-in enrols its own
//! authenticator secret before any token; CSRF tokens are the server's and bound to the
//! sign-in; a replayed code revokes what it gave; sign-in and token requests are
//! rate-limited per address (behind trusted proxies only, by `X-Forwarded-For`) and per
//! account, with an alert; a lock looks the same for unknown names and is lifted by an
//! operator; slow clients are cut off.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Browser, Page, Server, field, totp_now};

const FHIR: &str = "application/fhir+json";
const DUPLICATE: &str = r#"{"resourceType":"Patient","a":1,"a":2}"#;

/// Send the request line and headers only (announcing `length` bytes of body that never
/// come) and return what the server answers.
fn headers_only(s: &Server, path: &str, token: Option<&str>, length: usize) -> String {
    let addr = s.base.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        conn,
        "POST /fhir/{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {FHIR}\r\nContent-Length: {length}\r\n{auth}\r\n"
    )
    .unwrap();
    conn.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // the answer, up to the end of its headers (a server waiting for the body times out)
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn no_work_before_authentication(s: &Server) {
    // the body is not parsed for an unknown caller: 401, not "appears more than once"
    for token in [None, Some("not.a.token")] {
        let r = s.req_as(token, "POST", "Patient", &[("Content-Type", FHIR)], Some(DUPLICATE));
        assert_eq!(r.status, 401, "{token:?}: {}", r.text);
        assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")));
        assert!(!r.text.contains("more than once"), "{}", r.text);
    }
    // nor read: the 401 comes while the announced 15 MB have not been sent
    for token in [None, Some("not.a.token")] {
        let answer = headers_only(s, "Patient", token, 15_000_000);
        assert!(answer.starts_with("HTTP/1.1 401"), "{token:?}: {answer:?}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    }
    // a caller with a valid token still gets the body checked
    let r = s.req("POST", "Patient", &[("Content-Type", FHIR)], Some(DUPLICATE));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("more than once"), "{}", r.text);
    // and the server is still there
    assert_eq!(s.get("metadata").status, 200);
}

fn tokens_belong_to_their_client(s: &Server) {
    let (ok, out, err) = s.admin(&["client", "add", "other app", "--scope", "system/Patient.rs"], None);
    assert!(ok, "{err}");
    let other: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (b_id, b_secret) = (other["client_id"].as_str().unwrap(), other["client_secret"].as_str().unwrap());
    let a_token = s.client_token("system/*.cruds").unwrap();
    let as_b = |endpoint: &str| {
        s.form(endpoint, &[("token", a_token.as_str()), ("client_id", b_id), ("client_secret", b_secret)], &[])
    };
    // B can neither revoke A's token nor learn anything of it
    let r = as_b("oauth/revoke");
    assert_eq!(r.status, 400, "{}", r.text);
    let r = as_b("oauth/introspect");
    assert_eq!(r.json()["active"], false, "{}", r.text);
    assert_eq!(s.req_as(Some(&a_token), "GET", "Patient", &[], None).status, 200, "A's token still works");
    // nor can a public client (it proves nothing but its id)
    let (ok, out, err) = s.admin(
        &["client", "add", "web app", "--public", "--redirect-uri", "https://app.example/cb", "--scope", "user/*.rs"],
        None,
    );
    assert!(ok, "{err}");
    let public: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let p_id = public["client_id"].as_str().unwrap();
    let r = s.form("oauth/revoke", &[("token", a_token.as_str()), ("client_id", p_id)], &[]);
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.form("oauth/introspect", &[("token", a_token.as_str()), ("client_id", p_id)], &[]);
    assert_eq!(r.json()["active"], false, "{}", r.text);
    // and a confidential client without its secret is no client at all
    let r = s.form("oauth/revoke", &[("token", a_token.as_str()), ("client_id", b_id)], &[]);
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(s.req_as(Some(&a_token), "GET", "Patient", &[], None).status, 200);
    // A introspects and revokes its own
    let own =
        [("token", a_token.as_str()), ("client_id", s.client_id.as_str()), ("client_secret", s.client_secret.as_str())];
    let r = s.form("oauth/introspect", &own, &[]);
    assert_eq!(r.json()["active"], true, "{}", r.text);
    assert_eq!(s.form("oauth/revoke", &own, &[]).status, 200);
    assert_eq!(s.req_as(Some(&a_token), "GET", "Patient", &[], None).status, 401);
    // client credentials grant system/ scopes only: user/ and patient/ ones need a user
    let (ok, out, err) =
        s.admin(&["client", "add", "mixed", "--scope", "system/Patient.rs user/*.cruds patient/*.rs"], None);
    assert!(ok, "{err}");
    let mixed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (m_id, m_secret) = (mixed["client_id"].as_str().unwrap(), mixed["client_secret"].as_str().unwrap());
    let grant = |scope: &str| {
        let f =
            [("grant_type", "client_credentials"), ("client_id", m_id), ("client_secret", m_secret), ("scope", scope)];
        s.form("oauth/token", &f, &[])
    };
    let r = grant("system/Patient.rs user/*.cruds patient/*.rs");
    assert_eq!(r.json()["scope"], "system/Patient.rs", "{}", r.text);
    let r = grant("user/*.cruds");
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("invalid_scope")), "{}", r.text);
    // a wrong secret is no client at all
    let r = s.form("oauth/revoke", &[("token", "x"), ("client_id", b_id), ("client_secret", "wrong")], &[]);
    assert_eq!(r.status, 401);
}

#[test]
fn sqlite_tokens_belong_to_their_client() {
    tokens_belong_to_their_client(&Server::sqlite());
}

#[test]
fn sqlite_no_work_before_authentication() {
    no_work_before_authentication(&Server::sqlite());
}

#[test]
fn postgres_no_work_before_authentication() {
    no_work_before_authentication(&Server::postgres());
}

const PASSWORD: &str = "анна любит длинные пароли";
const SCOPE: &str = "patient/*.rs openid offline_access";

/// A patient account `user` and a public app (redirect `https://app.example/cb`); the
/// app's client id.
fn patient_and_app(s: &Server, user: &str) -> String {
    let (ok, _, err) = s.admin(
        &["user", "add", "--username", user, "--role", "patient", "--patient", "Patient/p-anna", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = s.admin(
        &["client", "add", "Моё здоровье", "--scope", SCOPE, "--redirect-uri", "https://app.example/cb", "--public"],
        None,
    );
    assert!(ok, "{err}");
    serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["client_id"].as_str().unwrap().to_string()
}

fn exchange(s: &Server, client_id: &str, code: &str) -> common::Resp {
    s.form(
        "oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "https://app.example/cb"),
            ("client_id", client_id),
            ("code_verifier", common::VERIFIER),
        ],
        &[],
    )
}

fn is_enrolment(p: &Page) -> bool {
    p.text.contains("Set up your second factor")
}

fn expired(p: &Page) -> bool {
    p.status == 400 && p.location.is_none() && (p.text.contains("start again") || p.text.contains("expired"))
}

#[test]
fn enrolment_comes_first_and_its_secret_is_not_fixed() {
    // more sign-ins of one account than a person makes in a minute
    let s = Server::start(common::Backend::Sqlite(tempfile::tempdir().unwrap()), &["--rate-limit-account", "100"]);
    let app = patient_and_app(&s, "anna");
    // a first sign-in gets a set-up page; its ticket opens nothing until a code confirms it
    let seen = Browser::open(&s, &app, SCOPE, &[]);
    let first = seen.login("anna", PASSWORD, "");
    assert!(is_enrolment(&first), "{}", first.text);
    let seen_ticket = field(&first.text, "ticket");
    assert!(expired(&seen.allow(&seen_ticket)), "no code before the second factor is set up");
    // the owner signs in again: a secret of their own
    let owner = Browser::open(&s, &app, SCOPE, &[]);
    let page = owner.login("anna", PASSWORD, "");
    assert!(is_enrolment(&page));
    let secret = page.secret();
    assert_ne!(secret, first.secret(), "each enrolment has its own secret");
    let ticket = field(&page.text, "ticket");
    let wrong = owner.step("enrol", &[("ticket", &ticket), ("otp", "000000")], &[]);
    assert!(is_enrolment(&wrong) && wrong.secret() == secret, "a wrong code shows the same secret again");
    let consent = owner.step("enrol", &[("ticket", &ticket), ("otp", &totp_now(&secret, 0))], &[]);
    assert!(consent.text.contains("Recovery codes"), "{}", consent.text);
    let recovery: Vec<String> =
        consent.text.split("<li><code>").skip(1).map(|c| c.split("</code>").next().unwrap().to_string()).collect();
    // a CSRF token of another sign-in does not carry this one's ticket
    let other = Browser::open(&s, &app, SCOPE, &[]);
    let mut crossed = Browser::open(&s, &app, SCOPE, &[]);
    (crossed.csrf, crossed.cookie, crossed.request) = (other.csrf.clone(), other.cookie.clone(), owner.request.clone());
    assert!(expired(&crossed.allow(&ticket)));
    let redirect = owner.allow(&ticket);
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.param("iss").as_deref(), Some(s.root().as_str()), "RFC 9207");
    assert_eq!(redirect.param("state").as_deref(), Some("xyz"));
    // the old set-up page cannot replace the owner's authenticator, nor sign in with its secret
    let late = seen.step("enrol", &[("ticket", &seen_ticket), ("otp", &totp_now(&first.secret(), 0))], &[]);
    assert!(late.text.contains("already set up") && !late.text.contains("Recovery codes"), "{}", late.text);
    let guess = Browser::open(&s, &app, SCOPE, &[]).login("anna", PASSWORD, &totp_now(&first.secret(), 0));
    assert!(guess.text.contains("Wrong user name, password or code"), "{}", guess.text);

    // a replayed authorization code revokes the tokens it gave (RFC 6749 §4.1.2)
    let code = redirect.param("code").unwrap();
    let tokens = exchange(&s, &app, &code);
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    let access = tokens.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.req_as(Some(&access), "GET", "Patient/p-anna", &[], None).status, 404, "valid (nothing stored)");
    assert_eq!(exchange(&s, &app, &code).json()["error"], "invalid_grant");
    assert_eq!(s.req_as(Some(&access), "GET", "Patient/p-anna", &[], None).status, 401, "revoked");
    // an error redirect names the issuer too
    let query =
        format!("oauth/authorize?response_type=token&client_id={app}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb");
    let r = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .new_agent()
        .get(&format!("{}/{query}", s.root()))
        .call()
        .unwrap();
    let location = r.headers().get("location").unwrap().to_str().unwrap().to_string();
    assert!(location.contains("error=unsupported_response_type") && location.contains("iss="), "{location}");
    // a forged CSRF pair is refused
    let mut forged = Browser::open(&s, &app, SCOPE, &[]);
    (forged.csrf, forged.cookie) = ("forged".into(), "mk_csrf=forged".into());
    let p = forged.login("anna", PASSWORD, &recovery[0]);
    assert!(p.status == 400 && p.text.contains("expired"), "{}", p.text);

    // the owner changes the password with the second factor; every session ends
    let b = Browser::open(&s, &app, SCOPE, &[]);
    let page = b.login("anna", PASSWORD, &recovery[0]);
    let redirect = b.allow(&field(&page.text, "ticket"));
    let access =
        exchange(&s, &app, &redirect.param("code").unwrap()).json()["access_token"].as_str().unwrap().to_string();
    let form = Browser::open_page(&s, "oauth/password", &[("Accept-Language", "en")]);
    let change = |old: &str, otp: &str, new: &str, repeat: &str| {
        let f = [
            ("csrf", form.csrf.as_str()),
            ("lang", "en"),
            ("username", "anna"),
            ("password", old),
            ("otp", otp),
            ("new_password", new),
            ("repeat", repeat),
        ];
        form.post("oauth/password", &f, &[])
    };
    let new = "новый пароль ещё длиннее";
    assert!(change(PASSWORD, &recovery[1], new, "something else").text.contains("differ"));
    assert!(change(PASSWORD, "000000", new, new).text.contains("Wrong user name, password or code"));
    assert!(change(PASSWORD, &recovery[1], "qwertyuiop", "qwertyuiop").text.contains("commonly used"));
    assert_eq!(s.req_as(Some(&access), "GET", "Patient/p-anna", &[], None).status, 404, "still signed in");
    // a sign-in in progress when the password changes gives no code afterwards
    let pending = Browser::open(&s, &app, SCOPE, &[]);
    let pending_page = pending.login("anna", PASSWORD, &recovery[5]);
    assert!(pending_page.text.contains("Allow access"), "{}", pending_page.text);
    let done = change(PASSWORD, &recovery[2], new, new);
    assert!(done.text.contains("The password is changed"), "{}", done.text);
    assert_eq!(s.req_as(Some(&access), "GET", "Patient/p-anna", &[], None).status, 401, "sessions ended");
    assert!(expired(&pending.allow(&field(&pending_page.text, "ticket"))), "and sign-ins begun before");
    let b = Browser::open(&s, &app, SCOPE, &[]);
    assert!(b.login("anna", PASSWORD, &recovery[3]).text.contains("Wrong user name"));
    assert!(b.login("anna", new, &recovery[3]).text.contains("Allow access"));
    // an operator's reset of the second factor asks for a new enrolment
    let (ok, _, err) = s.admin(&["user", "reset-2fa", "anna"], None);
    assert!(ok, "{err}");
    assert!(is_enrolment(&Browser::open(&s, &app, SCOPE, &[]).login("anna", new, "")));
}

/// The same answer for a name that does not exist as for one that does, lock included;
/// the lock alerts the security officer and an operator lifts it; `X-Forwarded-For` from
/// a peer that is not a trusted proxy is ignored by the rate limit.
#[test]
fn locks_look_the_same_and_an_operator_lifts_them() {
    let s = Server::sqlite();
    let app = patient_and_app(&s, "anna");
    let b = Browser::open(&s, &app, SCOPE, &[]);
    let message = |p: &Page| {
        p.text.split("class=\"error\" role=\"alert\">").nth(1).unwrap().split('<').next().unwrap().to_string()
    };
    let answers =
        |user: &str| -> Vec<String> { (0..6).map(|_| message(&b.login(user, "a wrong guess here", ""))).collect() };
    let known = answers("anna");
    assert_eq!(known, answers("no.such.user"));
    assert!(known[5].contains("blocked for 15 more minutes"), "{known:?}");
    assert!(message(&b.login("anna", PASSWORD, "")).contains("blocked"));
    let (ok, alerts, err) = s.command("audit", &["alerts"]);
    assert!(ok, "{err}");
    assert!(alerts.contains("sign-in-lockout") && alerts.contains("anna"), "{alerts}");
    let (ok, _, err) = s.admin(&["user", "unlock", "anna"], None);
    assert!(ok, "{err}");
    assert!(is_enrolment(&b.login("anna", PASSWORD, "")));
    // a client naming other addresses is still one address
    let statuses: Vec<u16> = (0..70)
        .map(|i| {
            let spoofed = format!("198.51.100.{i}");
            s.form(
                "oauth/token",
                &[("grant_type", "client_credentials"), ("client_id", "nobody")],
                &[("X-Forwarded-For", &spoofed)],
            )
            .status
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[test]
fn rate_limits_per_address_and_account_with_an_alert() {
    let s = Server::start(
        common::Backend::Sqlite(tempfile::tempdir().unwrap()),
        &["--rate-limit-address", "8", "--rate-limit-account", "3", "--trusted-proxies", "127.0.0.1,::1"],
    );
    let app = patient_and_app(&s, "anna");
    let from = |ip: &str| [("X-Forwarded-For", ip.to_string())];
    // per account: the fourth attempt within the minute waits, whatever the address
    let b = Browser::open(&s, &app, SCOPE, &[]);
    let attempt = |user: &str, ip: &str| {
        let h = from(ip);
        b.step(
            "login",
            &[("username", user), ("password", "a wrong guess here"), ("otp", "")],
            &[("X-Forwarded-For", h[0].1.as_str())],
        )
    };
    for i in 0..3 {
        assert_eq!(attempt("anna", &format!("198.51.100.{i}")).status, 200);
    }
    let refused = attempt("anna", "198.51.100.9");
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert!(refused.retry_after.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    assert_eq!(attempt("someone.else", "198.51.100.9").status, 200, "another account");
    // per address: the ninth request within the minute from one address waits
    let token = |ip: &str| {
        s.form(
            "oauth/token",
            &[("grant_type", "client_credentials"), ("client_id", "nobody")],
            &[("X-Forwarded-For", ip)],
        )
    };
    let statuses: Vec<u16> = (0..9).map(|_| token("203.0.113.5").status).collect();
    assert_eq!(statuses[..8], [401; 8]);
    assert_eq!(statuses[8], 429);
    let r = token("203.0.113.5");
    assert_eq!((r.status, r.json()["error"].as_str()), (429, Some("temporarily_unavailable")));
    assert!(r.header("retry-after").is_some());
    assert_eq!(token("203.0.113.6").status, 401, "another address (named by a trusted proxy)");
    // the flood raised one alert
    let (ok, alerts, err) = s.command("audit", &["alerts"]);
    assert!(ok, "{err}");
    assert_eq!(alerts.matches("sign-in-flood").count(), 1, "{alerts}");
    assert!(alerts.contains("203.0.113.5"), "{alerts}");
}

/// A client that sends its headers or its body too slowly is cut off; sign-ins beyond
/// the password-hashing places and their queue are turned away at once (503).
#[test]
fn slow_clients_are_cut_off_and_floods_turned_away() {
    let s = Server::start(
        common::Backend::Sqlite(tempfile::tempdir().unwrap()),
        &["--header-timeout", "2", "--body-timeout", "1", "--password-hash-threads", "1"],
    );
    let app = patient_and_app(&s, "anna");
    let b = Browser::open(&s, &app, SCOPE, &[]);
    let start = std::sync::Barrier::new(40);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let all: Vec<_> = (0..40)
            .map(|i| {
                let (b, start) = (&b, &start);
                scope.spawn(move || {
                    start.wait();
                    b.login(&format!("guess.{i}"), "a wrong guess here", "").status
                })
            })
            .collect();
        all.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert!(busy >= 40 - 17, "one hashing, sixteen waiting, the rest turned away: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 503 || *s == 200), "{statuses:?}");
    let addr = s.base.trim_start_matches("http://").split('/').next().unwrap().to_string();
    // headers one line every half second: closed after about two seconds
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let started = std::time::Instant::now();
    write!(conn, "GET /fhir/metadata HTTP/1.1\r\nHost: {addr}\r\n").unwrap();
    let mut closed = false;
    for i in 0..20 {
        if write!(conn, "X-Trickle-{i}: x\r\n").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1024];
        match conn.read(&mut buf) {
            Ok(_) => {
                closed = true; // the end, or a 408 before it
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let took = started.elapsed();
    assert!(closed && took < Duration::from_secs(6), "still open after {took:?}");
    assert!(took >= Duration::from_millis(1500), "closed too early: {took:?}");
    // a body that stops: 408 after the body timeout
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {FHIR}\r\nContent-Length: 100\r\n\r\n{{\"resourceType\"",
        s.token
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(s.history_total("Patient"), 0, "nothing stored");
    assert_eq!(s.get("metadata").status, 200);
}

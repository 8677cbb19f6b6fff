//! The front door (issue 23), over HTTP: a request is authenticated from its headers
//! before anything of its body is read or parsed — without a valid token the answer is a
//! 401 whatever the body, and it comes before the body has even been sent; a client
//! revokes and introspects only the tokens issued to it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Server;

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

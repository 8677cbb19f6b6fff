//! Identity and access over HTTP: the API is closed without a valid token; OAuth client
//! credentials, revocation and introspection; and the access matrix — every role against
//! representative interactions on its own and on another patient's record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::Server;
use serde_json::{Value, json};

#[test]
fn requests_without_a_valid_token_are_refused() {
    let s = Server::sqlite();
    // public by specification
    assert_eq!(s.req_as(None, "GET", "metadata", &[], None).status, 200);
    let smart = s.req_as(None, "GET", ".well-known/smart-configuration", &[], None);
    assert_eq!(smart.status, 200, "{}", smart.text);
    assert!(smart.json()["token_endpoint"].as_str().unwrap().ends_with("/oauth/token"));
    // everything else needs a token
    for (token, error) in [(None, "invalid_request"), (Some("not-a-token"), "invalid_token")] {
        let r = s.req_as(token, "GET", "Patient", &[], None);
        assert_eq!(r.status, 401, "{}", r.text);
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer realm=\"medkarta\"") && challenge.contains(error), "{challenge}");
        assert_eq!(r.issue().1, "security");
    }
    assert_eq!(s.req_as(None, "POST", "Patient", &[("Content-Type", "application/fhir+json")], Some("{}")).status, 401);
    assert_eq!(s.get("Patient").status, 200, "with the harness's token");

    // a token of another server (another key) is foreign here
    let other = Server::sqlite();
    assert_eq!(s.req_as(Some(&other.token), "GET", "Patient", &[], None).status, 401);

    // client credentials: wrong secret, scopes beyond the registration
    let bad = s.form(
        "oauth/token",
        &[("grant_type", "client_credentials"), ("client_id", &s.client_id), ("client_secret", "guess")],
        &[],
    );
    assert_eq!((bad.status, bad.json()["error"].as_str()), (401, Some("invalid_client")));
    let (ok, out, _) = s.admin(&["client", "add", "lab reader", "--scope", "system/Observation.rs"], None);
    assert!(ok);
    let lab: Value = serde_json::from_str(out.trim()).unwrap();
    let lab_token = |scope: &str| {
        s.form(
            "oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", lab["client_id"].as_str().unwrap()),
                ("client_secret", lab["client_secret"].as_str().unwrap()),
                ("scope", scope),
            ],
            &[],
        )
    };
    assert_eq!(lab_token("system/Patient.rs").json()["error"], "invalid_scope");
    let granted = lab_token("system/Observation.rs system/Patient.rs").json();
    assert_eq!(granted["scope"], "system/Observation.rs", "only what the registration allows");
    let t = granted["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.req_as(Some(&t), "GET", "Observation", &[], None).status, 200);
    let r = s.req_as(Some(&t), "GET", "Patient", &[], None);
    assert_eq!((r.status, r.issue().1.as_str()), (403, "forbidden"), "{}", r.text);
    let obs = observation("lab-1", "p1").to_string();
    let write = s.req_as(Some(&t), "POST", "Observation", &[("Content-Type", "application/fhir+json")], Some(&obs));
    assert_eq!(write.status, 403, "read-only scopes");

    // introspection and revocation
    let auth = [("client_id", s.client_id.as_str()), ("client_secret", s.client_secret.as_str())];
    let intro = |token: &str| {
        let mut f = auth.to_vec();
        f.push(("token", token));
        s.form("oauth/introspect", &f, &[]).json()
    };
    assert_eq!(intro(&t)["active"], true);
    assert_eq!(intro(&t)["scope"], "system/Observation.rs");
    let mut f = auth.to_vec();
    f.push(("token", &t));
    assert_eq!(s.form("oauth/revoke", &f, &[]).status, 200);
    assert_eq!(intro(&t)["active"], false);
    assert_eq!(s.req_as(Some(&t), "GET", "Observation", &[], None).status, 401, "revoked");
    assert_eq!(s.form("oauth/revoke", &[("token", "x")], &[]).status, 401, "clients authenticate");
}

/// (role, extra `admin user add` arguments)
const ROLES: &[(&str, &[&str])] = &[
    ("patient", &["--patient", "Patient/p-own"]),
    ("doctor", &["--organization", "Organization/org-1", "--practitioner", "Practitioner/dr-1"]),
    ("nurse", &["--organization", "Organization/org-1"]),
    ("registrar", &["--organization", "Organization/org-1"]),
    ("administrator", &["--organization", "Organization/org-1"]),
    ("security-officer", &[]),
    ("analyst", &[]),
];

fn observation(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "valueQuantity": {"value": 72, "unit": "/min"}})
}

/// What each role gets, in the order of the requests in [`access_matrix`]: a status,
/// or for searches `Ok(number of matches)`.
fn expected(role: &str) -> Vec<Result<u64, u16>> {
    let all = |n: u64| Ok(n);
    match role {
        "patient" => vec![
            Err(200),
            Err(404),
            Err(200),
            Err(404),
            all(1),
            all(0),
            Err(200),
            Err(403),
            Err(403),
            Err(200),
            Err(403),
        ],
        "doctor" | "nurse" => vec![
            Err(200),
            Err(200),
            Err(200),
            Err(200),
            all(2),
            all(1),
            Err(200),
            Err(200),
            Err(201),
            Err(200),
            Err(201),
        ],
        "registrar" => vec![
            Err(200),
            Err(200),
            Err(403),
            Err(403),
            Err(403),
            all(1),
            Err(403),
            Err(403),
            Err(403),
            Err(200),
            Err(201),
        ],
        _ => vec![
            Err(403),
            Err(403),
            Err(403),
            Err(403),
            Err(403),
            Err(403),
            Err(403),
            Err(403),
            Err(403),
            Err(200),
            Err(403),
        ],
    }
}

fn access_matrix(s: &mut Server) {
    for p in ["p-own", "p-other"] {
        s.put(&format!("Patient/{p}"), &json!({"resourceType": "Patient", "id": p, "name": [{"family": p}]}));
    }
    s.put("Observation/obs-own", &observation("obs-own", "p-own"));
    s.put("Observation/obs-other", &observation("obs-other", "p-other"));
    s.put("Organization/org-1", &json!({"resourceType": "Organization", "id": "org-1", "name": "Поликлиника 1"}));
    let fhir = "application/fhir+json";
    for (role, args) in ROLES {
        let user = format!("user-{role}");
        let mut cmd = vec!["user", "add", "--username", &user, "--role", role];
        cmd.extend_from_slice(args);
        let (ok, out, err) = s.admin(&cmd, None);
        assert!(ok && out.contains("Password"), "{out} {err}");
        let (ok, token, err) = s.admin(&["token", "--user", &user, "--base-url", &s.base], None);
        assert!(ok, "{err}");
        let token = token.trim().to_string();
        let as_role = |method: &str, path: &str, body: Option<Value>| {
            let body = body.map(|b| b.to_string());
            s.req_as(Some(&token), method, path, &[("Content-Type", fhir)], body.as_deref())
        };
        let new_obs = |n: &str| Some(observation(n, "p-own"));
        let got: Vec<(String, Result<u64, u16>)> = vec![
            ("read own patient", as_role("GET", "Patient/p-own", None)),
            ("read other patient", as_role("GET", "Patient/p-other", None)),
            ("read own observation", as_role("GET", "Observation/obs-own", None)),
            ("read other observation", as_role("GET", "Observation/obs-other", None)),
            ("search observations", as_role("GET", "Observation?_id=obs-own,obs-other", None)),
            ("search other patient by id", as_role("GET", "Patient?_id=p-other", None)),
            ("history of own observation", as_role("GET", "Observation/obs-own/_history", None)),
            ("type history of observations", as_role("GET", "Observation/_history", None)),
            (
                "write an observation",
                as_role("PUT", &format!("Observation/new-{role}"), new_obs(&format!("new-{role}"))),
            ),
            ("read the organisation", as_role("GET", "Organization/org-1", None)),
            (
                "book an appointment",
                as_role(
                    "POST",
                    "Appointment",
                    Some(json!({"resourceType": "Appointment",
                "status": "booked", "start": "2026-12-01T09:00:00+03:00", "end": "2026-12-01T09:15:00+03:00",
                "participant": [{"actor": {"reference": "Patient/p-own"}, "status": "accepted"}]})),
                ),
            ),
        ]
        .into_iter()
        .map(|(what, r)| {
            let outcome = if r.status == 200 && r.json()["resourceType"] == "Bundle" && r.json()["type"] == "searchset"
            {
                Ok(r.json()["total"].as_u64().unwrap())
            } else {
                Err(r.status)
            };
            (format!("{role}: {what}"), outcome)
        })
        .collect();
        let outcomes: Vec<Result<u64, u16>> = got.iter().map(|(_, o)| *o).collect();
        assert_eq!(outcomes, expected(role), "{got:#?}");
    }
    // a disabled account's tokens stop working at once
    let (_, token, _) = s.admin(&["token", "--user", "user-doctor", "--base-url", &s.base], None);
    assert_eq!(s.req_as(Some(token.trim()), "GET", "Patient/p-own", &[], None).status, 200);
    assert!(s.admin(&["user", "disable", "user-doctor"], None).0);
    assert_eq!(s.req_as(Some(token.trim()), "GET", "Patient/p-own", &[], None).status, 401);
    assert!(!s.admin(&["token", "--user", "user-doctor", "--base-url", &s.base], None).0);
}

on_both_backends!(access_matrix);

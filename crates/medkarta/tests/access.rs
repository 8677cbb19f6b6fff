//! Identity and access over HTTP: the API is closed without a valid token; OAuth client
//! credentials, revocation and introspection; and the access matrix — every role against
//! representative interactions on its own and on another patient's record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{Server, field};
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

    // introspection and revocation, by the client the token was issued to
    let auth =
        [("client_id", lab["client_id"].as_str().unwrap()), ("client_secret", lab["client_secret"].as_str().unwrap())];
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
#[rustfmt::skip]
fn expected(role: &str) -> Vec<Result<u64, u16>> {
    let n = |n: u64| Ok(n);
    // own pat, other pat, own obs, other obs, search obs, other by _id, history, type history, write obs, org,
    // appointment, $validate (an operation)
    match role {
        // (patients book appointments of a slot: one without is 422, see tests/booking.rs)
        "patient" =>        vec![Err(200), Err(404), Err(200), Err(404), n(1), n(0), Err(200), Err(403), Err(403), Err(200), Err(422), Err(200)],
        // clinicians: the patients in their organisation's care
        // (outside it: 403 saying that the patient's consent is required)
        "doctor" | "nurse" => vec![Err(200), Err(403), Err(200), Err(403), n(1), n(0), Err(200), Err(403), Err(201), Err(200), Err(201), Err(200)],
        "registrar" =>      vec![Err(200), Err(200), Err(403), Err(403), Err(403), n(1), Err(403), Err(403), Err(403), Err(200), Err(201), Err(403)],
        _ =>                vec![Err(403), Err(403), Err(403), Err(403), Err(403), Err(403), Err(403), Err(403), Err(403), Err(200), Err(403), Err(403)],
    }
}

fn access_matrix(s: &mut Server) {
    s.put(
        "Patient/p-own",
        &json!({"resourceType": "Patient", "id": "p-own", "name": [{"family": "Своя"}],
            "managingOrganization": {"reference": "Organization/org-1"}}),
    );
    s.put("Patient/p-other", &json!({"resourceType": "Patient", "id": "p-other", "name": [{"family": "Чужая"}]}));
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
            ("validate an observation", as_role("POST", "Observation/$validate", new_obs("v"))),
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
    // a doctor brings a patient into the clinic's care by seeing them (an encounter it
    // provides); an encounter of another clinic is refused
    let (_, token, _) = s.admin(&["token", "--user", "user-doctor", "--base-url", &s.base], None);
    let doctor = |m: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        s.req_as(Some(token.trim()), m, path, &[("Content-Type", fhir)], body.as_deref())
    };
    let encounter = |org: &str| {
        json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p-other"}, "serviceProvider": {"reference": format!("Organization/{org}")}})
    };
    assert_eq!(doctor("POST", "Encounter", Some(encounter("org-2"))).status, 403);
    assert_eq!(doctor("GET", "Patient/p-other", None).status, 403);
    assert_eq!(doctor("POST", "Encounter", Some(encounter("org-1"))).status, 201);
    assert_eq!(doctor("GET", "Patient/p-other", None).status, 200);
    assert_eq!(doctor("GET", "Observation?_id=obs-own,obs-other", None).json()["total"], 2);
    // a disabled account's tokens stop working (an operator command in another process:
    // within the server's session re-check interval)
    assert_eq!(s.req_as(Some(token.trim()), "GET", "Patient/p-own", &[], None).status, 200);
    assert!(s.admin(&["user", "disable", "user-doctor"], None).0);
    std::thread::sleep(auth::directory::SESSION_RECHECK + std::time::Duration::from_millis(100));
    assert_eq!(s.req_as(Some(token.trim()), "GET", "Patient/p-own", &[], None).status, 401);
    assert!(!s.admin(&["token", "--user", "user-doctor", "--base-url", &s.base], None).0);
}

on_both_backends!(access_matrix);

#[test]
fn authorization_code_flow_with_pkce_and_totp() {
    // more sign-ins of one account than a person makes in a minute
    let s = Server::start(common::Backend::Sqlite(tempfile::tempdir().unwrap()), &["--rate-limit-account", "100"]);
    s.put("Patient/p-anna", &json!({"resourceType": "Patient", "id": "p-anna", "name": [{"family": "Смирнова"}]}));
    s.put("Observation/o-anna", &observation("o-anna", "p-anna"));
    s.put("Observation/o-other", &observation("o-other", "p-other"));
    let password = "анна любит длинные пароли";
    let (ok, _, err) = s.admin(
        &["user", "add", "--username", "anna", "--role", "patient", "--patient", "Patient/p-anna", "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    assert!(ok, "{err}");
    let scope = "patient/*.rs openid fhirUser offline_access launch/patient";
    let (ok, out, err) = s.admin(
        &["client", "add", "Моё здоровье", "--scope", scope, "--redirect-uri", "https://app.example/cb", "--public"],
        None,
    );
    assert!(ok, "{err}");
    let client: Value = serde_json::from_str(out.trim()).unwrap();
    let client_id = client["client_id"].as_str().unwrap().to_string();
    assert!(client["client_secret"].is_null(), "a public client has no secret");

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let root = s.root();
    let verifier = "a-verifier-of-enough-entropy-0123456789-abcdefghij";
    let authorize = format!(
        "{root}/oauth/authorize?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("scope", scope),
                ("state", "xyz"),
                ("aud", s.base.as_str()),
                ("nonce", "n-42"),
                ("code_challenge", &auth::directory::pkce_challenge(verifier)),
                ("code_challenge_method", "S256"),
            ])
            .finish()
    );
    let mut r = agent.get(&authorize).header("Accept-Language", "en").call().unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("mk_csrf="));
    let html = r.body_mut().read_to_string().unwrap();
    assert!(html.contains("Моё здоровье") && html.contains("Sign in"), "{html}");
    let csrf = field(&html, "csrf");
    let request = field(&html, "request");
    let post = |fields: &[(&str, &str)], with_cookie: bool| -> (u16, String, Option<String>) {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let mut rb =
            agent.post(&format!("{root}/oauth/authorize")).header("Content-Type", "application/x-www-form-urlencoded");
        if with_cookie {
            rb = rb.header("Cookie", &cookie);
        }
        let mut r = rb.send(body.as_str()).unwrap();
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default(), location)
    };
    let login = |pw: &str, otp: &str| {
        post(
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("step", "login"),
                ("lang", "en"),
                ("username", "anna"),
                ("password", pw),
                ("otp", otp),
            ],
            true,
        )
    };
    // without the CSRF cookie the form is refused
    let (status, page, _) = post(&[("csrf", &csrf), ("request", &request), ("step", "login")], false);
    assert_eq!(status, 400, "{page}");
    let (_, page, _) = login("wrong password here", "");
    assert!(page.contains("Wrong user name, password or code"), "{page}");
    // first sign-in: the authenticator app is set up with a QR code
    let (_, page, _) = login(password, "");
    assert!(page.contains("<svg") && page.contains("Set up your second factor"), "{page}");
    let secret = page.split("<code>").nth(1).unwrap().split("</code>").next().unwrap().to_string();
    let secret = auth::totp::from_base32(&secret).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let ticket = field(&page, "ticket");
    let code = auth::totp::code(&secret, now / 30);
    let (_, page, _) = post(
        &[
            ("csrf", &csrf),
            ("request", &request),
            ("step", "enrol"),
            ("lang", "en"),
            ("ticket", &ticket),
            ("otp", &code),
        ],
        true,
    );
    assert!(page.contains("Recovery codes") && page.contains("read the patient&#39;s data"), "{page}");
    let recovery = page.split("<li><code>").nth(1).unwrap().split("</code>").next().unwrap().to_string();
    let (status, _, location) = post(
        &[
            ("csrf", &csrf),
            ("request", &request),
            ("step", "consent"),
            ("lang", "en"),
            ("ticket", &ticket),
            ("decision", "allow"),
            ("role", "0"),
        ],
        true,
    );
    assert_eq!(status, 302);
    let location = location.unwrap();
    assert!(location.starts_with("https://app.example/cb?code=") && location.contains("&state=xyz"), "{location}");
    assert!(
        location.ends_with(&format!("&iss={}", form_urlencoded::byte_serialize(root.as_bytes()).collect::<String>())),
        "{location}"
    );
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let exchange = |code: &str, verifier: &str| {
        s.form(
            "oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "https://app.example/cb"),
                ("client_id", &client_id),
                ("code_verifier", verifier),
            ],
            &[],
        )
    };
    let tokens = exchange(&code, verifier);
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    let tokens = tokens.json();
    assert_eq!(tokens["patient"], "p-anna");
    assert!(tokens["id_token"].is_string() && tokens["refresh_token"].is_string());
    // the app sees Anna's record and nothing else
    let access = tokens["access_token"].as_str().unwrap();
    let r = s.req_as(Some(access), "GET", "Observation", &[], None);
    assert_eq!(r.json()["total"], 1, "{}", r.text);
    assert_eq!(s.req_as(Some(access), "GET", "Observation/o-other", &[], None).status, 404);
    // refresh (a public client: PKCE-bound tokens, no secret)
    let refreshed = s.form(
        "oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
        ],
        &[],
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let refreshed_access = refreshed.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.req_as(Some(&refreshed_access), "GET", "Patient/p-anna", &[], None).status, 200);
    // a code works once: presented again, what it gave is revoked
    assert_eq!(exchange(&code, verifier).json()["error"], "invalid_grant", "a code works once");
    assert_eq!(s.req_as(Some(&refreshed_access), "GET", "Patient/p-anna", &[], None).status, 401);

    // from now on the one-time code is required; a recovery code works once. A wrong code
    // gets the answer a wrong password gets: the password is not confirmed to a guesser
    let (_, wrong_code, _) = login(password, "");
    let (_, wrong_password, _) = login("wrong password here", "123456");
    let message = |p: &str| p.split("Wrong").nth(1).map(|m| m.split('<').next().unwrap_or("").to_string());
    assert_eq!(message(&wrong_code), message(&wrong_password), "{wrong_code}");
    assert!(wrong_code.contains("Wrong user name, password or code"), "{wrong_code}");
    let (_, page, _) = login(password, &recovery);
    assert!(page.contains("Allow access"), "{page}");
    // brute force: locked after repeated failures, even for the right password
    for _ in 0..5 {
        login("still the wrong password", "");
    }
    let (_, page, _) = login(password, &auth::totp::code(&secret, now / 30 + 1));
    assert!(page.contains("blocked"), "{page}");
    // purpose of use: break-the-glass needs a reason; anything but TREAT or BTG is refused
    let with = |extra: &[(&str, &str)]| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", "https://app.example/cb"),
            ("scope", scope),
            ("code_challenge", &auth::directory::pkce_challenge(verifier)),
            ("code_challenge_method", "S256"),
        ]);
        q.extend_pairs(extra);
        let r = agent.get(&format!("{root}/oauth/authorize?{}", q.finish())).call().unwrap();
        (r.status().as_u16(), r.headers().get("location").map(|v| v.to_str().unwrap().to_string()))
    };
    let (status, location) = with(&[("purpose_of_use", "BTG")]);
    assert!(status == 302 && location.as_deref().unwrap_or_default().contains("error=invalid_request"), "{location:?}");
    let (status, location) = with(&[("purpose_of_use", "HMARKT")]);
    assert!(status == 302 && location.as_deref().unwrap_or_default().contains("error=invalid_request"), "{location:?}");
    assert_eq!(with(&[("purpose_of_use", "BTG"), ("btg_reason", "unconscious in the ER")]).0, 200);
}

/// SMART Backend Services: a system registered with its public key (JWKS) gets tokens
/// with signed assertions (`private_key_jwt`, ES384), each usable once.
#[test]
fn backend_services_with_signed_assertions() {
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let s = Server::sqlite();
    let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let pkcs8 = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
    let point = pair.public_key().as_ref().to_vec();
    let (x, y) = point[1..].split_at(48);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "lab-key-1", "alg": "ES384", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}]});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let (ok, out, err) = s.admin(
        &["client", "add", "Лабораторная система", "--scope", "system/*.rs", "--jwks", file.to_str().unwrap()],
        None,
    );
    assert!(ok, "{err}");
    let client: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(client["client_secret"].is_null(), "keys instead of a secret");
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let token_url = format!("{}/oauth/token", s.root());
    let assertion = |jti: &str, aud: &str, exp: u64| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some("lab-key-1".into());
        let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": exp, "jti": jti});
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(&pkcs8)).unwrap()
    };
    let request = |a: &str| {
        s.form(
            "oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "system/Observation.rs"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", a),
            ],
            &[],
        )
    };
    let a1 = assertion("jti-1", &token_url, now + 240);
    let r = request(&a1);
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.req_as(Some(&token), "GET", "Observation", &[], None).status, 200);
    assert_eq!(request(&a1).json()["error"], "invalid_client", "an assertion works once");
    assert_eq!(request(&assertion("jti-2", "https://elsewhere/token", now + 240)).status, 401, "audience");
    assert_eq!(request(&assertion("jti-3", &token_url, now - 120)).status, 401, "expired");
    assert_eq!(request(&assertion("jti-4", &token_url, now + 3600)).status, 401, "too long-lived");
    // signed with another key
    let stranger = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap().to_pkcs8v1().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some("lab-key-1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240, "jti": "jti-5"}),
        &jsonwebtoken::EncodingKey::from_ec_der(stranger.as_ref()),
    )
    .unwrap();
    assert_eq!(request(&forged).status, 401, "forged");
}

/// `--tls-cert`/`--tls-key`: HTTPS with TLS 1.3, HSTS, and the API still closed; checked
/// with Python's own TLS stack trusting only our test certificate.
#[test]
fn https_with_tls_1_3() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medkarta"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert_pem)
        .arg("--tls-key")
        .arg(&key_pem)
        .env("MEDKARTA_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base =
        line.split_whitespace().find(|w| w.starts_with("https://")).unwrap_or_else(|| panic!("{line}")).to_string();
    let base = base.replace("127.0.0.1", "localhost");
    let script = r#"
import ssl, sys, urllib.request, urllib.error
base, cafile = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
r = urllib.request.urlopen(base + "/metadata", context=ctx)
print("metadata", r.status, r.headers.get("Strict-Transport-Security"), r.headers.get("Cache-Control"))
try:
    urllib.request.urlopen(base + "/Patient", context=ctx)
except urllib.error.HTTPError as e:
    print("patient", e.code, e.headers.get("WWW-Authenticate", "").split(",")[0])
try:
    urllib.request.urlopen(base + "/metadata", context=ssl.create_default_context())
except urllib.error.URLError as e:
    print("untrusted refused")
"#;
    let out = Command::new("python3").args(["-c", script, &base, cert_pem.to_str().unwrap()]).output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("metadata 200 max-age=31536000; includeSubDomains no-store"), "{stdout}");
    assert!(stdout.contains("patient 401 Bearer realm=\"medkarta\""), "{stdout}");
    assert!(stdout.contains("untrusted refused"), "{stdout}");
}

/// Limited rights: summaries only, no documents.
#[test]
fn limited_rights_get_summaries_and_no_documents() {
    let s = Server::sqlite();
    s.put(
        "Patient/p-lim",
        &json!({"resourceType": "Patient", "id": "p-lim", "name": [{"family": "Краткая"}],
            "managingOrganization": {"reference": "Organization/org-1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Краткая</div>"}}),
    );
    s.put(
        "Binary/doc-1",
        &json!({"resourceType": "Binary", "id": "doc-1", "contentType": "text/plain", "data": "0J/RgNC40LLQtdGC"}),
    );
    let (ok, _, err) = s.admin(
        &[
            "user",
            "add",
            "--username",
            "nurse.lim",
            "--role",
            "nurse",
            "--organization",
            "Organization/org-1",
            "--limited",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, token, _) = s.admin(&["token", "--user", "nurse.lim", "--base-url", &s.base], None);
    let t = Some(token.trim());
    let r = s.req_as(t, "GET", "Patient/p-lim", &[], None).json();
    assert!(r.get("text").is_none(), "no narrative in a summary: {r}");
    assert_eq!(r["name"][0]["family"], "Краткая");
    assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    let b = s.req_as(t, "GET", "Patient?_id=p-lim", &[], None).json();
    assert_eq!(b["entry"][0]["resource"]["meta"]["tag"][0]["code"], "SUBSETTED", "{b}");
    assert_eq!(s.req_as(t, "GET", "Binary/doc-1", &[], None).status, 403);
    assert_eq!(s.get("Binary/doc-1").status, 200, "full rights download it");
}

/// A Binary is the record of the patient its securityContext names: readable by that
/// patient and the clinicians caring for them, no one else; without one, by those who reach
/// every Binary only; never searched by clinicians (the search cannot tell whose).
#[test]
fn binaries_follow_their_security_context() {
    let s = Server::sqlite();
    for (id, org) in [("p-bin", "org-1"), ("p-other", "org-2")] {
        s.put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id, "managingOrganization": {"reference": format!("Organization/{org}")}}),
        );
    }
    let binary = |id: &str, context: Option<&str>| {
        let mut b =
            json!({"resourceType": "Binary", "id": id, "contentType": "text/plain", "data": "0J/RgNC40LLQtdGC"});
        if let Some(c) = context {
            b["securityContext"] = json!({"reference": c});
        }
        assert!(s.put(&format!("Binary/{id}"), &b).status < 300);
    };
    binary("b-mine", Some("Patient/p-bin"));
    binary("b-other", Some("Patient/p-other"));
    binary("b-nobody", None);
    let doctor = s.user_token("doc.bin", "doctor", &["--organization", "Organization/org-1"]);
    let patient = s.user_token("pat.bin", "patient", &["--patient", "Patient/p-bin"]);
    let get = |t: &str, path: &str| s.req_as(Some(t), "GET", path, &[], None).status;
    assert_eq!(get(&doctor, "Binary/b-mine"), 200, "in care");
    assert_eq!(get(&patient, "Binary/b-mine"), 200, "the patient's own");
    for t in [&doctor, &patient] {
        assert_ne!(get(t, "Binary/b-other"), 200, "another patient's");
        assert_ne!(get(t, "Binary/b-nobody"), 200, "no one's");
        assert_eq!(get(t, "Binary?_id=b-other"), 403, "not searched");
    }
    assert_eq!(s.get("Binary/b-nobody").status, 200, "full rights");
    // a clinician cannot store a Binary into a record out of care, nor one of no one's
    let put = |id: &str, context: Option<&str>| {
        let mut b = json!({"resourceType": "Binary", "id": id, "contentType": "text/plain", "data": "eA=="});
        if let Some(c) = context {
            b["securityContext"] = json!({"reference": c});
        }
        s.req_as(
            Some(&doctor),
            "PUT",
            &format!("Binary/{id}"),
            &[("Content-Type", "application/fhir+json")],
            Some(&b.to_string()),
        )
        .status
    };
    assert!(put("b-new", Some("Patient/p-bin")) < 300, "into a record in care");
    assert_eq!(put("b-sneak", Some("Patient/p-other")), 403);
    assert_eq!(put("b-loose", None), 403);
}

/// The content of a Binary lives in the blob store and follows the patient its
/// securityContext leads to (here through a DocumentReference): readable by that patient
/// and the clinicians caring for them only. A client cannot point a Binary at another's
/// blob, a PATCH keeps the content, a new version's content does not replace an old
/// version's, and a Binary claiming to be a PDF, JPEG or PNG must be one. Over the API a
/// patient adds a real file to their own record, once, and changes no document.
#[test]
fn binary_content_lives_in_blobs() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let s = Server::sqlite();
    for (id, org) in [("p-doc", "org-1"), ("p-else", "org-2")] {
        s.put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id, "managingOrganization": {"reference": format!("Organization/{org}")}}),
        );
    }
    let reference = |id: &str, patient: &str| {
        json!({"resourceType": "DocumentReference", "id": id, "status": "current", "subject": {"reference": format!("Patient/{patient}")},
               "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/f-1"}}]})
    };
    assert!(s.put("DocumentReference/d-1", &reference("d-1", "p-doc")).status < 300);
    let pdf = b"%PDF-1.4\n% the discharge summary\n%%EOF\n";
    let binary = json!({"resourceType": "Binary", "id": "f-1", "contentType": "application/pdf",
                        "securityContext": {"reference": "DocumentReference/d-1"}, "data": b64(pdf)});
    assert_eq!(s.put("Binary/f-1", &binary).status, 201);
    let stored = s.get("Binary/f-1").json();
    assert_eq!(stored["data"].as_str(), Some(b64(pdf).as_str()));
    let ext = |v: &Value, url: &str| {
        v["meta"]["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"].as_str().unwrap().ends_with(url))
            .cloned()
    };
    assert_eq!(ext(&stored, "record-of").unwrap()["valueReference"]["reference"], "Patient/p-doc");
    let blob = ext(&stored, "/blob").unwrap()["valueString"].as_str().unwrap().to_string();

    let doctor = s.user_token("doc.blob", "doctor", &["--organization", "Organization/org-1"]);
    let stranger = s.user_token("doc.far", "doctor", &["--organization", "Organization/org-2"]);
    let patient = s.user_token("pat.blob", "patient", &["--patient", "Patient/p-doc"]);
    let other = s.user_token("pat.else", "patient", &["--patient", "Patient/p-else"]);
    let get = |t: &str, path: &str| s.req_as(Some(t), "GET", path, &[], None);
    assert_eq!(get(&doctor, "Binary/f-1").json()["data"].as_str(), Some(b64(pdf).as_str()), "in care");
    assert_eq!(get(&patient, "Binary/f-1").status, 200, "the patient's own");
    assert_eq!(get(&stranger, "Binary/f-1").status, 403, "out of care");
    assert_eq!(get(&other, "Binary/f-1").status, 404, "another patient's");

    // a Binary naming someone's blob (and a patient of its own choosing) gets neither
    let forged = json!({"resourceType": "Binary", "id": "f-evil", "contentType": "application/pdf",
        "securityContext": {"reference": "Patient/p-else"},
        "meta": {"extension": [{"url": "https://medkarta.org/fhir/StructureDefinition/blob", "valueString": blob},
                               {"url": "https://medkarta.org/fhir/StructureDefinition/record-of", "valueReference": {"reference": "Patient/p-doc"}}]}});
    assert_eq!(s.put("Binary/f-evil", &forged).status, 201);
    let evil = s.get("Binary/f-evil").json();
    assert!(evil.get("data").is_none() && ext(&evil, "/blob").is_none(), "{evil}");
    assert_eq!(ext(&evil, "record-of").unwrap()["valueReference"]["reference"], "Patient/p-else");
    assert_eq!(get(&other, "Binary/f-evil").status, 200);

    // a PATCH of other elements keeps the content; a new content leaves the old version's
    let patch = r#"[{"op": "replace", "path": "/contentType", "value": "application/pdf; name=summary"}]"#;
    let patched = s.req("PATCH", "Binary/f-1", &[("Content-Type", "application/json-patch+json")], Some(patch));
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(s.get("Binary/f-1").json()["data"].as_str(), Some(b64(pdf).as_str()));
    let newer = b"%PDF-1.7\n% corrected\n%%EOF\n";
    let mut updated = binary.clone();
    updated["data"] = json!(b64(newer));
    assert_eq!(s.put("Binary/f-1", &updated).status, 200);
    assert_eq!(s.get("Binary/f-1").json()["data"].as_str(), Some(b64(newer).as_str()));
    assert_eq!(s.get("Binary/f-1/_history/1").json()["data"].as_str(), Some(b64(pdf).as_str()));

    // what a Binary says it is, it is
    let mut fake = binary.clone();
    fake["id"] = json!("f-fake");
    fake["contentType"] = json!("image/png");
    fake["data"] = json!(b64(b"<html><script>alert(1)</script></html>"));
    assert_eq!(s.put("Binary/f-fake", &fake).status, 422);

    // a patient over the API: a real file of their own, once; documents unchanged
    let send = |t: &str, method: &str, path: &str, body: &Value| {
        s.req_as(Some(t), method, path, &[("Content-Type", "application/fhir+json")], Some(&body.to_string())).status
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(b"scan");
    let own = json!({"resourceType": "Binary", "contentType": "image/png",
                     "securityContext": {"reference": "DocumentReference/d-1"}, "data": b64(&png)});
    assert_eq!(send(&patient, "POST", "Binary", &own), 201);
    let mut html = own.clone();
    html["data"] = json!(b64(b"<svg onload=alert(1)>"));
    assert_eq!(send(&patient, "POST", "Binary", &html), 422, "not a PNG");
    html["contentType"] = json!("text/html");
    assert_eq!(send(&patient, "POST", "Binary", &html), 403, "not a type a patient adds");
    let mut theirs = own.clone();
    theirs["securityContext"] = json!({"reference": "Patient/p-else"});
    assert_eq!(send(&patient, "POST", "Binary", &theirs), 403, "into another's record");
    assert_eq!(send(&patient, "PUT", "Binary/f-1", &updated), 403, "a file is not changed");
    let mut note = reference("d-mine", "p-doc");
    note["author"] = json!([{"reference": "Patient/p-doc"}]);
    assert_eq!(send(&patient, "PUT", "DocumentReference/d-mine", &note), 403, "not marked as uploaded");
    note["category"] =
        json!([{"coding": [{"system": "https://medkarta.org/fhir/CodeSystem/document-source", "code": "upload"}]}]);
    assert_eq!(send(&patient, "PUT", "DocumentReference/d-mine", &note), 201, "{note}");
    note["id"] = json!("d-1");
    assert_eq!(send(&patient, "PUT", "DocumentReference/d-1", &note), 403, "a clinic's document");
    assert_eq!(s.req_as(Some(&patient), "DELETE", "DocumentReference/d-mine", &[], None).status, 403);
    assert_eq!(s.get("Binary/f-1").json()["data"].as_str(), Some(b64(newer).as_str()));
}

/// CORS: browsers may call the API from the origins registered with clients, no others.
#[test]
fn cors_only_for_registered_origins() {
    let s = Server::sqlite();
    let (ok, _, err) = s.admin(
        &[
            "client",
            "add",
            "Портал пациента",
            "--scope",
            "patient/*.rs",
            "--public",
            "--redirect-uri",
            "https://portal.example/cb",
            "--origin",
            "https://portal.example",
        ],
        None,
    );
    assert!(ok, "{err}");
    let preflight = |origin: &str| {
        s.req_as(
            None,
            "OPTIONS",
            "Patient",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
            None,
        )
    };
    let ok = preflight("https://portal.example");
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://portal.example"));
    assert!(ok.header("access-control-allow-headers").unwrap().contains("authorization"));
    let evil = preflight("https://evil.example");
    assert_eq!(evil.header("access-control-allow-origin"), None);
    let r = s.req("GET", "Patient", &[("Origin", "https://portal.example")], None);
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, Some("https://portal.example")));
    let r = s.req("GET", "Patient", &[("Origin", "https://evil.example")], None);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let (ok, _, err) =
        s.admin(&["client", "add", "bad", "--scope", "patient/*.rs", "--public", "--origin", "portal.example"], None);
    assert!(!ok && err.contains("not an origin"), "{err}");
}

/// A resource moved from one patient's record to another's: its earlier versions are not
/// shown to the new patient.
#[test]
fn history_leaves_out_versions_of_other_records() {
    let s = Server::sqlite();
    for p in ["p-a", "p-b"] {
        s.put(&format!("Patient/{p}"), &json!({"resourceType": "Patient", "id": p}));
    }
    s.put("Observation/moved", &observation("moved", "p-a"));
    assert_eq!(s.put("Observation/moved", &observation("moved", "p-b")).status, 200);
    let (ok, _, err) =
        s.admin(&["user", "add", "--username", "patient.b", "--role", "patient", "--patient", "Patient/p-b"], None);
    assert!(ok, "{err}");
    let (_, token, _) = s.admin(&["token", "--user", "patient.b", "--base-url", &s.base], None);
    let h = s.req_as(Some(token.trim()), "GET", "Observation/moved/_history", &[], None).json();
    let versions: Vec<&str> =
        h["entry"].as_array().unwrap().iter().map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap()).collect();
    assert_eq!(versions, vec!["2"], "version 1 was Patient/p-a's");
    assert_eq!(
        s.get("Observation/moved/_history").json()["entry"].as_array().unwrap().len(),
        2,
        "full access sees both"
    );
}

//! The identity service over a real (SQLite) store: lockout, second factor, tokens,
//! rotation, revocation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;

use auth::account::{Role, RoleGrant};
use auth::directory::{CodeGrant, Directory, LOCK_AFTER, LoginError, now};
use auth::scope::Scopes;
use auth::totp;

fn directory() -> (tempfile::TempDir, Directory) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
    let d = Directory::open(store, "https://mk.example", "https://mk.example/fhir").unwrap();
    (dir, d)
}

fn doctor() -> RoleGrant {
    RoleGrant {
        role: Role::Doctor,
        organization: Some("Organization/gp1".into()),
        practitioner: Some("Practitioner/dr1".into()),
        patient: None,
        limited: false,
    }
}

#[test]
fn accounts_lock_after_repeated_failures_and_tell_the_owner() {
    let (_tmp, d) = directory();
    let (_, generated) = d.add_account("dr.ivanova", None, doctor()).unwrap();
    let pw = generated.expect("a generated password");
    assert!(d.add_account("dr.ivanova", Some("another long password"), doctor()).is_err(), "taken");
    assert!(d.add_account("Bad Name", Some("another long password"), doctor()).is_err());
    assert!(d.add_account("weak", Some("qwertyuiop"), doctor()).unwrap_err().to_string().contains("common"));
    let t = now();
    assert!(d.check_password("dr.ivanova", &pw, t).is_ok());
    assert_eq!(d.check_password("nobody", &pw, t).unwrap_err(), LoginError::BadCredentials);
    for i in 1..LOCK_AFTER {
        assert_eq!(
            d.check_password("dr.ivanova", "wrong password!", t).unwrap_err(),
            LoginError::BadCredentials,
            "{i}"
        );
    }
    assert!(matches!(d.check_password("dr.ivanova", "wrong password!", t), Err(LoginError::Locked(_))));
    // locked: even the right password is refused until the lock ends
    assert!(matches!(d.check_password("dr.ivanova", &pw, t + 60), Err(LoginError::Locked(_))));
    assert!(d.check_password("dr.ivanova", &pw, t + 16 * 60).is_ok());
    // the owner learns of it at the next complete login
    let uri = d.begin_totp("dr.ivanova").unwrap();
    let secret = totp::from_base32(uri.split("secret=").nth(1).unwrap().split('&').next().unwrap()).unwrap();
    let codes = d.confirm_totp("dr.ivanova", &totp::code(&secret, t / 30), t).unwrap();
    assert_eq!(codes.len(), 10);
    let notices = d.check_second_factor("dr.ivanova", &totp::code(&secret, t / 30 + 1), t + 30).unwrap();
    assert!(notices.iter().any(|n| n.contains("failed login attempts")), "{notices:?}");
    // a code works once; a recovery code works once
    assert_eq!(
        d.check_second_factor("dr.ivanova", &totp::code(&secret, t / 30 + 1), t + 30).unwrap_err(),
        LoginError::BadCode
    );
    assert!(d.check_second_factor("dr.ivanova", &codes[3], t + 60).is_ok());
    assert_eq!(d.check_second_factor("dr.ivanova", &codes[3], t + 60).unwrap_err(), LoginError::BadCode);
    // disabled accounts cannot log in
    d.set_disabled("dr.ivanova", true).unwrap();
    assert_eq!(d.check_password("dr.ivanova", &pw, t + 20 * 60).unwrap_err(), LoginError::Disabled);
}

#[test]
fn tokens_verify_rotate_and_revoke() {
    let (_tmp, d) = directory();
    d.add_account("dr.petrov", Some("a long enough secret"), doctor()).unwrap();
    let (client, secret) = d.add_client("Лабораторная система", "system/*.rs", vec![], None, false).unwrap();
    assert!(client.client_id.starts_with("client-") || client.client_id.contains('-'), "{}", client.client_id);
    let secret = secret.unwrap();
    assert!(d.authenticate_client(&client.client_id, &secret).is_some());
    assert!(d.authenticate_client(&client.client_id, "guess").is_none());

    let scopes = Scopes::parse("openid fhirUser user/*.rs offline_access").unwrap();
    let session = d.new_session(Some("dr.petrov"), &client.client_id, &scopes, Some(doctor()), None).unwrap();
    let tokens = d.issue(session, true, Some("n-0S6")).unwrap();
    let caller = d.verify(&tokens.access_token).unwrap();
    assert_eq!(caller.username.as_deref(), Some("dr.petrov"));
    assert_eq!(caller.grant, Some(doctor()));
    assert!(tokens.id_token.is_some());
    // rotation: the new refresh token works, the old one revokes the session
    let refresh1 = tokens.refresh_token.unwrap();
    let t2 = d.refresh(&refresh1, &client.client_id).unwrap();
    let refresh2 = t2.refresh_token.clone().unwrap();
    assert_ne!(refresh1, refresh2);
    assert!(d.refresh(&refresh2, "another-client").is_err(), "bound to its client");
    assert!(d.verify(&t2.access_token).is_ok());
    assert!(d.refresh(&refresh1, &client.client_id).is_err(), "reuse of a rotated token");
    assert!(d.verify(&t2.access_token).is_err(), "...ends the session");
    assert!(d.refresh(&refresh2, &client.client_id).is_err());

    // revocation of an access token ends its session
    let session = d.new_session(None, &client.client_id, &Scopes::parse("system/*.rs").unwrap(), None, None).unwrap();
    let t3 = d.issue(session, false, None).unwrap();
    assert!(t3.refresh_token.is_none() && t3.id_token.is_none());
    assert!(d.verify(&t3.access_token).is_ok());
    d.revoke(&t3.access_token).unwrap();
    assert!(d.verify(&t3.access_token).is_err());
    d.revoke("not a token at all").unwrap();
    // a token from another server's key
    let (_tmp2, other) = directory();
    let foreign = other
        .issue(other.new_session(None, "x", &Scopes::parse("system/*.rs").unwrap(), None, None).unwrap(), false, None)
        .unwrap();
    assert!(d.verify(&foreign.access_token).is_err());
}

#[test]
fn authorization_codes_work_once() {
    let (_tmp, d) = directory();
    let grant = CodeGrant {
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: auth::directory::pkce_challenge("verifier-verifier-verifier-verifier-verifier"),
        scope: "patient/*.rs".into(),
        username: "anna".into(),
        grant: None,
        patient: Some("p1".into()),
        nonce: None,
        expires: now() + 60,
        break_glass: None,
    };
    let code = d.new_code(&grant).unwrap();
    assert_eq!(d.take_code(&code).unwrap().unwrap().patient.as_deref(), Some("p1"));
    assert!(d.take_code(&code).unwrap().is_none(), "one use");
    let expired = d.new_code(&CodeGrant { expires: now() - 1, ..grant }).unwrap();
    assert!(d.take_code(&expired).unwrap().is_none());
    // RFC 7636 appendix B
    assert_eq!(
        auth::directory::pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

/// Simultaneous guesses: the attempt is counted with the lock check before the slow hash,
/// so at most LOCK_AFTER of them are checked, and the lock never exceeds its cap.
#[test]
fn simultaneous_guesses_are_counted_before_they_are_checked() {
    let (_tmp, d) = directory();
    let (_, pw) = d.add_account("dr.petrov", None, doctor()).unwrap();
    let d = Arc::new(d);
    let t = now();
    let barrier = Arc::new(std::sync::Barrier::new(20));
    let results: Vec<LoginError> = (0..20)
        .map(|_| {
            let (d, barrier) = (d.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                d.check_password("dr.petrov", "a wrong guess here", t).unwrap_err()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let checked = results.iter().filter(|e| **e == LoginError::BadCredentials).count();
    assert!(checked < LOCK_AFTER as usize, "{results:?}");
    let a = d.account("dr.petrov").unwrap().unwrap();
    assert_eq!(a.failed_logins, LOCK_AFTER, "only that many guesses were hashed: {results:?}");
    // a lock grows with each later failure, up to the cap
    let mut at = t;
    for _ in 0..12 {
        at = d.account("dr.petrov").unwrap().unwrap().locked_until.unwrap() + 1;
        assert!(matches!(d.check_password("dr.petrov", "a wrong guess here", at), Err(LoginError::Locked(_))));
    }
    let until = d.account("dr.petrov").unwrap().unwrap().locked_until.unwrap();
    assert_eq!(until - at, auth::directory::LOCK_CAP_SECONDS);
    // the owner gets in once it ends
    assert!(d.check_password("dr.petrov", pw.as_deref().unwrap(), until + 1).is_ok());
}

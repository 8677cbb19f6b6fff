//! The identity service over a real (SQLite) store: lockout (and what lifts it), second
//! factor and its enrolment, password changes, tokens, rotation, revocation, codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;

use auth::account::{Role, RoleGrant};
use auth::directory::{CodeGrant, Directory, LOCK_AFTER, LoginError, PasswordChangeError, Ticket, now};
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

/// Enrol an authenticator app for `user` (as the sign-in pages do); the secret and the
/// recovery codes.
fn enrol(d: &Directory, user: &str, t: u64) -> (Vec<u8>, Vec<String>) {
    let (secret, uri) = d.new_totp(user).unwrap();
    assert!(uri.contains(&secret));
    let codes = d.confirm_totp(user, &secret, &totp::code(&totp::from_base32(&secret).unwrap(), t / 30), t).unwrap();
    (totp::from_base32(&secret).unwrap(), codes)
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
    let first = d.sign_in("dr.ivanova", &pw, "", None, t).unwrap();
    assert!(!first.enrolled, "a first sign-in must set up the second factor");
    assert_eq!(d.sign_in("nobody", &pw, "", None, t).unwrap_err(), LoginError::BadCredentials);
    for i in 1..LOCK_AFTER {
        assert_eq!(
            d.sign_in("dr.ivanova", "wrong password!", "", None, t).unwrap_err(),
            LoginError::BadCredentials,
            "{i}"
        );
    }
    assert!(matches!(d.sign_in("dr.ivanova", "wrong password!", "", None, t), Err(LoginError::Locked(_))));
    // locked: even the right password is refused until the lock ends
    assert!(matches!(d.sign_in("dr.ivanova", &pw, "", None, t + 60), Err(LoginError::Locked(_))));
    // ... and the security officer was alerted
    let alerts = d.alerts().unwrap();
    assert!(alerts.iter().any(|a| a["kind"] == "sign-in-lockout" && a["by"] == "dr.ivanova"), "{alerts:?}");
    assert!(d.sign_in("dr.ivanova", &pw, "", None, t + 16 * 60).is_ok());
    // the owner learns of it at the next complete sign-in
    let (secret, codes) = enrol(&d, "dr.ivanova", t);
    assert_eq!(codes.len(), 10);
    let signed = d.sign_in("dr.ivanova", &pw, &totp::code(&secret, t / 30 + 1), None, t + 30).unwrap();
    assert!(signed.enrolled);
    assert!(signed.notices.iter().any(|n| n.contains("failed sign-in attempts")), "{:?}", signed.notices);
    // a code works once; a recovery code works once; no code is no sign-in
    let again = d.sign_in("dr.ivanova", &pw, &totp::code(&secret, t / 30 + 1), None, t + 30);
    assert_eq!(again.unwrap_err(), LoginError::BadCode);
    assert_eq!(d.sign_in("dr.ivanova", &pw, "", None, t + 30).unwrap_err(), LoginError::BadCode);
    assert!(d.sign_in("dr.ivanova", &pw, &codes[3], None, t + 60).is_ok());
    assert_eq!(d.sign_in("dr.ivanova", &pw, &codes[3], None, t + 60).unwrap_err(), LoginError::BadCode);
    // disabled accounts cannot sign in
    d.set_disabled("dr.ivanova", true).unwrap();
    assert_eq!(d.sign_in("dr.ivanova", &pw, &codes[4], None, t + 20 * 60).unwrap_err(), LoginError::Disabled);
}

/// A user name that does not exist answers as a real one does, lock included.
#[test]
fn unknown_names_answer_as_known_ones() {
    let (_tmp, d) = directory();
    d.add_account("dr.ivanova", Some("a long enough secret"), doctor()).unwrap();
    let t = now();
    for user in ["dr.ivanova", "dr.nobody"] {
        let answers: Vec<LoginError> =
            (0..LOCK_AFTER + 1).map(|_| d.sign_in(user, "a wrong guess here", "", None, t).unwrap_err()).collect();
        let expected: Vec<LoginError> = (1..=LOCK_AFTER + 1)
            .map(|i| match i {
                i if i < LOCK_AFTER => LoginError::BadCredentials,
                _ => LoginError::Locked(auth::directory::LOCK_SECONDS),
            })
            .collect();
        assert_eq!(answers, expected, "{user}");
    }
}

/// A locked owner gets in early with a recovery code (used up by it); an operator can
/// lift a lock too.
#[test]
fn a_recovery_code_or_an_operator_lifts_a_lock() {
    let (_tmp, d) = directory();
    let pw = "a long enough secret";
    d.add_account("dr.ivanova", Some(pw), doctor()).unwrap();
    let t = now();
    let (_, codes) = enrol(&d, "dr.ivanova", t);
    for _ in 0..LOCK_AFTER {
        let _ = d.sign_in("dr.ivanova", "a wrong guess here", "", None, t);
    }
    assert!(matches!(d.sign_in("dr.ivanova", pw, "", None, t), Err(LoginError::Locked(_))));
    // a wrong recovery code does not lift it, nor does a right one with a wrong password
    assert!(matches!(d.sign_in("dr.ivanova", pw, "AAAA-BBBB", None, t), Err(LoginError::Locked(_))));
    let before = d.account("dr.ivanova").unwrap().unwrap();
    assert!(matches!(d.sign_in("dr.ivanova", "a wrong guess here", &codes[0], None, t), Err(LoginError::Locked(_))));
    let after = d.account("dr.ivanova").unwrap().unwrap();
    assert_eq!(after.failed_logins, before.failed_logins + 1, "counted");
    assert!(after.locked_until > before.locked_until, "the lock grew (it did not start over)");
    assert!(matches!(d.sign_in("dr.ivanova", pw, &codes[0], None, t), Err(LoginError::Locked(_))), "used up");
    let signed = d.sign_in("dr.ivanova", pw, &codes[1], None, t).unwrap();
    assert!(
        signed.enrolled && signed.notices.iter().any(|n| n.contains("lifted with a recovery code")),
        "{:?}",
        signed.notices
    );
    let a = d.account("dr.ivanova").unwrap().unwrap();
    assert_eq!((a.failed_logins, a.locked_until), (0, None));
    assert_eq!(d.account("dr.ivanova").unwrap().unwrap().recovery.len(), 8);
    // the operator
    for _ in 0..LOCK_AFTER {
        let _ = d.sign_in("dr.ivanova", "a wrong guess here", "", None, t);
    }
    assert!(d.sign_in("dr.ivanova", pw, &codes[2], None, t).is_ok(), "a recovery code again");
    for _ in 0..LOCK_AFTER {
        let _ = d.sign_in("dr.ivanova", "a wrong guess here", "", None, t);
    }
    d.unlock("dr.ivanova").unwrap();
    let a = d.account("dr.ivanova").unwrap().unwrap();
    assert_eq!((a.failed_logins, a.locked_until), (0, None));
}

/// The authenticator secret lives in the sign-in until a first code confirms it: each
/// enrolment gets its own, an unconfirmed one is never a second factor, a confirmed one
/// cannot be replaced from an old enrolment page, and a reset forces a new enrolment.
#[test]
fn enrolment_secrets_are_not_fixed() {
    let (_tmp, d) = directory();
    let pw = "a long enough secret";
    d.add_account("anna", Some(pw), doctor()).unwrap();
    let t = now();
    let (seen, _) = d.new_totp("anna").unwrap();
    let (owners, _) = d.new_totp("anna").unwrap();
    assert_ne!(seen, owners, "a new secret for each enrolment");
    assert!(d.account("anna").unwrap().unwrap().totp.is_none(), "nothing stored before a code confirms it");
    let code = |secret: &str, at: u64| totp::code(&totp::from_base32(secret).unwrap(), at / 30);
    d.confirm_totp("anna", &owners, &code(&owners, t), t).unwrap();
    // someone who saw the first set-up page has nothing
    assert_eq!(d.sign_in("anna", pw, &code(&seen, t + 30), None, t + 30).unwrap_err(), LoginError::BadCode);
    let replaced = d.confirm_totp("anna", &seen, &code(&seen, t + 60), t + 60);
    assert!(replaced.unwrap_err().to_string().contains("already set up"));
    assert!(d.sign_in("anna", pw, &code(&owners, t + 90), None, t + 90).unwrap().enrolled);
    // a reset ends the sessions and asks for a new enrolment
    let scopes = Scopes::parse("user/*.rs").unwrap();
    let tokens = d.issue(d.new_session(Some("anna"), "app", &scopes, None, None).unwrap(), false, None).unwrap();
    d.reset_second_factor("anna").unwrap();
    assert!(d.verify(&tokens.access_token).is_err());
    assert!(!d.sign_in("anna", pw, "", None, t + 120).unwrap().enrolled);
}

/// A user changes their own password with the current one and the second factor; every
/// session ends.
#[test]
fn changing_the_password_needs_the_second_factor() {
    let (_tmp, d) = directory();
    let pw = "a long enough secret";
    d.add_account("anna", Some(pw), doctor()).unwrap();
    let t = now();
    let new = "an even longer new secret";
    assert_eq!(d.change_password("anna", pw, "", new, None, t), Err(PasswordChangeError::NoSecondFactor));
    let (secret, _) = enrol(&d, "anna", t);
    let scopes = Scopes::parse("user/*.rs").unwrap();
    let tokens = d.issue(d.new_session(Some("anna"), "app", &scopes, None, None).unwrap(), false, None).unwrap();
    let code = |at: u64| totp::code(&secret, at / 30);
    assert!(matches!(
        d.change_password("anna", pw, &code(t + 30), "qwertyuiop", None, t + 30),
        Err(PasswordChangeError::Weak(_))
    ));
    assert_eq!(
        d.change_password("anna", "not the password", &code(t + 30), new, None, t + 30),
        Err(PasswordChangeError::SignIn(LoginError::BadCredentials))
    );
    assert_eq!(
        d.change_password("anna", pw, "000000", new, None, t + 30),
        Err(PasswordChangeError::SignIn(LoginError::BadCode))
    );
    assert!(d.verify(&tokens.access_token).is_ok());
    let begun = auth::directory::now_micros();
    assert!(d.still_valid("anna", begun).unwrap());
    d.change_password("anna", pw, &code(t + 60), new, None, t + 60).unwrap();
    assert!(d.verify(&tokens.access_token).is_err(), "sessions end");
    assert!(!d.still_valid("anna", begun).unwrap(), "and so do sign-ins begun before");
    assert!(d.still_valid("anna", auth::directory::now_micros() + 1).unwrap());
    assert_eq!(d.sign_in("anna", pw, &code(t + 90), None, t + 90).unwrap_err(), LoginError::BadCredentials);
    assert!(d.sign_in("anna", new, &code(t + 90), None, t + 90).is_ok());
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
        sid: None,
        created: 0,
    };
    let code = d.new_code(&grant).unwrap();
    let taken = d.take_code(&code).unwrap().unwrap();
    assert_eq!(taken.patient.as_deref(), Some("p1"));
    // the session issued for it ends when the code comes again (someone else had it)
    let scopes = Scopes::parse("patient/*.rs").unwrap();
    let mut session = d.new_session(Some("anna"), "app", &scopes, None, Some("p1".into())).unwrap();
    session.sid = taken.sid.clone().unwrap();
    let tokens = d.issue(session, false, None).unwrap();
    assert!(d.verify(&tokens.access_token).is_ok());
    assert!(d.take_code(&code).unwrap().is_none(), "one use");
    assert!(d.verify(&tokens.access_token).is_err(), "the tokens issued from a reused code are revoked");
    // replayed before its first exchange has issued anything: that session can never be issued
    let code2 = d.new_code(&grant).unwrap();
    let first = d.take_code(&code2).unwrap().unwrap();
    assert!(d.take_code(&code2).unwrap().is_none());
    let mut late = d.new_session(Some("anna"), "app", &scopes, None, Some("p1".into())).unwrap();
    late.sid = first.sid.unwrap();
    assert!(d.issue(late, false, None).is_err(), "the replay left the session revoked");
    let expired = d.new_code(&CodeGrant { expires: now() - 1, ..grant.clone() }).unwrap();
    assert!(d.take_code(&expired).unwrap().is_none());
    // expired codes go a day after their expiry; expired tickets at once
    let old = d.new_code(&CodeGrant { expires: now() - 2 * 24 * 3600, ..grant }).unwrap();
    let ticket = Ticket {
        username: "anna".into(),
        authenticated: false,
        request: String::new(),
        expires: now() - 1,
        csrf: String::new(),
        created: 0,
        totp_secret: None,
    };
    d.new_ticket(&ticket).unwrap();
    assert_eq!(d.sweep(now()).unwrap(), 2);
    assert!(d.take_code(&old).unwrap().is_none());
    assert!(d.take_code(&code).unwrap().is_none(), "a used code of today is kept");
    // CSRF tokens are the server's own
    let csrf = d.csrf_token().unwrap();
    assert!(d.csrf_valid(&csrf));
    assert!(!d.csrf_valid("made-up.token") && !d.csrf_valid(&csrf.replace('.', "")));
    let (_tmp2, other) = directory();
    assert!(!other.csrf_valid(&csrf), "another deployment's key");
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
    // enough hashing places that the guesses really run at once (not one by one)
    auth::password::set_parallelism(8);
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
                d.sign_in("dr.petrov", "a wrong guess here", "", None, t).unwrap_err()
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
        assert!(matches!(d.sign_in("dr.petrov", "a wrong guess here", "", None, at), Err(LoginError::Locked(_))));
    }
    let until = d.account("dr.petrov").unwrap().unwrap().locked_until.unwrap();
    assert_eq!(until - at, auth::directory::LOCK_CAP_SECONDS);
    // the owner gets in once it ends
    assert!(d.sign_in("dr.petrov", pw.as_deref().unwrap(), "", None, until + 1).is_ok());
}

/// A deployment sets the longest lock; locks grow to it and no further.
#[test]
fn the_lock_grows_to_the_deployments_cap() {
    let (_tmp, mut d) = directory();
    d.set_lock_cap(30 * 60);
    d.add_account("dr.petrov", Some("a long enough secret"), doctor()).unwrap();
    let mut at = now();
    for _ in 0..LOCK_AFTER {
        let _ = d.sign_in("dr.petrov", "a wrong guess here", "", None, at);
    }
    for _ in 0..4 {
        at = d.account("dr.petrov").unwrap().unwrap().locked_until.unwrap() + 1;
        let _ = d.sign_in("dr.petrov", "a wrong guess here", "", None, at);
    }
    let until = d.account("dr.petrov").unwrap().unwrap().locked_until.unwrap();
    assert_eq!(until - at, 30 * 60);
}

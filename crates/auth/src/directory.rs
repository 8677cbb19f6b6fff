//! The identity service over the store's records: accounts (with lockout and second
//! factor), registered clients, the signing keys, sessions and the tokens issued for
//! them. Everything an OAuth endpoint or an operator command does goes through here.
//!
//! Records: `account/<username>`, `client/<client_id>`, `key/<kid>`, `session/<sid>`
//! (one per login or client grant), `refresh/<sha256 of a refresh token>` (its session,
//! and whether it is the current one), `code/<sha256 of the code>` (authorization codes,
//! one use, 60 s), `web-session/<sha256 of the cookie>` and `web-login/<sha256 of the
//! state>` (the patient portal's sessions and its sign-ins in progress).

use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use store::{Expect, Store};

use crate::account::{Account, Client, RoleGrant, TotpState};
use crate::scope::Scopes;
use crate::token::{KeyPair, Signer};
use crate::{AuthError, password, random, totp};

/// Access tokens live five minutes.
pub const ACCESS_TTL: u64 = 300;
/// Refresh tokens (rotated at each use) live thirty days.
pub const REFRESH_TTL: u64 = 30 * 24 * 3600;
/// Authorization codes live one minute.
pub const CODE_TTL: u64 = 60;
/// How long a verified token is trusted without reading its session again: revocation
/// by another process (an operator command) takes effect within this time.
pub const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the list of allowed browser origins is cached.
const ORIGINS_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Failed logins before the account is locked.
pub const LOCK_AFTER: u32 = 5;
/// How long a lock lasts (seconds); it doubles with each further failure, up to
/// [`LOCK_CAP_SECONDS`].
pub const LOCK_SECONDS: u64 = 15 * 60;
/// The longest a lock lasts by default (a burst of guesses cannot lock the owner out for
/// days); a deployment sets its own with [`Directory::set_lock_cap`].
pub const LOCK_CAP_SECONDS: u64 = 60 * 60;

/// Failures of the directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Input refused, in words for the person who gave it.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Someone else changed the record meanwhile; try again.
    #[error("changed concurrently, try again")]
    Conflict,
}

type Result<T> = std::result::Result<T, DirectoryError>;

/// Why a login failed. The messages never say whether the user name exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("too many failed attempts: the account is locked for {0} more seconds")]
    Locked(u64),
    #[error("the account is disabled")]
    Disabled,
    #[error("wrong or already used one-time code")]
    BadCode,
    #[error("the service is unavailable, try again")]
    Unavailable,
    /// Every password-hashing thread is busy and the queue behind them full.
    #[error("too many sign-ins at once, try again in a moment")]
    Busy,
}

/// A sign-in that passed.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: Account,
    /// The account has an authenticator app, and its code (or a recovery code) was right;
    /// `false`: a first sign-in, which must set one up before any token is issued.
    pub enrolled: bool,
    /// What to tell the owner (failed attempts, locks) since the last sign-in.
    pub notices: Vec<String>,
}

/// Why a password change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordChangeError {
    #[error(transparent)]
    SignIn(LoginError),
    /// The new password fails the policy (in words).
    #[error("{0}")]
    Weak(String),
    #[error("set up the second factor first (sign in to an application once)")]
    NoSecondFactor,
}

/// How many unknown user names' failure counts a process keeps.
const PHANTOMS: usize = 100_000;

/// Where security alerts are kept (`medkarta audit alerts`).
pub const ALERTS: &str = "security-alert";

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn sha256(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, s.as_bytes()))
}

/// A session: one login (or client grant) and the tokens issued under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub sid: String,
    /// The user, for user sessions.
    #[serde(default)]
    pub username: Option<String>,
    pub client_id: String,
    /// Granted scopes.
    pub scope: String,
    /// The role the user chose for the session.
    #[serde(default)]
    pub grant: Option<RoleGrant>,
    /// Patient in context (`launch/patient`), an id.
    #[serde(default)]
    pub patient: Option<String>,
    /// SHA-256 of the current refresh token.
    #[serde(default)]
    pub refresh_hash: Option<String>,
    #[serde(default)]
    pub refresh_expires: u64,
    #[serde(default)]
    pub revoked: bool,
    pub created: u64,
    /// Purpose of use break-the-glass (v3 ActReason `BTG`) granted to the session, with
    /// the reason the user gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
}

/// Who is calling, from a verified access token.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub sid: String,
    pub username: Option<String>,
    pub client_id: String,
    pub scopes: Scopes,
    pub grant: Option<RoleGrant>,
    pub patient: Option<String>,
    /// The session's purpose of use is break-the-glass, for this reason.
    pub break_glass: Option<String>,
}

/// Claims of our access tokens.
#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    client_id: String,
    scope: String,
    sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patient: Option<String>,
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    fhir_user: Option<String>,
    /// v3 ActReason purpose of use other than treatment (`BTG`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<String>,
}

/// What the token endpoint returns.
#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// An authorization code as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    pub scope: String,
    pub username: String,
    pub grant: Option<RoleGrant>,
    pub patient: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    pub expires: u64,
    /// Break-the-glass asked for, with the reason.
    #[serde(default)]
    pub break_glass: Option<String>,
    /// The session issued for the code, once it was taken: a code presented again
    /// revokes it (RFC 6749 §4.1.2).
    #[serde(default)]
    pub sid: Option<String>,
    /// When the sign-in that gave the code began (Unix microseconds).
    #[serde(default)]
    pub created: u64,
}

/// A login in progress in the authorization code flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    pub username: String,
    /// The second factor was checked too.
    pub authenticated: bool,
    /// The authorization request (its query string), carried through the forms.
    pub request: String,
    pub expires: u64,
    /// The CSRF token of the forms of this sign-in (a later form must carry the same).
    #[serde(default)]
    pub csrf: String,
    /// When the sign-in began (Unix microseconds; see [`Directory::still_valid`]).
    #[serde(default)]
    pub created: u64,
    /// The authenticator secret offered for enrolment (base32), until a first code
    /// confirms it; a new sign-in offers a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
}

/// A browser session of a first-party web application (the patient portal): the
/// browser holds only an opaque cookie; this record names the OAuth session that is the
/// caller behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebSession {
    /// The OAuth session ([`Session::sid`]) the sign-in gave.
    pub sid: String,
    pub username: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// Unix seconds: created, last seen, and the latest it may live.
    pub created: u64,
    pub seen: u64,
    pub expires: u64,
}

/// A sign-in of a first-party web application in progress: the PKCE verifier of the
/// authorization request its `state` names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebLogin {
    pub verifier: String,
    /// Where to go once signed in (a path of the application).
    pub back: String,
    pub expires: u64,
}

/// Why an authorization code was not exchanged (the `invalid_grant` description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRefused(pub &'static str);

/// The identity service.
pub struct Directory {
    store: Arc<dyn Store>,
    signer: Signer,
    /// Browser origins of the registered clients, reloaded every few seconds.
    origins: std::sync::RwLock<(std::time::Instant, Vec<String>)>,
    /// Tokens verified lately: (caller, expiry, when the session was last read).
    verified: std::sync::Mutex<std::collections::HashMap<String, (Caller, u64, std::time::Instant)>>,
    /// Failed sign-ins under user names that do not exist: (count, locked until).
    phantoms: std::sync::Mutex<std::collections::HashMap<String, (u32, Option<u64>)>>,
    /// Signs the CSRF tokens of the sign-in forms (derived from the newest signing key,
    /// so every process of a deployment agrees).
    csrf_key: aws_lc_rs::hmac::Key,
    /// The longest a lock lasts (seconds).
    lock_cap: u64,
    /// Token issuer (the server's base URL).
    pub issuer: String,
    /// Token audience (the FHIR base URL).
    pub audience: String,
}

fn parse<T: DeserializeOwned>(data: &str) -> Result<T> {
    serde_json::from_str(data).map_err(|e| DirectoryError::Invalid(format!("damaged record: {e}")))
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| DirectoryError::Invalid(e.to_string()))
}

/// Revoke a session by its id, directly in the store (for the engine, which blocks a
/// session after suspicious activity): no token or refresh token of it works after
/// [`SESSION_RECHECK`].
pub fn revoke_session_record(store: &dyn Store, sid: &str) -> Result<()> {
    for _ in 0..10 {
        let Some(r) = store.record("session", sid)? else { return Ok(()) };
        let mut s: Session = parse(&r.data)?;
        if s.revoked {
            return Ok(());
        }
        s.revoked = true;
        s.refresh_hash = None;
        let mut tx = store.begin()?;
        if tx.put_record("session", sid, &json(&s)?, Expect::Version(r.version))? {
            return Ok(tx.commit()?);
        }
    }
    Err(DirectoryError::Conflict)
}

impl Directory {
    /// Open the directory, creating the first signing key if there is none.
    pub fn open(store: Arc<dyn Store>, issuer: &str, audience: &str) -> Result<Directory> {
        let mut keys = Self::load_keys(&*store)?;
        if keys.is_empty() {
            let k = KeyPair::generate()?;
            let data = serde_json::json!({"pkcs8": STANDARD.encode(&k.pkcs8), "created": now()}).to_string();
            let mut tx = store.begin()?;
            tx.put_record("key", &k.kid, &data, Expect::Absent)?;
            tx.commit()?;
            // another process may have created one at the same time: use what is stored
            keys = Self::load_keys(&*store)?;
        }
        let csrf_key = {
            let seed = keys.first().map(|k| k.pkcs8.clone()).unwrap_or_default();
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(b"medkarta sign-in csrf\0");
            ctx.update(&seed);
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, ctx.finish().as_ref())
        };
        // the dummy hash is made now, not by the first sign-in under an unknown name
        let _ = password::dummy_hash();
        Ok(Directory {
            lock_cap: LOCK_CAP_SECONDS,
            phantoms: std::sync::Mutex::default(),
            csrf_key,
            signer: Signer::new(keys)?,
            store,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            origins: std::sync::RwLock::new((std::time::Instant::now() - ORIGINS_TTL * 2, Vec::new())),
            verified: std::sync::Mutex::default(),
        })
    }

    /// Keys newest first.
    fn load_keys(store: &dyn Store) -> Result<Vec<KeyPair>> {
        let mut keys: Vec<(u64, KeyPair)> = Vec::new();
        for (kid, r) in store.records("key")? {
            let v: serde_json::Value = parse(&r.data)?;
            let pkcs8 = v["pkcs8"].as_str().and_then(|s| STANDARD.decode(s).ok());
            if let Some(pkcs8) = pkcs8 {
                keys.push((v["created"].as_u64().unwrap_or(0), KeyPair { kid, pkcs8 }));
            }
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.0));
        Ok(keys.into_iter().map(|(_, k)| k).collect())
    }

    /// The longest a sign-in lock may last (seconds, at least the first lock's
    /// [`LOCK_SECONDS`]).
    pub fn set_lock_cap(&mut self, seconds: u64) {
        self.lock_cap = seconds.max(LOCK_SECONDS);
    }

    /// The public keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        self.signer.jwks()
    }

    fn get<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<(i64, T)>> {
        self.store.record(kind, id)?.map(|r| Ok((r.version, parse(&r.data)?))).transpose()
    }

    fn put<T: Serialize>(&self, kind: &str, id: &str, v: &T, expect: Expect) -> Result<()> {
        let mut tx = self.store.begin()?;
        if !tx.put_record(kind, id, &json(v)?, expect)? {
            return Err(match expect {
                Expect::Absent => DirectoryError::Invalid(format!("{kind} '{id}' already exists")),
                _ => DirectoryError::Conflict,
            });
        }
        tx.commit()?;
        Ok(())
    }

    /// Read-modify-write of a record, retried if someone else wrote it meanwhile.
    fn update<T: Serialize + DeserializeOwned, R>(
        &self,
        kind: &str,
        id: &str,
        mut f: impl FnMut(&mut T) -> Result<R>,
    ) -> Result<R> {
        // each lost round means another writer's update went in (or is about to commit:
        // a moment's wait lets it), so simultaneous writers of one record all get theirs in
        for round in 0..64u32 {
            if round > 0 {
                std::thread::sleep(std::time::Duration::from_millis(u64::from(round.min(20))));
            }
            let (version, mut v) =
                self.get::<T>(kind, id)?.ok_or_else(|| DirectoryError::NotFound(format!("{kind} '{id}'")))?;
            let out = f(&mut v)?;
            match self.put(kind, id, &v, Expect::Version(version)) {
                Err(DirectoryError::Conflict) => continue,
                other => return other.map(|()| out),
            }
        }
        Err(DirectoryError::Conflict)
    }

    // ---- accounts ----------------------------------------------------------------------

    /// Create an account; with no password given, one is generated and returned.
    pub fn add_account(
        &self,
        username: &str,
        password: Option<&str>,
        grant: RoleGrant,
    ) -> Result<(Account, Option<String>)> {
        if !crate::account::valid_username(username) {
            return Err(DirectoryError::Invalid(format!(
                "'{username}' cannot be a user name: 3 to 64 of a-z, 0-9, '.', '_', '-', '@'"
            )));
        }
        let generated = match password {
            Some(_) => None,
            None => Some(password::generate()?),
        };
        let pw = password.or(generated.as_deref()).unwrap_or_default();
        password::check_strength(pw, username).map_err(DirectoryError::Invalid)?;
        let account = Account {
            username: username.to_string(),
            password_hash: password::hash(pw)?,
            grants: vec![grant],
            totp: None,
            recovery: Vec::new(),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            notices: Vec::new(),
            sessions_ended: 0,
            created: now(),
        };
        self.put("account", username, &account, Expect::Absent)?;
        Ok((account, generated))
    }

    pub fn account(&self, username: &str) -> Result<Option<Account>> {
        Ok(self.get("account", username)?.map(|(_, a)| a))
    }

    pub fn accounts(&self) -> Result<Vec<Account>> {
        self.store.records("account")?.iter().map(|(_, r)| parse(&r.data)).collect()
    }

    /// Add a role to an existing account.
    pub fn add_grant(&self, username: &str, grant: RoleGrant) -> Result<()> {
        self.update("account", username, |a: &mut Account| {
            if !a.grants.contains(&grant) {
                a.grants.push(grant.clone());
            }
            Ok(())
        })
    }

    /// Disable (or enable) an account; disabling ends its sessions.
    pub fn set_disabled(&self, username: &str, disabled: bool) -> Result<()> {
        self.update("account", username, |a: &mut Account| {
            a.disabled = disabled;
            Ok(())
        })?;
        if disabled {
            self.end_sessions(username)?;
        }
        Ok(())
    }

    /// End every session of an account, and every sign-in of it in progress (their
    /// tickets and codes give no tokens now: [`Directory::still_valid`]).
    fn end_sessions(&self, username: &str) -> Result<()> {
        let at = now_micros();
        self.update("account", username, |a: &mut Account| {
            a.sessions_ended = at;
            Ok(())
        })?;
        self.revoke_sessions(|s| s.username.as_deref() == Some(username))
    }

    /// May a sign-in of `username` begun at `created` (microseconds) still give tokens:
    /// the account is there and enabled, and its sessions were not ended since.
    pub fn still_valid(&self, username: &str, created: u64) -> Result<bool> {
        Ok(self.account(username)?.is_some_and(|a| !a.disabled && created > a.sessions_ended))
    }

    /// Remove the second factor and end the account's sessions: the owner enrols a new
    /// one at the next sign-in (a lost phone, a code someone else saw).
    pub fn reset_second_factor(&self, username: &str) -> Result<()> {
        self.update("account", username, |a: &mut Account| {
            a.totp = None;
            a.recovery.clear();
            Ok(())
        })?;
        self.end_sessions(username)
    }

    /// Set a new password (an operator, for a person who forgot theirs): with none given,
    /// one is generated and returned. The lock is lifted and every session ends.
    pub fn reset_password(&self, username: &str, password: Option<&str>) -> Result<Option<String>> {
        let generated = match password {
            Some(_) => None,
            None => Some(password::generate()?),
        };
        let pw = password.or(generated.as_deref()).unwrap_or_default();
        password::check_strength(pw, username).map_err(DirectoryError::Invalid)?;
        let hash = password::hash(pw)?;
        self.update("account", username, |a: &mut Account| {
            a.password_hash = hash.clone();
            a.failed_logins = 0;
            a.locked_until = None;
            Ok(())
        })?;
        self.end_sessions(username)?;
        Ok(generated)
    }

    /// Lift a lock (an operator, once the owner is known to be who is asking).
    pub fn unlock(&self, username: &str) -> Result<()> {
        self.update("account", username, |a: &mut Account| {
            a.failed_logins = 0;
            a.locked_until = None;
            Ok(())
        })
    }

    /// Sign in with a password and, for an account with an authenticator app, a one-time
    /// or recovery code. Failures are counted: after [`LOCK_AFTER`] in a row the account is
    /// locked for [`LOCK_SECONDS`] (doubling, up to the deployment's cap), the owner is
    /// told at the next sign-in and the security officer alerted. The attempt is counted
    /// before the (slow) hash, in one compare-and-set with the lock check, so simultaneous
    /// guesses cannot all be checked. A locked account answers at once, without a hash;
    /// a recovery code lifts the lock (it is used up). Unknown user names are counted
    /// and locked the same way (in memory), and hashed against a dummy: the answers and
    /// their timing do not say which names exist. A wrong name, password or code all give
    /// one answer.
    pub fn sign_in(
        &self,
        username: &str,
        pw: &str,
        code: &str,
        address: Option<&str>,
        now: u64,
    ) -> std::result::Result<SignedIn, LoginError> {
        let unavailable = |_| LoginError::Unavailable;
        if !crate::account::valid_username(username) {
            // no account can have this name: nothing to count, nothing to remember
            return Err(LoginError::BadCredentials);
        }
        let Some((_, stored)) = self.get::<Account>("account", username).map_err(unavailable)? else {
            return Err(self.phantom(username, pw, now));
        };
        let recovery = (!code.is_empty()).then(|| totp::recovery_hash(code));
        // a lock answers at once, without a write (the compare-and-set below checks again)
        if let Some(until) = stored.locked_until.filter(|u| *u > now)
            && recovery.as_ref().is_none_or(|r| !stored.recovery.contains(r))
        {
            return Err(LoginError::Locked(until - now));
        }
        // a place among the hashing threads first: when they are all busy nothing is counted
        let permit = password::permit().map_err(|_| LoginError::Busy)?;
        let reserved = self.update("account", username, |a: &mut Account| {
            if let Some(until) = a.locked_until.filter(|u| *u > now) {
                // a recovery code gets one check of the password through the lock (and is
                // used up by it); the lock stays as it is until the password is right
                return match &recovery {
                    Some(r) if a.recovery.contains(r) => {
                        a.recovery.retain(|x| x != r);
                        Ok(Ok((a.clone(), None, true)))
                    }
                    _ => Ok(Err(LoginError::Locked(until - now))),
                };
            }
            let lock = count_failure(&mut a.failed_logins, &mut a.locked_until, now, self.lock_cap);
            if let Some(secs) = lock {
                a.notices.push(format!(
                    "{} failed sign-in attempts; the account was locked for {} minutes at {now} (Unix time)",
                    a.failed_logins,
                    secs / 60
                ));
            }
            Ok(Ok((a.clone(), lock, false)))
        });
        let (account, mut lock, recovered) = match reserved {
            Ok(Ok(r)) => r,
            Ok(Err(locked)) => return Err(locked),
            Err(_) => return Err(LoginError::Unavailable),
        };
        let failed = |lock: Option<u64>, e: LoginError| {
            if let Some(secs) = lock {
                let reason = format!("repeated failed sign-in attempts: locked for {} minutes", secs / 60);
                if let Err(err) = self.alert("sign-in-lockout", Some(username), address, &reason) {
                    tracing::error!("a lockout alert could not be stored: {err}");
                }
                return LoginError::Locked(secs);
            }
            match account.locked_until.filter(|u| *u > now) {
                Some(until) if !recovered => LoginError::Locked(until - now),
                _ => e,
            }
        };
        if !permit.verify(pw, &account.password_hash) {
            if recovered {
                // a wrong password through a lock counts like any other: the lock grows
                let counted = self.update("account", username, |a: &mut Account| {
                    Ok(count_failure(&mut a.failed_logins, &mut a.locked_until, now, self.lock_cap))
                });
                lock = counted.ok().flatten();
            }
            return Err(failed(lock, LoginError::BadCredentials));
        }
        drop(permit);
        if account.disabled {
            return Err(LoginError::Disabled);
        }
        let enrolled = account.totp.as_ref().is_some_and(|t| t.confirmed);
        let passed = self.update("account", username, |a: &mut Account| {
            let ok = !enrolled || recovered || second_factor(a, code, now);
            if !ok {
                return Ok(None); // the attempt stays counted
            }
            if recovered {
                a.notices.push(format!("a sign-in lock was lifted with a recovery code at {now} (Unix time)"));
            }
            a.failed_logins = 0;
            a.locked_until = None;
            // the notices wait for a sign-in with the second factor
            Ok(Some((a.clone(), if enrolled { std::mem::take(&mut a.notices) } else { Vec::new() })))
        });
        match passed {
            Ok(Some((account, notices))) => Ok(SignedIn { account, enrolled, notices }),
            Ok(None) => Err(failed(lock, LoginError::BadCode)),
            Err(_) => Err(LoginError::Unavailable),
        }
    }

    /// A sign-in under a user name that does not exist: the same work and the same
    /// answers as for a real account (counted and locked in memory, per process).
    fn phantom(&self, username: &str, pw: &str, now: u64) -> LoginError {
        let phantoms = || self.phantoms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // locked: at once, as a real account answers
        if let Some(u) = phantoms().get(username).and_then(|(_, u)| *u).filter(|u| *u > now) {
            return LoginError::Locked(u - now);
        }
        let Ok(permit) = password::permit() else { return LoginError::Busy };
        let until = {
            let mut m = phantoms();
            if m.len() >= PHANTOMS && !m.contains_key(username) {
                // bounded: forget the names not locked now, and all only if that is not enough
                m.retain(|_, (_, u)| u.is_some_and(|u| u > now));
                if m.len() >= PHANTOMS {
                    m.clear();
                }
            }
            let (failed, until) = m.entry(username.to_string()).or_default();
            if let Some(u) = until.filter(|u| *u > now) {
                return LoginError::Locked(u - now);
            }
            count_failure(failed, until, now, self.lock_cap);
            *until
        };
        let _ = permit.verify(pw, password::dummy_hash());
        match until.filter(|u| *u > now) {
            Some(u) => LoginError::Locked(u - now),
            None => LoginError::BadCredentials,
        }
    }

    /// Change one's own password: the current one and the second factor (an account
    /// without one must set it up first, by signing in). All the account's sessions end.
    pub fn change_password(
        &self,
        username: &str,
        old: &str,
        code: &str,
        new: &str,
        address: Option<&str>,
        now: u64,
    ) -> std::result::Result<(), PasswordChangeError> {
        password::check_strength(new, username).map_err(PasswordChangeError::Weak)?;
        let signed = self.sign_in(username, old, code, address, now).map_err(PasswordChangeError::SignIn)?;
        if !signed.enrolled {
            return Err(PasswordChangeError::NoSecondFactor);
        }
        let hash = password::hash(new).map_err(|_| PasswordChangeError::SignIn(LoginError::Busy))?;
        let unavailable = |_| PasswordChangeError::SignIn(LoginError::Unavailable);
        self.update("account", username, |a: &mut Account| {
            a.password_hash = hash.clone();
            a.notices.extend(signed.notices.iter().cloned());
            a.notices.push(format!("the password was changed at {now} (Unix time); every session was ended"));
            Ok(())
        })
        .map_err(unavailable)?;
        self.end_sessions(username).map_err(unavailable)
    }

    /// A new authenticator secret for an enrolment (kept in the sign-in's ticket, never
    /// in the account until a first code proves the app has it): the secret (base32) and
    /// its `otpauth://` URI.
    pub fn new_totp(&self, username: &str) -> Result<(String, String)> {
        let secret = totp::new_secret()?;
        Ok((totp::base32(&secret), totp::uri(&secret, "Medkarta", username)))
    }

    /// Finish an enrolment: the secret of this sign-in and a first code from the app;
    /// returns the recovery codes to show once. An account that already has a second
    /// factor keeps it (an old enrolment page cannot replace it).
    pub fn confirm_totp(&self, username: &str, secret_b32: &str, code: &str, now: u64) -> Result<Vec<String>> {
        let codes = totp::recovery_codes()?;
        let secret = totp::from_base32(secret_b32).ok_or_else(|| DirectoryError::Invalid("no enrolment".into()))?;
        self.update("account", username, |a: &mut Account| {
            if a.totp.as_ref().is_some_and(|t| t.confirmed) {
                return Err(DirectoryError::Invalid("the second factor is already set up: sign in with it".into()));
            }
            let step = totp::verify(&secret, code, now, None).ok_or_else(|| {
                DirectoryError::Invalid("the code does not match: check the time on the phone".into())
            })?;
            a.totp = Some(TotpState { secret: secret_b32.to_string(), confirmed: true, last_step: Some(step) });
            a.recovery = codes.iter().map(|c| totp::recovery_hash(c)).collect();
            Ok(())
        })?;
        Ok(codes)
    }

    /// Raise a security alert (`medkarta audit alerts`): `kind` (e.g. `sign-in-lockout`),
    /// who and from where, and why.
    pub fn alert(&self, kind: &str, by: Option<&str>, address: Option<&str>, reason: &str) -> Result<()> {
        let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let alert = serde_json::json!({"kind": kind, "at": i64::try_from(micros).unwrap_or(i64::MAX),
            "status": "open", "by": by, "address": address, "reason": reason});
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.store.begin()?;
        tx.put_record(ALERTS, &id, &alert.to_string(), Expect::Absent)?;
        tx.commit()?;
        Ok(())
    }

    /// The security alerts, oldest first.
    pub fn alerts(&self) -> Result<Vec<serde_json::Value>> {
        self.store.records(ALERTS)?.iter().map(|(_, r)| parse(&r.data)).collect()
    }

    // ---- clients -----------------------------------------------------------------------

    /// Register a client. With no `jwks` it gets a secret (returned once).
    pub fn add_client(
        &self,
        name: &str,
        scope: &str,
        redirect_uris: Vec<String>,
        jwks: Option<serde_json::Value>,
        public: bool,
    ) -> Result<(Client, Option<String>)> {
        Scopes::parse(scope).map_err(DirectoryError::Invalid)?;
        let secret = if jwks.is_none() && !public { Some(random::token(32)?) } else { None };
        let client = Client {
            client_id: format!("{}-{}", slug(name), random::readable(8)?),
            name: name.to_string(),
            secret_hash: secret.as_deref().map(password::hash).transpose()?,
            jwks,
            redirect_uris,
            scope: scope.to_string(),
            origins: Vec::new(),
            disabled: false,
            created: now(),
        };
        self.put("client", &client.client_id, &client, Expect::Absent)?;
        Ok((client, secret))
    }

    /// Is `origin` (`https://portal.example`) one a registered client may call from?
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let fresh =
            self.origins.read().ok().filter(|o| o.0.elapsed() < ORIGINS_TTL).map(|o| o.1.contains(&origin.to_string()));
        if let Some(known) = fresh {
            return known;
        }
        let all: Vec<String> =
            self.clients().unwrap_or_default().into_iter().filter(|c| !c.disabled).flat_map(|c| c.origins).collect();
        let allowed = all.iter().any(|o| o == origin);
        if let Ok(mut o) = self.origins.write() {
            *o = (std::time::Instant::now(), all);
        }
        allowed
    }

    /// Set the browser origins of a client.
    pub fn set_origins(&self, client_id: &str, origins: Vec<String>) -> Result<()> {
        for o in &origins {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && o.matches('/').count() == 2
                && !o.ends_with('/');
            if !ok {
                return Err(DirectoryError::Invalid(format!("'{o}' is not an origin (scheme://host[:port])")));
            }
        }
        self.update("client", client_id, |c: &mut Client| {
            c.origins = origins.clone();
            Ok(())
        })
    }

    pub fn client(&self, client_id: &str) -> Result<Option<Client>> {
        Ok(self.get("client", client_id)?.map(|(_, c)| c))
    }

    pub fn clients(&self) -> Result<Vec<Client>> {
        self.store.records("client")?.iter().map(|(_, r)| parse(&r.data)).collect()
    }

    /// A confidential client proving itself with its secret.
    pub fn authenticate_client(&self, client_id: &str, secret: &str) -> Option<Client> {
        let client = self.client(client_id).ok().flatten()?;
        let ok = client.secret_hash.as_deref().is_some_and(|h| password::verify(secret, h).unwrap_or(false));
        (ok && !client.disabled).then_some(client)
    }

    /// A client proving itself with a signed assertion (`private_key_jwt`, SMART Backend
    /// Services); each assertion works once.
    pub fn authenticate_assertion(&self, assertion: &str, token_url: &str) -> Result<Client> {
        let invalid = |m: String| DirectoryError::Invalid(m);
        let client_id =
            crate::token::assertion_issuer(assertion).ok_or_else(|| invalid("unreadable client assertion".into()))?;
        let client = self
            .client(&client_id)?
            .filter(|c| !c.disabled)
            .ok_or_else(|| invalid(format!("unknown client '{client_id}'")))?;
        let jwks = client.jwks.as_ref().ok_or_else(|| invalid("the client has no registered keys".into()))?;
        let (jti, exp) = crate::token::verify_assertion(jwks, assertion, &client_id, token_url, now())
            .map_err(|e| invalid(e.to_string()))?;
        let seen = serde_json::json!({"exp": exp});
        match self.put("jti", &format!("{client_id} {jti}"), &seen, Expect::Absent) {
            Ok(()) => Ok(client),
            Err(DirectoryError::Invalid(_)) => Err(invalid("the client assertion was already used (jti)".into())),
            Err(e) => Err(e),
        }
    }

    // ---- sessions and tokens -----------------------------------------------------------

    /// Start a session and issue its tokens. `refresh`: also a refresh token.
    pub fn issue(&self, mut session: Session, refresh: bool, nonce: Option<&str>) -> Result<Tokens> {
        let refresh_token = if refresh { Some(random::token(32)?) } else { None };
        session.refresh_hash = refresh_token.as_deref().map(sha256);
        session.refresh_expires = now() + REFRESH_TTL;
        self.put("session", &session.sid, &session, Expect::Absent)?;
        if let Some(hash) = &session.refresh_hash {
            self.put("refresh", hash, &RefreshRecord { sid: session.sid.clone(), current: true }, Expect::Absent)?;
        }
        self.tokens(&session, refresh_token, nonce)
    }

    /// A new session record (not stored yet).
    pub fn new_session(
        &self,
        username: Option<&str>,
        client_id: &str,
        scope: &Scopes,
        grant: Option<RoleGrant>,
        patient: Option<String>,
    ) -> Result<Session> {
        Ok(Session {
            sid: random::token(16)?,
            username: username.map(str::to_string),
            client_id: client_id.to_string(),
            scope: scope.to_string(),
            grant,
            patient,
            refresh_hash: None,
            refresh_expires: 0,
            revoked: false,
            created: now(),
            break_glass: None,
        })
    }

    fn tokens(&self, s: &Session, refresh_token: Option<String>, nonce: Option<&str>) -> Result<Tokens> {
        let now = now();
        let scopes = Scopes::parse(&s.scope).map_err(DirectoryError::Invalid)?;
        let fhir_user = s.grant.as_ref().and_then(|g| g.practitioner.clone().or_else(|| g.patient.clone()));
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: s.username.clone().unwrap_or_else(|| s.client_id.clone()),
            aud: self.audience.clone(),
            exp: now + ACCESS_TTL,
            iat: now,
            jti: random::token(12)?,
            client_id: s.client_id.clone(),
            scope: s.scope.clone(),
            sid: s.sid.clone(),
            role: s.grant.as_ref().map(RoleGrant::label),
            patient: s.patient.clone(),
            fhir_user: fhir_user.clone(),
            purpose_of_use: s.break_glass.as_ref().map(|_| "BTG".to_string()),
        };
        let id_token = if scopes.has("openid") && s.username.is_some() {
            let mut id = serde_json::json!({
                "iss": self.issuer, "sub": claims.sub, "aud": s.client_id, "exp": now + ACCESS_TTL, "iat": now,
            });
            if scopes.has("fhirUser")
                && let Some(u) = &fhir_user
            {
                id["fhirUser"] = serde_json::json!(format!("{}/{u}", self.audience));
            }
            if let Some(n) = nonce {
                id["nonce"] = serde_json::json!(n);
            }
            Some(self.signer.sign(&id)?)
        } else {
            None
        };
        Ok(Tokens {
            access_token: self.signer.sign(&claims)?,
            token_type: "Bearer",
            expires_in: ACCESS_TTL,
            scope: s.scope.clone(),
            refresh_token,
            id_token,
            patient: s.patient.clone(),
        })
    }

    /// Exchange a refresh token for new tokens; the refresh token rotates. Presenting an
    /// old (already rotated) refresh token revokes the whole session: it was stolen.
    pub fn refresh(&self, refresh_token: &str, client_id: &str) -> Result<Tokens> {
        let hash = sha256(refresh_token);
        let invalid = || DirectoryError::Invalid("the refresh token is invalid, expired or revoked".into());
        let (_, link) = self.get::<RefreshRecord>("refresh", &hash)?.ok_or_else(invalid)?;
        let sid = link.sid;
        let (_, session) = self.get::<Session>("session", &sid)?.ok_or_else(invalid)?;
        if !link.current {
            // a rotated token came back: someone kept a copy; end the session
            self.revoke_session(&sid)?;
            return Err(invalid());
        }
        if session.revoked || session.refresh_expires < now() || session.client_id != client_id {
            return Err(invalid());
        }
        if let Some(user) = &session.username
            && self.account(user)?.is_none_or(|a| a.disabled)
        {
            return Err(invalid());
        }
        let next = random::token(32)?;
        let next_hash = sha256(&next);
        let session = self.update("session", &sid, |s: &mut Session| {
            if s.refresh_hash.as_deref() != Some(hash.as_str()) {
                return Err(invalid()); // rotated meanwhile by a concurrent refresh
            }
            s.refresh_hash = Some(next_hash.clone());
            s.refresh_expires = now() + REFRESH_TTL;
            Ok(s.clone())
        })?;
        self.put("refresh", &hash, &RefreshRecord { sid: sid.clone(), current: false }, Expect::Any)?;
        self.put("refresh", &next_hash, &RefreshRecord { sid, current: true }, Expect::Absent)?;
        self.tokens(&session, Some(next), None)
    }

    /// Revoke the session of an access or refresh token (RFC 7009: unknown tokens are
    /// not an error).
    pub fn revoke(&self, token: &str) -> Result<()> {
        match self.session_of(token)? {
            Some(sid) => self.revoke_session(&sid),
            None => Ok(()),
        }
    }

    /// The session an access or refresh token of ours belongs to.
    fn session_of(&self, token: &str) -> Result<Option<String>> {
        if let Ok(claims) = self.signer.verify::<AccessClaims>(token, &self.issuer, &self.audience) {
            return Ok(Some(claims.sid));
        }
        Ok(self.get::<RefreshRecord>("refresh", &sha256(token))?.map(|(_, link)| link.sid))
    }

    /// The client a token was issued to (`None`: not a token of ours).
    pub fn client_of(&self, token: &str) -> Result<Option<String>> {
        let Some(sid) = self.session_of(token)? else { return Ok(None) };
        Ok(self.get::<Session>("session", &sid)?.map(|(_, s)| s.client_id))
    }

    /// Revoke a token for `client_id` (RFC 7009 §2.1): only a token issued to that client;
    /// `Ok(false)` if it belongs to another (nothing is revoked). Unknown tokens are fine.
    pub fn revoke_for(&self, client_id: &str, token: &str) -> Result<bool> {
        match self.client_of(token)? {
            Some(owner) if owner != client_id => Ok(false),
            Some(_) => self.revoke(token).map(|()| true),
            None => Ok(true),
        }
    }

    /// The client of a revoke or introspect request: its secret, a signed assertion
    /// (`token_url` its audience), or a public client (no secret, no keys) naming itself.
    pub fn endpoint_client(
        &self,
        client_id: &str,
        secret: Option<&str>,
        assertion: Option<&str>,
        token_url: &str,
    ) -> Option<Client> {
        match (assertion, secret) {
            (Some(a), _) => self.authenticate_assertion(a, token_url).ok(),
            (None, Some(s)) => self.authenticate_client(client_id, s),
            (None, None) => self
                .client(client_id)
                .ok()
                .flatten()
                .filter(|c| c.secret_hash.is_none() && c.jwks.is_none() && !c.disabled),
        }
    }

    fn revoke_sessions(&self, mut which: impl FnMut(&Session) -> bool) -> Result<()> {
        // revocations by this process take effect at once; other processes' within
        // SESSION_RECHECK
        self.forget_verified();
        for (sid, r) in self.store.records("session")? {
            let s: Session = parse(&r.data)?;
            if !s.revoked && which(&s) {
                self.update("session", &sid, |s: &mut Session| {
                    s.revoked = true;
                    s.refresh_hash = None;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    fn forget_verified(&self) {
        if let Ok(mut v) = self.verified.lock() {
            v.clear();
        }
    }

    /// Revoke one session (by its id). One not stored yet (a code replayed while its
    /// first exchange is still issuing) is stored revoked, so that it can never be issued.
    fn revoke_session(&self, sid: &str) -> Result<()> {
        self.forget_verified();
        match self.update("session", sid, |s: &mut Session| {
            s.revoked = true;
            s.refresh_hash = None;
            Ok(())
        }) {
            Err(DirectoryError::NotFound(_)) => {
                let mut tombstone = self.new_session(None, "", &Scopes::default(), None, None)?;
                tombstone.sid = sid.to_string();
                tombstone.revoked = true;
                match self.put("session", sid, &tombstone, Expect::Absent) {
                    // issued meanwhile: revoke that
                    Err(DirectoryError::Invalid(_)) => self.revoke_session(sid),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Verify an access token: signature, issuer, audience, expiry, and that its session
    /// is still live (not revoked, account not disabled). A token verified in the last
    /// [`SESSION_RECHECK`] is not verified again (the signature check and the session
    /// read are most of the cost of a small request).
    pub fn verify(&self, token: &str) -> std::result::Result<Caller, AuthError> {
        if let Some(caller) = self.verified(token) {
            return Ok(caller);
        }
        let caller = self.verify_fully(token)?;
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= 10_000 {
                v.clear(); // bounded: a burst of distinct tokens only costs re-verification
            }
            v.insert(token.to_string(), (caller.0.clone(), caller.1, std::time::Instant::now()));
        }
        Ok(caller.0)
    }

    /// The caller of a token fully verified a moment ago (within the session re-check
    /// interval, not expired): no IO, for the HTTP layer to call on its async threads.
    pub fn verified(&self, token: &str) -> Option<Caller> {
        let (caller, exp, checked) = self.verified.lock().ok().and_then(|v| v.get(token).cloned())?;
        (exp > now() && checked.elapsed() < SESSION_RECHECK).then_some(caller)
    }

    fn verify_fully(&self, token: &str) -> std::result::Result<(Caller, u64), AuthError> {
        let claims: AccessClaims = self.signer.verify(token, &self.issuer, &self.audience)?;
        let session = self
            .get::<Session>("session", &claims.sid)
            .map_err(|e| AuthError::InvalidToken(format!("cannot check the session: {e}")))?
            .map(|(_, s)| s)
            .filter(|s| !s.revoked)
            .ok_or_else(|| AuthError::InvalidToken("the token has been revoked".into()))?;
        if session.client_id != claims.client_id {
            return Err(AuthError::InvalidToken("the token belongs to another client".into()));
        }
        let scopes = Scopes::parse(&claims.scope).map_err(AuthError::InvalidToken)?;
        let caller = Caller {
            sid: claims.sid,
            username: session.username,
            client_id: claims.client_id,
            scopes,
            grant: session.grant,
            patient: session.patient,
            break_glass: session.break_glass,
        };
        Ok((caller, claims.exp))
    }

    /// Remember a login in progress (the password checked, perhaps the second factor
    /// too) for the next form of the flow; returns the ticket to carry.
    pub fn new_ticket(&self, ticket: &Ticket) -> Result<String> {
        let id = random::token(24)?;
        self.put("ticket", &sha256(&id), ticket, Expect::Absent)?;
        Ok(id)
    }

    /// The login in progress of a ticket (expired ones are gone).
    pub fn ticket(&self, id: &str) -> Result<Option<(i64, Ticket)>> {
        Ok(self.get::<Ticket>("ticket", &sha256(id))?.filter(|(_, t)| t.expires >= now()))
    }

    /// Move a ticket on (compare-and-set: a ticket is used by one form submission).
    pub fn advance_ticket(&self, id: &str, version: i64, ticket: &Ticket) -> Result<()> {
        self.put("ticket", &sha256(id), ticket, Expect::Version(version))
    }

    /// End a ticket.
    pub fn drop_ticket(&self, id: &str) -> Result<()> {
        let mut tx = self.store.begin()?;
        tx.delete_record("ticket", &sha256(id))?;
        tx.commit()?;
        Ok(())
    }

    /// Store an authorization code; returns the code to send to the client.
    pub fn new_code(&self, grant: &CodeGrant) -> Result<String> {
        let code = random::token(32)?;
        self.put("code", &sha256(&code), grant, Expect::Absent)?;
        Ok(code)
    }

    /// Take an authorization code: it works once, and names the session to issue (its
    /// `sid`). Presented again, the session issued from it is revoked (RFC 6749 §4.1.2:
    /// someone else had the code) and `None` is returned.
    pub fn take_code(&self, code: &str) -> Result<Option<CodeGrant>> {
        let sid = random::token(16)?;
        let taken = self.update("code", &sha256(code), |g: &mut CodeGrant| match &g.sid {
            Some(first) => Ok(Err(first.clone())),
            None => {
                g.sid = Some(sid.clone());
                Ok(Ok(g.clone()))
            }
        });
        match taken {
            Err(DirectoryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
            Ok(Err(first)) => {
                self.revoke_session(&first)?;
                Ok(None)
            }
            Ok(Ok(g)) => Ok((g.expires >= now()).then_some(g)),
        }
    }

    /// Delete what has expired: authorization codes a day after their expiry (a replay
    /// within the day still revokes what was issued), sign-in tickets, the `jti`s of
    /// client assertions. Returns how many records went.
    pub fn sweep(&self, now: u64) -> Result<usize> {
        let mut gone = Vec::new();
        // a jti outlives its assertion's expiry by more than the leeway its check allows
        for (kind, grace) in [("code", 24 * 3600), ("ticket", 0), ("jti", 120), ("web-login", 0), ("web-session", 0)] {
            for (id, r) in self.store.records(kind)? {
                let v: serde_json::Value = serde_json::from_str(&r.data).unwrap_or_default();
                if v["expires"].as_u64().or_else(|| v["exp"].as_u64()).is_some_and(|e| e + grace < now) {
                    gone.push((kind, id));
                }
            }
        }
        for chunk in gone.chunks(500) {
            let mut tx = self.store.begin()?;
            for (kind, id) in chunk {
                tx.delete_record(kind, id)?;
            }
            tx.commit()?;
        }
        Ok(gone.len())
    }

    /// Exchange an authorization code of `client_id` (RFC 6749 §4.1.3 with PKCE): the
    /// code once, for the redirect URI and verifier it was issued with, while the account
    /// is still valid. Returns the tokens and the session's id.
    pub fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<std::result::Result<(Tokens, String), CodeRefused>> {
        let Some(grant) = self.take_code(code)? else {
            return Ok(Err(CodeRefused("the code is invalid, expired or already used")));
        };
        if grant.client_id != client_id || redirect_uri != Some(grant.redirect_uri.as_str()) {
            return Ok(Err(CodeRefused("the code was issued to another client or redirect_uri")));
        }
        if verifier.map(pkce_challenge).as_deref() != Some(grant.code_challenge.as_str()) {
            return Ok(Err(CodeRefused("code_verifier does not match the code_challenge (PKCE)")));
        }
        if !self.still_valid(&grant.username, grant.created)? {
            return Ok(Err(CodeRefused("the account's sessions were ended after this sign-in began: sign in again")));
        }
        let scopes = Scopes::parse(&grant.scope).map_err(DirectoryError::Invalid)?;
        let refresh = scopes.has("offline_access") || scopes.has("online_access");
        let mut session =
            self.new_session(Some(&grant.username), client_id, &scopes, grant.grant.clone(), grant.patient.clone())?;
        session.break_glass = grant.break_glass.clone();
        // the session the code names: a replay of the code revokes it
        if let Some(sid) = &grant.sid {
            session.sid.clone_from(sid);
        }
        let sid = session.sid.clone();
        Ok(Ok((self.issue(session, refresh, grant.nonce.as_deref())?, sid)))
    }

    /// The caller of a live session (not revoked, its account enabled and its sessions
    /// not ended since it began), for a first-party application that keeps the session
    /// on the server instead of a token.
    pub fn session_caller(&self, sid: &str) -> Result<Option<Caller>> {
        let Some((_, s)) = self.get::<Session>("session", sid)? else { return Ok(None) };
        if s.revoked {
            return Ok(None);
        }
        if let Some(u) = &s.username
            && !self.still_valid(u, s.created.saturating_mul(1_000_000))?
        {
            return Ok(None);
        }
        let scopes = Scopes::parse(&s.scope).map_err(DirectoryError::Invalid)?;
        Ok(Some(Caller {
            sid: s.sid,
            username: s.username,
            client_id: s.client_id,
            scopes,
            grant: s.grant,
            patient: s.patient,
            break_glass: s.break_glass,
        }))
    }

    /// End a session (sign-out): its tokens stop working everywhere.
    pub fn end_session(&self, sid: &str) -> Result<()> {
        self.revoke_session(sid)
    }

    /// Register (or bring up to date) a first-party public client with a fixed id: the
    /// server's own web applications, which sign people in with the code flow and PKCE.
    pub fn ensure_client(&self, client_id: &str, name: &str, scope: &str, redirect_uris: Vec<String>) -> Result<()> {
        Scopes::parse(scope).map_err(DirectoryError::Invalid)?;
        let created = self.client(client_id)?.map_or_else(now, |c| c.created);
        let client = Client {
            client_id: client_id.to_string(),
            name: name.to_string(),
            secret_hash: None,
            jwks: None,
            redirect_uris,
            scope: scope.to_string(),
            origins: Vec::new(),
            disabled: false,
            created,
        };
        self.put("client", client_id, &client, Expect::Any)
    }

    /// Start a web application's sign-in: returns the `state` that names it.
    pub fn new_web_login(&self, login: &WebLogin) -> Result<String> {
        let state = random::token(24)?;
        self.put("web-login", &sha256(&state), login, Expect::Absent)?;
        Ok(state)
    }

    /// Take the sign-in a `state` names (once; expired ones are gone).
    pub fn take_web_login(&self, state: &str) -> Result<Option<WebLogin>> {
        let id = sha256(state);
        let mut tx = self.store.begin()?;
        let Some(record) = tx.record("web-login", &id)? else { return Ok(None) };
        // the delete decides who took it: one transaction removes the row
        let taken = tx.delete_record("web-login", &id)?;
        tx.commit()?;
        let login: WebLogin = parse(&record.data)?;
        Ok((taken && login.expires >= now()).then_some(login))
    }

    /// Store a new web session; returns the cookie value that names it.
    pub fn new_web_session(&self, session: &WebSession) -> Result<String> {
        let cookie = random::token(32)?;
        self.put("web-session", &sha256(&cookie), session, Expect::Absent)?;
        Ok(cookie)
    }

    /// The web session of a cookie, with its record version (expired ones are gone).
    pub fn web_session(&self, cookie: &str) -> Result<Option<(i64, WebSession)>> {
        Ok(self.get::<WebSession>("web-session", &sha256(cookie))?.filter(|(_, s)| s.expires >= now()))
    }

    /// Save a web session seen again or changed (compare-and-set: `false` if another
    /// request changed it meanwhile).
    pub fn save_web_session(&self, cookie: &str, version: i64, session: &WebSession) -> Result<bool> {
        match self.put("web-session", &sha256(cookie), session, Expect::Version(version)) {
            Ok(()) => Ok(true),
            Err(DirectoryError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// End a web session (sign-out, idle timeout).
    pub fn drop_web_session(&self, cookie: &str) -> Result<()> {
        let mut tx = self.store.begin()?;
        tx.delete_record("web-session", &sha256(cookie))?;
        tx.commit()?;
        Ok(())
    }

    /// A CSRF token for the sign-in forms: random, signed by the server (a cookie set by
    /// someone else is refused).
    pub fn csrf_token(&self) -> Result<String> {
        let nonce = random::token(18)?;
        let tag = aws_lc_rs::hmac::sign(&self.csrf_key, nonce.as_bytes());
        Ok(format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
    }

    /// Was this CSRF token issued by [`Directory::csrf_token`]?
    pub fn csrf_valid(&self, token: &str) -> bool {
        let Some((nonce, tag)) = token.split_once('.') else { return false };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return false };
        aws_lc_rs::hmac::verify(&self.csrf_key, nonce.as_bytes(), &tag).is_ok()
    }
}

/// Count a failed attempt; the lock (seconds, at most `cap`) it starts, if any.
fn count_failure(failed: &mut u32, locked_until: &mut Option<u64>, now: u64, cap: u64) -> Option<u64> {
    *failed = failed.saturating_add(1);
    if *failed < LOCK_AFTER {
        return None;
    }
    let factor = 1u64 << (*failed - LOCK_AFTER).min(16);
    let secs = LOCK_SECONDS.saturating_mul(factor).min(cap);
    *locked_until = Some(now + secs);
    Some(secs)
}

/// Check a second factor (a TOTP code, or a recovery code, which is used up).
fn second_factor(a: &mut Account, code: &str, now: u64) -> bool {
    if let Some(t) = a.totp.as_mut().filter(|t| t.confirmed) {
        let secret = totp::from_base32(&t.secret).unwrap_or_default();
        if let Some(step) = totp::verify(&secret, code, now, t.last_step) {
            t.last_step = Some(step);
            return true;
        }
    }
    let recovery = totp::recovery_hash(code);
    let found = !code.is_empty() && a.recovery.contains(&recovery);
    a.recovery.retain(|r| *r != recovery);
    found
}

/// Which session a refresh token belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct RefreshRecord {
    sid: String,
    /// `false` once rotated: presenting it again means it was copied.
    current: bool,
}

/// The PKCE S256 transform of a verifier (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    sha256(verifier)
}

fn slug(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if s.is_empty() { "client".into() } else { s.chars().take(32).collect() }
}

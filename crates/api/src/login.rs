//! The authorization code flow (OAuth 2.0 with PKCE, SMART App Launch): the pages a
//! person sees — sign in with password and one-time code, first-time set-up of the
//! authenticator app (QR code) with recovery codes, and the consent screen listing what
//! the application asks for — in Russian or English, and the redirect back to the app
//! with a one-use code (and the issuer, RFC 9207). Forms carry a CSRF token signed by the
//! server that must match a `SameSite=Strict` cookie, and once a sign-in has begun, the
//! token its ticket was issued with; the login in progress is a server-side ticket (with
//! the authenticator secret offered for enrolment), never trusted client state. A person
//! changes their own password at `/oauth/password` (with the second factor). Sign-in
//! attempts are rate-limited per address and per account ([`crate::limit`]).

use std::sync::{Arc, LazyLock};

use askama::Template;
use audit::AuditLog;
use auth::account::{Account, Client, Role, RoleGrant};
use auth::directory::{CodeGrant, Directory, LoginError, PasswordChangeError, Ticket, now};
use auth::scope::{Context, Scopes};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use i18n::Lang;

use crate::{Limits, Peer};

/// How long a sign-in may take, from the password to the consent (seconds).
const TICKET_TTL: u64 = 600;

static CATALOGUE: LazyLock<i18n::Catalogue> = LazyLock::new(|| {
    i18n::Catalogue::new("sign-in", include_str!("../locales/ru.txt"), include_str!("../locales/en.txt"))
});

/// The language of a sign-in page: the form's, else the one chosen in the portal
/// (`mk_lang` cookie), else the browser's.
fn lang(headers: &HeaderMap, form_lang: Option<&str>) -> Lang {
    let pick =
        form_lang.filter(|l| !l.is_empty()).map(str::to_string).or_else(|| cookie_value(headers, "mk_lang")).or_else(
            || headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_lowercase()),
        );
    Lang::parse(pick.as_deref())
}

/// A sign-in page's text (`locales/ru.txt`, `en.txt`).
fn tr(l: Lang, key: &'static str) -> &'static str {
    CATALOGUE.text(l, key)
}

/// Hidden fields every form of the flow carries.
struct Hidden<'a> {
    csrf: &'a str,
    request: &'a str,
    step: &'static str,
    ticket: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "signin_message.html")]
struct MessagePage<'a> {
    lang: &'static str,
    title: &'static str,
    css: &'static str,
    class: &'static str,
    text: &'a str,
}

/// A rendered sign-in page, never cached, not framable.
fn page(t: &impl Template, cookie: Option<String>) -> Response {
    let html = t.render().unwrap_or_else(|e| {
        tracing::error!("a sign-in page could not be rendered: {e}");
        "<!doctype html><title>Error</title><p>Internal error</p>".into()
    });
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    r
}

const CSS: &str = "body{font-family:system-ui,sans-serif;background:#f4f6f8;margin:0}main{max-width:30rem;margin:3rem auto;\
background:#fff;padding:2rem;border-radius:.5rem;box-shadow:0 1px 4px #0002}label{display:block;margin:.8rem 0 .2rem}\
input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}\
button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem;margin-right:.5rem}.error{color:#a00}.note{color:#555}\
code{font-size:1.1rem}ul{padding-left:1.2rem}";

fn error_page(l: Lang, msg: &str) -> Response {
    let title = tr(l, "error.title");
    let mut r = page(&MessagePage { lang: l.code(), title, css: CSS, class: "error", text: msg }, None);
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// A checked authorization request.
struct AuthRequest {
    client: Client,
    redirect_uri: String,
    scope: Scopes,
    state: Option<String>,
    code_challenge: String,
    nonce: Option<String>,
    /// Purpose of use break-the-glass (`purpose_of_use=BTG`), with `btg_reason`.
    break_glass: Option<String>,
}

/// Either a page saying why (when the client or redirect URI cannot be trusted) or a
/// redirect to the client with an OAuth error.
enum Refusal {
    Page(String),
    Redirect(String),
}

/// The issuer as discovery names it, sent with every authorization response (RFC 9207).
fn issuer(dir: &Directory) -> &str {
    dir.issuer.trim_end_matches('/')
}

fn redirect(uri: &str, params: &[(&str, &str)]) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    format!("{uri}{}{q}", if uri.contains('?') { '&' } else { '?' })
}

fn check_request(dir: &Directory, query: &str) -> Result<AuthRequest, Refusal> {
    let f: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let client_id = get("client_id").ok_or_else(|| Refusal::Page("client_id is missing".into()))?;
    let client = dir
        .client(&client_id)
        .ok()
        .flatten()
        .filter(|c| !c.disabled)
        .ok_or_else(|| Refusal::Page(format!("unknown client '{client_id}'")))?;
    let redirect_uri = get("redirect_uri")
        .filter(|r| client.redirect_uris.contains(r))
        .ok_or_else(|| Refusal::Page("redirect_uri is not registered for this client".into()))?;
    let state = get("state");
    let fail = |error: &str, description: &str| {
        let mut p = vec![("error", error), ("error_description", description)];
        if let Some(s) = &state {
            p.push(("state", s));
        }
        p.push(("iss", issuer(dir)));
        Refusal::Redirect(redirect(&redirect_uri, &p))
    };
    if get("response_type").as_deref() != Some("code") {
        return Err(fail("unsupported_response_type", "response_type must be code"));
    }
    let code_challenge = match (get("code_challenge"), get("code_challenge_method").as_deref()) {
        (Some(c), Some("S256")) if c.len() >= 43 => c,
        _ => return Err(fail("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")),
    };
    if let Some(aud) = get("aud")
        && aud.trim_end_matches('/') != dir.audience
    {
        return Err(fail("invalid_request", "aud is not this FHIR server"));
    }
    let asked = Scopes::parse(&get("scope").unwrap_or_default()).map_err(|e| fail("invalid_scope", &e))?;
    let allowed = Scopes::parse(&client.scope).map_err(|e| fail("server_error", &e))?;
    let scope = asked.intersect(&allowed);
    if scope.resources.is_empty() {
        return Err(fail("invalid_scope", "none of the requested scopes is allowed for this client"));
    }
    // purpose of use (v3 ActReason): treatment is the default; BTG asks for emergency access
    let break_glass = match get("purpose_of_use").as_deref().map(|p| p.rsplit(['|', '#']).next().unwrap_or(p)) {
        None | Some("TREAT") => None,
        Some("BTG") => match get("btg_reason").map(|r| r.trim().chars().take(1000).collect::<String>()) {
            Some(r) if r.len() >= 5 => Some(r),
            _ => return Err(fail("invalid_request", "purpose_of_use=BTG needs btg_reason: why (a few words)")),
        },
        Some(other) => {
            return Err(fail("invalid_request", &format!("purpose_of_use '{other}' is not supported (TREAT or BTG)")));
        }
    };
    Ok(AuthRequest { client, redirect_uri, scope, state, code_challenge, nonce: get("nonce"), break_glass })
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn refuse(l: Lang, r: Refusal) -> Response {
    match r {
        Refusal::Page(m) => error_page(l, &m),
        Refusal::Redirect(uri) => found(&uri),
    }
}

fn found(uri: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(uri) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

struct LoginTexts {
    for_app: &'static str,
    username: &'static str,
    password: &'static str,
    otp: &'static str,
    first_time: &'static str,
    submit: &'static str,
    change_password: &'static str,
}

#[derive(Template)]
#[template(path = "signin_login.html")]
struct LoginPage<'a> {
    lang: &'static str,
    title: &'static str,
    css: &'static str,
    h: Hidden<'a>,
    client: &'a str,
    error: Option<&'a str>,
    x: LoginTexts,
}

fn login_page(
    l: Lang,
    csrf: &str,
    request: &str,
    client: &Client,
    error: Option<&str>,
    cookie: Option<String>,
) -> Response {
    let x = LoginTexts {
        for_app: tr(l, "login.for_app"),
        username: tr(l, "field.username"),
        password: tr(l, "field.password"),
        otp: tr(l, "field.otp"),
        first_time: tr(l, "login.first_time"),
        submit: tr(l, "login.submit"),
        change_password: tr(l, "login.change_password"),
    };
    let h = Hidden { csrf, request, step: "login", ticket: None };
    let title = tr(l, "login.title");
    page(&LoginPage { lang: l.code(), title, css: CSS, h, client: &client.name, error, x }, cookie)
}

fn login_error(l: Lang, e: &LoginError) -> String {
    match e {
        // one answer for a wrong name, password or code: nothing is confirmed to a guesser
        LoginError::BadCredentials | LoginError::BadCode => tr(l, "error.wrong").into(),
        LoginError::Locked(secs) => i18n::fill(tr(l, "error.locked"), &[("n", &secs.div_ceil(60).to_string())]),
        LoginError::Disabled => tr(l, "error.disabled").into(),
        LoginError::Unavailable => tr(l, "error.unavailable").into(),
        LoginError::Busy => tr(l, "error.busy").into(),
    }
}

/// The answer to a sign-in refused by a rate limit (429, with `Retry-After`).
fn too_many(l: Lang, retry_after: u64) -> Response {
    let msg = i18n::fill(tr(l, "error.too_many"), &[("n", &retry_after.to_string())]);
    let mut r = error_page(l, &msg);
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Every password-hashing place is taken and the queue full: 503, try again in a moment.
fn busy(l: Lang) -> Response {
    let mut r = error_page(l, &login_error(l, &LoginError::Busy));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Which endpoints a request counts toward (each has its own bucket per address, so a
/// flood of one does not shut the other).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoints {
    /// The sign-in and password pages.
    SignIn,
    /// Token, revocation, introspection.
    Token,
}

impl Endpoints {
    fn name(self) -> &'static str {
        match self {
            Endpoints::SignIn => "sign-in",
            Endpoints::Token => "token",
        }
    }
}

/// Let a sign-in or token request from `address` through the address limit; a first
/// refusal in a while raises a security alert. `Err(seconds to wait)` if refused.
pub(crate) async fn admit_address(
    limits: &Limits,
    dir: &Arc<Directory>,
    address: Option<&str>,
    endpoints: Endpoints,
) -> Result<(), u64> {
    let Some(address) = address else { return Ok(()) };
    let key = format!("{} {}", endpoints.name(), crate::limit::address_key(address));
    match limits.address.take(&key) {
        Ok(()) => Ok(()),
        Err(limited) => {
            tracing::warn!(address, "sign-in or token requests over the rate limit refused");
            if limited.alert {
                let (dir, address) = (dir.clone(), address.to_string());
                let reason = "sign-in or token requests from this address over the rate limit (--rate-limit-address)";
                let stored =
                    tokio::task::spawn_blocking(move || dir.alert("sign-in-flood", None, Some(&address), reason));
                if let Ok(Err(e)) = stored.await {
                    tracing::error!("a rate-limit alert could not be stored: {e}");
                }
            }
            Err(limited.retry_after)
        }
    }
}

struct EnrolTexts {
    intro: &'static str,
    by_hand: &'static str,
    code: &'static str,
    confirm: &'static str,
}

#[derive(Template)]
#[template(path = "signin_enrol.html")]
struct EnrolPage<'a> {
    lang: &'static str,
    title: &'static str,
    css: &'static str,
    h: Hidden<'a>,
    /// The QR code: SVG made by `auth::totp::qr_svg` from the key (no input of anyone's).
    qr: String,
    secret: &'a str,
    error: Option<&'a str>,
    x: EnrolTexts,
}

fn enrol_page(
    l: Lang,
    csrf: &str,
    request: &str,
    ticket: &str,
    (secret, uri): (&str, &str),
    error: Option<&str>,
) -> Response {
    let x = EnrolTexts {
        intro: tr(l, "enrol.intro"),
        by_hand: tr(l, "enrol.by_hand"),
        code: tr(l, "enrol.code"),
        confirm: tr(l, "enrol.confirm"),
    };
    let h = Hidden { csrf, request, step: "enrol", ticket: Some(ticket) };
    let title = tr(l, "enrol.title");
    let qr = auth::totp::qr_svg(uri).unwrap_or_default();
    page(&EnrolPage { lang: l.code(), title, css: CSS, h, qr, secret, error, x }, None)
}

/// In words: what a scope lets the application do.
fn describe(l: Lang, scopes: &Scopes) -> Vec<String> {
    let mut out: Vec<String> = scopes
        .resources
        .iter()
        .map(|r| {
            let whose = tr(
                l,
                match r.context {
                    Context::Patient => "scope.patient",
                    Context::User => "scope.user",
                    Context::System => "scope.system",
                },
            );
            let p = &r.perms;
            let verbs: Vec<&str> = [
                (p.read || p.search, tr(l, "scope.read")),
                (p.create, tr(l, "scope.create")),
                (p.update, tr(l, "scope.update")),
                (p.delete, tr(l, "scope.delete")),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, v)| *v)
            .collect();
            let what = r.resource_type.map_or_else(|| tr(l, "scope.all_types").to_string(), |t| t.to_string());
            format!("{} {whose} ({what})", verbs.join(", "))
        })
        .collect();
    if scopes.has("offline_access") || scopes.has("online_access") {
        out.push(tr(l, "scope.offline").into());
    }
    if scopes.has("openid") || scopes.has("fhirUser") {
        out.push(tr(l, "scope.identity").into());
    }
    out
}

struct ConsentPage<'a> {
    csrf: &'a str,
    request: &'a str,
    ticket: &'a str,
    account: &'a Account,
    req: &'a AuthRequest,
    notices: &'a [String],
    recovery: &'a [String],
}

struct ConsentTexts {
    recovery: &'static str,
    the_app: &'static str,
    asks: &'static str,
    btg: &'static str,
    btg_means: &'static str,
    role: &'static str,
    allow: &'static str,
    deny: &'static str,
}

#[derive(Template)]
#[template(path = "signin_consent.html")]
struct ConsentView<'a> {
    lang: &'static str,
    title: &'static str,
    css: &'static str,
    h: Hidden<'a>,
    notices: &'a [String],
    recovery: &'a [String],
    client: &'a str,
    items: Vec<String>,
    break_glass: Option<&'a str>,
    roles: Vec<String>,
    x: ConsentTexts,
}

fn consent_page(l: Lang, c: &ConsentPage<'_>) -> Response {
    let x = ConsentTexts {
        recovery: tr(l, "consent.recovery"),
        the_app: tr(l, "consent.the_app"),
        asks: tr(l, "consent.asks"),
        btg: tr(l, "consent.btg"),
        btg_means: tr(l, "consent.btg_terms"),
        role: tr(l, "consent.role"),
        allow: tr(l, "consent.allow"),
        deny: tr(l, "consent.deny"),
    };
    let view = ConsentView {
        lang: l.code(),
        title: tr(l, "consent.title"),
        css: CSS,
        h: Hidden { csrf: c.csrf, request: c.request, step: "consent", ticket: Some(c.ticket) },
        notices: c.notices,
        recovery: c.recovery,
        client: &c.req.client.name,
        items: describe(l, &c.req.scope),
        break_glass: c.req.break_glass.as_deref(),
        roles: c.account.grants.iter().map(|g| g.label()).collect(),
        x,
    };
    page(&view, None)
}

/// A new CSRF token and the cookie that carries it.
fn csrf_cookie(dir: &Directory) -> Result<(String, String), auth::directory::DirectoryError> {
    let csrf = dir.csrf_token()?;
    let secure = if dir.issuer.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!("mk_csrf={csrf}; Path=/oauth; HttpOnly; SameSite=Strict{secure}");
    Ok((csrf, cookie))
}

/// The form's CSRF token, if it matches the cookie and the server issued it.
fn csrf_checked(dir: &Directory, headers: &HeaderMap, form: &str) -> bool {
    !form.is_empty() && cookie_value(headers, "mk_csrf").as_deref() == Some(form) && dir.csrf_valid(form)
}

/// `GET /oauth/authorize`: check the request, then the sign-in page.
pub async fn authorize_get(State(dir): State<Arc<Directory>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let l = lang(&headers, None);
    let query = q.unwrap_or_default();
    let result = tokio::task::spawn_blocking(move || {
        let req = match check_request(&dir, &query) {
            Ok(r) => r,
            Err(r) => return refuse(l, r),
        };
        let Ok((csrf, cookie)) = csrf_cookie(&dir) else { return error_page(l, "internal error") };
        login_page(l, &csrf, &query, &req.client, None, Some(cookie))
    })
    .await;
    result.unwrap_or_else(|_| error_page(l, "internal error"))
}

/// A field of a posted form (empty if absent).
fn field(f: &[(String, String)], name: &str) -> String {
    f.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// A form posted to the sign-in pages, let through the address limit and the CSRF check:
/// its fields, language and CSRF token; else the page that refuses it.
async fn posted(
    dir: &Arc<Directory>,
    limits: &Limits,
    address: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Vec<(String, String)>, Lang, String), Response> {
    let f: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let l = lang(headers, Some(&field(&f, "lang")));
    admit_address(limits, dir, address, Endpoints::SignIn).await.map_err(|wait| too_many(l, wait))?;
    let csrf = field(&f, "csrf");
    if !csrf_checked(dir, headers, &csrf) {
        return Err(error_page(l, tr(l, "error.expired")));
    }
    Ok((f, l, csrf))
}

/// `POST /oauth/authorize`: the forms of the flow.
pub async fn authorize_post(
    State(dir): State<Arc<Directory>>,
    State(audit): State<Arc<AuditLog>>,
    State(limits): State<Arc<Limits>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (f, l, csrf) = match posted(&dir, &limits, address.as_deref(), &headers, &body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let step_name = field(&f, "step");
    // a sign-in hashes a password: it waits here for a place, not on a blocking thread
    let place = match step_name.as_str() {
        "login" => match limits.hashing.enter().await {
            Some(place) => Some(place),
            None => return busy(l),
        },
        _ => None,
    };
    let result = tokio::task::spawn_blocking(move || {
        // the place goes with the work (a client that leaves does not free it early)
        let _place = place;
        let login = Login { audit: &audit, address, limits: &limits };
        step(&dir, &login, l, &step_name, &csrf, &f)
    })
    .await;
    result.unwrap_or_else(|_| error_page(l, "internal error"))
}

/// Where sign-ins are recorded, from which address this one comes, and its limits.
struct Login<'a> {
    audit: &'a AuditLog,
    address: Option<String>,
    limits: &'a Limits,
}

impl Login<'_> {
    /// Record the attempt; `false` if it could not be recorded (the sign-in must fail).
    fn record(&self, username: &str, client: &str, ok: bool, detail: String) -> bool {
        match crate::record_login(self.audit, Some(username), Some(client), self.address.clone(), ok, detail) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("a sign-in could not be audited: {e}");
                false
            }
        }
    }
}

fn step(dir: &Directory, login: &Login<'_>, l: Lang, step: &str, csrf: &str, f: &[(String, String)]) -> Response {
    let get = |k: &str| field(f, k);
    let request = get("request");
    let req = match check_request(dir, &request) {
        Ok(r) => r,
        Err(r) => return refuse(l, r),
    };
    let expired = || error_page(l, tr(l, "error.too_long"));
    let at = now();
    match step {
        "login" => {
            let username = get("username").trim().to_lowercase();
            if let Err(limited) = login.limits.account.take(&username) {
                tracing::warn!(username, "sign-in attempts over the account's rate limit refused");
                return too_many(l, limited.retry_after);
            }
            let signed = match dir.sign_in(&username, &get("password"), get("otp").trim(), login.address.as_deref(), at)
            {
                Ok(a) => a,
                Err(LoginError::Busy) => return busy(l),
                Err(e) => {
                    tracing::warn!(username, "failed sign-in: {e}");
                    login.record(&username, &req.client.client_id, false, format!("sign-in failed: {e}"));
                    return login_page(l, csrf, &request, &req.client, Some(&login_error(l, &e)), None);
                }
            };
            let what = if signed.enrolled { "signed in with password and second factor" } else { "password accepted" };
            if !login.record(&username, &req.client.client_id, true, what.into()) {
                return expired();
            }
            // a first sign-in sets up the authenticator app before anything else: a new
            // secret for this sign-in only, kept in its ticket until a code confirms it
            let offered = if signed.enrolled {
                None
            } else {
                match dir.new_totp(&username) {
                    Ok(o) => Some(o),
                    Err(_) => return expired(),
                }
            };
            let ticket = Ticket {
                username: username.clone(),
                authenticated: signed.enrolled,
                request: request.clone(),
                expires: at + TICKET_TTL,
                csrf: csrf.to_string(),
                created: auth::directory::now_micros(),
                totp_secret: offered.as_ref().map(|(secret, _)| secret.clone()),
            };
            let Ok(id) = dir.new_ticket(&ticket) else { return expired() };
            if let Some((secret, uri)) = offered {
                return enrol_page(l, csrf, &request, &id, (&secret, &uri), None);
            }
            consent_page(
                l,
                &ConsentPage {
                    csrf,
                    request: &request,
                    ticket: &id,
                    account: &signed.account,
                    req: &req,
                    notices: &signed.notices,
                    recovery: &[],
                },
            )
        }
        "enrol" => {
            let id = get("ticket");
            let Some((version, mut ticket)) =
                dir.ticket(&id).ok().flatten().filter(|(_, t)| t.request == request && t.csrf == csrf)
            else {
                return expired();
            };
            let Some(secret) = ticket.totp_secret.clone() else { return expired() };
            match dir.confirm_totp(&ticket.username, &secret, get("otp").trim(), at) {
                Ok(codes) => {
                    ticket.authenticated = true;
                    ticket.totp_secret = None;
                    let Ok(Some(account)) = dir.account(&ticket.username) else { return expired() };
                    if dir.advance_ticket(&id, version, &ticket).is_err() {
                        return expired();
                    }
                    login.record(&ticket.username, &req.client.client_id, true, "second factor set up".into());
                    let p = ConsentPage {
                        csrf,
                        request: &request,
                        ticket: &id,
                        account: &account,
                        req: &req,
                        notices: &[],
                        recovery: &codes,
                    };
                    consent_page(l, &p)
                }
                Err(e) => {
                    let uri = auth::totp::from_base32(&secret)
                        .map(|s| auth::totp::uri(&s, "Medkarta", &ticket.username))
                        .unwrap_or_default();
                    enrol_page(l, csrf, &request, &id, (&secret, &uri), Some(&e.to_string()))
                }
            }
        }
        "consent" => {
            let id = get("ticket");
            let Some((_, ticket)) = dir
                .ticket(&id)
                .ok()
                .flatten()
                .filter(|(_, t)| t.request == request && t.authenticated && t.csrf == csrf)
            else {
                return expired();
            };
            let _ = dir.drop_ticket(&id);
            // a password change, reset or disabling since the sign-in began ends it
            if !dir.still_valid(&ticket.username, ticket.created).unwrap_or(false) {
                return expired();
            }
            let with_state = |mut p: Vec<(&'static str, String)>| {
                // the state, then the issuer (RFC 9207)
                if let Some(s) = &req.state {
                    p.push(("state", s.clone()));
                }
                p.push(("iss", issuer(dir).to_string()));
                let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
                redirect(&req.redirect_uri, &pairs)
            };
            if get("decision") != "allow" {
                tracing::info!(
                    username = ticket.username,
                    client_id = req.client.client_id,
                    "access refused by the user"
                );
                return found(&with_state(vec![
                    ("error", "access_denied".into()),
                    ("error_description", "the user refused".into()),
                ]));
            }
            let Ok(Some(account)) = dir.account(&ticket.username) else { return expired() };
            let grant: Option<RoleGrant> =
                get("role").parse::<usize>().ok().and_then(|i| account.grants.get(i).cloned());
            let Some(grant) = grant else { return expired() };
            // a patient's apps get the patient's own record as context
            let patient = (grant.role == Role::Patient)
                .then(|| grant.patient.as_deref().map(|p| p.trim_start_matches("Patient/").to_string()))
                .flatten();
            let code = CodeGrant {
                client_id: req.client.client_id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                code_challenge: req.code_challenge.clone(),
                scope: req.scope.to_string(),
                username: ticket.username.clone(),
                grant: Some(grant),
                patient,
                nonce: req.nonce.clone(),
                expires: at + auth::directory::CODE_TTL,
                break_glass: req.break_glass.clone(),
                sid: None,
                created: ticket.created,
            };
            match dir.new_code(&code) {
                Ok(c) => {
                    tracing::info!(
                        username = ticket.username,
                        client_id = req.client.client_id,
                        "access granted by the user"
                    );
                    found(&with_state(vec![("code", c)]))
                }
                Err(_) => expired(),
            }
        }
        _ => error_page(l, "unknown step"),
    }
}

struct PasswordTexts {
    done: &'static str,
    username: &'static str,
    current: &'static str,
    otp: &'static str,
    new: &'static str,
    repeat: &'static str,
    rule: &'static str,
    submit: &'static str,
}

#[derive(Template)]
#[template(path = "signin_password.html")]
struct PasswordPage<'a> {
    lang: &'static str,
    title: &'static str,
    css: &'static str,
    csrf: &'a str,
    error: Option<&'a str>,
    done: bool,
    x: PasswordTexts,
}

fn password_page(l: Lang, csrf: &str, error: Option<&str>, done: bool, cookie: Option<String>) -> Response {
    let x = PasswordTexts {
        done: tr(l, "password.done"),
        username: tr(l, "field.username"),
        current: tr(l, "password.current"),
        otp: tr(l, "field.otp"),
        new: tr(l, "password.new"),
        repeat: tr(l, "password.repeat"),
        rule: tr(l, "password.rule"),
        submit: tr(l, "password.submit"),
    };
    let title = tr(l, "password.title");
    page(&PasswordPage { lang: l.code(), title, css: CSS, csrf, error, done, x }, cookie)
}

/// `GET /oauth/password`: the form to change one's own password.
pub async fn password_get(State(dir): State<Arc<Directory>>, headers: HeaderMap) -> Response {
    let l = lang(&headers, None);
    let made = tokio::task::spawn_blocking(move || csrf_cookie(&dir)).await;
    match made {
        Ok(Ok((csrf, cookie))) => password_page(l, &csrf, None, false, Some(cookie)),
        _ => error_page(l, "internal error"),
    }
}

/// `POST /oauth/password`: change it (the current password and the second factor), end
/// every session of the account, and record it.
pub async fn password_post(
    State(dir): State<Arc<Directory>>,
    State(audit): State<Arc<AuditLog>>,
    State(limits): State<Arc<Limits>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (f, l, csrf) = match posted(&dir, &limits, address.as_deref(), &headers, &body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let get = |k: &str| field(&f, k);
    let username = get("username").trim().to_lowercase();
    if let Err(limited) = limits.account.take(&username) {
        return too_many(l, limited.retry_after);
    }
    let (new, repeat) = (get("new_password"), get("repeat"));
    if new != repeat {
        let msg = tr(l, "password.differ");
        return password_page(l, &csrf, Some(msg), false, None);
    }
    let (old, code) = (get("password"), get("otp").trim().to_string());
    let Some(place) = limits.hashing.enter().await else { return busy(l) };
    let result = tokio::task::spawn_blocking(move || {
        let _place = place;
        let changed = dir.change_password(&username, &old, &code, &new, address.as_deref(), now());
        let detail = match &changed {
            Ok(()) => "password changed; every session ended".to_string(),
            Err(e) => format!("password change refused: {e}"),
        };
        let login = Login { audit: &audit, address, limits: &limits };
        if !login.record(&username, "", changed.is_ok(), detail) {
            return Err(PasswordChangeError::SignIn(LoginError::Unavailable));
        }
        changed
    })
    .await;
    match result {
        Ok(Ok(())) => password_page(l, "", None, true, None),
        Ok(Err(e)) => {
            let msg = match &e {
                PasswordChangeError::SignIn(e) => login_error(l, e),
                PasswordChangeError::Weak(why) => why.clone(),
                PasswordChangeError::NoSecondFactor => tr(l, "password.enrol_first").into(),
            };
            password_page(l, &csrf, Some(&msg), false, None)
        }
        Err(_) => error_page(l, "internal error"),
    }
}

#[cfg(test)]
mod catalogue {
    #[test]
    fn every_text_of_the_sign_in_is_in_both_catalogues() {
        let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/login.rs")).unwrap();
        let (missing, used) =
            i18n::missing_keys(include_str!("../locales/ru.txt"), include_str!("../locales/en.txt"), &[source]);
        assert!(used > 40, "the scan found the keys the pages use ({used})");
        assert!(missing.is_empty(), "keys missing from a catalogue: {missing:?}");
    }
}

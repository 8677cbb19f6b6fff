//! Signing in and out. `/portal/login` starts the server's own authorization code flow
//! with PKCE (a fresh verifier kept on the server under the `state`, the state also in a
//! short-lived cookie so that only the browser that began the sign-in can finish it);
//! the sign-in pages (`/oauth/authorize`: password, second factor, first-time
//! authenticator set-up, recovery codes) are the API's; `/portal/callback` exchanges the
//! code in-process and starts a new portal session (a new cookie value at every
//! sign-in). Sign-out ends the OAuth session too.

use auth::directory::{WebLogin, WebSession, now, pkce_challenge};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;

use crate::i18n::Lang;
use crate::pages::{failure, message};
use crate::session::{Address, COOKIE, blocking, session_cookie};
use crate::{CLIENT_ID, Portal, SCOPE, cookie, found, language};

/// The cookie that ties a sign-in in progress to its browser.
const LOGIN_COOKIE: &str = "mk_login";
/// How long a sign-in may take (seconds).
const LOGIN_TTL: u64 = 600;

fn with_cookie(mut r: Response, value: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Only a path of the portal is a place to come back to.
fn safe_back(back: Option<&String>) -> String {
    back.filter(|b| b.starts_with("/portal/") && !b.contains("//") && !b.contains('\\'))
        .cloned()
        .unwrap_or_else(|| "/portal/".to_string())
}

/// `GET /portal/login`: begin the code flow.
pub(crate) async fn login(
    State(p): State<Portal>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = language(&headers);
    let back = safe_back(q.get("back"));
    // the sign-in pages speak the portal's language (they follow the browser's otherwise)
    let chosen = cookie(&headers, "mk_lang").is_some();
    blocking(lang, move || {
        let Ok(verifier) = auth::random::token(32) else { return failure(lang, StatusCode::INTERNAL_SERVER_ERROR) };
        let login = WebLogin { verifier: verifier.clone(), back, expires: now() + LOGIN_TTL };
        let state = match p.dir.new_web_login(&login) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start a portal sign-in: {e}");
                return failure(lang, StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", p.cfg.redirect_uri().as_str()),
                ("scope", SCOPE),
                ("state", state.as_str()),
                ("code_challenge", pkce_challenge(&verifier).as_str()),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        let secure = if p.cfg.secure() { "; Secure" } else { "" };
        let r = with_cookie(
            found(&format!("/oauth/authorize?{query}")),
            format!("{LOGIN_COOKIE}={state}; Path=/portal; HttpOnly; SameSite=Lax; Max-Age={LOGIN_TTL}{secure}"),
        );
        if chosen { r } else { with_cookie(r, language_cookie(lang)) }
    })
    .await
}

/// `GET /portal/callback`: the sign-in pages send the browser back here with a code.
pub(crate) async fn callback(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = language(&headers);
    let state = q.get("state").cloned().unwrap_or_default();
    let from_this_browser = !state.is_empty() && cookie(&headers, LOGIN_COOKIE).as_deref() == Some(state.as_str());
    let old = cookie(&headers, COOKIE);
    blocking(lang, move || {
        let secure = if p.cfg.secure() { "; Secure" } else { "" };
        let clear_login = format!("{LOGIN_COOKIE}=; Path=/portal; HttpOnly; SameSite=Lax; Max-Age=0{secure}");
        if q.contains_key("error") {
            return with_cookie(message(lang, StatusCode::OK, "signin.refused", Some("/portal/login")), clear_login);
        }
        let login = if from_this_browser { p.dir.take_web_login(&state).ok().flatten() } else { None };
        let (Some(login), Some(code)) = (login, q.get("code")) else {
            return with_cookie(
                message(lang, StatusCode::BAD_REQUEST, "signin.stale", Some("/portal/login")),
                clear_login,
            );
        };
        let redirect_uri = p.cfg.redirect_uri();
        let exchanged = p.dir.exchange_code(code, CLIENT_ID, Some(&redirect_uri), Some(&login.verifier));
        let (tokens, sid) = match exchanged {
            Ok(Ok(t)) => t,
            Ok(Err(refused)) => {
                tracing::warn!("portal sign-in refused: {}", refused.0);
                return with_cookie(
                    message(lang, StatusCode::BAD_REQUEST, "signin.stale", Some("/portal/login")),
                    clear_login,
                );
            }
            Err(e) => {
                tracing::error!("portal sign-in failed: {e}");
                return failure(lang, StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        drop(tokens); // the portal keeps the session, never a token
        let username = match p.dir.session_caller(&sid) {
            Ok(Some(c)) => c.username.unwrap_or_default(),
            _ => return failure(lang, StatusCode::SERVICE_UNAVAILABLE),
        };
        // a session cookie the browser had before is not carried over (fixation)
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let _ = p.dir.drop_web_session(&old);
        }
        let (Ok(csrf), at) = (auth::random::token(24), now()) else {
            return failure(lang, StatusCode::INTERNAL_SERVER_ERROR);
        };
        let session = WebSession {
            sid,
            username: username.clone(),
            csrf,
            created: at,
            seen: at,
            expires: at + p.cfg.lifetime_seconds,
        };
        let value = match p.dir.new_web_session(&session) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("cannot store a portal session: {e}");
                return failure(lang, StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let detail = "portal sign-in (authorization code exchanged in-process)".to_string();
        if let Err(e) =
            api::record_login(p.engine.guard().audit(), Some(&username), Some(CLIENT_ID), address, true, detail)
        {
            tracing::error!("a portal sign-in could not be audited: {e}");
            let _ = p.dir.drop_web_session(&value);
            return failure(lang, StatusCode::SERVICE_UNAVAILABLE);
        }
        let r = with_cookie(found(&login.back), clear_login);
        with_cookie(r, session_cookie(&p, Some(&value)))
    })
    .await
}

/// `POST /portal/logout`: end the portal session and the OAuth session behind it.
pub(crate) async fn logout(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    blocking(lang, move || {
        let ctx = match crate::session::load(&p, &headers, address) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        if !ctx.csrf_ok(form.get("csrf").map_or("", String::as_str)) {
            return message(lang, StatusCode::FORBIDDEN, "error.csrf", Some("/portal/"));
        }
        if let Some(value) = cookie(&headers, COOKIE) {
            let _ = p.dir.drop_web_session(&value);
        }
        if let Err(e) = p.dir.end_session(&ctx.session.sid) {
            tracing::error!("cannot end a session at sign-out: {e}");
        }
        with_cookie(found("/portal/?ended=signout"), session_cookie(&p, None))
    })
    .await
}

/// `GET /portal/lang/{code}?back=...`: remember the language and go back.
pub(crate) async fn switch_language(Path(code): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let lang = Lang::parse(Some(&code));
    let back = safe_back(q.get("back"));
    with_cookie(found(&back), language_cookie(lang))
}

/// The cookie that remembers the language (for the portal and the sign-in pages).
fn language_cookie(lang: Lang) -> String {
    format!("mk_lang={}; Path=/; Max-Age=31536000; SameSite=Lax", lang.code())
}

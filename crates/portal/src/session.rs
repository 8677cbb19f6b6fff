//! The portal session of a request: the opaque cookie, the server-side record it names
//! (`auth::directory::WebSession`: its OAuth session, CSRF token, when it was last
//! seen), and the caller the guard sees. An idle or ended session sends the browser back
//! to the sign-in; every form's CSRF token is checked against the session's.

use auth::directory::{Caller, WebSession, now};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_rest::{Method, Principal, Request};
use serde_json::Value;

use crate::i18n::{Lang, Tr};
use crate::{Portal, cookie, found, language};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "mk_session";

/// Seen again after this many seconds, a session's record is updated (not on every page).
const TOUCH_AFTER: u64 = 30;

/// The client's address as the API layer worked it out (`api::ClientIp`).
pub(crate) struct Address(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Address {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Address(parts.extensions.get::<api::ClientIp>().map(|c| c.0.to_string())))
    }
}

/// The `Set-Cookie` value of a session cookie (`None`: remove it).
pub(crate) fn session_cookie(portal: &Portal, value: Option<&str>) -> String {
    let secure = if portal.cfg.secure() { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{COOKIE}={v}; Path=/portal; HttpOnly; SameSite=Lax{secure}"),
        None => format!("{COOKIE}=; Path=/portal; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

/// A signed-in request: who, in which language, and the way to the data.
pub(crate) struct Ctx {
    pub portal: Portal,
    pub caller: Caller,
    pub session: WebSession,
    pub tr: Tr,
    pub address: Option<String>,
}

/// Why a FHIR request of a page failed, as the person should be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataError {
    /// Outside the caller's reach: a clinician may ask for consent or break the glass.
    ConsentRequired,
    /// Not there, or not for this caller to know of.
    NotFound,
    /// Anything else (logged, not shown).
    Failed(u16),
}

impl Ctx {
    /// Run a FHIR request as the signed-in caller (checked and audited by the guard).
    pub fn fhir(&self, method: Method, path: &str, query: &str) -> fhir_rest::Response {
        let mut req = Request::new(Principal::Token(Box::new(self.caller.clone())), method, path, query);
        req.address.clone_from(&self.address);
        self.portal.engine.handle(&req)
    }

    /// A write (a POST, a PATCH...) with a JSON body, as the signed-in caller.
    pub fn send(&self, method: Method, path: &str, body: Value, json_patch: bool) -> fhir_rest::Response {
        let mut req = Request::new(Principal::Token(Box::new(self.caller.clone())), method, path, "");
        req.body = fhir_rest::Body::Json(body);
        req.json_patch = json_patch;
        req.address.clone_from(&self.address);
        self.portal.engine.handle(&req)
    }

    /// The signed-in caller's handle on the guard, for a domain service's operation (its
    /// writes checked and audited as the caller's).
    pub fn handle(&self) -> Result<fhir_rest::Handle, DataError> {
        let principal = Principal::Token(Box::new(self.caller.clone()));
        self.portal.engine.guard().admit(principal, self.address.clone(), None, "", "").map_err(|e| {
            tracing::error!("the portal's caller was not admitted: {}", e.status);
            DataError::Failed(e.status)
        })
    }

    /// A resource by its path (`Patient/123`).
    pub fn read(&self, path: &str) -> Result<Value, DataError> {
        let r = self.fhir(Method::Get, path, "");
        outcome(&r).map(|()| r.body_json().unwrap_or_default())
    }

    /// The resources a search matched (not the included ones), following the pages up
    /// to `max`.
    pub fn search(&self, path: &str, query: &str, max: usize) -> Result<Vec<Value>, DataError> {
        Ok(self.search_all(path, query, max)?.into_iter().filter(|(m, _)| m != "include").map(|(_, r)| r).collect())
    }

    /// A search's entries with their mode (`match`, `include`), following the pages
    /// until `max` matches.
    pub fn search_all(&self, path: &str, query: &str, max: usize) -> Result<Vec<(String, Value)>, DataError> {
        let mut out = Vec::new();
        let mut matched = 0;
        // one page of what is wanted where the server allows (its largest page is 1,000)
        let mut query = if query.contains("_count=") {
            query.to_string()
        } else {
            format!("{query}&_count={}", max.clamp(1, 1000))
        };
        loop {
            let r = self.fhir(Method::Get, path, &query);
            outcome(&r)?;
            let mut bundle = r.body_json().unwrap_or_default();
            for e in bundle["entry"].as_array_mut().into_iter().flatten() {
                let mode = e["search"]["mode"].as_str().unwrap_or("match").to_string();
                // an OperationOutcome about the search (a warning) is not a result
                if mode == "outcome" {
                    continue;
                }
                if mode == "match" {
                    if matched >= max {
                        continue;
                    }
                    matched += 1;
                }
                out.push((mode, e["resource"].take()));
            }
            let next = bundle["link"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
                .and_then(|l| l["url"].as_str())
                .and_then(|u| u.split_once('?'))
                .map(|(_, q)| q.to_string());
            match next {
                Some(q) if matched < max => query = q,
                _ => return Ok(out),
            }
        }
    }

    /// The patient the signed-in person is (`pat-0`), for a patient's account.
    pub fn own_patient(&self) -> Option<String> {
        self.caller.grant.as_ref().filter(|g| g.role == auth::account::Role::Patient).and(self.caller.patient.clone())
    }

    /// A registrar (demographics and appointments only)?
    pub fn registrar(&self) -> bool {
        self.caller.grant.as_ref().is_some_and(|g| g.role == auth::account::Role::Registrar)
    }

    /// Is `token` this session's CSRF token?
    pub fn csrf_ok(&self, token: &str) -> bool {
        let (a, b) = (token.as_bytes(), self.session.csrf.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn outcome(r: &fhir_rest::Response) -> Result<(), DataError> {
    match r.status {
        200..=299 => Ok(()),
        403 => Err(DataError::ConsentRequired),
        404 | 410 => Err(DataError::NotFound),
        s => Err(DataError::Failed(s)),
    }
}

/// The signed-in context of a request (blocking: reads the session record), or the
/// response that sends the browser to sign in.
pub(crate) fn load(portal: &Portal, headers: &HeaderMap, address: Option<String>) -> Result<Ctx, Box<Response>> {
    let lang = language(headers);
    let Some(value) = cookie(headers, COOKIE).filter(|v| !v.is_empty()) else {
        return Err(Box::new(found("/portal/")));
    };
    let ended = |why: &str| {
        let mut r = found(&format!("/portal/?ended={why}"));
        if let Ok(v) = session_cookie(portal, None).parse() {
            r.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
        r
    };
    let dir = &portal.dir;
    let (version, mut session) = match dir.web_session(&value) {
        Ok(Some(s)) => s,
        Ok(None) => return Err(Box::new(ended("expired"))),
        Err(e) => {
            tracing::error!("cannot read a portal session: {e}");
            return Err(Box::new(crate::pages::failure(lang, StatusCode::SERVICE_UNAVAILABLE)));
        }
    };
    let at = now();
    if at.saturating_sub(session.seen) > portal.cfg.idle_seconds {
        let _ = dir.drop_web_session(&value);
        let _ = dir.end_session(&session.sid);
        return Err(Box::new(ended("idle")));
    }
    let caller = match dir.session_caller(&session.sid) {
        Ok(Some(c)) => c,
        Ok(None) => {
            let _ = dir.drop_web_session(&value);
            return Err(Box::new(ended("expired")));
        }
        Err(e) => {
            tracing::error!("cannot read a portal session's caller: {e}");
            return Err(Box::new(crate::pages::failure(lang, StatusCode::SERVICE_UNAVAILABLE)));
        }
    };
    if at.saturating_sub(session.seen) >= TOUCH_AFTER {
        session.seen = at;
        // another request of the same session may have touched it first: either will do
        if let Err(e) = dir.save_web_session(&value, version, &session) {
            tracing::warn!("cannot note a portal session as seen: {e}");
        }
    }
    Ok(Ctx { portal: portal.clone(), caller, session, tr: Tr::new(lang), address })
}

/// Run a signed-in page's work on a blocking thread: with the session's context, or
/// the response that sends the browser to sign in.
pub(crate) async fn signed_in(
    p: Portal,
    headers: HeaderMap,
    address: Option<String>,
    f: impl FnOnce(Ctx) -> Response + Send + 'static,
) -> Response {
    let lang = language(&headers);
    blocking(lang, move || match load(&p, &headers, address) {
        Ok(ctx) => f(ctx),
        Err(r) => *r,
    })
    .await
}

/// Handle a form post of a signed-in page: the session loaded, the form parsed, its CSRF
/// token checked (a forged post is refused with a page leading `back`, and changes
/// nothing), then `f` on a blocking thread.
pub(crate) async fn posted(
    p: Portal,
    headers: HeaderMap,
    address: Option<String>,
    body: axum::body::Bytes,
    back: String,
    f: impl FnOnce(Ctx, std::collections::HashMap<String, String>) -> Response + Send + 'static,
) -> Response {
    signed_in(p, headers, address, move |ctx| {
        let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        if !ctx.csrf_ok(form.get("csrf").map_or("", String::as_str)) {
            return crate::pages::message(ctx.tr.lang, StatusCode::FORBIDDEN, "error.csrf", Some(&back));
        }
        f(ctx, form)
    })
    .await
}

/// Run a page's work on a blocking thread (the store and the engine block).
pub(crate) async fn blocking(lang: Lang, f: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("a portal page failed: {e}");
            crate::pages::failure(lang, StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

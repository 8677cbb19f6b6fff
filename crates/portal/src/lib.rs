//! The patient portal, and the same pages for staff: server-rendered HTML under
//! `/portal/` on the API's port, in Russian (default) or English. An adapter over the
//! guard like the FHIR API: a person signs in through the server's own OAuth 2.0 code
//! flow with PKCE (the portal is the first-party client [`CLIENT_ID`]); the portal keeps
//! the session on the server (the browser holds an opaque `HttpOnly` cookie, never a
//! token) and every page's data comes from FHIR requests made as that caller, so each is
//! checked and audited by the guard exactly as over the API.

mod access;
mod appointments;
mod export;
mod health;
mod i18n;
mod inbox;
mod pages;
mod pdf;
mod session;
mod signin;
mod upload;
mod view;

use std::sync::Arc;

use auth::directory::Directory;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fhir_rest::Engine;

pub use i18n::Lang;

/// The portal's OAuth client id (registered by [`register`]).
pub const CLIENT_ID: &str = "medkarta-portal";
/// What the portal asks for: the signed-in person's own reach, whatever their role.
const SCOPE: &str = "openid fhirUser user/*.cruds";

/// Settings of the portal (the README's settings table).
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The server's origin (`http://127.0.0.1:8080`), where the browser comes back.
    pub origin: String,
    /// A session unused this long (seconds) ends.
    pub idle_seconds: u64,
    /// A session ends this long (seconds) after sign-in, used or not.
    pub lifetime_seconds: u64,
    /// The largest file a person may add to a record (bytes).
    pub upload_max: usize,
}

impl PortalConfig {
    /// The defaults for a server at `origin`: 15 minutes idle, 12 hours at most, files
    /// up to 10 MB.
    pub fn new(origin: &str) -> PortalConfig {
        PortalConfig {
            origin: origin.trim_end_matches('/').to_string(),
            idle_seconds: 15 * 60,
            lifetime_seconds: 12 * 3600,
            upload_max: 10 << 20,
        }
    }

    fn redirect_uri(&self) -> String {
        format!("{}/portal/callback", self.origin)
    }

    /// Cookies are `Secure` when the server is reached over TLS.
    fn secure(&self) -> bool {
        self.origin.starts_with("https://")
    }
}

/// Register the portal as a client of the server (at start; brings its redirect URI up
/// to date when the origin changed).
pub fn register(dir: &Directory, cfg: &PortalConfig) -> Result<(), String> {
    dir.ensure_client(CLIENT_ID, "Medkarta portal", SCOPE, vec![cfg.redirect_uri()]).map_err(|e| e.to_string())
}

#[derive(Clone)]
pub(crate) struct Portal {
    pub(crate) engine: Engine,
    pub(crate) dir: Arc<Directory>,
    pub(crate) cfg: Arc<PortalConfig>,
}

/// The portal's routes (`/`, `/portal/...`), to merge into the API's router.
pub fn router(engine: Engine, dir: Arc<Directory>, cfg: PortalConfig) -> Router {
    let state = Portal { engine, dir, cfg: Arc::new(cfg) };
    Router::new()
        .route("/", get(|| async { found("/portal/") }))
        .route("/portal", get(|| async { found("/portal/") }))
        .route("/portal/", get(pages::home))
        .route("/portal/login", get(signin::login))
        .route("/portal/callback", get(signin::callback))
        .route("/portal/logout", post(signin::logout))
        .route("/portal/lang/{code}", get(signin::switch_language))
        .route("/portal/assets/{file}", get(asset))
        .route("/favicon.ico", get(|| async { icon() }))
        .route("/portal/patients", get(pages::patients))
        .route("/portal/inbox", get(inbox::inbox))
        .route("/portal/inbox/{id}/read", post(inbox::read))
        .route("/portal/r/{pid}/record.pdf", get(export::record_pdf))
        .route("/portal/r/{pid}/health", get(health::health).post(health::add))
        .route("/portal/r/{pid}/access", get(access::access))
        .route("/portal/r/{pid}/access/{id}/flag", post(access::flag))
        .route("/portal/r/{pid}/sharing", get(access::sharing).post(access::change))
        .route("/portal/r/{pid}/sharing/{id}", post(access::change))
        .route("/portal/r/{pid}/request-access", post(access::request_access))
        .route("/portal/r/{pid}/break-glass", post(access::break_glass))
        .route("/portal/r/{pid}/flags/{id}/ack", post(health::acknowledge))
        .route("/portal/r/{pid}/documents", get(pages::documents_page).post(upload::add))
        .route("/portal/r/{pid}/appointments", get(appointments::page).post(appointments::book))
        .route("/portal/r/{pid}/appointments/wait", post(appointments::wait))
        .route("/portal/r/{pid}/appointments/{id}/cancel", post(appointments::cancel))
        .route("/portal/r/{pid}/appointments/{id}/confirm", post(appointments::confirm))
        .route("/portal/day", get(appointments::day))
        .route("/portal/r/{pid}/{page}", get(pages::record))
        .route("/portal/r/{pid}/documents/{doc}", get(export::document_page))
        .route("/portal/r/{pid}/documents/{doc}/files/{n}", get(upload::file))
        .route("/portal/{*rest}", get(pages::not_found))
        .with_state(state)
}

/// The security headers of every portal response: a policy with no inline script and
/// nothing from another site, not framable, no referrer, never cached.
pub(crate) fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// An id as the portal's routes accept it (a FHIR id's characters, at most 64).
pub(crate) fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A redirect (303: the next request is a GET).
pub(crate) fn found(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secured(r)
}

/// An HTML page.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    secured((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// A cookie's value from the request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The language of a request: the remembered choice, else Russian.
pub(crate) fn language(headers: &HeaderMap) -> Lang {
    Lang::parse(cookie(headers, "mk_lang").as_deref())
}

const CSS: &str = include_str!("../assets/portal.css");
const ICON: &str = include_str!("../assets/favicon.svg");

fn cached(kind: &'static str, body: &'static [u8]) -> Response {
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    secured(r)
}

/// The site's icon (browsers ask for `/favicon.ico` on every page, the sign-in's too).
fn icon() -> Response {
    cached("image/svg+xml", ICON.as_bytes())
}

/// The embedded static files (no other site is ever asked for anything).
async fn asset(State(_): State<Portal>, axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match file.as_str() {
        "portal.css" => cached("text/css; charset=utf-8", CSS.as_bytes()),
        "favicon.svg" => icon(),
        _ => pages::not_found(HeaderMap::new()).await,
    }
}

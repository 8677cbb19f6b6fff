//! The HTTP layer: axum routes that translate HTTP into [`fhir_rest::Request`]s and
//! [`fhir_rest::Response`]s back into HTTP. Content negotiation (406), content types
//! (415), body limits (413) and malformed JSON (400) are decided here, each with an
//! OperationOutcome; everything FHIR-specific is decided by the engine.
//!
//! The engine blocks on the database, so each request runs on a blocking thread.
//!
//! Every FHIR request needs a valid bearer token (except the CapabilityStatement and the
//! SMART configuration, which are public by specification): without one, or with an
//! expired, revoked or foreign one, the answer is 401 with `WWW-Authenticate`, and the
//! attempt is logged. The verified caller travels with the request into the engine,
//! where the access policy is enforced. The OAuth endpoints are in [`oauth`].

pub mod limit;
pub mod login;
pub mod oauth;
pub mod tls;

use std::sync::Arc;

use auth::directory::Directory;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{any, get, post};
use fhir_model::{Issue, IssueType, OperationOutcome};
use fhir_rest::{Body as FhirBody, Engine, Method, Request, Response, ResponseBody, Return};
use serde_json::Value;

enum BodyError {
    TooLarge,
    Broken,
    /// The body stopped coming (nothing for the idle timeout, or not all of it within
    /// ten times that).
    TooSlow,
}

/// Read a request body of at most `limit` bytes, each part within `idle` of the one
/// before and the whole within ten times that. A larger body is drained (up to a bound)
/// before the 413 goes out, so that the client, still sending, gets the answer instead
/// of a broken pipe.
async fn read_body(mut body: Body, limit: usize, idle: std::time::Duration) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt as _;
    const DRAIN_LIMIT: usize = 256 * 1024 * 1024;
    let deadline = tokio::time::Instant::now() + idle * 10;
    let mut buf = Vec::new();
    let mut seen = 0usize;
    loop {
        let next = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + idle), body.frame());
        let Some(frame) = next.await.map_err(|_| BodyError::TooSlow)? else { break };
        let frame = frame.map_err(|_| BodyError::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            if seen > limit.saturating_add(DRAIN_LIMIT) {
                break;
            }
            buf = Vec::new();
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if seen > limit { Err(BodyError::TooLarge) } else { Ok(Bytes::from(buf)) }
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest wait for a request's headers (a connection that trickles them is closed).
    pub header_timeout: std::time::Duration,
    /// Longest wait for the next part of a request body (the whole: ten times this).
    pub body_timeout: std::time::Duration,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<limit::Cidr>,
    /// Sign-in and token requests a minute per client address (0: no limit).
    pub rate_per_address: u32,
    /// Sign-in attempts a minute per account (0: no limit).
    pub rate_per_account: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 16 * 1024 * 1024,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            rate_per_address: 60,
            rate_per_account: 10,
        }
    }
}

/// The rate limits of the front door (per process).
pub struct Limits {
    /// Sign-in forms, token, revocation and introspection requests, per address.
    pub(crate) address: limit::Limiter,
    /// Sign-in attempts per account.
    pub(crate) account: limit::Limiter,
    /// Requests that may hash a password or a client secret wait here, as tasks, for one
    /// of the hashing places: they never hold the blocking threads the API runs on.
    pub(crate) hashing: limit::Gate,
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
    directory: Arc<Directory>,
    http: Arc<HttpConfig>,
    /// The store is the embedded database (reads never wait on the network).
    local_store: bool,
}

/// All routes: `/fhir/...`, `/oauth/...`, `/.well-known/...`, `/healthz`, `/readyz`,
/// and the adapters' own (`extra`: the portal), which get the same client address and
/// tracing layers.
pub fn router(engine: Engine, directory: Arc<Directory>, http: HttpConfig, extra: Router) -> Router {
    let (threads, queue) = auth::password::parallelism();
    let limits = Arc::new(Limits {
        address: limit::Limiter::new(http.rate_per_address),
        account: limit::Limiter::new(http.rate_per_account),
        hashing: limit::Gate::new(threads, queue),
    });
    let http = Arc::new(http);
    let oauth_state = OAuthState { dir: directory.clone(), audit: engine.guard().audit().clone(), limits };
    let local_store = engine.guard().backend() == "sqlite";
    let state = AppState { engine, directory, http: http.clone(), local_store };
    let oauth = Router::new()
        .route("/oauth/authorize", get(login::authorize_get).post(login::authorize_post))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/jwks", get(oauth::jwks))
        .route("/fhir/.well-known/smart-configuration", get(oauth::smart_configuration))
        .route("/.well-known/smart-configuration", get(oauth::smart_configuration))
        .route("/.well-known/openid-configuration", get(oauth::openid_configuration))
        .route("/oauth/password", get(login::password_get).post(login::password_post))
        .with_state(oauth_state)
        .layer(axum::middleware::from_fn_with_state(http.clone(), small_body));
    let cors_dir = state.directory.clone();
    Router::new()
        .merge(oauth)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/fhir", any(fhir))
        .route("/fhir/", any(fhir))
        .route("/fhir/{*path}", any(fhir))
        .fallback(|| async {
            outcome(StatusCode::NOT_FOUND, IssueType::NotFound, "No such endpoint; the FHIR API is under /fhir")
        })
        .with_state(state)
        .merge(extra)
        .layer(axum::middleware::from_fn_with_state(cors_dir, cors))
        .layer(axum::middleware::from_fn_with_state(http, client_ip))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Largest body of an OAuth request or sign-in form.
const OAUTH_BODY_LIMIT: usize = 64 * 1024;

/// The bodies of OAuth requests and sign-in forms: small, and read within the body
/// timeout (a trickling client is cut off with 408).
async fn small_body(
    State(http): State<Arc<HttpConfig>>,
    req: HttpRequest,
    next: axum::middleware::Next,
) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let refuse = |status: StatusCode, message: &str| {
        let mut r =
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.to_string()).into_response();
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    match read_body(body, OAUTH_BODY_LIMIT, http.body_timeout).await {
        Ok(bytes) => next.run(HttpRequest::from_parts(parts, Body::from(bytes))).await,
        Err(BodyError::TooLarge) => refuse(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large"),
        Err(BodyError::TooSlow) => refuse(StatusCode::REQUEST_TIMEOUT, "The request body came too slowly"),
        Err(BodyError::Broken) => refuse(StatusCode::BAD_REQUEST, "The request body could not be read"),
    }
}

/// The address a request comes from, as the rest of the server sees it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// Work out the client's address once per request (see [`limit::client_address`]).
async fn client_ip(
    State(http): State<Arc<HttpConfig>>,
    mut req: HttpRequest,
    next: axum::middleware::Next,
) -> HttpResponse {
    if let Some(peer) = req.extensions().get::<ConnectInfo<ClientAddr>>().map(|c| c.0.0.ip()) {
        let forwarded: Vec<&str> = if http.trusted_proxies.is_empty() {
            Vec::new()
        } else {
            req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect()
        };
        let ip = limit::client_address(peer, &forwarded, &http.trusted_proxies);
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
}

/// CORS for the browser origins registered with clients, and only those: preflights are
/// answered here; other requests get the allow headers added. Any other origin gets no
/// CORS headers, so browsers keep its pages out.
async fn cors(State(dir): State<Arc<Directory>>, req: HttpRequest, next: axum::middleware::Next) -> HttpResponse {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
    let allowed = match origin {
        Some(o) => {
            let d = dir.clone();
            let check = o.clone();
            tokio::task::spawn_blocking(move || d.origin_allowed(&check)).await.unwrap_or(false).then_some(o)
        }
        None => None,
    };
    let preflight =
        req.method() == HttpMethod::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut r = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if allowed.is_some() {
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "authorization, content-type, prefer, if-match, if-none-match, if-none-exist, if-modified-since",
                ),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        r
    } else {
        next.run(req).await
    };
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(o) = allowed.and_then(|o| HeaderValue::from_str(&o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("location, etag, content-location, last-modified, www-authenticate"),
        );
    }
    r
}

async fn readyz(State(s): State<AppState>) -> HttpResponse {
    let guard = s.engine.guard().clone();
    match tokio::task::spawn_blocking(move || guard.check()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => {
            tracing::warn!("not ready: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response(),
    }
}

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

fn outcome(status: StatusCode, code: IssueType, msg: impl Into<String>) -> HttpResponse {
    let body = OperationOutcome::from(Issue::error(code, msg)).to_json();
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
}

/// 401 with the challenge of RFC 6750.
fn unauthorized(error: &str, description: &str) -> HttpResponse {
    let mut r = outcome(StatusCode::UNAUTHORIZED, IssueType::Security, description);
    let challenge = format!(
        "Bearer realm=\"medkarta\", error=\"{error}\", error_description=\"{}\"",
        description.replace('"', "'")
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// A header as text; UTF-8 beyond ASCII is accepted (clients should percent-encode
/// queries in `If-None-Exist`, but some send them raw).
fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Query parameters the HTTP layer consumes itself.
struct FormatParams {
    format: Option<String>,
    pretty: bool,
}

fn format_params(query: &str) -> FormatParams {
    let mut p = FormatParams { format: None, pretty: false };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "_format" => p.format = Some(v.into_owned()),
            "_pretty" => p.pretty = v == "true",
            _ => {}
        }
    }
    p
}

/// Can we answer in JSON given `_format` or `Accept`?
fn acceptable(format: Option<&str>, accept: Option<&str>, ndjson: bool) -> bool {
    let ok = |t: &str| {
        let t = t.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let json = matches!(
            t.as_str(),
            "" | "*/*"
                | "json"
                | "application/*"
                | "application/json"
                | "application/fhir+json"
                | "application/json+fhir"
                | "text/json"
        );
        // bulk export files (what Bulk Data clients ask for, and its default)
        json || (ndjson && matches!(t.as_str(), "application/fhir+ndjson" | "application/ndjson" | "ndjson"))
    };
    match format {
        Some(f) => ok(f),
        None => accept.is_none_or(|a| a.split(',').any(ok)),
    }
}

fn parse_prefer(headers: &HeaderMap) -> (Return, bool, bool) {
    let mut ret = Return::Representation;
    let mut strict = false;
    let mut respond_async = false;
    for v in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
        for part in v.split([',', ';']).map(str::trim) {
            match part {
                "return=minimal" => ret = Return::Minimal,
                "return=representation" => ret = Return::Representation,
                "return=OperationOutcome" => ret = Return::OperationOutcome,
                "handling=strict" => strict = true,
                "respond-async" => respond_async = true,
                _ => {}
            }
        }
    }
    (ret, strict, respond_async)
}

async fn fhir(State(s): State<AppState>, req: HttpRequest) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let Some(method) = Method::parse(parts.method.as_str()) else {
        return outcome(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            format!("{} is not a FHIR interaction", parts.method),
        );
    };
    let path = parts.uri.path().trim_start_matches("/fhir").trim_start_matches('/').to_string();
    let mut query = parts.uri.query().unwrap_or("").to_string();
    let fp = format_params(&query);
    let accept = header_str(&parts.headers, header::ACCEPT);
    if !acceptable(fp.format.as_deref(), accept.as_deref(), path.starts_with("$export-file/")) {
        return outcome(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            format!(
                "This server answers in JSON (application/fhir+json) only; cannot satisfy '{}'",
                fp.format.or(accept).unwrap_or_default()
            ),
        );
    }
    // authenticate from the headers, before anything of the body is read: public by
    // specification is only the CapabilityStatement
    let public = method == Method::Get && path == "metadata";
    let bearer = header_str(&parts.headers, header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(|t| t.trim().to_string()));
    let bearer = bearer.filter(|_| !public);
    let has_body =
        parts.headers.contains_key(header::CONTENT_LENGTH) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let close = |mut r: HttpResponse| {
        // the body is not read: the connection cannot carry another request
        if has_body {
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    };
    let address = parts.extensions.get::<ClientIp>().map(|c| c.0.to_string());
    let principal = match bearer {
        None if public => fhir_rest::Principal::Anonymous,
        None => {
            tracing::warn!(path, "request without an access token refused");
            return close(unauthorized("invalid_request", "An access token is required (Authorization: Bearer ...)"));
        }
        // a token verified a moment ago is known without a blocking call
        Some(token) => match s.directory.verified(&token) {
            Some(caller) => fhir_rest::Principal::Token(Box::new(caller)),
            None => {
                let (directory, engine, address) = (s.directory.clone(), s.engine.clone(), address.clone());
                let what = format!("{method:?} /fhir/{path}");
                let checked = tokio::task::spawn_blocking(move || {
                    directory.verify(&token).inspect_err(|e| {
                        let detail = format!("{what} refused: the access token is not valid: {e}");
                        if let Err(a) = record_login(engine.guard().audit(), None, None, address, false, detail) {
                            tracing::error!("a refused request could not be audited: {a}");
                        }
                    })
                })
                .await;
                match checked {
                    Ok(Ok(caller)) => fhir_rest::Principal::Token(Box::new(caller)),
                    Ok(Err(e)) => {
                        tracing::warn!("request with an invalid access token refused: {e}");
                        return close(unauthorized("invalid_token", &format!("The access token is not valid: {e}")));
                    }
                    Err(e) => {
                        tracing::error!("token check failed: {e}");
                        return outcome(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            IssueType::Exception,
                            "Internal server error",
                        );
                    }
                }
            }
        },
    };
    let bytes: Bytes = match read_body(body, s.http.max_body_bytes, s.http.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            // Connection: close, as the client may still be sending
            let mut r = outcome(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueType::TooLong,
                format!("The request body is larger than the limit of {} bytes", s.http.max_body_bytes),
            );
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Err(BodyError::Broken) => {
            return outcome(StatusCode::BAD_REQUEST, IssueType::Structure, "The request body could not be read");
        }
        Err(BodyError::TooSlow) => {
            let mut r = outcome(
                StatusCode::REQUEST_TIMEOUT,
                IssueType::Transient,
                "The request body came too slowly; send it again",
            );
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE).unwrap_or_default();
    let (prefer_return, strict, prefer_async) = parse_prefer(&parts.headers);
    let if_match = header_str(&parts.headers, header::IF_MATCH);
    let if_none_match = header_str(&parts.headers, header::IF_NONE_MATCH);
    let if_modified_since = header_str(&parts.headers, header::IF_MODIFIED_SINCE);
    let if_none_exist = header_str(&parts.headers, "if-none-exist");
    let break_glass = header_str(&parts.headers, "x-break-glass-reason").map(|r| r.chars().take(1000).collect());
    let engine = s.engine.clone();
    // the body is parsed on the blocking thread that runs the request, not on the async ones
    // A read by id on the embedded database answers from memory or the local disk in tens
    // of microseconds: it runs on this thread. Handing it to a blocking thread and back
    // cost two thread switches, a third of the server's time reading at 8 connections
    // (docs/performance.md). The rest, and every request on PostgreSQL (which waits on
    // the network), runs on the blocking threads, the body parsed there too.
    let inline = method == Method::Get && bytes.is_empty() && s.local_store && is_read_by_id(&path);
    let run = move || {
        let (fhir_body, json_patch) = decode_body(method, &path, &content_type, &bytes, &mut query)?;
        let request = Request {
            method,
            path,
            query,
            body: fhir_body,
            if_match,
            if_none_match,
            if_modified_since,
            if_none_exist,
            prefer_return,
            strict,
            prefer_async,
            json_patch,
            principal,
            address,
            break_glass,
        };
        Ok::<_, Box<HttpResponse>>(engine.handle(&request))
    };
    let handled = if inline { Ok(run()) } else { tokio::task::spawn_blocking(run).await };
    let response = match handled {
        Ok(Ok(r)) => r,
        Ok(Err(refused)) => return *refused,
        Err(e) => {
            tracing::error!("request handler failed: {e}");
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, "Internal server error");
        }
    };
    if let ResponseBody::File(path) = &response.body {
        return stream_file(path, &response.headers).await;
    }
    to_http(response, parts.method == HttpMethod::HEAD, fp.pretty)
}

/// Is `path` (below the FHIR base) a read or vread: `Type/id` or `Type/id/_history/vid`?
fn is_read_by_id(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let plain = |p: &&str| !p.is_empty() && !p.starts_with(['$', '_']);
    let typed = parts.first().is_some_and(|t| t.starts_with(|c: char| c.is_ascii_uppercase()));
    typed
        && match parts.as_slice() {
            [_, id] => plain(id),
            [_, id, "_history", vid] => plain(id) && plain(vid),
            _ => false,
        }
}

/// A bulk export file, streamed (memory stays flat whatever its size).
async fn stream_file(path: &std::path::Path, headers: &[(&'static str, String)]) -> HttpResponse {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("{}: {e}", path.display());
            return outcome(StatusCode::NOT_FOUND, IssueType::NotFound, "The export file is gone");
        }
    };
    let mut r = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut().insert(*name, v);
        }
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A 400/415 with an OperationOutcome, or the decoded body and whether it is a JSON
/// Patch. A form-encoded `_search` body is appended to the query instead.
fn decode_body(
    method: Method,
    path: &str,
    content_type: &str,
    bytes: &[u8],
    query: &mut String,
) -> Result<(FhirBody, bool), Box<HttpResponse>> {
    if bytes.is_empty() {
        return Ok((FhirBody::None, false));
    }
    let unsupported = |msg: String| Box::new(outcome(StatusCode::UNSUPPORTED_MEDIA_TYPE, IssueType::NotSupported, msg));
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json_patch = match mime.as_str() {
        "application/fhir+json" | "application/json" | "application/json+fhir" | "text/json" => false,
        "application/json-patch+json" if method == Method::Patch => true,
        "application/x-www-form-urlencoded" if method == Method::Post && path.ends_with("_search") => {
            let form = String::from_utf8_lossy(bytes);
            if !form.is_empty() {
                *query = if query.is_empty() { form.into_owned() } else { format!("{query}&{form}") };
            }
            return Ok((FhirBody::None, false));
        }
        "application/fhir+xml" | "application/xml" | "text/xml" => {
            return Err(unsupported("XML is not supported; send application/fhir+json".into()));
        }
        "" => return Err(unsupported("The request has a body but no Content-Type; send application/fhir+json".into())),
        other => {
            return Err(unsupported(format!("Content-Type '{other}' is not supported; send application/fhir+json")));
        }
    };
    let structure = |msg: String, at: Option<String>| {
        let issue = Issue::error(IssueType::Structure, msg);
        let issue = match at {
            Some(at) => issue.at(at),
            None => issue,
        };
        let body = OperationOutcome::from(issue).to_json();
        Box::new((StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response())
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() || (json_patch && v.is_array()) => match fhir_model::json::duplicate_key(bytes) {
            Some(at) => {
                let name = at.rsplit('.').next().unwrap_or(&at).to_string();
                Err(structure(format!("The property '{name}' appears more than once"), Some(at)))
            }
            None => Ok((FhirBody::Json(v), json_patch)),
        },
        Ok(_) => Err(structure("The body must be a JSON object (a FHIR resource)".into(), None)),
        Err(e) => Err(structure(format!("The body is not valid JSON: {e}"), None)),
    }
}

fn to_http(r: Response, head: bool, pretty: bool) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body: Option<Vec<u8>> = match r.body {
        ResponseBody::None | ResponseBody::File(_) => None,
        ResponseBody::Raw(b) if !pretty => Some(b),
        ResponseBody::Raw(b) => {
            serde_json::from_slice::<Value>(&b).ok().and_then(|v| serde_json::to_vec_pretty(&v).ok())
        }
        ResponseBody::Json(v) => if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.ok(),
    };
    let mut builder = axum::http::Response::builder().status(status);
    let set = |b: axum::http::response::Builder, name: header::HeaderName, v: Option<String>| match v
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        Some(v) => b.header(name, v),
        None => b,
    };
    builder = set(builder, header::ETAG, r.etag);
    builder = set(builder, header::LAST_MODIFIED, r.last_modified);
    builder = set(builder, header::LOCATION, r.location);
    builder = set(builder, header::CONTENT_LOCATION, r.content_location);
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, FHIR_JSON);
    }
    for (name, value) in r.headers {
        if let (Ok(v), Some(h)) = (HeaderValue::from_str(&value), builder.headers_mut()) {
            h.insert(name, v);
        }
    }
    // patient data: never kept by browsers or shared caches
    builder = builder.header(header::CACHE_CONTROL, "no-store");
    let body = match body {
        Some(b) if !head => Body::from(b),
        _ => Body::empty(),
    };
    builder
        .body(body)
        .unwrap_or_else(|_| outcome(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, "Internal server error"))
}

/// What the OAuth endpoints and sign-in pages work with.
#[derive(Clone)]
struct OAuthState {
    dir: Arc<Directory>,
    audit: Arc<audit::AuditLog>,
    limits: Arc<Limits>,
}

impl FromRef<OAuthState> for Arc<Limits> {
    fn from_ref(s: &OAuthState) -> Self {
        s.limits.clone()
    }
}

impl FromRef<OAuthState> for Arc<Directory> {
    fn from_ref(s: &OAuthState) -> Self {
        s.dir.clone()
    }
}

impl FromRef<OAuthState> for Arc<audit::AuditLog> {
    fn from_ref(s: &OAuthState) -> Self {
        s.audit.clone()
    }
}

/// The network address of the caller, when the server records it (see [`ClientAddr`]).
pub struct Peer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ClientIp>().map(|c| c.0.to_string())))
    }
}

/// Record a sign-in or token request (`user` when a person signed in) in the audit log.
pub fn record_login(
    log: &audit::AuditLog,
    user: Option<&str>,
    client: Option<&str>,
    address: Option<String>,
    ok: bool,
    detail: String,
) -> Result<(), audit::AuditError> {
    let agent = audit::Agent {
        user: user.map(str::to_string),
        client: client.filter(|c| !c.is_empty()).map(str::to_string),
        address,
        ..audit::Agent::default()
    };
    let outcome = if ok { audit::Outcome::Success } else { audit::Outcome::MinorFailure };
    let mut e = audit::Event::new(audit::Kind::Login, audit::Action::Execute, outcome, agent);
    e.detail = Some(detail);
    log.record(e.to_new())
}

/// The address a connection comes from (recorded in the audit log).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Serve `router` on `listener` until `shutdown` completes: HTTPS with `tls` (and HSTS),
/// else plain HTTP (behind a TLS-terminating proxy, or on loopback for development).
/// A connection whose request headers do not all arrive within `header_timeout` is
/// closed (hyper's HTTP/1 header timer; axum's own `serve` runs without one).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_timeout: std::time::Duration,
) -> std::io::Result<()> {
    let https = tls.is_some();
    let router = router.layer(axum::middleware::map_response(move |mut r: HttpResponse| async move {
        let h = r.headers_mut();
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if https {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
        }
        r
    }));
    match tls {
        Some(config) => accept_loop(tls::TlsListener::new(listener, config)?, router, shutdown, header_timeout).await,
        None => accept_loop(listener, router, shutdown, header_timeout).await,
    }
}

/// How long a shutdown waits for the requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn accept_loop<L>(
    mut listener: L,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    header_timeout: std::time::Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    loop {
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let app = router.clone();
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(ClientAddr(peer)));
            let mut app = app.clone();
            async move { tower_service::Service::call(&mut app, req).await }
        });
        let conn = graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "requests still running {} s after the shutdown signal are left to the process's exit",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_read_by_id;

    #[test]
    fn reads_by_id_are_told_from_other_requests() {
        for read in ["Patient/p1", "Observation/o-2/_history/3"] {
            assert!(is_read_by_id(read), "{read}");
        }
        for other in [
            "Patient",
            "Patient/$everything",
            "Patient/p1/$everything",
            "Patient/p1/_history",
            "Patient/_search",
            "Patient/p1/Observation",
            "metadata",
            "$export",
            "_history",
            "Patient/",
            "",
        ] {
            assert!(!is_read_by_id(other), "{other}");
        }
    }
}

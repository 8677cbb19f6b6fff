//! The OAuth 2.0 endpoints of the authorization server and the SMART / OpenID discovery
//! documents: `POST /oauth/token` (authorization code with PKCE, client credentials with
//! a client secret, refresh tokens with rotation; the sign-in pages are in
//! [`crate::login`]), `POST /oauth/revoke` (RFC 7009), `POST /oauth/introspect`
//! (RFC 7662), `GET /oauth/jwks`, `GET /fhir/.well-known/smart-configuration`,
//! `GET /.well-known/openid-configuration`. The logic lives in [`auth::directory`];
//! this module is the HTTP shape of it.

use std::sync::Arc;

use audit::AuditLog;
use auth::directory::{Directory, DirectoryError};
use auth::scope::Scopes;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Limits, Peer};

/// An OAuth error response (RFC 6749 §5.2), never cached.
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let body = json!({"error": error, "error_description": description.into()});
    no_store(status, body)
}

fn no_store(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        body.to_string(),
    )
        .into_response()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `client_assertion_type` of `private_key_jwt` (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client's credentials: HTTP Basic (`client_secret_basic`) or form fields
/// (`client_secret_post`).
fn client_credentials(headers: &HeaderMap, f: &[(String, String)]) -> Option<(String, Option<String>)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
    {
        let (id, secret) = basic.split_once(':')?;
        let decode = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        return Some((decode(id)?, decode(secret)));
    }
    Some((field(f, "client_id")?.to_string(), field(f, "client_secret").map(str::to_string)))
}

/// Run directory work on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

fn server_error(e: &DirectoryError) -> Response {
    tracing::error!("authorization server: {e}");
    oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again")
}

/// 429 with `Retry-After`: over the rate limit of the address.
fn too_many(retry_after: u64) -> Response {
    let mut r = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        format!("too many requests from this address: try again in {retry_after} s"),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A place to hash a client secret in (when the request carries one): the request waits
/// for it as a task; 503 when the queue is full.
async fn hash_place(limits: &Limits, secret: bool) -> Result<Option<crate::limit::Place>, Response> {
    if !secret {
        return Ok(None);
    }
    match limits.hashing.enter().await {
        Some(place) => Ok(Some(place)),
        None => {
            let mut r = oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "busy: try again");
            r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            Err(r)
        }
    }
}

/// `POST /oauth/token`.
pub async fn token(
    State(dir): State<Arc<Directory>>,
    State(audit): State<Arc<AuditLog>>,
    State(limits): State<Arc<Limits>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(wait) =
        crate::login::admit_address(&limits, &dir, address.as_deref(), crate::login::Endpoints::Token).await
    {
        return too_many(wait);
    }
    let f = form(&body);
    let (client_id, secret) = match client_credentials(&headers, &f) {
        Some(c) => c,
        None if field(&f, "client_assertion").is_some() => (String::new(), None),
        None => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication is required"),
    };
    let place = match hash_place(&limits, secret.is_some()).await {
        Ok(place) => place,
        Err(busy) => return busy,
    };
    let grant_type = field(&f, "grant_type").unwrap_or_default().to_string();
    let requested = field(&f, "scope").map(str::to_string);
    let refresh_token = field(&f, "refresh_token").map(str::to_string);
    let code = field(&f, "code").map(str::to_string);
    let redirect_uri = field(&f, "redirect_uri").map(str::to_string);
    let verifier = field(&f, "code_verifier").map(str::to_string);
    let assertion = (field(&f, "client_assertion_type") == Some(JWT_BEARER))
        .then(|| field(&f, "client_assertion").unwrap_or_default().to_string());
    let audited_client = client_id.clone();
    let audited_grant = grant_type.clone();
    let issue = move || -> Result<Response, DirectoryError> {
        let token_url = format!("{}/oauth/token", dir.issuer.trim_end_matches('/'));
        let client = match (assertion.as_deref(), secret.as_deref()) {
            (Some(a), _) => match dir.authenticate_assertion(a, &token_url) {
                Ok(c) => Some(c),
                Err(DirectoryError::Invalid(m)) => {
                    tracing::warn!("token request with a bad client assertion: {m}");
                    return Ok(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", m));
                }
                Err(e) => return Err(e),
            },
            (None, s) => match s {
                Some(s) => dir.authenticate_client(&client_id, s),
                // public clients (no secret, no keys) prove themselves with PKCE instead
                None if grant_type != "client_credentials" => {
                    dir.client(&client_id)?.filter(|c| c.secret_hash.is_none() && c.jwks.is_none() && !c.disabled)
                }
                None => None,
            },
        };
        let Some(client) = client else {
            tracing::warn!(client_id, "token request with wrong client credentials");
            return Ok(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong secret"));
        };
        let allowed = Scopes::parse(&client.scope).map_err(DirectoryError::Invalid)?;
        match grant_type.as_str() {
            "client_credentials" => {
                let asked = match requested.as_deref() {
                    Some(s) => match Scopes::parse(s) {
                        Ok(s) => s,
                        Err(e) => return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", e)),
                    },
                    None => allowed.clone(),
                };
                let mut granted = asked.intersect(&allowed);
                // no user and no patient here: a client acting on its own gets system/
                // scopes only (user/ and patient/ ones are for the code flow)
                granted.resources.retain(|r| r.context == auth::scope::Context::System);
                granted.words.clear();
                if granted.resources.is_empty() {
                    return Ok(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        format!(
                            "none of the requested scopes is allowed for this client acting on its own (system/ scopes; allowed: {allowed})"
                        ),
                    ));
                }
                let session = dir.new_session(None, &client.client_id, &granted, None, None)?;
                let tokens = dir.issue(session, false, None)?;
                Ok(no_store(StatusCode::OK, serde_json::to_value(tokens).unwrap_or_default()))
            }
            "authorization_code" => {
                let Some(code) = code.as_deref() else {
                    return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code is missing".to_string()));
                };
                match dir.exchange_code(code, &client.client_id, redirect_uri.as_deref(), verifier.as_deref())? {
                    Ok((tokens, _)) => Ok(no_store(StatusCode::OK, serde_json::to_value(tokens).unwrap_or_default())),
                    Err(refused) => Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", refused.0.to_string())),
                }
            }
            "refresh_token" => {
                let Some(rt) = refresh_token else {
                    return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is missing"));
                };
                match dir.refresh(&rt, &client.client_id) {
                    Ok(tokens) => Ok(no_store(StatusCode::OK, serde_json::to_value(tokens).unwrap_or_default())),
                    Err(DirectoryError::Invalid(m)) => Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", m)),
                    Err(e) => Err(e),
                }
            }
            other => Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "grant_type '{other}' is not supported (authorization_code, client_credentials, refresh_token)"
                ),
            )),
        }
    };
    let result = blocking(move || -> Result<Response, DirectoryError> {
        let _place = place; // held while the secret is checked, however the client behaves
        let response = issue()?;
        // every token request is recorded; a token is handed out only once that is durable
        let ok = response.status().is_success();
        let detail = format!("token request ({audited_grant}): HTTP {}", response.status().as_u16());
        match crate::record_login(&audit, None, Some(&audited_client), address, ok, detail) {
            Ok(()) => Ok(response),
            Err(e) => {
                tracing::error!("a token request could not be audited: {e}");
                Ok(oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again"))
            }
        }
    })
    .await;
    match result {
        Some(Ok(r)) => r,
        Some(Err(e)) => server_error(&e),
        None => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again"),
    }
}

/// The client of a revoke or introspect request (a secret, a signed assertion, or a
/// public client naming itself), if it proves to be one of ours.
fn authenticated(dir: &Directory, headers: &HeaderMap, f: &[(String, String)]) -> Option<String> {
    let assertion = (field(f, "client_assertion_type") == Some(JWT_BEARER)).then(|| field(f, "client_assertion"));
    let token_url = format!("{}/oauth/token", dir.issuer.trim_end_matches('/'));
    let (id, secret) = client_credentials(headers, f).unwrap_or_default();
    dir.endpoint_client(&id, secret.as_deref(), assertion.flatten(), &token_url).map(|c| c.client_id)
}

/// A revocation or introspection request let through: the address limit, its form, and a
/// hashing place when it carries a client secret.
async fn admitted(
    dir: &Arc<Directory>,
    limits: &Limits,
    address: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Vec<(String, String)>, Option<crate::limit::Place>), Response> {
    crate::login::admit_address(limits, dir, address, crate::login::Endpoints::Token).await.map_err(too_many)?;
    let f = form(body);
    let secret = client_credentials(headers, &f).is_some_and(|(_, s)| s.is_some());
    let place = hash_place(limits, secret).await?;
    Ok((f, place))
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known; a token
/// issued to another client is refused and stays valid (§2.1).
pub async fn revoke(
    State(dir): State<Arc<Directory>>,
    State(limits): State<Arc<Limits>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (f, place) = match admitted(&dir, &limits, address.as_deref(), &headers, &body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let result = blocking(move || {
        let _place = place;
        let Some(client) = authenticated(&dir, &headers, &f) else {
            return Ok(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication is required"));
        };
        dir.revoke_for(&client, field(&f, "token").unwrap_or_default()).map(|own| match own {
            true => StatusCode::OK.into_response(),
            false => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the token was not issued to this client"),
        })
    })
    .await;
    match result {
        Some(Ok(r)) => r,
        Some(Err(e)) => server_error(&e),
        None => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again"),
    }
}

/// `POST /oauth/introspect` (RFC 7662), for authenticated clients.
pub async fn introspect(
    State(dir): State<Arc<Directory>>,
    State(limits): State<Arc<Limits>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (f, place) = match admitted(&dir, &limits, address.as_deref(), &headers, &body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let result = blocking(move || {
        let _place = place;
        let Some(client) = authenticated(&dir, &headers, &f) else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication is required");
        };
        // a client learns about its own tokens only (RFC 7662 §2.2: others are inactive)
        let body = match dir.verify(field(&f, "token").unwrap_or_default()) {
            Ok(c) if c.client_id == client => json!({
                "active": true, "scope": c.scopes.to_string(), "client_id": c.client_id,
                "username": c.username, "patient": c.patient,
                "role": c.grant.as_ref().map(auth::account::RoleGrant::label),
            }),
            _ => json!({"active": false}),
        };
        no_store(StatusCode::OK, body)
    })
    .await;
    result.unwrap_or_else(|| oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again"))
}

/// `GET /oauth/jwks`.
pub async fn jwks(State(dir): State<Arc<Directory>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], dir.jwks().to_string()).into_response()
}

/// What the OpenID Connect and SMART discovery documents both say: the endpoints and
/// the ways in.
fn discovery(dir: &Directory) -> serde_json::Map<String, Value> {
    let base = dir.issuer.trim_end_matches('/');
    let doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "jwks_uri": format!("{base}/oauth/jwks"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    });
    match doc {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn json_document(mut doc: serde_json::Map<String, Value>, extra: Value) -> Response {
    if let Value::Object(e) = extra {
        doc.extend(e);
    }
    ([(header::CONTENT_TYPE, "application/json")], Value::Object(doc).to_string()).into_response()
}

/// `GET /.well-known/openid-configuration` (OpenID Connect discovery).
pub async fn openid_configuration(State(dir): State<Arc<Directory>>) -> Response {
    json_document(
        discovery(&dir),
        json!({
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid", "fhirUser", "offline_access", "online_access", "launch/patient"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        }),
    )
}

/// `GET /fhir/.well-known/smart-configuration` (SMART App Launch 2.0 discovery).
pub async fn smart_configuration(State(dir): State<Arc<Directory>>) -> Response {
    json_document(
        discovery(&dir),
        json!({
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384", "RS256", "ES256"],
            "scopes_supported": ["system/*.cruds", "user/*.cruds", "patient/*.cruds", "offline_access", "openid", "fhirUser"],
            "capabilities": ["launch-standalone", "client-public", "client-confidential-symmetric",
                "client-confidential-asymmetric", "context-standalone-patient", "permission-offline", "permission-online",
                "permission-patient", "permission-user", "permission-v1", "permission-v2", "sso-openid-connect"],
        }),
    )
}

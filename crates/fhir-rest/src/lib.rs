//! FHIR R4 REST behaviour without a web framework or a database: a [`Request`] goes in,
//! a [`Response`] comes out. The HTTP layer (crate `api`) only translates HTTP to and
//! from these types; data is reached only through the [`guard`]: each request gets a
//! [`guard::Handle`] bound to its caller, which checks and audits every access.
//!
//! One module per interaction under [`interaction`]; every write goes through
//! [`write`] (the guard's write path), whether it comes alone or inside a transaction
//! bundle. Operations (`$everything`, `$export`, ...) are registered at wiring time
//! ([`operations`]), so this crate names no domain service.

pub mod audit;
pub mod bulk;
pub mod export;
pub mod interaction;
pub mod operations;
pub mod search_parameters;
pub mod shape;
pub mod watch;

use std::sync::Arc;

use fhir_model::ResourceType;
use serde_json::Value;

pub use guard::{
    FhirError, FhirResult, Guard, Handle, Principal, SystemActor, consent, error, fhirpath_patch, meta, write,
};

/// HTTP methods the FHIR API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
}

/// What the client asked to get back (`Prefer: return=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// The body of a request, as the HTTP layer decoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    /// A JSON document (resource, Bundle, Parameters or JSON Patch).
    Json(Value),
}

/// A FHIR request, relative to the FHIR base.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path below the base, without leading slash: `Patient/1/_history/2`.
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    pub body: Body,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_none_exist: Option<String>,
    pub prefer_return: Return,
    /// `Prefer: handling=strict`.
    pub strict: bool,
    /// `Prefer: respond-async`.
    pub prefer_async: bool,
    /// The body is a JSON Patch document (`application/json-patch+json`).
    pub json_patch: bool,
    /// Who asks: the HTTP layer sets the verified token's caller; requests made inside
    /// the server (demo data, tests) name their system actor. There is no default.
    pub principal: Principal,
    /// The network address the request came from (for the audit log).
    pub address: Option<String>,
    /// `X-Break-Glass-Reason`: emergency access to the patient the request is about.
    pub break_glass: Option<String>,
}

impl Request {
    /// A request of `principal` with no body and no conditional headers.
    pub fn new(principal: Principal, method: Method, path: impl Into<String>, query: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            query: query.into(),
            body: Body::None,
            if_match: None,
            if_none_match: None,
            if_modified_since: None,
            if_none_exist: None,
            prefer_return: Return::default(),
            strict: false,
            prefer_async: false,
            json_patch: false,
            principal,
            address: None,
            break_glass: None,
        }
    }
}

/// A response body: JSON to serialise, or stored bytes sent as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    None,
    Json(Value),
    Raw(Vec<u8>),
    /// A file to stream (bulk export output).
    File(std::path::PathBuf),
}

/// A FHIR response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: ResponseBody,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub location: Option<String>,
    /// `Content-Location` (e.g. the versioned URL of a read).
    pub content_location: Option<String>,
    /// Other headers (`X-Progress`, `Retry-After`, a content type other than FHIR JSON).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, body: Value) -> Self {
        Response {
            status,
            body: ResponseBody::Json(body),
            etag: None,
            last_modified: None,
            location: None,
            content_location: None,
            headers: Vec::new(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Response {
            status,
            body: ResponseBody::None,
            etag: None,
            last_modified: None,
            location: None,
            content_location: None,
            headers: Vec::new(),
        }
    }

    /// The body as JSON (parsing stored bytes if needed).
    pub fn body_json(&self) -> Option<Value> {
        match &self.body {
            ResponseBody::None | ResponseBody::File(_) => None,
            ResponseBody::Json(v) => Some(v.clone()),
            ResponseBody::Raw(b) => serde_json::from_slice(b).ok(),
        }
    }
}

impl From<FhirError> for Response {
    fn from(e: FhirError) -> Self {
        Response::json(e.status, e.outcome.to_json())
    }
}

/// Settings of the FHIR layer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public base URL written into links, e.g. `http://localhost:8080/fhir`.
    pub base_url: String,
    /// Page size when the client does not ask for one.
    pub default_count: usize,
    /// Largest page the server returns.
    pub max_count: usize,
    /// Most entries accepted in one batch or transaction.
    pub max_bundle_entries: usize,
    /// Where `$export` writes its files.
    pub export_dir: std::path::PathBuf,
    /// The suspicious-activity rules.
    pub watch: watch::Rules,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_url: "http://localhost:8080/fhir".into(),
            default_count: 50,
            max_count: 1000,
            max_bundle_entries: 10_000,
            export_dir: std::env::temp_dir().join("medkarta-exports"),
            watch: watch::Rules::default(),
        }
    }
}

/// The FHIR server core: configuration, the guard, the operations registered.
#[derive(Clone)]
pub struct Engine {
    guard: Guard,
    pub config: Arc<Config>,
    /// Notifications and suspicious-activity rules over the accesses.
    pub watch: Arc<watch::Watch>,
    operations: Arc<operations::Operations>,
}

impl Engine {
    /// An engine over `guard` with the operations in `operations`.
    pub fn new(guard: Guard, config: Config, operations: operations::Operations) -> Self {
        Engine { guard, config: Arc::new(config), watch: Arc::default(), operations: Arc::new(operations) }
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    pub fn operations(&self) -> &operations::Operations {
        &self.operations
    }

    /// Handle one request; a caller's request is recorded in the audit log (see
    /// [`crate::audit`]). Blocking: call it from a blocking thread.
    pub fn handle(&self, req: &Request) -> Response {
        let admit = |req: &Request| {
            self.guard.admit(
                req.principal.clone(),
                req.address.clone(),
                req.break_glass.as_deref(),
                &req.path,
                &req.query,
            )
        };
        let run = |h: &Handle, req: &Request| match interaction::dispatch(self, h, req) {
            Ok(r) => r,
            Err(e) => e.into(),
        };
        let Principal::Token(caller) = &req.principal else {
            // a system actor: its writes are audited in their transactions
            return match admit(req) {
                Ok(h) => run(&h, req),
                Err(e) => e.into(),
            };
        };
        let agent = guard::agent(&req.principal, req.address.as_deref());
        // break-the-glass: asked in the request's header, or the session's purpose of use
        let btg = req.break_glass.clone().or_else(|| caller.break_glass.clone());
        let purpose = btg.map(|r| (crate::consent::BTG.to_string(), Some(r)));
        let blocked = self.watch.blocked(&caller.sid);
        crate::audit::audited(self, req, agent, purpose, |req| {
            // refused before anything, break-the-glass included
            if blocked {
                let why = "This session was blocked after unusual activity and the security officer was alerted; \
                           sign in again or contact them";
                let r = FhirError::new(403, fhir_model::Issue::error(fhir_model::IssueType::Security, why)).into();
                return (r, false);
            }
            // a clinician's request carries what patients' consents say about them now
            // (and break-the-glass writes its grant, audited with the request)
            match admit(req) {
                Ok(h) => (run(&h, req), h.wrote()),
                Err(e) => (e.into(), false),
            }
        })
    }

    /// Absolute URL of a path below the base.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path)
    }
}

/// Parse a resource type from a path segment (404 for anything R4 does not define).
pub fn resource_type(segment: &str) -> FhirResult<ResourceType> {
    ResourceType::parse(segment).ok_or_else(|| {
        FhirError::new(
            404,
            fhir_model::Issue::error(
                fhir_model::IssueType::NotSupported,
                format!("'{segment}' is not a FHIR R4 resource type"),
            )
            .at(segment.to_string()),
        )
    })
}

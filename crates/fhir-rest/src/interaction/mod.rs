//! Routing of a [`Request`] to its interaction, one module per interaction.

pub mod audit_events;
pub mod bulk_export;
pub mod bundle;
pub mod capabilities;
pub mod everything;
pub mod history;
pub mod include;
pub mod read;
pub mod search;
pub mod validate;
pub mod write;

use serde_json::{Map, Value, json};

use crate::meta::{instant, now_micros};
use crate::{Engine, FhirError, FhirResult, Method, Request, Response, resource_type};

/// A Bundle of `kind` (searchset, history, ...) with its links and entries.
pub fn bundle_of(kind: &str, total: Option<u64>, links: Vec<Value>, entries: Vec<Value>) -> Value {
    let mut b = Map::new();
    b.insert("resourceType".into(), json!("Bundle"));
    b.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    b.insert("meta".into(), json!({"lastUpdated": instant(now_micros())}));
    b.insert("type".into(), json!(kind));
    if let Some(t) = total {
        b.insert("total".into(), json!(t));
    }
    if !links.is_empty() {
        b.insert("link".into(), Value::Array(links));
    }
    if !entries.is_empty() {
        b.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(b)
}

/// A caller's request (AuditEvent is then the audit log, not stored resources).
fn audited(req: &Request) -> bool {
    matches!(req.principal, auth::policy::Principal::Token(_))
}

/// Find the interaction for a request and run it.
pub fn dispatch(engine: &Engine, req: &Request) -> FhirResult<Response> {
    let path = req.path.trim_matches('/');
    let segs: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
    use Method::*;
    match (req.method, segs.as_slice()) {
        (Post, []) => bundle::bundle(engine, req),
        (Get | Head, ["metadata"]) => Ok(capabilities::capability_statement(engine)),
        (Get | Head, ["_history"]) => history::history(engine, req, None, None),
        (Get | Head, []) => search::system(engine, req),
        (Post, ["_search"]) => search::search_post(engine, req, None),
        (Get | Post, ["$export"]) => bulk_export::kickoff(engine, req, None, false),
        (Get | Post, ["Patient", "$export"]) => bulk_export::kickoff(engine, req, None, true),
        (Get | Post, ["Group", id, "$export"]) => bulk_export::kickoff(engine, req, Some(id), false),
        (Get, ["$export-status", id]) => bulk_export::status(engine, req, id),
        (Delete, ["$export-status", id]) => bulk_export::cancel(engine, req, id),
        (Get, ["$export-file", id, name]) => bulk_export::file(engine, req, id, name),
        (Get | Head, ["$reindex"]) => {
            let t = resource_type("SearchParameter")?;
            crate::access::require_all(&req.principal, auth::scope::Interaction::Read, &[t])?;
            crate::search_parameters::status(engine)
        }
        // the audit log, for callers (the server itself may still store AuditEvents)
        (Get | Head, ["AuditEvent"]) if audited(req) => audit_events::search(engine, req),
        (Get | Head, ["AuditEvent", id]) if audited(req) => audit_events::read(engine, req, id),
        (Post, ["AuditEvent", id, "$flag"]) if audited(req) => audit_events::flag(engine, req, id),
        (_, ["AuditEvent", ..]) if audited(req) => Err(FhirError::method_not_allowed(
            "The audit log is written by the server only: AuditEvent supports search, read and $flag",
        )),
        (_, [op]) if op.starts_with('$') => {
            Err(FhirError::not_supported(format!("The operation '{op}' is not supported")))
        }
        (Post, [t, op]) if op.starts_with('$') => {
            let rt = resource_type(t)?;
            match *op {
                "$validate" => validate::validate(engine, req, rt, None),
                _ => Err(FhirError::not_supported(format!("The operation '{op}' is not supported on {rt}"))),
            }
        }
        (Post, [t, id, op]) if op.starts_with('$') => {
            let rt = resource_type(t)?;
            match *op {
                "$validate" => validate::validate(engine, req, rt, Some(id)),
                _ => Err(FhirError::not_supported(format!("The operation '{op}' is not supported on {rt}/{id}"))),
            }
        }
        (Get | Head, [t]) => search::search(engine, req, resource_type(t)?, &req.query),
        (Post, [t, "_search"]) => search::search_post(engine, req, Some(resource_type(t)?)),
        (Post, [t]) => write::create(engine, req, resource_type(t)?),
        (Put, [t]) => write::conditional_update(engine, req, resource_type(t)?),
        (Delete, [t]) => write::conditional_delete(engine, req, resource_type(t)?),
        (Get | Head, [t, "_history"]) => history::history(engine, req, Some(resource_type(t)?), None),
        (Get | Head, [t, id]) => read::read(engine, req, resource_type(t)?, id),
        (Put, [t, id]) => write::update(engine, req, resource_type(t)?, id),
        (Patch, [t, id]) => write::patch(engine, req, resource_type(t)?, id),
        (Delete, [t, id]) => write::delete(engine, req, resource_type(t)?, id),
        (Get | Head, [t, id, "_history"]) => history::history(engine, req, Some(resource_type(t)?), Some(id)),
        (Get | Head, ["Patient", id, "$everything"]) => everything::everything(engine, req, id),
        (Get | Head, [t, id, c]) if !c.starts_with('_') && !c.starts_with('$') => {
            search::compartment(engine, req, resource_type(t)?, id, resource_type(c)?)
        }
        (Get | Head, [t, id, "_history", v]) => read::vread(engine, req, resource_type(t)?, id, v),
        (m, _) => {
            if let Some(t) = segs.first() {
                resource_type(t)?;
            }
            Err(FhirError::method_not_allowed(format!("{m:?} is not supported on '{path}'")))
        }
    }
}

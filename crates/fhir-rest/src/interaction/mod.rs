//! Routing of a [`Request`] to its interaction, one module per interaction.

pub mod audit_events;
pub mod bulk_export;
pub mod bundle;
pub mod capabilities;
pub mod everything;
pub mod history;
pub mod include;
pub mod openapi;
pub mod read;
pub mod search;
pub mod validate;
pub mod write;

use serde_json::{Map, Value, json};

use crate::meta::{instant, now_micros};
use crate::operations::{Level, Target};
use crate::{Engine, FhirError, FhirResult, Handle, Method, Request, Response, resource_type};

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
    matches!(req.principal, crate::Principal::Token(_))
}

/// Find the interaction for a request and run it with the caller's handle.
pub fn dispatch(engine: &Engine, h: &Handle, req: &Request) -> FhirResult<Response> {
    let path = req.path.trim_matches('/');
    let segs: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
    let ops = engine.operations();
    use Method::*;
    match (req.method, segs.as_slice()) {
        (Post, []) => bundle::bundle(engine, h, req),
        (Get | Head, ["metadata"]) => Ok(capabilities::capability_statement(engine)),
        (Get | Head, ["openapi.json"]) => Ok(openapi::document(engine)),
        (Get | Head, ["_history"]) => history::history(engine, h, req, None, None),
        (Get | Head, []) => search::system(engine, h, req),
        (Post, ["_search"]) => search::search_post(engine, h, req, None),
        (Get, ["$export-status", id]) => bulk_export::status(engine, req, id),
        (Delete, ["$export-status", id]) => bulk_export::cancel(engine, req, id),
        (Get, ["$export-file", id, name]) => bulk_export::file(engine, req, id, name),
        (Get | Head, ["$reindex"]) => {
            let t = resource_type("SearchParameter")?;
            h.require_all(auth::scope::Interaction::Read, &[t])?;
            crate::search_parameters::status(engine)
        }
        // the audit log, for callers (the server itself may still store AuditEvents)
        (Get | Head, ["AuditEvent"]) if audited(req) => audit_events::search(engine, h, req),
        (Get | Head, ["AuditEvent", id]) if audited(req) => audit_events::read(engine, h, req, id),
        (Post, ["AuditEvent", id, "$flag"]) if audited(req) => audit_events::flag(engine, h, req, id),
        (_, ["AuditEvent", ..]) if audited(req) => Err(FhirError::method_not_allowed(
            "The audit log is written by the server only: AuditEvent supports search, read and $flag",
        )),
        (_, [op]) if op.starts_with('$') => {
            ops.invoke(engine, h, req, op, Level::System, Target { resource_type: None, id: None })
        }
        (_, [t, op]) if op.starts_with('$') => {
            let rt = resource_type(t)?;
            ops.invoke(engine, h, req, op, Level::Type, Target { resource_type: Some(rt), id: None })
        }
        (_, [t, id, op]) if op.starts_with('$') => {
            let rt = resource_type(t)?;
            ops.invoke(engine, h, req, op, Level::Instance, Target { resource_type: Some(rt), id: Some(id) })
        }
        (Get | Head, [t]) => search::search(engine, h, req, resource_type(t)?, &req.query),
        (Post, [t, "_search"]) => search::search_post(engine, h, req, Some(resource_type(t)?)),
        (Post, [t]) => write::create(engine, h, req, resource_type(t)?),
        (Put, [t]) => write::conditional_update(engine, h, req, resource_type(t)?),
        (Delete, [t]) => write::conditional_delete(engine, h, req, resource_type(t)?),
        (Get | Head, [t, "_history"]) => history::history(engine, h, req, Some(resource_type(t)?), None),
        (Get | Head, [t, id]) => read::read(engine, h, req, resource_type(t)?, id),
        (Put, [t, id]) => write::update(engine, h, req, resource_type(t)?, id),
        (Patch, [t, id]) => write::patch(engine, h, req, resource_type(t)?, id),
        (Delete, [t, id]) => write::delete(engine, h, req, resource_type(t)?, id),
        (Get | Head, [t, id, "_history"]) => history::history(engine, h, req, Some(resource_type(t)?), Some(id)),
        (Get | Head, [t, id, c]) if !c.starts_with('_') => {
            search::compartment(engine, h, req, resource_type(t)?, id, resource_type(c)?)
        }
        (Get | Head, [t, id, "_history", v]) => read::vread(engine, h, req, resource_type(t)?, id, v),
        (m, _) => {
            if let Some(t) = segs.first() {
                resource_type(t)?;
            }
            Err(FhirError::method_not_allowed(format!("{m:?} is not supported on '{path}'")))
        }
    }
}

//! FHIR operations (`$everything`, `$export`, `$validate`, and the domain services'
//! `$book`, `$match`, `$merge`...) registered at wiring time: the binary builds the
//! [`Operations`] the engine serves, so this crate names no domain crate. An operation
//! gets the caller's [`Handle`] (every access it makes is checked and audited by the
//! guard) and the request.

use std::collections::HashMap;
use std::sync::Arc;

use fhir_model::ResourceType;

use crate::{Engine, FhirError, FhirResult, Handle, Method, Request, Response};

/// Where an operation is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// `[base]/$op`
    System,
    /// `[base]/Type/$op`
    Type,
    /// `[base]/Type/id/$op`
    Instance,
}

/// What an invocation names: the type (type and instance level) and the id (instance).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub resource_type: Option<ResourceType>,
    pub id: Option<&'a str>,
}

/// An operation's implementation.
pub type Operation = dyn Fn(&Engine, &Handle, &Request, Target<'_>) -> FhirResult<Response> + Send + Sync;

struct Entry {
    methods: Vec<Method>,
    run: Arc<Operation>,
}

/// The operations an engine serves, by (name, level, type — `None`: any type).
#[derive(Default)]
pub struct Operations {
    entries: HashMap<(String, Level, Option<String>), Entry>,
}

impl Operations {
    /// The core's operations: `$validate` (type and instance, any type), `$everything`
    /// (a Patient), `$export` (system, all Patients, a Group).
    pub fn standard() -> Self {
        use crate::interaction::{bulk_export, everything, validate};
        let mut ops = Operations::default();
        for level in [Level::Type, Level::Instance] {
            ops.register("$validate", level, None, &[Method::Post], |e, h, r, t| {
                let rt = t.resource_type.ok_or_else(FhirError::internal)?;
                validate::validate(e, h, r, rt, t.id)
            });
        }
        ops.register("$everything", Level::Instance, Some("Patient"), &[Method::Get, Method::Head], |e, h, r, t| {
            everything::everything(e, h, r, t.id.unwrap_or_default())
        });
        let kick = [Method::Get, Method::Post];
        ops.register("$export", Level::System, None, &kick, |e, h, r, _| bulk_export::kickoff(e, h, r, None, false));
        ops.register("$export", Level::Type, Some("Patient"), &kick, |e, h, r, _| {
            bulk_export::kickoff(e, h, r, None, true)
        });
        ops.register("$export", Level::Instance, Some("Group"), &kick, |e, h, r, t| {
            bulk_export::kickoff(e, h, r, t.id, false)
        });
        ops
    }

    /// Serve `name` at `level` (on `resource_type`, or any type) for `methods`.
    pub fn register(
        &mut self,
        name: &str,
        level: Level,
        resource_type: Option<&str>,
        methods: &[Method],
        run: impl Fn(&Engine, &Handle, &Request, Target<'_>) -> FhirResult<Response> + Send + Sync + 'static,
    ) {
        let key = (name.to_string(), level, resource_type.map(str::to_string));
        self.entries.insert(key, Entry { methods: methods.to_vec(), run: Arc::new(run) });
    }

    /// The names registered, with their level and type (for the capability statement).
    pub fn list(&self) -> Vec<(&str, Level, Option<&str>)> {
        let mut v: Vec<_> = self.entries.keys().map(|(n, l, t)| (n.as_str(), *l, t.as_deref())).collect();
        v.sort_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
        v
    }

    /// Invoke `name` (404-style refusal naming what is supported if it is not there).
    pub fn invoke(
        &self,
        engine: &Engine,
        h: &Handle,
        req: &Request,
        name: &str,
        level: Level,
        target: Target<'_>,
    ) -> FhirResult<Response> {
        let t = target.resource_type.map(|t| t.as_str().to_string());
        let entry = self
            .entries
            .get(&(name.to_string(), level, t.clone()))
            .or_else(|| self.entries.get(&(name.to_string(), level, None)));
        let Some(entry) = entry else {
            let on = match (t, target.id) {
                (Some(t), Some(id)) => format!(" on {t}/{id}"),
                (Some(t), None) => format!(" on {t}"),
                _ => String::new(),
            };
            return Err(FhirError::not_supported(format!("The operation '{name}' is not supported{on}")));
        };
        if !entry.methods.contains(&req.method) {
            return Err(FhirError::method_not_allowed(format!(
                "{name} is invoked with {}",
                entry.methods.iter().map(|m| format!("{m:?}").to_uppercase()).collect::<Vec<_>>().join(" or ")
            )));
        }
        (entry.run)(engine, h, req, target)
    }
}

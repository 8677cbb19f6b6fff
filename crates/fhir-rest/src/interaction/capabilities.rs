//! `GET /metadata`: a CapabilityStatement that says exactly what this build does.

use fhir_spec::{SearchParamType, spec};
use serde_json::{Value, json};

use crate::meta::{instant, now_micros};
use crate::operations::Level;
use crate::{Engine, Response};

/// Parameter types the query layer can search on today.
fn searchable(kind: SearchParamType) -> bool {
    !matches!(kind, SearchParamType::Composite | SearchParamType::Special)
}

/// The canonical definition of an operation: the specification's where there is one,
/// else ours (under the server's base).
fn definition(name: &str, level: Level, rt: Option<&str>, base: &str) -> String {
    let bare = name.trim_start_matches('$');
    match (bare, level, rt) {
        ("validate", _, _) => "http://hl7.org/fhir/OperationDefinition/Resource-validate".into(),
        ("everything", _, Some("Patient")) => "http://hl7.org/fhir/OperationDefinition/Patient-everything".into(),
        ("export", Level::System, _) => "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export".into(),
        ("export", _, Some("Patient")) => "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export".into(),
        ("export", _, Some("Group")) => "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export".into(),
        _ => format!("{base}/OperationDefinition/{}-{bare}", rt.unwrap_or("system")),
    }
}

/// Operations the engine serves itself (not through the registry).
const BUILT_IN: [(&str, Level, Option<&str>); 2] =
    [("$flag", Level::Instance, Some("AuditEvent")), ("$reindex", Level::System, None)];

pub fn capability_statement(engine: &Engine) -> Response {
    let base = engine.config.base_url.trim_end_matches('/');
    let mut ops = engine.operations().list();
    ops.extend(BUILT_IN);
    ops.sort_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
    let operation = |name: &str, level: Level, rt: Option<&str>| json!({"name": name.trim_start_matches('$'), "definition": definition(name, level, rt, base)});
    let system_ops: Vec<Value> =
        ops.iter().filter(|(_, l, _)| *l == Level::System).map(|(n, l, t)| operation(n, *l, *t)).collect();
    let resources: Vec<Value> = spec()
        .resource_types()
        .iter()
        .map(|rt| {
            let params: Vec<Value> = search::index::params_of(rt)
                .iter()
                .filter(|p| searchable(p.kind))
                .map(|p| {
                    let def = spec().search_param(rt, p.code);
                    json!({
                        "name": p.code,
                        "definition": def.map(|d| d.url.clone()).unwrap_or_default(),
                        "type": p.kind.as_str()
                    })
                })
                .collect();
            let mut includes: Vec<String> = vec!["*".into()];
            includes.extend(
                search::index::params_of(rt)
                    .iter()
                    .filter(|p| p.kind == SearchParamType::Reference)
                    .map(|p| format!("{rt}:{}", p.code)),
            );
            // one entry per name (an operation served at type and instance level is one)
            let mut type_ops: Vec<Value> = Vec::new();
            for (n, l, t) in ops.iter().filter(|(_, l, t)| *l != Level::System && t.is_none_or(|t| t == *rt)) {
                let op = operation(n, *l, Some(*rt).filter(|_| t.is_some()));
                if !type_ops.iter().any(|o| o["name"] == op["name"]) {
                    type_ops.push(op);
                }
            }
            type_ops.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            let interactions: Vec<Value> = [
                "read",
                "vread",
                "update",
                "patch",
                "delete",
                "history-instance",
                "history-type",
                "create",
                "search-type",
            ]
            .iter()
            .map(|c| json!({"code": c}))
            .collect();
            json!({
                "type": rt,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rt}"),
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "logical"],
                "searchInclude": includes,
                "searchParam": params,
                "operation": type_ops,
            })
        })
        .collect();
    let root = base.strip_suffix("/fhir").unwrap_or(base);
    let oauth = |name: &str, path: &str| json!({"url": name, "valueUri": format!("{root}/oauth/{path}")});
    let security = json!({
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR"}], "text": "OAuth 2.0 / SMART App Launch 2.0: bearer tokens on every request"}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [
            oauth("authorize", "authorize"), oauth("token", "token"), oauth("revoke", "revoke"), oauth("introspect", "introspect")
        ]}],
        "description": "Every request needs an access token; see .well-known/smart-configuration"
    });
    let cs = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(now_micros()),
        "publisher": "Medkarta",
        "kind": "instance",
        "software": {"name": "Medkarta", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": format!("Medkarta FHIR R4 server ({} storage)", engine.guard().backend()), "url": engine.config.base_url},
        "fhirVersion": fhir_spec::FHIR_VERSION,
        // Bulk Data publishes a server CapabilityStatement; SMART App Launch 2.0 none for a
        // plain server (its discovery is .well-known/smart-configuration): named as a guide
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "implementationGuide": ["http://hl7.org/fhir/smart-app-launch/ImplementationGuide/hl7.fhir.uv.smart-app-launch",
            "http://hl7.org/fhir/uv/bulkdata/ImplementationGuide/hl7.fhir.uv.bulkdata"],
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Not supported yet: XML, _total=estimate (answered accurately), token :in/:not-in/:above/:below, \
    _filter, _list, _contained, invariants using htmlChecks().",
            "security": security,
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "search-system"}, {"code": "history-system"}],
            "operation": system_ops,
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"]
        }]
    });
    Response::json(200, cs)
}

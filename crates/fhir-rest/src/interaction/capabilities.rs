//! `GET /metadata`: a CapabilityStatement that says exactly what this build does.

use fhir_spec::{SearchParamType, spec};
use serde_json::{Value, json};

use crate::meta::{instant, now_micros};
use crate::{Engine, Response};

/// Parameter types the query layer can search on today.
fn searchable(kind: SearchParamType) -> bool {
    !matches!(kind, SearchParamType::Composite | SearchParamType::Special)
}

pub fn capability_statement(engine: &Engine) -> Response {
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
            let interactions: Vec<Value> = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"]
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
                "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}]
            })
        })
        .collect();
    let base = engine.config.base_url.trim_end_matches('/');
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
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Not supported yet: XML, _total=estimate (answered accurately), token :in/:not-in/:above/:below, \
    _filter, _list, _contained, invariants using htmlChecks().",
            "security": security,
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"]
        }]
    });
    Response::json(200, cs)
}

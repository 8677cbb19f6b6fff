//! `GET /openapi.json`: an OpenAPI 3.0 document of the REST API, made from the same
//! sources as the CapabilityStatement (the R4 definitions, the search parameters the
//! index knows, the operations registered): per resource type its interactions with
//! their search parameters, a schema per type from its top-level elements (JSON types,
//! arrays, required elements; nested content left open), and the bearer security. For
//! API tooling and for fuzzing the server (`scripts/fuzz.sh`). It needs a token (it is
//! large to make: not for anyone to ask for in a loop).

use fhir_spec::{SearchParamType, spec};
use serde_json::{Map, Value, json};

use crate::operations::Level;
use crate::{Engine, Response};

/// The JSON schema of a value of a FHIR type (primitives by their JSON form; complex
/// types as open objects).
fn value_schema(code: &str) -> Value {
    match code {
        "boolean" => json!({"type": "boolean"}),
        "integer" | "positiveInt" | "unsignedInt" => json!({"type": "integer"}),
        "decimal" => json!({"type": "number"}),
        c if c.starts_with(|ch: char| ch.is_ascii_lowercase()) => json!({"type": "string"}),
        _ => json!({"type": "object"}),
    }
}

/// A resource type's schema: `resourceType` fixed, `id` by its pattern, the top-level
/// elements by type (a choice element by each of its `value[x]` names).
fn resource_schema(rt: &str) -> Value {
    let mut properties = Map::new();
    let mut required = vec![json!("resourceType")];
    properties.insert("resourceType".into(), json!({"type": "string", "enum": [rt]}));
    properties.insert("id".into(), json!({"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}));
    if let Some(def) = spec().type_def(rt) {
        for e in def.children("") {
            if matches!(e.name.as_str(), "id" | "resourceType") {
                continue;
            }
            let one = |code: &str| {
                let v = value_schema(code);
                if e.max == Some(1) { v } else { json!({"type": "array", "items": v}) }
            };
            if e.choice {
                for t in &e.types {
                    let mut chars = t.chars();
                    let cap: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect();
                    properties.insert(format!("{}{cap}", e.name), one(t));
                }
            } else {
                properties.insert(e.name.clone(), one(e.types.first().map_or("BackboneElement", String::as_str)));
                if e.min > 0 {
                    required.push(json!(e.name));
                }
            }
        }
    }
    json!({"type": "object", "required": required, "properties": properties, "additionalProperties": true})
}

fn search_parameters(rt: &str) -> Vec<Value> {
    search::index::params_of(rt)
        .iter()
        .filter(|p| !matches!(p.kind, SearchParamType::Composite | SearchParamType::Special))
        .map(|p| json!({"name": p.code, "in": "query", "required": false, "schema": {"type": "string"}}))
        .chain(
            ["_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total"]
                .iter()
                .map(|n| json!({"name": n, "in": "query", "required": false, "schema": {"type": "string"}})),
        )
        .collect()
}

/// The answers every interaction may give (a FHIR resource, or an OperationOutcome).
fn answers(ok: &str, body: &str) -> Value {
    let outcome = json!({"description": "an OperationOutcome",
        "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}});
    let mut r = Map::new();
    r.insert(
        ok.into(),
        json!({"description": "success",
        "content": {"application/fhir+json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}}),
    );
    for code in ["400", "401", "403", "404", "409", "412", "422"] {
        r.insert(code.into(), outcome.clone());
    }
    Value::Object(r)
}

fn body(rt: &str) -> Value {
    json!({"required": true, "content": {"application/fhir+json": {"schema": {"$ref": format!("#/components/schemas/{rt}")}}}})
}

pub fn document(engine: &Engine) -> Response {
    let base = engine.config.base_url.trim_end_matches('/');
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let vid = json!({"name": "vid", "in": "path", "required": true, "schema": {"type": "string"}});
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let ops = engine.operations().list();
    for (name, _, _) in ops.iter().filter(|(_, l, _)| *l == Level::System) {
        let op = json!({"operationId": format!("{}-system", name.trim_start_matches('$')), "tags": ["system"],
            "responses": answers("202", "OperationOutcome")});
        paths.insert(format!("/{name}"), json!({"get": op}));
    }
    for rt in spec().resource_types() {
        let rt: &str = rt;
        schemas.insert(rt.into(), resource_schema(rt));
        paths.insert(
            format!("/{rt}"),
            json!({
                "get": {"operationId": format!("search-{rt}"), "tags": [rt], "parameters": search_parameters(rt), "responses": answers("200", "Bundle")},
                "post": {"operationId": format!("create-{rt}"), "tags": [rt], "requestBody": body(rt), "responses": answers("201", rt)},
            }),
        );
        paths.insert(
            format!("/{rt}/{{id}}"),
            json!({
                "parameters": [id],
                "get": {"operationId": format!("read-{rt}"), "tags": [rt], "responses": answers("200", rt)},
                "put": {"operationId": format!("update-{rt}"), "tags": [rt], "requestBody": body(rt), "responses": answers("200", rt)},
                "delete": {"operationId": format!("delete-{rt}"), "tags": [rt], "responses": answers("200", "OperationOutcome")},
            }),
        );
        paths.insert(
            format!("/{rt}/{{id}}/_history"),
            json!({"parameters": [id], "get": {"operationId": format!("history-{rt}"), "tags": [rt], "responses": answers("200", "Bundle")}}),
        );
        paths.insert(
            format!("/{rt}/{{id}}/_history/{{vid}}"),
            json!({"parameters": [id, vid], "get": {"operationId": format!("vread-{rt}"), "tags": [rt], "responses": answers("200", rt)}}),
        );
        for (name, level, on) in &ops {
            if on.is_some_and(|t| t != rt) || *level == Level::System {
                continue;
            }
            let (path, params) = match level {
                Level::Instance => (format!("/{rt}/{{id}}/{name}"), json!([id])),
                _ => (format!("/{rt}/{name}"), json!([])),
            };
            let op = json!({"operationId": format!("{}-{rt}-{}", name.trim_start_matches('$'), if *level == Level::Instance { "instance" } else { "type" }),
                "tags": [rt], "responses": answers("200", "Bundle")});
            let methods = if *name == "$validate" { json!({"post": op}) } else { json!({"get": op}) };
            let mut entry = methods;
            if let Some(o) = entry.as_object_mut() {
                o.insert("parameters".into(), params);
            }
            paths.insert(path, entry);
        }
    }
    paths.insert(
        "/".into(),
        json!({"post": {"operationId": "transaction", "tags": ["system"], "requestBody": body("Bundle"), "responses": answers("200", "Bundle")}}),
    );
    paths.insert(
        "/metadata".into(),
        json!({"get": {"operationId": "capabilities", "tags": ["system"], "security": [], "responses": answers("200", "CapabilityStatement")}}),
    );
    let doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "Medkarta FHIR R4 API", "version": env!("CARGO_PKG_VERSION"),
            "description": "HL7 FHIR R4 (4.0.1). Every request needs a bearer token (OAuth 2.0 / SMART App Launch: see .well-known/smart-configuration)."},
        "servers": [{"url": base}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas,
        },
        "paths": paths,
    });
    let mut r = Response::json(200, doc);
    r.headers.push(("content-type", "application/json".into()));
    r
}

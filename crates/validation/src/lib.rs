//! Validation of FHIR R4 JSON resources against the base structure definitions.
//!
//! Checks, with one [`Issue`] per problem pointing at the element by FHIRPath
//! (`Patient.name[0].given[1]`): unknown properties, cardinality, JSON shape (arrays,
//! objects, primitives and their `_x` companions), primitive formats, choice types,
//! contained and nested resources, reference syntax, required value-set bindings, and
//! the FHIRPath invariants of the definitions (those our FHIRPath engine can evaluate).

mod invariant;
mod primitive;

use fhir_model::{Issue, IssueType, Reference};
use fhir_spec::{Constraint, ElementDef, TypeDef, TypeKind, spec};
use serde_json::{Map, Value};

pub use primitive::check_primitive;

/// Validate a resource; returns every issue found (empty when valid).
pub fn validate_resource(resource: &Value) -> Vec<Issue> {
    let mut v = Validator { issues: Vec::new(), resources: Vec::new() };
    v.resource(resource, "", true);
    v.issues
}

/// Does the list contain an error?
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(Issue::is_error)
}

struct Validator<'a> {
    issues: Vec<Issue>,
    /// The resources being validated, innermost last, and whether each is contained
    /// (for `%resource` and `%rootResource` in invariants).
    resources: Vec<(&'a Value, bool)>,
}

/// Where in the resource we are: a type definition and a relative element path in it.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    ty: &'a TypeDef,
    prefix: &'a str,
}

impl<'a> Validator<'a> {
    fn error(&mut self, code: IssueType, path: &str, msg: String) {
        self.issues.push(Issue::error(code, msg).at(path));
    }

    /// Validate a whole resource. `path` is where it sits (empty at the root).
    fn resource(&mut self, value: &'a Value, path: &str, root: bool) {
        let Some(obj) = value.as_object() else {
            let at = if path.is_empty() { "$" } else { path };
            self.error(IssueType::Structure, at, "A resource must be a JSON object".into());
            return;
        };
        let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else {
            let at = if path.is_empty() { "$" } else { path };
            self.error(IssueType::Required, at, "The property 'resourceType' is missing".into());
            return;
        };
        let Some(ty) = spec().resource_type(rt).and_then(|n| spec().type_def(n)) else {
            let at = if path.is_empty() { rt } else { path };
            self.error(IssueType::NotSupported, at, format!("'{rt}' is not a FHIR R4 resource type"));
            return;
        };
        let here = if root || path.is_empty() { rt.to_string() } else { path.to_string() };
        let contained = path.rsplit('.').next().is_some_and(|last| last.starts_with("contained["));
        self.resources.push((value, contained));
        self.object(obj, Ctx { ty, prefix: "" }, &here, true);
        self.invariants(&ty.constraints, value, rt, "", &here);
        self.resources.pop();
        if rt == "Bundle" {
            self.bundle_rules(obj, &here);
        }
    }

    /// Validate the properties of a JSON object against the children of `ctx`.
    fn object(&mut self, obj: &'a Map<String, Value>, ctx: Ctx<'_>, path: &str, is_resource: bool) {
        if obj.is_empty() && !is_resource {
            self.error(IssueType::Invalid, path, "An element must have a value or children (ele-1)".into());
            return;
        }
        let mut seen_choice: Vec<(&str, &str)> = Vec::new();
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, companion) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let Some((el, mut type_code)) = find_element(ctx, name) else {
                self.error(
                    IssueType::Structure,
                    &format!("{path}.{key}"),
                    format!("Unrecognized property '{key}' (not an element of {})", type_label(ctx)),
                );
                continue;
            };
            if is_resource && name == "id" {
                type_code = "id"; // Resource.id: the snapshot says System.String
            }
            if el.choice {
                if let Some((_, other)) = seen_choice.iter().find(|(n, k)| *n == el.name && *k != name) {
                    let msg = format!(
                        "Only one of the choices for '{}[x]' may be given; found '{other}' and '{name}'",
                        el.name
                    );
                    self.error(IssueType::Structure, &format!("{path}.{name}"), msg);
                }
                seen_choice.push((el.name.as_str(), name));
            }
            let primitive = is_primitive(type_code);
            if companion && !primitive {
                self.error(
                    IssueType::Structure,
                    &format!("{path}.{key}"),
                    format!("'{key}' is only allowed for primitive elements; '{name}' is a {type_code}"),
                );
                continue;
            }
            let elem_path = format!("{path}.{name}");
            match value {
                Value::Array(items) => {
                    if !el.is_array() {
                        self.error(
                            IssueType::Structure,
                            &elem_path,
                            format!("'{name}' has at most one value and must not be an array"),
                        );
                        continue;
                    }
                    if items.is_empty() {
                        self.error(IssueType::Structure, &elem_path, format!("Array '{key}' must not be empty"));
                    }
                    let partner = obj.get(&partner_key(key, companion)).and_then(Value::as_array);
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{elem_path}[{i}]");
                        if item.is_null() {
                            let partner_has = partner.and_then(|p| p.get(i)).is_some_and(|p| !p.is_null());
                            if !(primitive && partner_has) {
                                self.error(IssueType::Structure, &item_path, "null is not a valid value here".into());
                            }
                            continue;
                        }
                        self.value(item, el, type_code, ctx, &item_path, companion);
                    }
                }
                _ if el.is_array() => {
                    self.error(IssueType::Structure, &elem_path, format!("'{key}' repeats and must be a JSON array"));
                }
                Value::Null => self.error(IssueType::Structure, &elem_path, "null is not a valid value here".into()),
                _ => self.value(value, el, type_code, ctx, &elem_path, companion),
            }
        }
        self.cardinality(obj, ctx, path);
    }

    /// Required elements present, arrays within their maximum.
    fn cardinality(&mut self, obj: &Map<String, Value>, ctx: Ctx<'_>, path: &str) {
        for el in ctx.ty.children(ctx.prefix) {
            let count = count_values(obj, el);
            if count < el.min as usize {
                let name = if el.choice { format!("{}[x]", el.name) } else { el.name.clone() };
                self.error(
                    IssueType::Required,
                    &format!("{path}.{name}"),
                    format!("'{name}' is required ({} minimum) but missing in {}", el.min, type_label(ctx)),
                );
            }
            if let Some(max) = el.max
                && max > 1
                && count > max as usize
            {
                self.error(
                    IssueType::Structure,
                    &format!("{path}.{}", el.name),
                    format!("'{}' allows at most {max} values, found {count}", el.name),
                );
            }
        }
    }

    /// Validate one value of an element whose (resolved) type is `type_code`.
    fn value(&mut self, value: &'a Value, el: &ElementDef, type_code: &str, ctx: Ctx<'_>, path: &str, companion: bool) {
        if companion {
            // `_name`: an Element with id/extension only.
            match (value.as_object(), spec().type_def("Element")) {
                (Some(obj), Some(ty)) => self.object(obj, Ctx { ty, prefix: "" }, path, false),
                _ => self.error(IssueType::Structure, path, "A primitive's '_' companion must be an object".into()),
            }
            return;
        }
        if is_primitive(type_code) {
            if let Err(msg) = check_primitive(type_code, value) {
                self.error(IssueType::Value, path, msg);
                return;
            }
            // active content (scripts, frames, event handlers) in narrative or text that a
            // portal may render: refused, whatever the presentation layer would do
            if matches!(type_code, "xhtml" | "string" | "markdown")
                && let Some(msg) = value.as_str().and_then(primitive::unsafe_xhtml)
            {
                self.error(IssueType::Security, path, msg);
            }
            if let (Some(vs), Some(code)) = (&el.required_binding, value.as_str())
                && type_code == "code"
            {
                self.binding(vs, None, code, path);
            }
            self.invariants(&el.constraints, value, type_code, "", path);
            return;
        }
        if type_code == "Resource" || spec().type_def(type_code).is_some_and(|t| t.kind == TypeKind::Resource) {
            self.resource(value, path, false);
            if let Some(rt) = value.get("resourceType").and_then(Value::as_str)
                && type_code != "Resource"
                && rt != type_code
            {
                self.error(IssueType::Structure, path, format!("Expected a {type_code} here, found a {rt}"));
            }
            return;
        }
        let Some(obj) = value.as_object() else {
            self.error(IssueType::Structure, path, format!("'{}' must be a JSON object ({type_code})", el.name));
            return;
        };
        if obj.is_empty() {
            self.error(IssueType::Invalid, path, "An element must have a value or children (ele-1)".into());
            return;
        }
        // Inline backbone elements and content references stay in the same type definition.
        let key = el.path.trim_end_matches("[x]");
        let inline = match &el.content_reference {
            Some(target) => Some(target.as_str()),
            None if ctx.ty.has_children(key) && matches!(type_code, "BackboneElement" | "Element") => Some(key),
            None => None,
        };
        if let Some(prefix) = inline {
            self.object(obj, Ctx { ty: ctx.ty, prefix }, path, false);
            let target = ctx.ty.element(prefix).map_or(&el.constraints, |t| &t.constraints);
            self.invariants(target, value, &ctx.ty.name, prefix, path);
            return;
        }
        let Some(ty) = spec().type_def(type_code) else {
            self.error(IssueType::Exception, path, format!("Unknown data type '{type_code}'"));
            return;
        };
        self.object(obj, Ctx { ty, prefix: "" }, path, false);
        self.datatype_rules(type_code, obj, el, path);
        self.invariants(&ty.constraints, value, type_code, "", path);
        self.invariants(&el.constraints, value, type_code, "", path);
    }

    /// Evaluate invariants on one instance; a `false` result is an error. Invariants our
    /// FHIRPath engine cannot evaluate yet are skipped.
    fn invariants(&mut self, constraints: &[Constraint], node: &'a Value, owner: &str, prefix: &str, path: &str) {
        if constraints.is_empty() {
            return;
        }
        let Some(&(resource, _)) = self.resources.last() else {
            return;
        };
        let root = self.resources.iter().rev().find(|(_, contained)| !contained).map_or(resource, |(r, _)| *r);
        for c in constraints {
            let Some(expr) = invariant::compiled(&c.expression) else {
                continue;
            };
            let Ok(items) = fhirpath::evaluate_on(&expr, node, owner, prefix, resource, root) else {
                continue;
            };
            if !invariant::passes(&items) {
                self.error(IssueType::Invariant, path, format!("Constraint failed: {}: {}", c.key, c.human));
            }
        }
    }

    /// Rules of particular data types that the structure alone does not express.
    fn datatype_rules(&mut self, type_code: &str, obj: &Map<String, Value>, el: &ElementDef, path: &str) {
        match type_code {
            "Reference" => {
                if let Some(r) = obj.get("reference").and_then(Value::as_str) {
                    match Reference::parse(r) {
                        None => self.error(
                            IssueType::Value,
                            &format!("{path}.reference"),
                            format!(
                                "'{r}' is not a valid reference (expected Type/id, an absolute URL, #id or urn:uuid:)"
                            ),
                        ),
                        Some(Reference::Literal { resource_type, .. }) => {
                            let ok = el.targets.is_empty()
                                || el.targets.iter().any(|t| t == "Resource" || t == resource_type.as_str());
                            if !ok {
                                self.error(
                                    IssueType::Structure,
                                    &format!("{path}.reference"),
                                    format!(
                                        "A reference to {resource_type} is not allowed here (allowed: {})",
                                        el.targets.join(", ")
                                    ),
                                );
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
            "Extension" => {
                let has_value = obj.keys().any(|k| k.starts_with("value") || k.starts_with("_value"));
                let has_ext = obj.contains_key("extension");
                if has_value == has_ext {
                    self.error(
                        IssueType::Invariant,
                        path,
                        "An extension must have either extensions or a value[x], not both (ext-1)".into(),
                    );
                }
            }
            "Coding" => {
                if let (Some(vs), Some(code)) = (&el.required_binding, obj.get("code").and_then(Value::as_str)) {
                    let system = obj.get("system").and_then(Value::as_str);
                    self.binding(vs, system, code, &format!("{path}.code"));
                }
            }
            "CodeableConcept" => {
                if let Some(vs) = &el.required_binding {
                    self.codeable_concept_binding(vs, obj, path);
                }
            }
            "Attachment" => {
                let data = obj.get("data").and_then(Value::as_str);
                let size = obj.get("size").and_then(Value::as_u64);
                if let (Some(data), Some(size)) = (data, size) {
                    let clean = data.bytes().filter(|b| !b.is_ascii_whitespace()).count();
                    let pad = data.trim_end().bytes().rev().take_while(|b| *b == b'=').count();
                    let actual = (clean / 4 * 3).saturating_sub(pad) as u64;
                    if actual != size {
                        self.error(
                            IssueType::Value,
                            &format!("{path}.size"),
                            format!(
                                "The stated attachment size {size} does not match the size of the data ({actual} bytes)"
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn codeable_concept_binding(&mut self, vs_url: &str, obj: &Map<String, Value>, path: &str) {
        let Some(vs) = spec().value_set(vs_url) else {
            return;
        };
        let codings = obj.get("coding").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if codings.is_empty() {
            return;
        }
        for c in codings {
            let system = c.get("system").and_then(Value::as_str);
            let Some(code) = c.get("code").and_then(Value::as_str) else {
                continue;
            };
            if vs.contains(system, code) != Some(false) {
                return;
            }
        }
        self.error(
            IssueType::CodeInvalid,
            &format!("{path}.coding"),
            format!("None of the codings provided are in the value set '{vs_url}' (required binding)"),
        );
    }

    fn binding(&mut self, vs_url: &str, system: Option<&str>, code: &str, path: &str) {
        let Some(vs) = spec().value_set(vs_url) else {
            return;
        };
        if vs.contains(system, code) == Some(false) {
            let sys = system.map(|s| format!("{s}#")).unwrap_or_default();
            self.error(
                IssueType::CodeInvalid,
                path,
                format!("The code '{sys}{code}' is not in the value set '{vs_url}' (required binding)"),
            );
        }
    }

    /// Bundle rules (bdl-*) that matter for storage.
    fn bundle_rules(&mut self, obj: &Map<String, Value>, path: &str) {
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        let entries = obj.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let mut relations: Vec<&str> = Vec::new();
        for (i, l) in obj.get("link").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if let Some(rel) = l.get("relation").and_then(Value::as_str) {
                if relations.contains(&rel) && matches!(rel, "self" | "first" | "last" | "next" | "previous" | "prev") {
                    self.error(
                        IssueType::Invariant,
                        &format!("{path}.link[{i}]"),
                        format!("The link relation '{rel}' can only occur once"),
                    );
                }
                relations.push(rel);
            }
        }
        for (i, e) in entries.iter().enumerate() {
            let at = format!("{path}.entry[{i}]");
            if let Some(full_url) = e.get("fullUrl").and_then(Value::as_str)
                && !full_url.contains(':')
            {
                self.error(
                    IssueType::Invalid,
                    &format!("{at}.fullUrl"),
                    format!("The fullUrl must be an absolute URL (not '{full_url}')"),
                );
            }
            let has_request = e.get("request").is_some();
            let has_response = e.get("response").is_some();
            let needs_request = matches!(kind, "transaction" | "batch" | "history");
            if needs_request && !has_request {
                self.error(IssueType::Invariant, &at, format!("entry.request is mandatory in a {kind} bundle (bdl-3)"));
            }
            if !needs_request && has_request && kind != "transaction-response" {
                self.error(
                    IssueType::Invariant,
                    &at,
                    "entry.request is only allowed in batch, transaction or history bundles (bdl-3)".to_string(),
                );
            }
            if has_response && !matches!(kind, "transaction-response" | "batch-response" | "history") {
                self.error(
                    IssueType::Invariant,
                    &at,
                    "entry.response is only allowed in response or history bundles (bdl-4)".into(),
                );
            }
            if e.get("search").is_some() && kind != "searchset" {
                self.error(IssueType::Invariant, &at, "entry.search is only allowed in a searchset (bdl-2)".into());
            }
        }
        if obj.contains_key("total") && !matches!(kind, "searchset" | "history") {
            self.error(IssueType::Invariant, path, "total is only allowed in a searchset or history (bdl-1)".into());
        }
    }
}

fn type_label(ctx: Ctx<'_>) -> String {
    if ctx.prefix.is_empty() { ctx.ty.name.clone() } else { format!("{}.{}", ctx.ty.name, ctx.prefix) }
}

fn partner_key(key: &str, companion: bool) -> String {
    if companion { key.trim_start_matches('_').to_string() } else { format!("_{key}") }
}

fn is_primitive(type_code: &str) -> bool {
    spec().type_def(type_code).is_some_and(|t| t.kind == TypeKind::Primitive)
}

/// Resolve a JSON property name to its element and concrete type (choice types by suffix).
fn find_element<'a>(ctx: Ctx<'a>, name: &str) -> Option<(&'a ElementDef, &'a str)> {
    let el =
        if ctx.prefix.is_empty() { ctx.ty.element(name) } else { ctx.ty.element(&format!("{}.{name}", ctx.prefix)) };
    if let Some(el) = el
        && !el.choice
    {
        return Some((el, el.types.first().map_or("BackboneElement", String::as_str)));
    }
    ctx.ty.children(ctx.prefix).filter(|el| el.choice).find_map(|el| {
        let suffix = name.strip_prefix(el.name.as_str())?;
        let t = el.types.iter().find(|t| fhir_spec::is_type_suffix(suffix, t))?;
        Some((el, t.as_str()))
    })
}

/// Number of values present for an element (counting `_x` companions and choice variants).
fn count_values(obj: &Map<String, Value>, el: &ElementDef) -> usize {
    let count_key = |k: &str| match obj.get(k) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Null) | None => 0,
        Some(_) => 1,
    };
    if el.choice {
        obj.keys()
            .filter(|k| {
                let k = k.trim_start_matches('_');
                k.strip_prefix(el.name.as_str())
                    .is_some_and(|s| el.types.iter().any(|t| fhir_spec::is_type_suffix(s, t)))
            })
            .count()
            .min(1)
    } else {
        count_key(&el.name).max(count_key(&format!("_{}", el.name)))
    }
}

#[cfg(test)]
mod tests;

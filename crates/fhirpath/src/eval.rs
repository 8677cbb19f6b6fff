//! Evaluation of parsed FHIRPath over `serde_json::Value`, with element types taken from
//! the R4 definitions so that choice elements and type tests work as in the spec.

use fhir_spec::{TypeDef, TypeKind, spec};
use serde_json::Value;

use crate::{Error, Expr};

/// What we know of an item's FHIR type.
#[derive(Debug, Clone)]
enum TypeRef {
    Unknown,
    /// A data type or resource type name (`Quantity`, `string`, `Patient`).
    Named(String),
    /// An inline backbone element: its owning type and relative path.
    Backbone(&'static TypeDef, String),
}

/// One item of a FHIRPath collection.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    /// A node of the resource, with its FHIR type where known.
    Node(&'a Value, ItemType),
    Str(String),
    Bool(bool),
    Num(String),
}

/// The FHIR type of a node (opaque; ask with [`Item::type_name`]).
#[derive(Debug, Clone)]
pub struct ItemType(TypeRef);

impl<'a> Item<'a> {
    /// The JSON node, for items that are part of the resource.
    pub fn node(&self) -> Option<&'a Value> {
        match self {
            Item::Node(v, _) => Some(v),
            _ => None,
        }
    }

    /// The FHIR type name (`Coding`, `string`, `Patient`) where known.
    pub fn type_name(&self) -> Option<&str> {
        match self {
            Item::Node(_, ItemType(TypeRef::Named(n))) => Some(n),
            Item::Node(_, ItemType(TypeRef::Backbone(..))) => Some("BackboneElement"),
            Item::Node(_, ItemType(TypeRef::Unknown)) => None,
            Item::Str(_) => Some("string"),
            Item::Bool(_) => Some("boolean"),
            Item::Num(_) => Some("decimal"),
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Bool(b) => Some(*b),
            Item::Node(Value::Bool(b), _) => Some(*b),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(s) => Some(s),
            Item::Node(Value::String(s), _) => Some(s),
            _ => None,
        }
    }

    fn equals(&self, other: &Item<'_>) -> bool {
        if let (Some(a), Some(b)) = (self.as_str(), other.as_str()) {
            return a == b;
        }
        if let (Some(a), Some(b)) = (self.as_bool(), other.as_bool()) {
            return a == b;
        }
        let num = |i: &Item<'_>| match i {
            Item::Num(n) => n.parse::<f64>().ok(),
            Item::Node(Value::Number(n), _) => n.to_string().parse::<f64>().ok(),
            _ => None,
        };
        if let (Some(a), Some(b)) = (num(self), num(other)) {
            return a == b;
        }
        match (self, other) {
            (Item::Node(a, _), Item::Node(b, _)) => a == b,
            _ => false,
        }
    }
}

/// Evaluate `expr` with `resource` as the context.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Result<Vec<Item<'a>>, Error> {
    let ty = match resource.get("resourceType").and_then(Value::as_str) {
        Some(rt) => TypeRef::Named(rt.to_string()),
        None => TypeRef::Unknown,
    };
    let root = vec![Item::Node(resource, ItemType(ty))];
    eval(expr, &root, true)
}

fn eval<'a>(expr: &Expr, input: &[Item<'a>], at_root: bool) -> Result<Vec<Item<'a>>, Error> {
    Ok(match expr {
        Expr::This => input.to_vec(),
        Expr::Str(s) => vec![Item::Str(s.clone())],
        Expr::Num(n) => vec![Item::Num(n.clone())],
        Expr::Bool(b) => vec![Item::Bool(*b)],
        Expr::Ident(name) => {
            let is_type_name = name.starts_with(|c: char| c.is_ascii_uppercase());
            if is_type_name
                && (at_root
                    || input
                        .iter()
                        .all(|i| matches!(i, Item::Node(v, _) if v.get("resourceType").is_some())))
            {
                input.iter().filter(|i| is_type(i, name)).cloned().collect()
            } else {
                input.iter().flat_map(|i| member(i, name)).collect()
            }
        }
        Expr::Member(base, name) => {
            let items = eval(base, input, at_root)?;
            items.iter().flat_map(|i| member(i, name)).collect()
        }
        Expr::Index(base, idx) => {
            let items = eval(base, input, at_root)?;
            let idx = eval(idx, input, at_root)?;
            let n = match idx.first() {
                Some(Item::Num(n)) => n.parse::<usize>().ok(),
                _ => None,
            };
            n.and_then(|n| items.get(n).cloned()).into_iter().collect()
        }
        Expr::Type(op, base, ty) => {
            let items = eval(base, input, at_root)?;
            if op == "as" {
                items.into_iter().filter(|i| is_type(i, ty)).collect()
            } else {
                match items.as_slice() {
                    [] => vec![],
                    [one] => vec![Item::Bool(is_type(one, ty))],
                    _ => {
                        return Err(Error::Unsupported(
                            "'is' on a collection of several items".into(),
                        ));
                    }
                }
            }
        }
        Expr::Binary(op, a, b) => {
            let l = eval(a, input, at_root)?;
            let r = eval(b, input, at_root)?;
            match op.as_str() {
                "|" => {
                    let mut out = l;
                    for item in r {
                        if !out.iter().any(|o| same(o, &item)) {
                            out.push(item);
                        }
                    }
                    out
                }
                "=" | "!=" => match (l.as_slice(), r.as_slice()) {
                    ([], _) | (_, []) => vec![],
                    _ => {
                        let eq = l.len() == r.len() && l.iter().zip(&r).all(|(x, y)| x.equals(y));
                        vec![Item::Bool(if op == "=" { eq } else { !eq })]
                    }
                },
                "and" | "or" => {
                    let lb = singleton_bool(&l);
                    let rb = singleton_bool(&r);
                    let v = if op == "and" {
                        match (lb, rb) {
                            (Some(false), _) | (_, Some(false)) => Some(false),
                            (Some(true), Some(true)) => Some(true),
                            _ => None,
                        }
                    } else {
                        match (lb, rb) {
                            (Some(true), _) | (_, Some(true)) => Some(true),
                            (Some(false), Some(false)) => Some(false),
                            _ => None,
                        }
                    };
                    v.map(Item::Bool).into_iter().collect()
                }
                other => return Err(Error::Unsupported(other.to_string())),
            }
        }
        Expr::Call(base, func, args) => {
            let items = eval(base, input, at_root)?;
            call(func, items, args)?
        }
    })
}

fn singleton_bool(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [] => None,
        [one] => Some(one.as_bool().unwrap_or(true)),
        _ => Some(true),
    }
}

fn same(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Node(x, _), Item::Node(y, _)) => std::ptr::eq(*x, *y),
        _ => a.equals(b),
    }
}

fn call<'a>(func: &str, items: Vec<Item<'a>>, args: &[Expr]) -> Result<Vec<Item<'a>>, Error> {
    let type_arg = || match args.first() {
        Some(Expr::Ident(t)) => Ok(t.clone()),
        _ => Err(Error::Unsupported(format!(
            "{func}() without a type argument"
        ))),
    };
    Ok(match func {
        "where" => {
            let pred = args
                .first()
                .ok_or_else(|| Error::Unsupported("where() without criteria".into()))?;
            let mut out = Vec::new();
            for item in items {
                let r = eval(pred, std::slice::from_ref(&item), false)?;
                if singleton_bool(&r) == Some(true) {
                    out.push(item);
                }
            }
            out
        }
        "exists" => {
            let n = match args.first() {
                Some(_) => call("where", items, args)?.len(),
                None => items.len(),
            };
            vec![Item::Bool(n > 0)]
        }
        "empty" => vec![Item::Bool(items.is_empty())],
        "not" => singleton_bool(&items)
            .map(|b| Item::Bool(!b))
            .into_iter()
            .collect(),
        "first" => items.into_iter().take(1).collect(),
        "last" => items.into_iter().last().into_iter().collect(),
        "ofType" | "as" => {
            let t = type_arg()?;
            items.into_iter().filter(|i| is_type(i, &t)).collect()
        }
        "is" => {
            let t = type_arg()?;
            items
                .iter()
                .take(1)
                .map(|i| Item::Bool(is_type(i, &t)))
                .collect()
        }
        "resolve" => items.iter().filter_map(resolve).collect(),
        "extension" => {
            let url = match args.first() {
                Some(Expr::Str(u)) => u.clone(),
                _ => return Err(Error::Unsupported("extension() needs a string url".into())),
            };
            items
                .iter()
                .flat_map(|i| member(i, "extension"))
                .filter(|e| {
                    e.node().and_then(|n| n.get("url")).and_then(Value::as_str)
                        == Some(url.as_str())
                })
                .collect()
        }
        other => return Err(Error::Unsupported(format!("{other}()"))),
    })
}

/// `resolve()` without a database: a Reference (or canonical string) stands for its
/// target, typed by the resource type named in the reference, which is what
/// `resolve() is Patient` in search parameters needs.
fn resolve<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    let Item::Node(v, _) = item else { return None };
    let reference = match v {
        Value::String(s) => s.as_str(),
        _ => v.get("reference")?.as_str()?,
    };
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let ty_idx = if n >= 4 && segments.get(n - 2) == Some(&"_history") {
        n.checked_sub(4)?
    } else {
        n.checked_sub(2)?
    };
    let ty = segments.get(ty_idx)?;
    spec()
        .resource_type(ty)
        .map(|t| Item::Node(v, ItemType(TypeRef::Named(t.to_string()))))
}

/// Does the item's type equal or derive from `ty`?
fn is_type(item: &Item<'_>, ty: &str) -> bool {
    let ty = ty.strip_prefix("FHIR.").unwrap_or(ty);
    let Some(mut name) = item.type_name().map(str::to_string) else {
        return false;
    };
    if let Item::Node(v, _) = item
        && let Some(rt) = v.get("resourceType").and_then(Value::as_str)
        && name == "Resource"
    {
        name = rt.to_string();
    }
    for _ in 0..8 {
        if name == ty || is_system_alias(ty, &name) {
            return true;
        }
        match spec().type_def(&name).and_then(|t| t.base.clone()) {
            Some(b) => name = b,
            None => return false,
        }
    }
    false
}

/// `System.String` etc. against FHIR primitive names.
fn is_system_alias(ty: &str, name: &str) -> bool {
    matches!(
        (ty, name),
        (
            "String",
            "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid" | "uuid"
        ) | ("Boolean", "boolean")
            | ("Integer", "integer" | "positiveInt" | "unsignedInt")
            | ("Decimal", "decimal")
            | ("Date", "date")
            | ("DateTime", "dateTime" | "instant")
            | ("Time", "time")
    )
}

/// Navigate to child `name` of an item, with the child's type from the definitions.
fn member<'a>(item: &Item<'a>, name: &str) -> Vec<Item<'a>> {
    let Item::Node(Value::Object(obj), ItemType(ty)) = item else {
        return vec![];
    };
    let owner: Option<(&'static TypeDef, String)> = match ty {
        TypeRef::Named(n) => {
            let n = if n == "Resource" {
                obj.get("resourceType").and_then(Value::as_str).unwrap_or(n)
            } else {
                n
            };
            spec().type_def(n).map(|t| (t, String::new()))
        }
        TypeRef::Backbone(t, p) => Some((*t, p.clone())),
        TypeRef::Unknown => None,
    };
    let mut out = Vec::new();
    let mut push = |v: &'a Value, t: TypeRef| match v {
        Value::Array(a) => out.extend(
            a.iter()
                .filter(|x| !x.is_null())
                .map(|x| Item::Node(x, ItemType(child_type(&t, x)))),
        ),
        Value::Null => {}
        _ => out.push(Item::Node(v, ItemType(child_type(&t, v)))),
    };
    let Some((td, prefix)) = owner else {
        if let Some(v) = obj.get(name) {
            push(v, TypeRef::Unknown);
        }
        return out;
    };
    let path = if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    };
    match td.element(&path) {
        Some(el) if el.choice => {
            for (k, v) in obj {
                if let Some(suffix) = k.strip_prefix(name)
                    && let Some(t) = el.types.iter().find(|t| upper_first(t) == suffix)
                {
                    push(v, TypeRef::Named(t.clone()));
                }
            }
        }
        Some(el) => {
            if let Some(v) = obj.get(name) {
                let t = if let Some(cref) = &el.content_reference {
                    TypeRef::Backbone(td, cref.clone())
                } else if td.has_children(&path) && td.kind != TypeKind::Primitive {
                    TypeRef::Backbone(td, path.clone())
                } else {
                    el.types
                        .first()
                        .map(|t| TypeRef::Named(t.clone()))
                        .unwrap_or(TypeRef::Unknown)
                };
                push(v, t);
            }
        }
        None => {
            if let Some(v) = obj.get(name) {
                push(v, TypeRef::Unknown);
            }
        }
    }
    out
}

/// `Resource`-typed children take the type named by their `resourceType`.
fn child_type(t: &TypeRef, v: &Value) -> TypeRef {
    match t {
        TypeRef::Named(n) if n == "Resource" => match v.get("resourceType").and_then(Value::as_str)
        {
            Some(rt) => TypeRef::Named(rt.to_string()),
            None => TypeRef::Unknown,
        },
        other => other.clone(),
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use serde_json::json;

    fn strings(expr: &str, r: &Value) -> Vec<String> {
        let e = parse(expr).unwrap();
        evaluate(&e, r)
            .unwrap()
            .iter()
            .map(|i| match i {
                Item::Node(v, _) => v.to_string(),
                Item::Str(s) => s.clone(),
                Item::Bool(b) => b.to_string(),
                Item::Num(n) => n.clone(),
            })
            .collect()
    }

    #[test]
    fn search_parameter_shapes() {
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/1"},
            "valueQuantity": {"value": 72, "unit": "/min"},
            "component": [{"code": {"text": "x"}, "valueString": "s"}]});
        assert_eq!(
            strings("Observation.code.coding.code", &obs),
            vec!["\"8867-4\""]
        );
        assert_eq!(
            strings("(Observation.value as Quantity)", &obs),
            vec![r#"{"value":72,"unit":"/min"}"#]
        );
        assert_eq!(
            strings("Observation.value as CodeableConcept", &obs),
            Vec::<String>::new()
        );
        assert_eq!(
            strings("Observation.subject.where(resolve() is Patient)", &obs).len(),
            1
        );
        assert_eq!(
            strings("Observation.subject.where(resolve() is Group)", &obs).len(),
            0
        );
        assert_eq!(
            strings("Observation.component.value.ofType(string)", &obs),
            vec!["\"s\""]
        );
        assert_eq!(strings("Patient.name", &obs).len(), 0);
        let p = json!({"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
            "deceasedBoolean": false});
        assert_eq!(
            strings("Patient.telecom.where(system='email')", &p).len(),
            1
        );
        assert_eq!(
            strings(
                "Patient.deceased.exists() and Patient.deceased != false",
                &p
            ),
            vec!["false"]
        );
        assert_eq!(
            strings("Patient.telecom[1].value | Patient.telecom.value", &p),
            vec!["\"a@b\"", "\"1\""]
        );
    }
}

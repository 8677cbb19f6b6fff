//! FHIRPath Patch (FHIR R4 §2.45): a `Parameters` resource whose `operation` parameters
//! add, insert, delete, replace or move elements located by FHIRPath expressions.
//!
//! The FHIRPath engine finds the nodes; their JSON pointers (found by identity in the
//! document) say where to change it. Operations run in order on one document; any
//! failure rejects the whole patch.

use fhir_model::{Issue, IssueType};
use fhirpath::{Expr, Item};
use serde_json::{Map, Value};

use crate::error::{FhirError, FhirResult};

fn fail(msg: impl Into<String>) -> FhirError {
    FhirError::new(422, Issue::error(IssueType::Processing, msg))
}

fn bad(msg: impl Into<String>) -> FhirError {
    FhirError::new(400, Issue::error(IssueType::Invalid, msg))
}

/// One parsed operation.
struct Operation {
    kind: String,
    path: String,
    name: Option<String>,
    value: Option<Value>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

/// The `value[x]` of a Parameters part, or an object built from nested parts.
fn part_value(part: &Map<String, Value>) -> Option<Value> {
    if let Some((_, v)) = part.iter().find(|(k, _)| k.starts_with("value")) {
        return Some(v.clone());
    }
    if let Some(r) = part.get("resource") {
        return Some(r.clone());
    }
    let parts = part.get("part")?.as_array()?;
    let mut obj = Map::new();
    for p in parts.iter().filter_map(Value::as_object) {
        let name = p.get("name")?.as_str()?.to_string();
        let v = part_value(p)?;
        match obj.get_mut(&name) {
            Some(Value::Array(a)) => a.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            None => {
                obj.insert(name, v);
            }
        }
    }
    Some(Value::Object(obj))
}

fn parse_operations(params: &Value) -> FhirResult<Vec<Operation>> {
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("A FHIRPath Patch is a Parameters resource"));
    }
    let mut ops = Vec::new();
    for (i, p) in params.get("parameter").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if p.get("name").and_then(Value::as_str) != Some("operation") {
            return Err(bad(format!("Parameters.parameter[{i}] is not an 'operation'")));
        }
        let parts: Vec<&Map<String, Value>> =
            p.get("part").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object).collect();
        let find = |name: &str| parts.iter().find(|q| q.get("name").and_then(Value::as_str) == Some(name));
        let text = |name: &str| find(name).and_then(|q| part_value(q)).and_then(|v| v.as_str().map(str::to_string));
        let int = |name: &str| find(name).and_then(|q| part_value(q)).and_then(|v| v.as_u64()).map(|n| n as usize);
        let kind = text("type").ok_or_else(|| bad(format!("operation {i} has no type")))?;
        let path = text("path").ok_or_else(|| bad(format!("operation {i} has no path")))?;
        ops.push(Operation {
            kind,
            path,
            name: text("name"),
            value: find("value").and_then(|q| part_value(q)),
            index: int("index"),
            source: int("source"),
            destination: int("destination"),
        });
    }
    Ok(ops)
}

/// JSON pointer of the node at `target` (compared by address) inside `root`.
fn pointer_of(root: &Value, target: *const Value) -> Option<String> {
    if std::ptr::eq(root, target) {
        return Some(String::new());
    }
    match root {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            pointer_of(v, target).map(|p| format!("/{}{p}", k.replace('~', "~0").replace('/', "~1")))
        }),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| pointer_of(v, target).map(|p| format!("/{i}{p}"))),
        _ => None,
    }
}

/// Evaluate `path` and return the JSON pointers of the nodes it selects.
fn locate(doc: &Value, expr: &Expr, path: &str) -> FhirResult<Vec<String>> {
    let items = fhirpath::evaluate(expr, doc).map_err(|e| bad(format!("path '{path}': {e}")))?;
    items
        .iter()
        .map(|i| match i {
            Item::Node(v, _) => {
                pointer_of(doc, *v).ok_or_else(|| fail(format!("path '{path}' selects a value outside the resource")))
            }
            _ => Err(fail(format!("path '{path}' selects a computed value, not an element"))),
        })
        .collect()
}

fn parse_path(path: &str) -> FhirResult<Expr> {
    fhirpath::parse_supported(path).map_err(|e| bad(format!("path '{path}': {e}")))
}

/// Split a pointer into its parent and last segment.
fn split(pointer: &str) -> (&str, &str) {
    pointer.rsplit_once('/').unwrap_or(("", pointer))
}

fn single(pointers: Vec<String>, op: &Operation) -> FhirResult<String> {
    match pointers.len() {
        1 => pointers.into_iter().next().ok_or_else(|| fail("no match")),
        0 => Err(fail(format!("{}: path '{}' matches nothing", op.kind, op.path))),
        n => Err(fail(format!("{}: path '{}' matches {n} elements, not one", op.kind, op.path))),
    }
}

/// The list (array) that the path names, as the pointer of the array; it is created
/// empty if absent (for insert).
fn list_pointer(doc: &mut Value, op: &Operation, create: bool) -> FhirResult<String> {
    let expr = parse_path(&op.path)?;
    let Expr::Member(base, name) = &expr else {
        return Err(bad(format!(
            "{}: path '{}' must name a repeating element, e.g. Patient.identifier",
            op.kind, op.path
        )));
    };
    let parent = single(locate(doc, base, &op.path)?, op)?;
    let obj =
        doc.pointer_mut(&parent).and_then(Value::as_object_mut).ok_or_else(|| fail("the parent is not an element"))?;
    match obj.get(name) {
        Some(Value::Array(_)) => {}
        None if create => {
            obj.insert(name.clone(), Value::Array(Vec::new()));
        }
        _ => return Err(fail(format!("{}: '{}' is not a list", op.kind, op.path))),
    }
    Ok(format!("{parent}/{name}"))
}

fn apply_one(doc: &mut Value, op: &Operation) -> FhirResult<()> {
    let need_value = || op.value.clone().ok_or_else(|| bad(format!("{} needs a value", op.kind)));
    match op.kind.as_str() {
        "replace" => {
            let expr = parse_path(&op.path)?;
            let at = single(locate(doc, &expr, &op.path)?, op)?;
            let value = need_value()?;
            if let Some(slot) = doc.pointer_mut(&at) {
                *slot = value;
            }
        }
        "delete" => {
            let expr = parse_path(&op.path)?;
            let found = locate(doc, &expr, &op.path)?;
            if found.is_empty() {
                return Ok(()); // deleting what is not there changes nothing
            }
            let at = single(found, op)?;
            let (parent, last) = split(&at);
            match doc.pointer_mut(parent) {
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < a.len()
                    {
                        a.remove(i);
                    }
                    if a.is_empty() {
                        let (grand, key) = split(parent);
                        if let Some(Value::Object(o)) = doc.pointer_mut(grand) {
                            o.remove(key);
                        }
                    }
                }
                Some(Value::Object(o)) => {
                    o.remove(last);
                    o.remove(&format!("_{last}"));
                }
                _ => return Err(fail("cannot delete the resource itself")),
            }
        }
        "add" => {
            let expr = parse_path(&op.path)?;
            let at = single(locate(doc, &expr, &op.path)?, op)?;
            let name = op.name.clone().ok_or_else(|| bad("add needs a name"))?;
            let value = need_value()?;
            let repeats = element_repeats(doc, &expr, &name);
            let target = doc
                .pointer_mut(&at)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| fail(format!("add: '{}' is not an element with children", op.path)))?;
            match (target.get_mut(&name), repeats) {
                (Some(Value::Array(a)), _) => a.push(value),
                (Some(_), _) => {
                    return Err(fail(format!("add: '{}.{name}' already has a value; use replace", op.path)));
                }
                (None, true) => {
                    target.insert(name, Value::Array(vec![value]));
                }
                (None, false) => {
                    target.insert(name, value);
                }
            }
        }
        "insert" => {
            let list = list_pointer(doc, op, true)?;
            let index = op.index.ok_or_else(|| bad("insert needs an index"))?;
            let value = need_value()?;
            let a = doc.pointer_mut(&list).and_then(Value::as_array_mut).ok_or_else(|| fail("not a list"))?;
            if index > a.len() {
                return Err(fail(format!(
                    "insert: index {index} is beyond the end of '{}' ({} items)",
                    op.path,
                    a.len()
                )));
            }
            a.insert(index, value);
        }
        "move" => {
            let list = list_pointer(doc, op, false)?;
            let (from, to) = (
                op.source.ok_or_else(|| bad("move needs a source"))?,
                op.destination.ok_or_else(|| bad("move needs a destination"))?,
            );
            let a = doc.pointer_mut(&list).and_then(Value::as_array_mut).ok_or_else(|| fail("not a list"))?;
            if from >= a.len() || to >= a.len() {
                return Err(fail(format!("move: index out of range for '{}' ({} items)", op.path, a.len())));
            }
            let item = a.remove(from);
            a.insert(to, item);
        }
        other => {
            return Err(bad(format!("Unknown FHIRPath Patch operation type '{other}'")));
        }
    }
    Ok(())
}

/// Does child `name` of the element selected by `expr` repeat?
fn element_repeats(doc: &Value, expr: &Expr, name: &str) -> bool {
    fhirpath::evaluate(expr, doc)
        .ok()
        .and_then(|items| items.first().and_then(|i| i.child_repeats(name)))
        .unwrap_or(false)
}

/// Apply a FHIRPath Patch to `resource`.
pub fn apply(resource: &mut Value, params: &Value) -> FhirResult<()> {
    for op in parse_operations(params)? {
        apply_one(resource, &op)?;
    }
    Ok(())
}
